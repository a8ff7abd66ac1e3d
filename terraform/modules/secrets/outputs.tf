output "kms_key_arn" {
  description = "Country CMK ARN (logs, SNS, Secrets Manager)."
  value       = aws_kms_key.this.arn
}

output "kms_key_id" {
  description = "Country CMK key ID."
  value       = aws_kms_key.this.key_id
}

output "db_secret_arns" {
  description = "Service name => Secrets Manager ARN of its database credentials (DATABASE_SECRET_ARN)."
  value       = { for s, secret in aws_secretsmanager_secret.db : s => secret.arn }
}

output "pod_role_arns" {
  description = "EKS countries: service name => IAM role its pods assume via Pod Identity (empty on ECS)."
  value       = { for s, r in aws_iam_role.pod : s => r.arn }
}
