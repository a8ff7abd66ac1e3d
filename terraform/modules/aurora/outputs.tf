output "cluster_id" {
  description = "Cluster identifier."
  value       = aws_rds_cluster.this.id
}

output "cluster_arn" {
  description = "Cluster ARN."
  value       = aws_rds_cluster.this.arn
}

output "cluster_resource_id" {
  description = "Cluster resource ID (for rds-db:connect IAM policies)."
  value       = aws_rds_cluster.this.cluster_resource_id
}

output "endpoint" {
  description = "Writer endpoint."
  value       = aws_rds_cluster.this.endpoint
}

output "reader_endpoint" {
  description = "Reader endpoint (load-balanced over readers)."
  value       = aws_rds_cluster.this.reader_endpoint
}

output "port" {
  description = "Postgres port."
  value       = aws_rds_cluster.this.port
}

output "database_name" {
  description = "Database that holds one schema per service."
  value       = aws_rds_cluster.this.database_name
}

output "master_user_secret_arn" {
  description = "Secrets Manager ARN of the RDS-managed master credentials (used only by the db-bootstrap step)."
  value       = aws_rds_cluster.this.master_user_secret[0].secret_arn
}

output "security_group_id" {
  description = "Security group of the cluster."
  value       = aws_security_group.this.id
}

output "kms_key_arn" {
  description = "CMK encrypting storage, Performance Insights and the master secret."
  value       = local.kms_key_arn
}

output "instance_identifiers" {
  description = "Instance identifiers, writer first."
  value       = aws_rds_cluster_instance.this[*].identifier
}
