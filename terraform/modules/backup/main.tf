# AWS Backup per country: a backup plan for the Aurora cluster into a locked vault in the
# country's region, each recovery point copied to a locked vault in the DR region (plan
# registry: dr_region). This is what survives the loss of the region (and of the account's
# ability to delete: Vault Lock in compliance mode after the grace period). Restoring is
# runbooks/procedures/region-evacuation.md.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  partition = data.aws_partition.current.partition
}

# ----------------------------------------------------------------------------- vaults

resource "aws_backup_vault" "primary" {
  name        = "${var.name}-backup"
  kms_key_arn = var.kms_key_arn
  tags        = var.tags
}

resource "aws_backup_vault_lock_configuration" "primary" {
  backup_vault_name   = aws_backup_vault.primary.name
  min_retention_days  = 7
  max_retention_days  = 365
  changeable_for_days = var.lock_changeable_for_days
}

data "aws_iam_policy_document" "dr_kms" {
  # checkov:skip=CKV_AWS_109:KMS key policy: "*" means this key; the account root statement is the AWS default key policy
  # checkov:skip=CKV_AWS_111:KMS key policy: "*" means this key; the account root statement is the AWS default key policy
  # checkov:skip=CKV_AWS_356:KMS key policy: "*" means this key; the account root statement is the AWS default key policy
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

# The DR vault's own key: a KMS key never leaves its region.
resource "aws_kms_key" "dr" {
  provider = aws.dr

  description             = "${var.name}: backup copies in the DR region"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.dr_kms.json
  tags                    = var.tags
}

resource "aws_kms_alias" "dr" {
  provider = aws.dr

  name          = "alias/${var.name}-backup-dr"
  target_key_id = aws_kms_key.dr.key_id
}

resource "aws_backup_vault" "dr" {
  provider = aws.dr

  name        = "${var.name}-backup-dr"
  kms_key_arn = aws_kms_key.dr.arn
  tags        = var.tags
}

resource "aws_backup_vault_lock_configuration" "dr" {
  provider = aws.dr

  backup_vault_name   = aws_backup_vault.dr.name
  min_retention_days  = 7
  max_retention_days  = 365
  changeable_for_days = var.lock_changeable_for_days
}

# ----------------------------------------------------------------------------- plan

resource "aws_backup_plan" "this" {
  name = "${var.name}-backup"

  rule {
    rule_name         = "daily-copied-to-dr"
    target_vault_name = aws_backup_vault.primary.name
    schedule          = var.schedule
    start_window      = 60
    completion_window = 360

    lifecycle {
      delete_after = var.retention_days
    }

    copy_action {
      destination_vault_arn = aws_backup_vault.dr.arn
      lifecycle {
        delete_after = var.retention_days
      }
    }
  }

  tags = var.tags
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["backup.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "backup" {
  name               = "${var.name}-backup"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "backup" {
  for_each = toset(["AWSBackupServiceRolePolicyForBackup", "AWSBackupServiceRolePolicyForRestores"])

  role       = aws_iam_role.backup.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/${each.key}"
}

resource "aws_backup_selection" "this" {
  name         = "${var.name}-backup"
  plan_id      = aws_backup_plan.this.id
  iam_role_arn = aws_iam_role.backup.arn
  resources    = values(var.resource_arns)
}
