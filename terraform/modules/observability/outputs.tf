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

output "dashboard_manifests" {
  description = "mode = prometheus: one ConfigMap (YAML) per dashboard of runbooks/dashboards, labelled grafana_dashboard=1 for the Grafana sidecar; applied in the cluster like kubernetes_env_manifests. Empty in cloudwatch mode."
  value       = local.dashboard_manifests
}

output "recording_rule_groups" {
  description = "Names of the runbooks/rules recording-rule groups loaded into the AMP workspace (namespace meridian-recording); empty in cloudwatch mode."
  value       = [for g in local.recording_groups : g.name]
}

output "scraper_rbac_manifests" {
  description = "ClusterRole + ClusterRoleBinding (YAML) for the managed scraper's user aps-collector-user (its EKS access entry): applied from the deploy agent like dashboard_manifests. Empty in cloudwatch mode."
  value       = local.scraper_rbac_manifests
}
