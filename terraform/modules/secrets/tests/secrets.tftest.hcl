# Offline, with a mocked aws provider. Mocked providers cannot open ephemeral resources, so the
# value generators (module ./generated, on aws.generator) are switched off (generate_values =
# false) and aws.generator is a real configuration that is never called (no credentials, no
# network): the secrets are planned without their values.

mock_provider "aws" {
  mock_data "aws_region" {
    defaults = { id = "eu-north-1" }
  }

  # Policies are validated as JSON even when mocked.
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }

  # ARNs are validated too. One fixed ARN per type is enough: the assertions compare
  # references, not values.
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::111111111111:role/mock" }
  }

  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:eu-north-1:111111111111:key/00000000-0000-0000-0000-000000000000" }
  }
}

provider "aws" {
  alias                       = "generator"
  region                      = "eu-north-1"
  access_key                  = "offline-test"
  secret_key                  = "offline-test"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
}

variables {
  name            = "meridian-prod-se"
  services        = ["streams", "calls", "learning"]
  generate_values = false
}

run "calls_secrets_in_secrets_manager" {
  command = apply

  assert {
    condition = (
      aws_secretsmanager_secret.calls["token-key"].name == "meridian-prod-se/calls/token-key"
      && aws_secretsmanager_secret.calls["webhook-secrets"].name == "meridian-prod-se/calls/webhook-secrets"
      && alltrue([for s in aws_secretsmanager_secret.calls : s.kms_key_id == aws_kms_key.this.arn])
    )
    error_message = "calls' token key and webhook secrets are Secrets Manager secrets under <name>/calls/, encrypted with the country CMK."
  }

  assert {
    condition = (
      output.service_secret_env.calls.CALLS_TOKEN_KEY.arn == aws_secretsmanager_secret.calls["token-key"].arn
      && output.service_secret_env.calls.CALLS_WEBHOOK_SECRETS.arn == aws_secretsmanager_secret.calls["webhook-secrets"].arn
      && output.service_secret_env.calls.CALLS_TOKEN_KEY.version_stage == "AWSCURRENT"
      && !contains(keys(output.service_secret_env.calls), "CALLS_TOKEN_KEY_ALSO_ACCEPT")
    )
    error_message = "calls gets CALLS_TOKEN_KEY and CALLS_WEBHOOK_SECRETS by reference, and no second key outside a rotation."
  }

  assert {
    condition     = length(output.service_secret_env.streams) == 0 && length(output.service_secret_env.learning) == 0
    error_message = "no other service gets the calls secrets."
  }

  assert {
    condition     = length(aws_iam_role.external_secrets) == 0 && output.external_secrets_role_arn == null
    error_message = "ECS countries get no External Secrets role."
  }
}

run "token_key_rotation_window" {
  command = apply

  variables {
    calls_token_key_also_accept = "AWSPENDING"
  }

  assert {
    condition = (
      output.service_secret_env.calls.CALLS_TOKEN_KEY_ALSO_ACCEPT.arn == aws_secretsmanager_secret.calls["token-key"].arn
      && output.service_secret_env.calls.CALLS_TOKEN_KEY_ALSO_ACCEPT.version_stage == "AWSPENDING"
    )
    error_message = "during a rotation calls also accepts the token-key secret's AWSPENDING version."
  }
}

run "eks_external_secrets_reads_only_calls_secrets" {
  command = apply

  variables {
    create_pod_identity = true
    eks_cluster_name    = "meridian-prod-se"
  }

  assert {
    condition = (
      toset(data.aws_iam_policy_document.external_secrets[0].statement[0].resources) == toset([for s in aws_secretsmanager_secret.calls : s.arn])
      && aws_eks_pod_identity_association.external_secrets[0].namespace == "external-secrets"
      && aws_eks_pod_identity_association.external_secrets[0].service_account == "external-secrets"
    )
    error_message = "the External Secrets controller may read the calls secrets and nothing else."
  }

  assert {
    condition = alltrue([
      for s, doc in data.aws_iam_policy_document.pod :
      alltrue([for arn in doc.statement[0].resources : !contains(values(aws_secretsmanager_secret.calls)[*].arn, arn)])
    ])
    error_message = "no service's pod role reads the calls secrets."
  }
}

run "no_calls_no_calls_secrets" {
  command = apply

  variables {
    services = ["streams"]
  }

  assert {
    condition     = length(aws_secretsmanager_secret.calls) == 0 && keys(output.service_secret_env) == ["streams"] && length(output.service_secret_env.streams) == 0
    error_message = "without calls there is no calls secret."
  }
}

run "rejects_bad_rotation_stage" {
  command = plan

  variables {
    calls_token_key_also_accept = "AWSCURRENT"
  }

  expect_failures = [var.calls_token_key_also_accept]
}

run "rejects_provider_names_that_break_the_list" {
  command = plan

  variables {
    calls_webhook_providers = ["acme:1"]
  }

  expect_failures = [var.calls_webhook_providers]
}
