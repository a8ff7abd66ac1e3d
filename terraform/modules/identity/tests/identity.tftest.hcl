# Offline, with a mocked aws provider (needs the provider's schema: tests/policy/terraform.sh
# initialises this module from the local provider mirror).

mock_provider "aws" {
  mock_data "aws_region" {
    defaults = { id = "eu-north-1" }
  }

  mock_resource "aws_cognito_user_pool" {
    defaults = { endpoint = "cognito-idp.eu-north-1.amazonaws.com/eu-north-1_Test" }
  }
}

variables {
  name                = "meridian-prod-se"
  services            = ["streams", "calls", "learning", "playlists", "attendance"]
  secrets_kms_key_arn = "arn:aws:kms:eu-north-1:111111111111:key/00000000-0000-0000-0000-000000000000"
}

run "cognito_issuer_per_country" {
  command = apply

  assert {
    condition     = aws_cognito_user_pool.this[0].deletion_protection == "ACTIVE" && aws_cognito_user_pool.this[0].admin_create_user_config[0].allow_admin_create_user_only
    error_message = "the pool is deletion-protected and nobody can sign up."
  }

  assert {
    condition     = aws_cognito_resource_server.this[0].identifier == "meridian" && toset([for s in aws_cognito_resource_server.this[0].scope : s.scope_name]) == toset(["streams:sessions", "streams:admin", "calls:admin", "learning:admin", "learning:read", "playlists:analytics", "playlists:admin", "playlists:user-slo-probe", "attendance:admin", "attendance:ingest", "attendance:read", "attendance:site-slo-probe"])
    error_message = "the resource server carries exactly the contract's scopes."
  }

  assert {
    condition = alltrue([
      for c in aws_cognito_user_pool_client.this :
      c.generate_secret && c.allowed_oauth_flows == toset(["client_credentials"]) && c.allowed_oauth_flows_user_pool_client
      && alltrue([for s in c.allowed_oauth_scopes : startswith(s, "meridian/")])
    ])
    error_message = "every client is a confidential client-credentials client with resource-server scopes."
  }

  assert {
    condition     = aws_cognito_user_pool_client.this["playback"].allowed_oauth_scopes == toset(["meridian/streams:sessions"]) && aws_cognito_user_pool_client.this["slo-probe"].allowed_oauth_scopes == toset(["meridian/streams:sessions", "meridian/learning:read", "meridian/attendance:read", "meridian/attendance:site-slo-probe", "meridian/playlists:user-slo-probe"])
    error_message = "the playback service acts for users on streams only; the SLO probe also reads learning."
  }

  assert {
    condition     = contains(aws_cognito_user_pool_client.this["admin"].allowed_oauth_scopes, "meridian/calls:admin") && contains(aws_cognito_user_pool_client.this["admin"].allowed_oauth_scopes, "meridian/streams:admin")
    error_message = "the admin client holds the admin scopes."
  }

  assert {
    condition = alltrue([
      for s, env in output.service_env :
      env.AUTH_ISSUER == "https://cognito-idp.eu-north-1.amazonaws.com/eu-north-1_Test"
      && env.AUTH_JWKS_URL == "https://cognito-idp.eu-north-1.amazonaws.com/eu-north-1_Test/.well-known/jwks.json"
      && env.AUTH_SCOPE_PREFIX == "meridian/"
      && length(env.AUTH_AUDIENCE) > 0
    ]) && length(output.service_env) == 5
    error_message = "every service gets the pool's issuer, its JWKS, the scope prefix and a non-empty audience."
  }

  assert {
    condition     = toset(output.audiences.calls) == toset([aws_cognito_user_pool_client.this["admin"].id])
    error_message = "calls accepts only the client holding calls:admin."
  }

  assert {
    condition = toset(output.audiences.streams) == toset([
      aws_cognito_user_pool_client.this["admin"].id,
      aws_cognito_user_pool_client.this["playback"].id,
      aws_cognito_user_pool_client.this["slo-probe"].id,
    ])
    error_message = "streams accepts the playback, SLO-probe and admin clients."
  }

  assert {
    condition     = output.token_endpoint == "https://meridian-prod-se.auth.eu-north-1.amazoncognito.com/oauth2/token"
    error_message = "the token endpoint is the pool domain's."
  }

  assert {
    condition     = length(aws_secretsmanager_secret.client) == 4 && alltrue([for s in aws_secretsmanager_secret.client : s.kms_key_id == var.secrets_kms_key_arn && startswith(s.name, "meridian-prod-se/identity/")])
    error_message = "each client's credentials are in Secrets Manager under <name>/identity/, encrypted with the country CMK."
  }
}

run "existing_oidc_provider" {
  command = apply

  variables {
    oidc = {
      issuer_url   = "https://login.example.com/realms/meridian"
      jwks_url     = "https://login.example.com/realms/meridian/protocol/openid-connect/certs"
      audiences    = ["meridian-se", "meridian-playback"]
      scope_prefix = ""
    }
  }

  assert {
    condition     = length(aws_cognito_user_pool.this) == 0 && length(aws_cognito_user_pool_client.this) == 0 && length(aws_secretsmanager_secret.client) == 0
    error_message = "with an existing OIDC provider no Cognito resource is created."
  }

  assert {
    condition = alltrue([
      for s, env in output.service_env :
      env.AUTH_ISSUER == "https://login.example.com/realms/meridian"
      && env.AUTH_JWKS_URL == "https://login.example.com/realms/meridian/protocol/openid-connect/certs"
      && env.AUTH_AUDIENCE == "meridian-se,meridian-playback"
      && env.AUTH_SCOPE_PREFIX == ""
    ]) && length(output.service_env) == 5
    error_message = "every service gets the given issuer, JWKS URL and audiences."
  }

  assert {
    condition     = output.token_endpoint == null && output.user_pool_id == null
    error_message = "no Cognito endpoint with an existing OIDC provider."
  }
}

run "rejects_plain_http_jwks" {
  command = plan

  variables {
    oidc = {
      issuer_url = "https://login.example.com"
      jwks_url   = "http://login.example.com/jwks"
      audiences  = ["meridian"]
    }
  }

  expect_failures = [var.oidc]
}

run "rejects_undeclared_scope" {
  command = plan

  variables {
    clients = { rogue = { scopes = ["calls:superuser"] } }
  }

  expect_failures = [var.clients]
}

run "rejects_a_service_no_client_may_call" {
  command = plan

  variables {
    clients = { playback = { scopes = ["streams:sessions"] } }
  }

  expect_failures = [output.audiences]
}
