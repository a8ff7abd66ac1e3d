# Offline, with mocked aws providers (the country's region and the DR region): what survives the
# loss of the region is a copy of every recovery point in a locked vault of another region.

mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "111111111111" }
  }
  mock_resource "aws_backup_vault" {
    defaults = { arn = "arn:aws:backup:eu-north-1:111111111111:backup-vault:meridian-prod-se-backup" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::111111111111:role/mock" }
  }
}

mock_provider "aws" {
  alias = "dr"
  mock_resource "aws_backup_vault" {
    defaults = { arn = "arn:aws:backup:eu-west-1:111111111111:backup-vault:meridian-prod-se-backup-dr" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:eu-west-1:111111111111:key/00000000-0000-0000-0000-000000000000" }
  }
}

variables {
  name          = "meridian-prod-se"
  resource_arns = { aurora = "arn:aws:rds:eu-north-1:111111111111:cluster:meridian-prod-se" }
  kms_key_arn   = "arn:aws:kms:eu-north-1:111111111111:key/00000000-0000-0000-0000-000000000000"
}

run "every_recovery_point_is_copied_to_a_locked_vault_in_the_dr_region" {
  command = apply

  assert {
    condition = (
      one(one(aws_backup_plan.this.rule).copy_action).destination_vault_arn == aws_backup_vault.dr.arn
      && strcontains(aws_backup_vault.dr.arn, ":eu-west-1:")
      && one(one(one(aws_backup_plan.this.rule).copy_action).lifecycle).delete_after == var.retention_days
    )
    error_message = "every backup is copied to the DR region's vault and kept there as long as in the primary."
  }

  assert {
    condition = (
      aws_backup_vault_lock_configuration.primary.backup_vault_name == aws_backup_vault.primary.name
      && aws_backup_vault_lock_configuration.dr.backup_vault_name == aws_backup_vault.dr.name
      && aws_backup_vault_lock_configuration.dr.changeable_for_days != null
      && aws_backup_vault_lock_configuration.dr.min_retention_days >= 7
    )
    error_message = "both vaults are locked (compliance mode after the grace period): recovery points cannot be deleted early."
  }

  assert {
    condition     = aws_backup_selection.this.resources == toset(["arn:aws:rds:eu-north-1:111111111111:cluster:meridian-prod-se"]) && aws_backup_vault.dr.kms_key_arn == aws_kms_key.dr.arn
    error_message = "the Aurora cluster is selected, and the DR vault encrypts with a key of its own region."
  }
}
