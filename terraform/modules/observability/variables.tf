variable "name" {
  description = "Prefix (e.g. meridian-prod-se)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,40}$", var.name))
    error_message = "name must be 3-41 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "mode" {
  description = "\"cloudwatch\": CloudWatch alarms only (small). \"prometheus\": also an Amazon Managed Prometheus workspace, an agentless scraper of the EKS cluster and Alertmanager delivery to the same SNS topic (large)."
  type        = string
  default     = "cloudwatch"

  validation {
    condition     = contains(["cloudwatch", "prometheus"], var.mode)
    error_message = "mode must be \"cloudwatch\" or \"prometheus\"."
  }
}

variable "kms_key_arn" {
  description = "CMK for the SNS topic and the AMP workspace."
  type        = string
}

variable "alert_email_addresses" {
  description = "E-mail subscribers of the alert topic (PagerDuty/Opsgenie HTTPS endpoints go in alert_https_endpoints)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.alert_email_addresses : can(regex("^[^@ ]+@[^@ ]+\\.[a-z]{2,}$", e))])
    error_message = "alert_email_addresses must be e-mail addresses."
  }
}

variable "alert_https_endpoints" {
  description = "HTTPS subscribers (paging service integration URLs)."
  type        = list(string)
  default     = []
  sensitive   = true

  validation {
    condition     = alltrue([for u in var.alert_https_endpoints : startswith(u, "https://")])
    error_message = "alert_https_endpoints must be https:// URLs."
  }
}

variable "alb_arn_suffix" {
  description = "ALB ARN suffix (LoadBalancer dimension)."
  type        = string
}

variable "target_group_arn_suffixes" {
  description = "Service name => target group ARN suffix."
  type        = map(string)
}

variable "waf_web_acl_name" {
  description = "WAF web ACL in front of the ALB (alarm on its blocked requests); null = none."
  type        = string
  default     = null
}

variable "waf_blocked_threshold" {
  description = "Blocked requests per 5 minutes above which the WAF alarm fires."
  type        = number
  default     = 300
}

variable "region" {
  description = "The country's region (the Region dimension of the WAF metrics)."
  type        = string
  default     = null
}

variable "latency_p99_threshold_seconds" {
  description = "Alarm when a service's p99 target response time stays above this (call control must answer in well under 3 s)."
  type        = number
  default     = 1

  validation {
    condition     = var.latency_p99_threshold_seconds > 0 && var.latency_p99_threshold_seconds < 3
    error_message = "latency_p99_threshold_seconds must be between 0 and 3 (the PBX gives up at 3 s)."
  }
}

variable "error_5xx_threshold" {
  description = "Alarm when a service returns more than this many 5xx per minute for 3 minutes."
  type        = number
  default     = 10
}

variable "aurora_cluster_id" {
  description = "Aurora cluster identifier for the database alarms."
  type        = string
}

variable "aurora_serverless" {
  description = "true = alarm on ACU utilisation instead of CPU."
  type        = bool
  default     = false
}

variable "eks_cluster_arn" {
  description = "EKS cluster scraped by the managed Prometheus collector (mode = prometheus)."
  type        = string
  default     = null
}

variable "eks_cluster_name" {
  description = "Name of that cluster: the scraper's role gets an EKS access entry in it (mode = prometheus)."
  type        = string
  default     = null
}

variable "scraper_subnet_ids" {
  description = "Private subnets for the managed scraper ENIs (mode = prometheus)."
  type        = list(string)
  default     = []
}

variable "scraper_security_group_ids" {
  description = "Security groups for the scraper ENIs (the EKS cluster security group)."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Extra tags."
  type        = map(string)
  default     = {}
}

variable "operator_role_name" {
  description = "Name of the meridian operator's IAM role (modules/eks output operator_role_name, IRSA on its service account). In prometheus mode it gets an inline policy that may query the workspace (release analysis). Required in prometheus mode."
  type        = string
  default     = null
}

variable "dashboards_namespace" {
  description = "Namespace of the Grafana dashboard ConfigMaps (output dashboard_manifests, mode = prometheus): the one the Grafana sidecar watches."
  type        = string
  default     = "monitoring"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.dashboards_namespace))
    error_message = "dashboards_namespace must be a Kubernetes namespace name (RFC 1123 label)."
  }
}

variable "dashboards_folder" {
  description = "Grafana folder of the dashboards (annotation grafana_folder, read by the sidecar's folderAnnotation)."
  type        = string
  default     = "Meridian"
}
