variable "name" {
  description = "Cluster name and prefix (e.g. meridian-prod-dk)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,40}$", var.name))
    error_message = "name must be 3-41 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC ID."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets for the Fargate tasks (at least two AZs)."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "tasks must be spread over at least two AZs."
  }
}

variable "alb_security_group_id" {
  description = "ALB security group allowed into the tasks."
  type        = string
}

variable "image_registry" {
  description = "ECR registry (and path); the image is <image_registry>/<services[*].image_repository>:<image_tag>, as Buildkite pushes it (buildkite/lib.sh image_ref)."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}\\.dkr\\.ecr\\.[a-z0-9-]+\\.amazonaws\\.com(/[a-z0-9._/-]+)?$", var.image_registry))
    error_message = "image_registry must be an ECR registry such as 123456789012.dkr.ecr.eu-north-1.amazonaws.com/meridian."
  }
}

variable "image_tag" {
  description = "Image tag (the git SHA) of the first deploy. Later deploys register new task definitions from Buildkite; Terraform ignores the drift."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{7,40}$", var.image_tag))
    error_message = "image_tag must be a git SHA (7-40 hex characters): images are tagged with the commit."
  }
}

variable "services" {
  description = <<-EOT
    name => {port, image_repository, target_group_arn, listener_rule_arns, admin,
    admin_target_group_arn, database_secret_arn, cpu, memory, desired_count, max_count,
    environment, secrets}.
    image_repository: the image's repository under image_registry (plan: buildkite/images.conf's
    prefix + name, e.g. meridian-calls), the one Buildkite pushes.
    listener_rule_arns: the listener rules that forward to target_group_arn (and the admin
    target group): ECS refuses a service whose target group has no load balancer yet, so the
    service is created only after them.
    admin: the service has admin routes; its tasks are also registered in admin_target_group_arn
    (internal ALB). A static flag, so that for_each never depends on an ARN known after apply.
    environment: plain settings of that service (e.g. the AUTH_* from the identity module).
    secrets: environment variable => {arn, version_stage} in Secrets Manager, injected by ECS at
    task start (container `secrets`, read by the service's own execution role); never values.
    blue_green (a static flag, so that for_each never depends on an ARN known after apply) with
    green_target_group_arn, production_listener_rule_arn, preview_listener_rule_arn (modules/alb
    blue_green): a second ECS service "<name>-green" at 0 tasks registers in the green target
    group, and the pair is published for `meridian-deploy ecs` (deploy/ecs).
  EOT
  type = map(object({
    port                   = number
    image_repository       = string
    target_group_arn       = string
    listener_rule_arns     = list(string)
    admin                  = optional(bool, false)
    admin_target_group_arn = optional(string)
    database_secret_arn    = string
    cpu                    = number
    memory                 = number
    desired_count          = number
    max_count              = number
    environment            = optional(map(string), {})
    secrets = optional(map(object({
      arn           = string
      version_stage = optional(string, "AWSCURRENT")
    })), {})
    blue_green                   = optional(bool, false)
    green_target_group_arn       = optional(string)
    production_listener_rule_arn = optional(string)
    preview_listener_rule_arn    = optional(string)
  }))

  validation {
    condition = alltrue([
      for s in values(var.services) :
      !s.blue_green || (s.green_target_group_arn != null && s.production_listener_rule_arn != null && s.preview_listener_rule_arn != null)
    ])
    error_message = "a blue-green service (blue_green = true) needs green_target_group_arn, production_listener_rule_arn and preview_listener_rule_arn (modules/alb with blue_green)."
  }

  validation {
    condition = alltrue([
      for s in values(var.services) :
      contains([256, 512, 1024, 2048, 4096], s.cpu) && s.memory >= 512 && s.desired_count >= 2 && s.desired_count <= s.max_count
    ])
    error_message = "each service needs a Fargate cpu size, memory >= 512 and 2 <= desired_count <= max_count (one task per AZ at least)."
  }

  validation {
    condition     = alltrue([for s in values(var.services) : can(regex("^[a-z0-9][a-z0-9._/-]*$", s.image_repository)) && length(s.listener_rule_arns) > 0])
    error_message = "each service needs its image_repository (as Buildkite pushes it) and the listener_rule_arns that forward to its target group."
  }

  validation {
    condition     = alltrue([for s in values(var.services) : !s.admin || s.admin_target_group_arn != null])
    error_message = "a service with admin = true needs admin_target_group_arn."
  }

  validation {
    condition     = alltrue([for s in values(var.services) : alltrue([for k in keys(s.environment) : !can(regex(local.secret_name_pattern, k))])])
    error_message = "a service's plain environment has a secret-looking name (…KEY, …SECRET(S), …PASSWORD, …TOKEN, CALLS_TOKEN_KEY*): pass it in secrets (Secrets Manager ARN), never as a value."
  }

  validation {
    condition = alltrue([
      for s in values(var.services) : alltrue([
        for k, v in s.secrets :
        can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", v.arn)) && contains(["AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"], v.version_stage)
        && can(regex("^[A-Z][A-Z0-9_]*$", k)) && !contains(keys(s.environment), k)
      ])
    ])
    error_message = "secrets: variable names in upper case, each a Secrets Manager secret ARN with a version stage (AWSCURRENT | AWSPENDING | AWSPREVIOUS), none also in environment."
  }
}

