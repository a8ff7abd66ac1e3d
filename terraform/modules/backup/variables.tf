variable "name" {
  description = "Name prefix (e.g. meridian-prod-se)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,40}$", var.name))
    error_message = "name must be 3-41 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "resource_arns" {
  description = "What is backed up: resource name => ARN (the country's Aurora cluster). Keys must be known at plan time."
  type        = map(string)

  validation {
    condition     = length(var.resource_arns) > 0
    error_message = "resource_arns must name at least one resource to back up."
  }
}

variable "kms_key_arn" {
  description = "CMK of the primary-region vault (the country key)."
  type        = string
}

variable "schedule" {
  description = "Backup schedule (AWS Backup cron, UTC). Every backup is copied to the DR region when it completes: the schedule is the region-loss RPO."
  type        = string
  default     = "cron(0 3 * * ? *)"
}

variable "retention_days" {
  description = "Days a recovery point is kept, in the primary vault and in the DR copy (Aurora's own continuous backups keep 14 days in the region besides). The copies are the cost driver (terraform/README.md)."
  type        = number
  default     = 7

  validation {
    condition     = var.retention_days >= 7 && var.retention_days <= 365
    error_message = "retention_days must be 7-365 (the vault locks require at least 7)."
  }
}

variable "lock_changeable_for_days" {
  description = "Vault Lock grace period: for this many days after the first apply the lock can still be removed; then it becomes compliance mode and nobody (not the account root) can delete recovery points early or shorten their retention."
  type        = number
  default     = 3

  validation {
    condition     = var.lock_changeable_for_days >= 3
    error_message = "AWS requires a grace period of at least 3 days for a compliance-mode Vault Lock."
  }
}

variable "tags" {
  description = "Extra tags."
  type        = map(string)
  default     = {}
}
