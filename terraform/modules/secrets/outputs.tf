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

output "service_secret_env" {
  description = "Service => secret environment variable => {arn, version_stage} in Secrets Manager (calls: CALLS_TOKEN_KEY, CALLS_WEBHOOK_SECRETS, and CALLS_TOKEN_KEY_ALSO_ACCEPT during a rotation). Values are never outputs."
  value       = local.service_secret_env
}

output "calls_secret_arns" {
  description = "token-key / webhook-secrets => Secrets Manager ARN (empty without calls)."
  value       = { for k, secret in aws_secretsmanager_secret.calls : k => secret.arn }
}

output "external_secrets_role_arn" {
  description = "EKS: IAM role of the External Secrets Operator controller (Pod Identity); null on ECS or without calls."
  value       = try(aws_iam_role.external_secrets[0].arn, null)
}