variable "cpu_architecture" {
  description = "Fargate CPU architecture of the images (X86_64 or ARM64; ARM64 is ~20% cheaper)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "environment" {
  description = "Extra plain environment variables for every service (never secrets: secret-looking names are refused)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.environment) : !can(regex(local.secret_name_pattern, k))])
    error_message = "environment has a secret-looking name (…KEY, …SECRET(S), …PASSWORD, …TOKEN, CALLS_TOKEN_KEY*): secrets go in services[*].secrets, from Secrets Manager."
  }
}

variable "admin_alb_security_group_id" {
  description = "Security group of the internal ALB (admin routes) allowed into the tasks of services with an admin_target_group_arn. null without admin routes."
  type        = string
  default     = null
}

variable "logs_kms_key_arn" {
  description = "CMK for the task log groups."
  type        = string
}

variable "secrets_kms_key_arn" {
  description = "CMK that encrypts the service DB secrets (tasks need kms:Decrypt on it)."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the task log groups."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts."
  }
}

variable "target_cpu_utilization" {
  description = "Target-tracking CPU utilisation (%) for service autoscaling."
  type        = number
  default     = 60

  validation {
    condition     = var.target_cpu_utilization >= 20 && var.target_cpu_utilization <= 90
    error_message = "target_cpu_utilization must be 20-90."
  }
}

variable "tags" {
  description = "Extra tags."
  type        = map(string)
  default     = {}
}

variable "state_dir" {
  description = "Writable directory of every task (an empty task-lifetime bind mount; the root filesystem stays read-only), exported as XDG_STATE_HOME as on EKS (the operator's state emptyDir): calls keeps its routing snapshot file there (XDG_STATE_HOME/meridian/calls/snapshot.json)."
  type        = string
  default     = "/var/lib/meridian"

  validation {
    condition     = can(regex("^/[a-z0-9/_-]+$", var.state_dir)) && var.state_dir != "/"
    error_message = "state_dir must be an absolute path other than /."
  }
}

variable "preview_url" {
  description = "Base URL of the ALB's blue-green test listener (modules/alb output preview_url), published with each blue-green service's target."
  type        = string
  default     = null
}

variable "deploy_parameter_prefix" {
  description = "SSM parameter path under which each blue-green service's target (the JSON `meridian-deploy ecs --target` reads) is published as <prefix>/<service>, e.g. /meridian/prod/dk/ecs-deploy (buildkite/lib.sh ecs_target_parameter)."
  type        = string
  default     = null

  validation {
    condition     = var.deploy_parameter_prefix == null || can(regex("^(/[a-z0-9_.-]+)+$", coalesce(var.deploy_parameter_prefix, "/x")))
    error_message = "deploy_parameter_prefix must be an absolute SSM path without a trailing slash."
  }
}

variable "deploy_principal_arns" {
  description = "IAM roles (the Buildkite deploy agents' role, any account) that may assume this country's ECS deploy role (output deploy_role_arn), which may do what `meridian-deploy ecs` does to this module's blue-green services and nothing else. Empty: no role is created; the policy is still output (deploy_policy_json) for a role made elsewhere."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.deploy_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", a))])
    error_message = "deploy_principal_arns must be IAM role ARNs."
  }
}
