variable "name" {
  description = "Cluster identifier (e.g. meridian-prod-se)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,50}$", var.name))
    error_message = "name must be 3-51 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string
}

variable "subnet_ids" {
  description = "Database subnet IDs, at least two AZs."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids must span at least two availability zones."
  }
}

variable "availability_zones" {
  description = "AZs the instances are spread over (instance i goes to availability_zones[i % n]). Two or more: the reader is the failover target in another AZ."
  type        = list(string)

  validation {
    condition     = length(distinct(var.availability_zones)) >= 2
    error_message = "availability_zones must contain at least two distinct AZs: a writer and a reader in different AZs."
  }
}

variable "allowed_security_groups" {
  description = "Security groups allowed to reach Postgres on 5432, keyed by a static name (e.g. { ecs_tasks = sg-... }) so for_each keys are known at plan time even when the IDs are not."
  type        = map(string)
  default     = {}
}

variable "engine_version" {
  description = "Aurora PostgreSQL engine version."
  type        = string
  default     = "16.8"

  validation {
    condition     = can(regex("^1[5-9]\\.[0-9]+$", var.engine_version))
    error_message = "engine_version must be an Aurora PostgreSQL 15+ version such as \"16.8\"."
  }
}

variable "database_name" {
  description = "Initial database; each service owns one schema inside it."
  type        = string
  default     = "meridian"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.database_name))
    error_message = "database_name must be a lower-case Postgres identifier."
  }
}

variable "master_username" {
  description = "Master user name. Its password is managed by RDS in Secrets Manager."
  type        = string
  default     = "meridian_admin"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,15}$", var.master_username)) && var.master_username != "postgres"
    error_message = "master_username must be a lower-case identifier of at most 16 characters, not \"postgres\"."
  }
}

variable "instance_class" {
  description = "Instance class, e.g. db.r7g.large, or db.serverless for Serverless v2."
  type        = string
  default     = "db.r7g.large"

  validation {
    condition     = can(regex("^db\\.(serverless|[a-z0-9]+\\.[a-z0-9]+)$", var.instance_class))
    error_message = "instance_class must look like db.r7g.large or be db.serverless."
  }
}

variable "instance_count" {
  description = "Number of instances: one writer plus readers. At least 2 so a reader in another AZ can take over."
  type        = number
  default     = 2

  validation {
    condition     = var.instance_count >= 2 && var.instance_count <= 15 && floor(var.instance_count) == var.instance_count
    error_message = "instance_count must be 2-15 (writer + at least one reader in a second AZ)."
  }
}

variable "serverless_v2" {
  description = "Serverless v2 capacity range in ACUs (small countries). null = provisioned instances."
  type = object({
    min_capacity = number
    max_capacity = number
  })
  default = null

  validation {
    condition     = var.serverless_v2 == null || try(var.serverless_v2.min_capacity >= 0.5 && var.serverless_v2.max_capacity <= 256 && var.serverless_v2.min_capacity <= var.serverless_v2.max_capacity, false)
    error_message = "serverless_v2 needs 0.5 <= min_capacity <= max_capacity <= 256 (no auto-pause: call control cannot wait for a cold start)."
  }
}

variable "backup_retention_period" {
  description = "Days of automated backups (point-in-time recovery window)."
  type        = number
  default     = 14

  validation {
    condition     = var.backup_retention_period >= 7 && var.backup_retention_period <= 35
    error_message = "backup_retention_period must be 7-35 days."
  }
}

variable "deletion_protection" {
  description = "Refuse DeleteDBCluster. Keep true in every country; the policy test enforces it."
  type        = bool
  default     = true
}

variable "kms_key_arn" {
  description = "CMK for storage, Performance Insights and the master secret. null = the module creates a dedicated key."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", coalesce(var.kms_key_arn, "x")))
    error_message = "kms_key_arn must be a KMS key ARN or null."
  }
}

variable "performance_insights_retention_period" {
  description = "Performance Insights retention in days (7 is free)."
  type        = number
  default     = 7

  validation {
    condition     = var.performance_insights_retention_period == 7 || var.performance_insights_retention_period == 731 || (var.performance_insights_retention_period % 31 == 0 && var.performance_insights_retention_period <= 713)
    error_message = "performance_insights_retention_period must be 7, 731 or a multiple of 31 up to 713."
  }
}

variable "monitoring_interval" {
  description = "Enhanced Monitoring interval in seconds (0 disables)."
  type        = number
  default     = 60

  validation {
    condition     = contains([0, 1, 5, 10, 15, 30, 60], var.monitoring_interval)
    error_message = "monitoring_interval must be one of 0, 1, 5, 10, 15, 30, 60."
  }
}

variable "preferred_backup_window" {
  description = "Daily backup window (UTC)."
  type        = string
  default     = "01:00-02:00"
}

variable "preferred_maintenance_window" {
  description = "Weekly maintenance window (UTC); outside the backup window and low-traffic for call control."
  type        = string
  default     = "sun:02:30-sun:03:30"
}

variable "tags" {
  description = "Extra tags."
  type        = map(string)
  default     = {}
}
