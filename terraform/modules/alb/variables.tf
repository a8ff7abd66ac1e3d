variable "name" {
  description = "Load balancer name and prefix (e.g. meridian-prod-se)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,19}$", var.name))
    error_message = "name must be 3-20 characters so \"<name>-<service>\" target group names fit in 32."
  }
}

variable "vpc_id" {
  description = "VPC ID."
  type        = string
}

variable "vpc_cidr" {
  description = "VPC CIDR: the ALB may only send traffic into it."
  type        = string

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0))
    error_message = "vpc_cidr must be an IPv4 CIDR."
  }
}

variable "public_subnet_ids" {
  description = "Public subnets (one per AZ) for the internet-facing ALB."
  type        = list(string)

  validation {
    condition     = length(var.public_subnet_ids) >= 2
    error_message = "an ALB needs subnets in at least two AZs."
  }
}

variable "certificate_arn" {
  description = "ACM certificate for the HTTPS listener (e.g. se.api.example.com)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "ingress_cidrs" {
  description = "Client CIDRs allowed on 443. Default: the internet (PBXes and phones connect from anywhere)."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.ingress_cidrs) > 0 && alltrue([for c in var.ingress_cidrs : can(cidrhost(c, 0))])
    error_message = "ingress_cidrs must be a non-empty list of IPv4 CIDRs."
  }
}

variable "services" {
  description = "Service routing from the plan module: name => {path_pattern, port, health_path, priority, admin_path_patterns}. Admin path patterns are answered 404 on the public listener and forwarded only by the internal ALB."
  type = map(object({
    path_pattern        = list(string)
    port                = number
    health_path         = string
    priority            = number
    admin_path_patterns = optional(list(string), [])
    admin_method_routes = optional(list(object({
      path_patterns = list(string)
      methods       = list(string)
    })), [])
  }))

  validation {
    condition     = length(var.services) > 0 && length(distinct([for s in values(var.services) : s.priority])) == length(var.services)
    error_message = "services must be non-empty with unique listener priorities."
  }

  validation {
    condition     = alltrue([for s in values(var.services) : s.health_path == "/readyz"])
    error_message = "the ALB health check must be /readyz (DB reachable, migrations applied), never /healthz."
  }

  validation {
    condition = alltrue([
      for s in values(var.services) :
      length(s.admin_path_patterns) <= 5 && alltrue([for p in s.admin_path_patterns : can(regex("^/[A-Za-z0-9._~/*?-]{1,127}$", p))])
    ])
    error_message = "admin_path_patterns: at most 5 per service (one listener rule), each an absolute ALB path pattern."
  }

  validation {
    # One listener rule per method route: path patterns + methods count against the ALB's five
    # condition values per rule; rule i takes priority - 2 - i (before the service's forward rule).
    condition = alltrue([
      for s in values(var.services) : alltrue([
        for r in s.admin_method_routes :
        length(r.path_patterns) + length(r.methods) <= 5 && length(r.methods) > 0 && length(r.path_patterns) > 0
        && alltrue([for m in r.methods : contains(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"], m)])
        ]) && length(s.admin_method_routes) <= 8 && alltrue([
        for i in range(length(s.admin_method_routes)) : !contains([for o in values(var.services) : o.priority], s.priority - 2 - i) && s.priority - 2 - i >= 1
      ])
    ])
    error_message = "admin_method_routes: at most 8 per service, each with methods (GET, POST, PUT, PATCH, DELETE, ...) and path patterns, 5 values in all; priorities priority - 2 - i must be free."
  }

  validation {
    # The public listener's 404 rule for a service's admin paths takes priority - 1: it must be
    # free, so that the rule is evaluated before the service's forward rule and no other.
    condition = alltrue([
      for s in values(var.services) :
      !contains([for o in values(var.services) : o.priority], s.priority - 1) && s.priority > 1
      if length(s.admin_path_patterns) > 0
    ])
    error_message = "a service with admin paths needs priority - 1 free (listener priorities are spaced; see modules/plan)."
  }
}

variable "private_subnet_ids" {
  description = "Private subnets (one per AZ) for the internal ALB that serves the admin paths. Required when any service has admin_path_patterns."
  type        = list(string)
  default     = []
}

variable "admin_ingress_cidrs" {
  description = "CIDRs (VPN, operators' network) allowed to the internal ALB besides the VPC itself. Never the internet."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.admin_ingress_cidrs : can(cidrhost(c, 0)) && !endswith(c, "/0")])
    error_message = "admin_ingress_cidrs must be IPv4 CIDRs, never a /0: the internal ALB serves the admin API."
  }
}

