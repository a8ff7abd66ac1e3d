variable "name" {
  description = "Name prefix (e.g. meridian-prod-se). Secrets are created under \"<name>/\"."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,40}$", var.name))
    error_message = "name must be 3-41 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "services" {
  description = "Service names. Each gets a database credentials secret <name>/db/<service> (its own Postgres role and schema)."
  type        = list(string)

  validation {
    condition     = length(var.services) > 0 && alltrue([for s in var.services : can(regex("^[a-z][a-z0-9]{1,14}$", s))])
    error_message = "services must be non-empty lower-case names."
  }
}

variable "database" {
  description = "Connection facts written into each service secret next to its generated password. null = create the secrets without a value yet (first apply, before Aurora exists)."
  type = object({
    host   = string
    port   = number
    dbname = string
  })
  default = null
}

variable "password_version" {
  description = "Bump to rotate every service password (write-only: passwords never enter state)."
  type        = number
  default     = 1

  validation {
    condition     = var.password_version >= 1 && floor(var.password_version) == var.password_version
    error_message = "password_version must be a positive integer."
  }
}

variable "recovery_window_in_days" {
  description = "Days a deleted secret stays recoverable."
  type        = number
  default     = 30

  validation {
    condition     = var.recovery_window_in_days >= 7 && var.recovery_window_in_days <= 30
    error_message = "recovery_window_in_days must be 7-30 (0 = immediate deletion is not allowed in production)."
  }
}

variable "kms_deletion_window_in_days" {
  description = "Waiting period before the CMK is deleted."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_in_days >= 7 && var.kms_deletion_window_in_days <= 30
    error_message = "kms_deletion_window_in_days must be 7-30."
  }
}

variable "tags" {
  description = "Extra tags."
  type        = map(string)
  default     = {}
}

variable "create_pod_identity" {
  description = "true on EKS countries: create the per-service Pod Identity roles (a static flag, so for_each never depends on an unknown cluster name)."
  type        = bool
  default     = false
}

variable "kubernetes_namespace" {
  description = "Namespace the service pods run in (service account = service name)."
  type        = string
  default     = "meridian"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.kubernetes_namespace))
    error_message = "kubernetes_namespace must be a DNS label."
  }
}

variable "eks_cluster_name" {
  description = "EKS countries: create one IAM role per service that may read only its own DB secret, bound by EKS Pod Identity to service account <service> in var.kubernetes_namespace. null on ECS countries (the ecs module owns task roles)."
  type        = string
  default     = null
}
