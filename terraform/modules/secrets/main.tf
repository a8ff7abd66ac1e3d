data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region
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

ephemeral "aws_secretsmanager_random_password" "db" {
  for_each = var.database == null ? toset([]) : toset(var.services)

  password_length     = 40
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret_version" "db" {
  for_each = var.database == null ? toset([]) : toset(var.services)

  secret_id = aws_secretsmanager_secret.db[each.key].id
  secret_string_wo = jsonencode({
    username = each.key
    password = ephemeral.aws_secretsmanager_random_password.db[each.key].random_password
    host     = var.database.host
    port     = var.database.port
    dbname   = var.database.dbname
    schema   = each.key
    sslmode  = "verify-full"
  })
  secret_string_wo_version = var.password_version
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
