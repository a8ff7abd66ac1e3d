output "alert_topic_arn" {
  description = "SNS topic every alarm and Alertmanager route publishes to."
  value       = aws_sns_topic.alerts.arn
}

output "prometheus_workspace_id" {
  description = "AMP workspace ID (null in cloudwatch mode)."
  value       = try(aws_prometheus_workspace.this[0].id, null)
}

output "prometheus_endpoint" {
  description = "AMP query endpoint used by the operator's analysis and the Buildkite gate (null in cloudwatch mode)."
  value       = try(aws_prometheus_workspace.this[0].prometheus_endpoint, null)
}

output "scraper_role_arn" {
  description = "Role the managed scraper uses: give it an EKS access entry bound to the scraper ClusterRole."
  value       = try(aws_prometheus_scraper.this[0].role_arn, null)
}

output "operator_role_arn" {
  description = "Pod Identity role of the operator (AMP query access; null in cloudwatch mode)."
  value       = try(aws_iam_role.operator[0].arn, null)
}
