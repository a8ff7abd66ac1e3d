# One generated secret value (Secrets Manager GetRandomPassword), ephemeral: it is never stored
# in plan or state, only written through a write-only argument by the caller. A module of its
# own, on the caller's aws.generator provider, so that offline tests can replace it
# (override_module) and mock every other resource: mocked providers cannot open ephemeral
# resources.

terraform {
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 7.0"
    }
  }
}

variable "length" {
  description = "Characters of the generated value (letters and digits only, so it fits in URLs, headers and comma lists)."
  type        = number

  validation {
    condition     = var.length >= 32 && var.length <= 4096
    error_message = "length must be 32-4096."
  }
}

ephemeral "aws_secretsmanager_random_password" "this" {
  password_length     = var.length
  exclude_punctuation = true
}

output "value" {
  description = "The generated value (ephemeral)."
  value       = ephemeral.aws_secretsmanager_random_password.this.random_password
  ephemeral   = true
}
