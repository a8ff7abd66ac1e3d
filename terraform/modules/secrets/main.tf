data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.id
}

# ----------------------------------------------------------------------------- country CMK
# One customer-managed key per country for logs, SNS and Secrets Manager. Aurora and EKS
# have their own keys (smaller blast radius, separate key policies).

data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_109:KMS key policy: "*" means this key; the account root statement is the AWS default key policy
  # checkov:skip=CKV_AWS_111:KMS key policy: "*" means this key; the account root statement is the AWS default key policy
  # checkov:skip=CKV_AWS_356:KMS key policy: "*" means this key; the account root statement is the AWS default key policy
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:*"]
    }
  }

  statement {
    sid       = "AlarmsPublishToEncryptedSns"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "aps.amazonaws.com"]
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "${var.name}: logs, SNS, Secrets Manager"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_in_days
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

# ----------------------------------------------------------------------------- service DB secrets
# <name>/db/<service> = {"username","password","host","port","dbname","schema"}: the service reads it
# via DATABASE_SECRET_ARN. The password is generated ephemerally and written write-only, so it never
# enters plan or state. The Buildkite db-bootstrap step creates the matching role and schema with the
# Aurora master secret (see terraform/README.md).

resource "aws_secretsmanager_secret" "db" {
  # checkov:skip=CKV2_AWS_57:rotation = bump password_version and re-run the db-bootstrap step (write-only password, never in state); no rotation Lambda to run per country
  for_each = toset(var.services)

  name                    = "${var.name}/db/${each.key}"
  description             = "Postgres credentials of the ${each.key} service (schema ${each.key})"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = var.recovery_window_in_days
  tags                    = merge(var.tags, { Service = each.key })
}

module "db_password" {
  source    = "./generated"
  providers = { aws = aws.generator }
  for_each  = var.database == null || !var.generate_values ? toset([]) : toset(var.services)

  length = 40
}

resource "aws_secretsmanager_secret_version" "db" {
  for_each = var.database == null || !var.generate_values ? toset([]) : toset(var.services)

  secret_id = aws_secretsmanager_secret.db[each.key].id
  secret_string_wo = jsonencode({
    username = each.key
    password = module.db_password[each.key].value
    host     = var.database.host
    port     = var.database.port
    dbname   = var.database.dbname
    schema   = each.key
    sslmode  = "verify-full"
  })
  secret_string_wo_version = var.password_version
}

# ----------------------------------------------------------------------------- calls runtime secrets
# CALLS_TOKEN_KEY (HMAC key of the call-state tokens) and CALLS_WEBHOOK_SECRETS (comma-separated
# "<provider>:<secret>" pairs that sign the call-decision webhook). Generated here, written
# write-only (never in plan or state), encrypted with the country CMK. Services never get them as
# plain environment: ECS injects them from these ARNs (container `secrets`, read by the calls
# execution role only), EKS through an ExternalSecret (role below). Rotation: terraform/README.md.

locals {
  calls              = contains(var.services, "calls")
  calls_secret_names = local.calls ? toset(["token-key", "webhook-secrets"]) : toset([])
  generate_calls     = local.calls && var.generate_values
}

resource "aws_secretsmanager_secret" "calls" {
  # checkov:skip=CKV2_AWS_57:the token key and webhook secrets rotate in coordinated steps (accept-both window, telephony provider console), not by a Lambda; procedure in terraform/README.md
  for_each = local.calls_secret_names

  name                    = "${var.name}/calls/${each.key}"
  description             = each.key == "token-key" ? "CALLS_TOKEN_KEY: HMAC key of the calls state tokens" : "CALLS_WEBHOOK_SECRETS: provider:secret pairs signing the call-decision webhook"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = var.recovery_window_in_days
  tags                    = merge(var.tags, { Service = "calls" })
}

module "calls_token_key" {
  source    = "./generated"
  providers = { aws = aws.generator }
  count     = local.generate_calls ? 1 : 0

  length = 64
}

module "calls_webhook_secret" {
  source    = "./generated"
  providers = { aws = aws.generator }
  for_each  = local.generate_calls ? toset(var.calls_webhook_providers) : toset([])

  length = 48
}

resource "aws_secretsmanager_secret_version" "calls_token_key" {
  count = local.generate_calls ? 1 : 0

  secret_id                = aws_secretsmanager_secret.calls["token-key"].id
  secret_string_wo         = module.calls_token_key[0].value
  secret_string_wo_version = var.calls_token_key_version
}