variable "blue_green" {
  description = "ECS blue-green (deploy/ecs, `meridian-deploy ecs`): a second (green) target group per service, and a test listener on preview_port forwarding each service's paths to the colour being analysed. The public rules' forward target is then the deploy command's (lifecycle ignore_changes)."
  type        = bool
  default     = false
}

variable "preview_port" {
  description = "Port of the blue-green test listener (HTTPS, certificate_arn)."
  type        = number
  default     = 8443

  validation {
    condition     = var.preview_port != 443 && var.preview_port >= 1024 && var.preview_port <= 65535
    error_message = "preview_port must be a port from 1024 to 65535 (443 is the public listener)."
  }
}

variable "preview_ingress_cidrs" {
  description = "CIDRs allowed to the blue-green test listener (the deploy pipeline's agents). Never the internet: the preview serves a release nobody has judged yet."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.preview_ingress_cidrs : can(cidrhost(c, 0)) && !endswith(c, "/0")])
    error_message = "preview_ingress_cidrs must be IPv4 CIDRs, never a /0."
  }
}

variable "preview_hostname" {
  description = "Hostname the pipeline reaches the test listener by: one certificate_arn covers (the country's API hostname, pointing at this ALB). null = the ALB's DNS name, which the certificate does not cover, so a TLS-verifying probe fails until it is set."
  type        = string
  default     = null
}

variable "admin_certificate_arn" {
  description = "ACM certificate of the internal (admin) hostname, e.g. admin.se.api.example.com. null = certificate_arn (it must then cover that hostname too)."
  type        = string
  default     = null

  validation {
    condition     = var.admin_certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:", coalesce(var.admin_certificate_arn, "x")))
    error_message = "admin_certificate_arn must be an ACM certificate ARN."
  }
}

variable "deregistration_delay" {
  description = "Seconds the ALB keeps draining a target. Must stay below the services' SIGTERM drain budget."
  type        = number
  default     = 30

  validation {
    condition     = var.deregistration_delay >= 0 && var.deregistration_delay <= 300
    error_message = "deregistration_delay must be 0-300 seconds."
  }
}

variable "idle_timeout" {
  description = "ALB idle timeout in seconds. SSE streams (streams/attendance) need it above their keep-alive interval."
  type        = number
  default     = 120

  validation {
    condition     = var.idle_timeout >= 1 && var.idle_timeout <= 4000
    error_message = "idle_timeout must be 1-4000 seconds."
  }
}

variable "enable_waf" {
  description = "Attach a WAFv2 web ACL (AWS managed common + known-bad-inputs rules, per-IP rate limit)."
  type        = bool
  default     = true
}

variable "waf_rate_limit" {
  description = "Requests per 5 minutes per client IP before WAF blocks it."
  type        = number
  default     = 20000

  validation {
    condition     = var.waf_rate_limit >= 100
    error_message = "waf_rate_limit must be at least 100."
  }
}

variable "waf_rate_limit_exempt_cidrs" {
  description = "Source ranges (IPv4 CIDRs) the WAF rate rule neither counts nor blocks: the telephony platform's webhook senders, which send every call decision from a few addresses."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.waf_rate_limit_exempt_cidrs : can(cidrhost(c, 0)) && !endswith(c, "/0")])
    error_message = "waf_rate_limit_exempt_cidrs must be IPv4 CIDRs, never a /0."
  }
}

variable "log_retention_days" {
  description = "Retention (days) of ALB access logs in S3 and WAF logs in CloudWatch."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts."
  }
}

variable "logs_kms_key_arn" {
  description = "CMK for the WAF log group."
  type        = string
}

variable "elb_log_delivery_account_id" {
  description = "Elastic Load Balancing account that writes access logs in this region (eu-north-1: 897822967062)."
  type        = string
  default     = "897822967062"

  validation {
    condition     = can(regex("^[0-9]{12}$", var.elb_log_delivery_account_id))
    error_message = "elb_log_delivery_account_id must be a 12-digit account ID."
  }
}

variable "eks_cluster_name" {
  description = "When set (EKS countries), create the AWS Load Balancer Controller IAM role and its pod identity association; the controller then binds pods to these target groups with TargetGroupBinding."
  type        = string
  default     = null
}

variable "kubernetes_namespace" {
  description = "Namespace of the services on EKS (buildkite/lib.sh MERIDIAN_NAMESPACE). Each TargetGroupBinding points at the active Service named after the service (the preview Service is <service>-preview)."
  type        = string
  default     = "meridian"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.kubernetes_namespace))
    error_message = "kubernetes_namespace must be a DNS label."
  }
}

variable "tags" {
  description = "Extra tags."
  type        = map(string)
  default     = {}
}
