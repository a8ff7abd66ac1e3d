# Offline, with a mocked aws provider: the whole country stack for an EKS country (se) and an
# ECS country (dk), as the roots call it. What is checked is the wiring between modules: every
# service gets the issuer's AUTH_* on both platforms, calls' secrets reach it only by reference.
#
# module.secrets is replaced by its outputs (override_module): it generates values through
# ephemeral resources, which mocked providers cannot open (modules/secrets/tests covers it).
# aws.generator is a real configuration that is therefore never called.

mock_provider "aws" {
  mock_resource "aws_prometheus_scraper" {
    defaults = { role_arn = "arn:aws:iam::111111111111:role/AWSServiceRoleForAmazonPrometheusScraper_mock" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_region" {
    defaults = { id = "eu-north-1" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "111111111111" }
  }
  mock_data "aws_vpc" {
    defaults = { cidr_block = "10.12.0.0/16" }
  }
  mock_resource "aws_cognito_user_pool" {
    defaults = { endpoint = "cognito-idp.eu-north-1.amazonaws.com/eu-north-1_Test", arn = "arn:aws:cognito-idp:eu-north-1:111111111111:userpool/eu-north-1_Test" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::111111111111:role/mock" }
  }
  mock_resource "aws_lb" {
    defaults = { arn = "arn:aws:elasticloadbalancing:eu-north-1:111111111111:loadbalancer/app/mock/0123456789abcdef" }
  }
  mock_resource "aws_lb_listener" {
    defaults = { arn = "arn:aws:elasticloadbalancing:eu-north-1:111111111111:listener/app/mock/0123456789abcdef/0123456789abcdef" }
  }
  mock_resource "aws_lb_target_group" {
    defaults = { arn = "arn:aws:elasticloadbalancing:eu-north-1:111111111111:targetgroup/mock/0123456789abcdef" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::mock-alb-logs", id = "mock-alb-logs" }
  }
  mock_resource "aws_wafv2_web_acl" {
    defaults = { arn = "arn:aws:wafv2:eu-north-1:111111111111:regional/webacl/mock/00000000-0000-0000-0000-000000000000" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:eu-north-1:111111111111:log-group:mock" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:eu-north-1:111111111111:key/00000000-0000-0000-0000-000000000000" }
  }
  mock_resource "aws_rds_cluster" {
    defaults = {
      arn                = "arn:aws:rds:eu-north-1:111111111111:cluster:mock"
      master_user_secret = [{ secret_arn = "arn:aws:secretsmanager:eu-north-1:111111111111:secret:rds!cluster-mock-AbCdEf", kms_key_id = "mock", secret_status = "active" }]
    }
  }
  mock_resource "aws_ecs_cluster" {
    defaults = { arn = "arn:aws:ecs:eu-north-1:111111111111:cluster/mock" }
  }
  mock_resource "aws_ecs_task_definition" {
    defaults = { arn = "arn:aws:ecs:eu-north-1:111111111111:task-definition/mock:1" }
  }
  mock_resource "aws_eks_cluster" {
    defaults = {
      arn                   = "arn:aws:eks:eu-north-1:111111111111:cluster/mock"
      identity              = [{ oidc = [{ issuer = "https://oidc.eks.eu-north-1.amazonaws.com/id/MOCK" }] }]
      certificate_authority = [{ data = "bW9jaw==" }]
      vpc_config            = { cluster_security_group_id = "sg-0123456789abcdef0" }
    }
  }
  mock_resource "aws_launch_template" {
    defaults = { id = "lt-0123456789abcdef0" }
  }
  mock_resource "aws_sns_topic" {
    defaults = { arn = "arn:aws:sns:eu-north-1:111111111111:mock" }
  }
  mock_resource "aws_backup_vault" {
    defaults = { arn = "arn:aws:backup:eu-north-1:111111111111:backup-vault:meridian-prod-xx-backup" }
  }
  mock_resource "aws_prometheus_workspace" {
    defaults = { arn = "arn:aws:aps:eu-north-1:111111111111:workspace/ws-mock" }
  }
}

# The DR region (modules/backup: the copies' vault and its key).
mock_provider "aws" {
  alias = "dr"
  mock_resource "aws_backup_vault" {
    defaults = { arn = "arn:aws:backup:eu-west-1:111111111111:backup-vault:meridian-prod-xx-backup-dr" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:eu-west-1:111111111111:key/00000000-0000-0000-0000-000000000000" }
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

override_module {
  target = module.secrets
  outputs = {
    kms_key_arn = "arn:aws:kms:eu-north-1:111111111111:key/00000000-0000-0000-0000-000000000000"
    kms_key_id  = "00000000-0000-0000-0000-000000000000"
    db_secret_arns = {
      for s in ["streams", "calls", "learning", "playlists", "attendance"] :
      s => "arn:aws:secretsmanager:eu-north-1:111111111111:secret:meridian-prod-xx/db/${s}-AbCdEf"
    }
    pod_role_arns = {}
    service_secret_env = {
      streams    = {}
      learning   = {}
      playlists  = {}
      attendance = {}
      calls = {
        CALLS_TOKEN_KEY       = { arn = "arn:aws:secretsmanager:eu-north-1:111111111111:secret:meridian-prod-xx/calls/token-key-AbCdEf", version_stage = "AWSCURRENT" }
        CALLS_WEBHOOK_SECRETS = { arn = "arn:aws:secretsmanager:eu-north-1:111111111111:secret:meridian-prod-xx/calls/webhook-secrets-AbCdEf", version_stage = "AWSCURRENT" }
      }
    }
    calls_secret_arns = {
      token-key       = "arn:aws:secretsmanager:eu-north-1:111111111111:secret:meridian-prod-xx/calls/token-key-AbCdEf"
      webhook-secrets = "arn:aws:secretsmanager:eu-north-1:111111111111:secret:meridian-prod-xx/calls/webhook-secrets-AbCdEf"
    }
    external_secrets_role_arn = "arn:aws:iam::111111111111:role/meridian-prod-xx-external-secrets"
  }
}

variables {
  certificate_arn = "arn:aws:acm:eu-north-1:111111111111:certificate/00000000-0000-0000-0000-000000000000"
  image_registry  = "999999999999.dkr.ecr.eu-north-1.amazonaws.com/meridian"
  image_tag       = "0000000"

  admin_role_arns   = ["arn:aws:iam::111111111111:role/meridian-platform-admin"]
  api_allowed_cidrs = ["10.250.0.0/16"]

  auth_names = ["AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_JWKS_URL", "AUTH_SCOPE_PREFIX"]
  token_key  = "arn:aws:secretsmanager:eu-north-1:111111111111:secret:meridian-prod-xx/calls/token-key-AbCdEf"
  webhook    = "arn:aws:secretsmanager:eu-north-1:111111111111:secret:meridian-prod-xx/calls/webhook-secrets-AbCdEf"
}

run "dk_ecs_every_service_verifies_tokens" {
  command = apply

  variables {
    country = "dk"
  }

  assert {
    condition = length(module.ecs[0].containers) == length(module.plan.services) && alltrue([
      for s in keys(module.plan.services) : alltrue([
        for k in var.auth_names : contains([for e in module.ecs[0].containers[s].environment : e.name if e.value != ""], k)
      ])
    ])
    error_message = "on ECS, every service's task definition carries the four AUTH_* settings."
  }

  assert {
    condition = alltrue([
      for s in keys(module.plan.services) :
      one([for e in module.ecs[0].containers[s].environment : e.value if e.name == "AUTH_ISSUER"]) == "https://cognito-idp.eu-north-1.amazonaws.com/eu-north-1_Test"
      && one([for e in module.ecs[0].containers[s].environment : e.value if e.name == "AUTH_SCOPE_PREFIX"]) == "meridian/"
    ])
    error_message = "on ECS, AUTH_ISSUER is the country's Cognito pool and AUTH_SCOPE_PREFIX its resource server."
  }

  assert {
    condition = (
      toset([for x in module.ecs[0].containers.calls.secrets : "${x.name}=${x.valueFrom}"]) == toset(["CALLS_TOKEN_KEY=${var.token_key}", "CALLS_WEBHOOK_SECRETS=${var.webhook}"])
      && alltrue([for s, c in module.ecs[0].containers : alltrue([for e in c.environment : !can(regex("^CALLS_TOKEN_KEY|^CALLS_WEBHOOK_SECRETS", e.name))])])
    )
    error_message = "on ECS, calls' secrets come from Secrets Manager by reference (container secrets), never plain environment."
  }

  assert {
    condition = alltrue([
      for s, c in module.ecs[0].containers : c.image == "${var.image_registry}/meridian-${s}:${var.image_tag}"
    ])
    error_message = "ECS pulls <image_registry>/meridian-<service>:<tag>, the image Buildkite pushes (buildkite/lib.sh image_ref)."
  }

  assert {
    condition     = alltrue([for s in keys(module.ecs[0].containers) : fileexists("../../../services/${s}/Cargo.toml")])
    error_message = "ECS deploys only services that exist in the workspace (services/<name>): a service without an image never becomes steady."
  }

  assert {
    condition     = output.dr_region == "eu-west-1" && strcontains(output.backup_vault_arns.dr, ":eu-west-1:") && output.backup_vault_arns.primary != output.backup_vault_arns.dr
    error_message = "every country copies its backups to a locked vault in its DR region."
  }

  assert {
    condition     = length(output.kubernetes_env_manifests) == 0 && output.internal_alb_dns_name != null
    error_message = "an ECS country has no Kubernetes manifests, and the internal ALB serves its admin routes."
  }

  assert {
    condition     = output.operator_role_arn == null && output.rollout_role_arn == null
    error_message = "an ECS country runs no operator: no operator role."
  }

  assert {
    condition     = output.ecs_deploy_role_arn == null && module.ecs[0].deploy_policy_json != null
    error_message = "without deploy_principal_arns no deploy role is created (the policy is still output)."
  }
}

run "dk_deploy_role_for_the_pipeline" {
  command = apply

  variables {
    country               = "dk"
    deploy_principal_arns = ["arn:aws:iam::333333333333:role/meridian-buildkite-deploy"]
  }

  assert {
    condition     = output.ecs_deploy_role_arn != null && output.ecs_deploy_role_arn == module.ecs[0].deploy_role_arn
    error_message = "an ECS country with deploy_principal_arns gets the role meridian-deploy ecs runs as (modules/ecs deploy_role_arn)."
  }
}

run "dk_preview_reached_by_the_api_hostname" {
  command = apply

  variables {
    country      = "dk"
    api_hostname = "dk.api.meridian.example"
  }

  assert {
    condition = (
      module.alb.preview_url == "https://dk.api.meridian.example:8443"
      && alltrue([for s, t in module.ecs[0].blue_green : t.preview_url == "https://dk.api.meridian.example:8443"])
    )
    error_message = "the test listener is published as https://<api_hostname>:<preview_port>, the name the certificate covers."
  }
}

run "api_hostname_is_a_dns_name" {
  command = plan

  variables {
    country      = "dk"
    api_hostname = "https://dk.api.meridian.example"
  }

  expect_failures = [var.api_hostname]
}

run "se_eks_every_service_verifies_tokens" {
  command = apply

  variables {
    country = "se"
  }

  assert {
    condition = alltrue([
      for s in keys(module.plan.services) : alltrue([
        for k in var.auth_names : try(
          yamldecode(output.kubernetes_env_manifests["${s}-env"]).kind == "Secret"
          ? yamldecode(output.kubernetes_env_manifests["${s}-env"]).stringData[k] != ""
          : yamldecode(output.kubernetes_env_manifests["${s}-env"]).spec.target.template.data[k] != "",
          false
        )
      ])
    ])
    error_message = "on EKS, every service's env Secret (its Release's envFromSecret) carries the four AUTH_* settings."
  }

  assert {
    condition = (
      yamldecode(output.kubernetes_env_manifests["calls-env"]).kind == "ExternalSecret"
      && toset([for d in yamldecode(output.kubernetes_env_manifests["calls-env"]).spec.data : "${d.secretKey}=${d.remoteRef.key}"]) == toset(["CALLS_TOKEN_KEY=${var.token_key}", "CALLS_WEBHOOK_SECRETS=${var.webhook}"])
      && yamldecode(output.kubernetes_env_manifests["calls-env"]).spec.target.template.data.CALLS_TOKEN_KEY == "{{ .CALLS_TOKEN_KEY }}"
      && yamldecode(output.kubernetes_env_manifests["aws-secrets-manager"]).kind == "SecretStore"
    )
    error_message = "on EKS, calls' secrets reach calls-env only through the External Secrets Operator from Secrets Manager."
  }

  assert {
    condition = alltrue([
      for k, m in output.kubernetes_env_manifests : !strcontains(m, "offline-test") && (
        alltrue([for n in keys(try(yamldecode(m).stringData, {})) : !can(regex("^CALLS_TOKEN_KEY|^CALLS_WEBHOOK_SECRETS", n))])
      )
    ])
    error_message = "no plain Secret manifest carries a calls secret."
  }

  assert {
    condition     = contains(keys(output.target_group_bindings), "calls-admin")
    error_message = "on EKS, calls pods are bound to the internal ALB's admin target group."
  }

  assert {
    condition = (
      contains([for r in values(module.eks[0].pod_ingress) : "${r.from}:${r.port}" if r.to == module.eks[0].cluster_security_group_id], "${module.alb.security_group_id}:8080")
      && contains([for r in values(module.eks[0].pod_ingress) : "${r.from}:${r.port}" if r.to == module.eks[0].cluster_security_group_id], "${module.alb.internal_security_group_id}:8080")
    )
    error_message = "on EKS, the pods' (cluster) security group admits the public and the internal ALB on the service port: otherwise every target fails its health check."
  }

  assert {
    condition     = alltrue([for m in values(output.target_group_bindings) : !can(yamldecode(m).spec.networking)])
    error_message = "the TargetGroupBindings leave security groups to Terraform (no networking: the LB Controller's role cannot edit them)."
  }

  assert {
    condition     = length(output.scraper_rbac_manifests) == 2 && output.cluster_autoscaler_role_arn != null
    error_message = "on EKS, the managed scraper's access entry user gets its RBAC, and the cluster-autoscaler its role."
  }

  assert {
    condition = (
      output.operator_role_arn != null
      && jsonencode(module.eks[0].operator_snapshot_arns) == jsonencode([module.aurora.cluster_arn, "arn:aws:rds:eu-north-1:111111111111:cluster-snapshot:meridian-*"])
      && module.aurora.cluster_arn == "arn:aws:rds:eu-north-1:111111111111:cluster:mock"
      && output.rollout_role_arn == null
    )
    error_message = "on EKS, the operator's role may snapshot this country's Aurora cluster (module.aurora's cluster_arn) and its meridian-* snapshots; it is not the Rollout role outside the management cluster."
  }
}

run "se_management_cluster_rollout_role_is_the_operator_role" {
  command = apply

  variables {
    country            = "se"
    rollout_controller = true
  }

  assert {
    condition     = output.rollout_role_arn != null && output.rollout_role_arn == output.operator_role_arn
    error_message = "the management country's Rollout role is its operator role (one IRSA role per service account)."
  }
}

run "existing_oidc_provider" {
  command = apply

  variables {
    country = "dk"
    oidc = {
      issuer_url   = "https://login.example.com/realms/meridian"
      jwks_url     = "https://login.example.com/realms/meridian/protocol/openid-connect/certs"
      audiences    = ["meridian-dk"]
      scope_prefix = ""
    }
  }

  assert {
    condition = alltrue([
      for s in keys(module.plan.services) :
      one([for e in module.ecs[0].containers[s].environment : e.value if e.name == "AUTH_ISSUER"]) == "https://login.example.com/realms/meridian"
      && one([for e in module.ecs[0].containers[s].environment : e.value if e.name == "AUTH_AUDIENCE"]) == "meridian-dk"
    ]) && output.token_endpoint == null
    error_message = "with an existing OIDC provider every service verifies its tokens and no Cognito pool exists."
  }
}
