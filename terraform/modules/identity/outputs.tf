output "issuer" {
  description = "AUTH_ISSUER: the exact iss of accepted tokens (https://cognito-idp.<region>.amazonaws.com/<pool id>, or oidc.issuer_url)."
  value       = local.issuer
}

output "jwks_url" {
  description = "AUTH_JWKS_URL: the issuer's signing keys."
  value       = local.jwks_url
}

output "scope_prefix" {
  description = "AUTH_SCOPE_PREFIX: \"<resource server identifier>/\" for Cognito, oidc.scope_prefix otherwise."
  value       = local.scope_prefix
}

output "audiences" {
  description = "Service => accepted audiences (Cognito: ids of the clients holding one of its scopes)."
  value       = local.audiences

  precondition {
    condition     = alltrue([for s in var.services : length(local.audiences[s]) > 0])
    error_message = "Every service needs at least one accepted audience: give some client one of its scopes (\"<service>:<right>\")."
  }
}

output "service_env" {
  description = "Service => the AUTH_* environment it verifies tokens with (plain settings, no secrets)."
  value = {
    for s in var.services : s => {
      AUTH_ISSUER       = local.issuer
      AUTH_AUDIENCE     = join(",", local.audiences[s])
      AUTH_JWKS_URL     = local.jwks_url
      AUTH_SCOPE_PREFIX = local.scope_prefix
    }
  }
}

output "token_endpoint" {
  description = "OAuth token endpoint of the Cognito domain (null with var.oidc)."
  value       = local.cognito ? "https://${aws_cognito_user_pool_domain.this[0].domain}.auth.${local.region}.amazoncognito.com/oauth2/token" : null
}

output "user_pool_id" {
  description = "Cognito user pool id (null with var.oidc)."
  value       = try(aws_cognito_user_pool.this[0].id, null)
}

output "user_pool_arn" {
  description = "Cognito user pool ARN (null with var.oidc)."
  value       = try(aws_cognito_user_pool.this[0].arn, null)
}

output "client_ids" {
  description = "Client name => Cognito app client id (empty with var.oidc)."
  value       = { for c, client in aws_cognito_user_pool_client.this : c => client.id }
}

output "client_secret_arns" {
  description = "Client name => Secrets Manager ARN of its credentials {client_id, client_secret, token_url, scope} (empty with var.oidc)."
  value       = { for c, secret in aws_secretsmanager_secret.client : c => secret.arn }
}

output "scopes" {
  description = "Scopes as they appear in tokens (with the resource server prefix under Cognito)."
  value       = [for s in keys(var.scopes) : "${local.scope_prefix}${s}"]
}
