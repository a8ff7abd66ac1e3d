# The country's token issuer for every service (docs/security.md): a Cognito user pool that
# issues OAuth client-credentials access tokens to machine clients, with one resource server
# whose scopes are the services' rights, or an existing OIDC provider (var.oidc), in which case
# nothing is created here. Either way the output service_env holds the four AUTH_* settings
# each service verifies tokens with.

data "aws_region" "current" {}

locals {
  cognito = var.oidc == null
  region  = data.aws_region.current.id

  # Cognito access tokens carry client_id instead of aud; services accept the clients that hold
  # at least one scope of theirs (scope "<service>:<right>").
  client_services = {
    for c, cfg in var.clients : c => distinct([for s in cfg.scopes : split(":", s)[0]])
  }

  issuer       = local.cognito ? "https://${aws_cognito_user_pool.this[0].endpoint}" : var.oidc.issuer_url
  jwks_url     = local.cognito ? "${local.issuer}/.well-known/jwks.json" : var.oidc.jwks_url
  scope_prefix = local.cognito ? "${var.resource_server_identifier}/" : var.oidc.scope_prefix
  audiences = {
    for s in var.services : s => (
      local.cognito
      ? sort([for c, svcs in local.client_services : aws_cognito_user_pool_client.this[c].id if contains(svcs, s)])
      : var.oidc.audiences
    )
  }
}

resource "aws_cognito_user_pool" "this" {
  count = local.cognito ? 1 : 0

  name                = var.name
  deletion_protection = var.deletion_protection ? "ACTIVE" : "INACTIVE"
  user_pool_tier      = var.user_pool_tier

  # Machine clients only: nobody signs up, and an administrator-created user (break-glass
  # tooling) needs a strong password and TOTP.
  admin_create_user_config {
    allow_admin_create_user_only = true
  }

  mfa_configuration = "ON"
  software_token_mfa_configuration {
    enabled = true
  }

  password_policy {
    minimum_length                   = 16
    require_lowercase                = true
    require_uppercase                = true
    require_numbers                  = true
    require_symbols                  = true
    temporary_password_validity_days = 1
  }

  account_recovery_setting {
    recovery_mechanism {
      name     = "admin_only"
      priority = 1
    }
  }

  username_configuration {
    case_sensitive = false
  }

  user_pool_add_ons {
    advanced_security_mode = var.advanced_security_mode
  }

  tags = var.tags
}

resource "aws_cognito_resource_server" "this" {
  count = local.cognito ? 1 : 0

  user_pool_id = aws_cognito_user_pool.this[0].id
  identifier   = var.resource_server_identifier
  name         = "${var.name} services"

  dynamic "scope" {
    for_each = var.scopes
    content {
      scope_name        = scope.key
      scope_description = scope.value
    }
  }
}

resource "aws_cognito_user_pool_client" "this" {
  for_each = local.cognito ? var.clients : {}

  name         = each.key
  user_pool_id = aws_cognito_user_pool.this[0].id

  generate_secret                      = true
  allowed_oauth_flows                  = ["client_credentials"]
  allowed_oauth_flows_user_pool_client = true
  allowed_oauth_scopes                 = [for s in each.value.scopes : "${var.resource_server_identifier}/${s}"]
  supported_identity_providers         = ["COGNITO"]
  # No user sign-in flows: the client-credentials grant is the only way to a token.
  explicit_auth_flows           = ["ALLOW_REFRESH_TOKEN_AUTH"]
  prevent_user_existence_errors = "ENABLED"
  enable_token_revocation       = true

  access_token_validity  = each.value.access_token_validity_minutes
  id_token_validity      = each.value.access_token_validity_minutes
  refresh_token_validity = 60
  token_validity_units {
    access_token  = "minutes"
    id_token      = "minutes"
    refresh_token = "minutes"
  }

  # The scopes must exist on the resource server before a client may be granted them.
  depends_on = [aws_cognito_resource_server.this]
}

resource "aws_cognito_user_pool_domain" "this" {
  count = local.cognito ? 1 : 0

  domain       = coalesce(var.domain_prefix, var.name)
  user_pool_id = aws_cognito_user_pool.this[0].id
}

# ----------------------------------------------------------------------------- client secrets
# <name>/identity/<client> = {"client_id","client_secret","token_url","scope"}: what a client
# needs to obtain a token. Readable only by principals granted it by IAM (no resource policy
# opens it); the secret also lives in this stack's state (Cognito returns it as an attribute),
# which is why the state bucket is encrypted and access to it restricted.

resource "aws_secretsmanager_secret" "client" {
  # checkov:skip=CKV2_AWS_57:a Cognito client secret cannot be rotated in place; rotation = replace the client (terraform apply -replace) and redeploy its users, see modules/identity/README.md
  for_each = local.cognito ? var.clients : {}

  name                    = "${var.name}/identity/${each.key}"
  description             = "OAuth client credentials of the ${each.key} client (Cognito ${var.name})"
  kms_key_id              = var.secrets_kms_key_arn
  recovery_window_in_days = var.recovery_window_in_days
  tags                    = merge(var.tags, { Client = each.key })
}

resource "aws_secretsmanager_secret_version" "client" {
  for_each = local.cognito ? var.clients : {}

  secret_id = aws_secretsmanager_secret.client[each.key].id
  secret_string = jsonencode({
    client_id     = aws_cognito_user_pool_client.this[each.key].id
    client_secret = aws_cognito_user_pool_client.this[each.key].client_secret
    token_url     = "https://${aws_cognito_user_pool_domain.this[0].domain}.auth.${local.region}.amazoncognito.com/oauth2/token"
    scope         = join(" ", aws_cognito_user_pool_client.this[each.key].allowed_oauth_scopes)
  })
}
