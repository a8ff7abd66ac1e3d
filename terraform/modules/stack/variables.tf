variable "country" {
  description = "ISO 3166-1 alpha-2 country code, lower case (e.g. \"se\"). Must be registered in the plan registry (modules/plan/main.tf, local.registry), which validates it and derives region, CIDRs, names and the default profile from it."
  type        = string
}

variable "environment" {
  description = "Deployment environment (prod | staging): picks the country's /16 and the name prefix. Validated by the plan module."
  type        = string
  default     = "prod"
}

variable "profile" {
  description = "Size profile override (small | large). null = the plan registry default for this country."
  type        = string
  default     = null
}

variable "api_hostname" {
  description = "The country's API hostname (e.g. dk.api.meridian.example): certificate_arn covers it and its DNS alias points at alb_dns_name. ECS countries reach the blue-green test listener by it (https://<api_hostname>:8443, the preview_url in every service's deploy target). null = the ALB's DNS name, which the certificate does not cover, so `meridian-deploy ecs`'s TLS-verifying probe fails."
  type        = string
  default     = null

  validation {
    condition     = var.api_hostname == null || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", coalesce(var.api_hostname, "x.example")))
    error_message = "api_hostname must be a lower-case DNS name (e.g. dk.api.meridian.example), no scheme or port."
  }
}

variable "certificate_arn" {
  description = "ACM certificate of the country's API hostname (e.g. se.api.meridian.example)."
  type        = string
}

variable "image_registry" {
  description = "ECR registry/repository prefix the service images live in."
  type        = string
}

variable "image_tag" {
  description = "Git SHA of the images for the first ECS deploy (later deploys come from Buildkite)."
  type        = string
}

variable "alert_email_addresses" {
  description = "On-call e-mail addresses subscribed to the alert topic."
  type        = list(string)
  default     = []
}

variable "admin_role_arns" {
  description = "IAM roles with EKS cluster-admin (platform engineers' SSO role, Buildkite deploy role). Required (at least one) on EKS countries; unused on ECS."
  type        = list(string)
  default     = []
}

variable "api_allowed_cidrs" {
  description = "CIDRs (VPN, Buildkite agents' VPC) allowed to the private EKS API endpoint. Required (at least one) on EKS countries; unused on ECS."
  type        = list(string)
  default     = []
}

variable "oidc" {
  description = "An existing OIDC provider instead of the country's Cognito user pool: {issuer_url, jwks_url, audiences, scope_prefix}. null = Cognito (modules/identity)."
  type = object({
    issuer_url   = string
    jwks_url     = string
    audiences    = list(string)
    scope_prefix = optional(string, "")
  })
  default = null
}

variable "admin_ingress_cidrs" {
  description = "Networks (VPN, operators) allowed to the internal ALB of the admin routes, besides the VPC."
  type        = list(string)
  default     = []
}

variable "calls_token_key_also_accept" {
  description = "CALLS_TOKEN_KEY rotation step: null, AWSPENDING (new key accepted) or AWSPREVIOUS (old key still accepted). See terraform/README.md."
  type        = string
  default     = null
}

variable "telephony_source_cidrs" {
  description = "Source ranges of the telephony platform's webhooks (its published egress ranges): exempt from the WAF's per-IP rate rule, which they would exceed from a few addresses."
  type        = list(string)
  default     = []
}

variable "deploy_principal_arns" {
  description = "ECS countries: IAM roles (the Buildkite deploy agents' role, any account) that may assume the country's ECS deploy role (output ecs_deploy_role_arn: what `meridian-deploy ecs` and the production step do, modules/ecs). Empty: no deploy role. Unused on EKS (the deploy role there is an admin_role_arns entry)."
  type        = list(string)
  default     = []
}

variable "rollout_controller" {
  description = "This country's EKS cluster runs the operator's Rollout controller (the management cluster): the operator's IRSA role (service account meridian-system/meridian-operator, output operator_role_arn) is then also output rollout_role_arn, the role the other countries map in rollout_principal_arns."
  type        = bool
  default     = false
}

variable "rollout_principal_arns" {
  description = "The management cluster's Rollout controller role(s), granted get/patch of this country's Releases (EKS access entries, group meridian:rollout). Empty: no Rollout reaches this country by IAM."
  type        = list(string)
  default     = []
}
