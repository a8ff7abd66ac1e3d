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

variable "generate_values" {
  description = "Generate the service passwords and calls secrets and write them (write-only). false only in offline tests (mocked providers cannot open ephemeral resources): the secrets are then created empty. No stack sets it (tests/policy/terraform.sh checks)."
  type        = bool
  default     = true
}

variable "calls_webhook_providers" {
  description = "Telephony providers that sign the call-decision webhook; each gets a generated secret in CALLS_WEBHOOK_SECRETS (\"<provider>:<secret>\", comma-separated)."
  type        = list(string)
  default     = ["telephony"]

  validation {
    condition     = length(var.calls_webhook_providers) > 0 && length(distinct(var.calls_webhook_providers)) == length(var.calls_webhook_providers) && alltrue([for p in var.calls_webhook_providers : can(regex("^[a-z][a-z0-9-]{0,31}$", p))])
    error_message = "calls_webhook_providers must be distinct lower-case names (1-32 characters, no ':' or ',')."
  }
}

variable "calls_token_key_version" {
  description = "Bump to write a newly generated CALLS_TOKEN_KEY as the current version (write-only; the old one becomes AWSPREVIOUS). Prefer the staged rotation in terraform/README.md."
  type        = number
  default     = 1

  validation {
    condition     = var.calls_token_key_version >= 1 && floor(var.calls_token_key_version) == var.calls_token_key_version
    error_message = "calls_token_key_version must be a positive integer."
  }
}

variable "calls_webhook_secrets_version" {
  description = "Bump to write newly generated webhook secrets for every provider (write-only). Rotating one provider keeps its old secret too: see terraform/README.md."
  type        = number
  default     = 1

  validation {
    condition     = var.calls_webhook_secrets_version >= 1 && floor(var.calls_webhook_secrets_version) == var.calls_webhook_secrets_version
    error_message = "calls_webhook_secrets_version must be a positive integer."
  }
}

variable "calls_token_key_also_accept" {
  description = "During a CALLS_TOKEN_KEY rotation: the version stage (AWSPENDING, then AWSPREVIOUS) of the token-key secret that calls accepts besides the current key (CALLS_TOKEN_KEY_ALSO_ACCEPT). null outside a rotation."
  type        = string
  default     = null

  validation {
    condition     = var.calls_token_key_also_accept == null || contains(["AWSPENDING", "AWSPREVIOUS"], coalesce(var.calls_token_key_also_accept, "AWSPENDING"))
    error_message = "calls_token_key_also_accept must be null, AWSPENDING or AWSPREVIOUS."
  }
}

variable "external_secrets_namespace" {
  description = "EKS: namespace of the External Secrets Operator controller."
  type        = string
  default     = "external-secrets"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.external_secrets_namespace))
    error_message = "external_secrets_namespace must be a DNS label."
  }
}

variable "external_secrets_service_account" {
  description = "EKS: service account of the External Secrets Operator controller."
  type        = string
  default     = "external-secrets"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", var.external_secrets_service_account))
    error_message = "external_secrets_service_account must be a Kubernetes name."
  }
}