resource "aws_secretsmanager_secret_version" "calls_webhook" {
  count = local.generate_calls ? 1 : 0

  secret_id = aws_secretsmanager_secret.calls["webhook-secrets"].id
  secret_string_wo = join(",", [
    for p in var.calls_webhook_providers : "${p}:${module.calls_webhook_secret[p].value}"
  ])
  secret_string_wo_version = var.calls_webhook_secrets_version
}

locals {
  # Service => environment variable => where its value lives. version_stage AWSCURRENT is the
  # secret's current value; CALLS_TOKEN_KEY_ALSO_ACCEPT exists only during a key rotation and
  # points at the version being introduced (AWSPENDING) or retired (AWSPREVIOUS).
  service_secret_env = {
    for s in var.services : s => s != "calls" ? {} : merge(
      {
        CALLS_TOKEN_KEY       = { arn = aws_secretsmanager_secret.calls["token-key"].arn, version_stage = "AWSCURRENT" }
        CALLS_WEBHOOK_SECRETS = { arn = aws_secretsmanager_secret.calls["webhook-secrets"].arn, version_stage = "AWSCURRENT" }
      },
      var.calls_token_key_also_accept == null ? {} : {
        CALLS_TOKEN_KEY_ALSO_ACCEPT = { arn = aws_secretsmanager_secret.calls["token-key"].arn, version_stage = var.calls_token_key_also_accept }
      },
    )
  }
}

# ----------------------------------------------------------------------------- EKS: External Secrets
# On EKS the calls secrets reach the pods as the Kubernetes Secret calls-env (the Release's
# envFromSecret), synced by the External Secrets Operator. Its controller (Pod Identity, service
# account var.external_secrets_service_account in var.external_secrets_namespace) may read the
# calls secrets and nothing else.

resource "aws_iam_role" "external_secrets" {
  count = var.create_pod_identity && local.calls ? 1 : 0

  name               = "${var.name}-external-secrets"
  assume_role_policy = data.aws_iam_policy_document.pods_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "external_secrets" {
  count = length(aws_iam_role.external_secrets)

  statement {
    sid       = "ReadCallsRuntimeSecrets"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [for k, secret in aws_secretsmanager_secret.calls : secret.arn]
  }

  statement {
    sid       = "DecryptSecret"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "external_secrets" {
  count = length(aws_iam_role.external_secrets)

  name   = "calls-runtime-secrets"
  role   = aws_iam_role.external_secrets[0].id
  policy = data.aws_iam_policy_document.external_secrets[0].json
}

resource "aws_eks_pod_identity_association" "external_secrets" {
  count = length(aws_iam_role.external_secrets)

  lifecycle {
    precondition {
      condition     = var.eks_cluster_name != null
      error_message = "create_pod_identity = true needs eks_cluster_name."
    }
  }

  cluster_name    = var.eks_cluster_name
  namespace       = var.external_secrets_namespace
  service_account = var.external_secrets_service_account
  role_arn        = aws_iam_role.external_secrets[0].arn
  tags            = var.tags
}

# ----------------------------------------------------------------------------- EKS workload identity
# On EKS each service's pods (namespace var.kubernetes_namespace, service account <service>)
# assume <name>-<service>-pod through Pod Identity and can read only
# their own secret (same shape as the ECS task roles).

data "aws_iam_policy_document" "pods_assume" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]
    principals {
      type        = "Service"
      identifiers = ["pods.eks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "pod" {
  for_each = var.create_pod_identity ? toset(var.services) : toset([])

  name               = "${var.name}-${each.key}-pod"
  assume_role_policy = data.aws_iam_policy_document.pods_assume.json
  tags               = merge(var.tags, { Service = each.key })
}

data "aws_iam_policy_document" "pod" {
  for_each = toset(var.services)

  statement {
    sid       = "ReadOwnDatabaseSecret"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [aws_secretsmanager_secret.db[each.key].arn]
  }

  statement {
    sid       = "DecryptSecret"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "pod" {
  for_each = aws_iam_role.pod

  name   = "database-secret"
  role   = each.value.id
  policy = data.aws_iam_policy_document.pod[each.key].json
}

resource "aws_eks_pod_identity_association" "pod" {
  for_each = aws_iam_role.pod

  lifecycle {
    precondition {
      condition     = var.eks_cluster_name != null
      error_message = "create_pod_identity = true needs eks_cluster_name."
    }
  }

  cluster_name    = var.eks_cluster_name
  namespace       = var.kubernetes_namespace
  service_account = each.key
  role_arn        = each.value.arn
  tags            = var.tags
}
