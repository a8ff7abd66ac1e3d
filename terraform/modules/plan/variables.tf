variable "country" {
  description = "ISO 3166-1 alpha-2 country code, lower case. Must be registered in local.registry (main.tf)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}$", var.country))
    error_message = "country must be a lower-case ISO 3166-1 alpha-2 code, e.g. \"se\"."
  }

  validation {
    condition     = contains(keys(local.registry), var.country)
    error_message = "country is not in the plan registry (terraform/modules/plan/main.tf, local.registry). Add it there first: it owns the country's /16."
  }
}

variable "environment" {
  description = "Deployment environment. Each environment gets its own /16 per country (prod = 10.<index>.0.0/16, staging = 10.<index+100>.0.0/16)."
  type        = string
  default     = "prod"

  validation {
    condition     = contains(["prod", "staging"], var.environment)
    error_message = "environment must be \"prod\" or \"staging\"."
  }
}

variable "profile" {
  description = "Size profile: \"small\" (ECS Fargate, single NAT, Aurora Serverless v2) or \"large\" (EKS, NAT per AZ, provisioned Aurora). null = the registry default for the country."
  type        = string
  default     = null

  validation {
    condition     = var.profile == null || contains(["small", "large"], coalesce(var.profile, "small"))
    error_message = "profile must be \"small\", \"large\" or null (registry default)."
  }
}

variable "az_count" {
  description = "Number of availability zones to spread subnets, NAT gateways, nodes and Aurora instances over."
  type        = number
  default     = 3

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 3 && floor(var.az_count) == var.az_count
    error_message = "az_count must be 2 or 3: Aurora needs a second AZ and the CIDR plan reserves three /18 private slots."
  }
}

variable "services" {
  description = "Services behind the ALB (each gets the path prefix /<name>, one Postgres schema <name>, a target group and a container port). null (the default, and what every stack uses) = derived from the Cargo workspace: each member services/<name> whose crate has a [[bin]] named <name>, in members order. Set only in tests."
  type        = list(string)
  default     = null

  validation {
    condition     = var.services == null || (length(var.services == null ? [] : var.services) > 0 && length(var.services == null ? [] : var.services) <= 20 && alltrue([for s in(var.services == null ? [] : var.services) : can(regex("^[a-z][a-z0-9]{1,14}$", s))]))
    error_message = "services must be 1-20 lower-case names of 2-15 characters ([a-z][a-z0-9]*)."
  }

  validation {
    condition     = length(distinct(var.services == null ? [] : var.services)) == length(var.services == null ? [] : var.services)
    error_message = "services must not contain duplicates."
  }
}

variable "workspace_dir" {
  description = "Repository root holding the Cargo workspace (Cargo.toml, services/*/Cargo.toml) and buildkite/images.conf. null = this repository (three levels up from the module). Set only in tests (a fixture workspace)."
  type        = string
  default     = null
}

variable "service_port" {
  description = "Container port every service listens on (PORT env var)."
  type        = number
  default     = 8080

  validation {
    condition     = var.service_port >= 1024 && var.service_port <= 65535
    error_message = "service_port must be an unprivileged port (1024-65535)."
  }
}
