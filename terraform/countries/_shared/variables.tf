variable "aws_account_id" {
  description = "The country's AWS account; the provider refuses to run against any other."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.aws_account_id))
    error_message = "aws_account_id must be 12 digits."
  }
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

variable "deploy_principal_arns" {
  description = "ECS countries: IAM roles (the Buildkite deploy agents' role) that may assume the country's ECS deploy role (output ecs_deploy_role_arn), which `meridian-deploy ecs` runs as. Unused on EKS."
  type        = list(string)
  default     = []
}

variable "admin_role_arns" {
  description = "IAM roles with EKS cluster-admin (platform engineers' SSO role, Buildkite deploy role)."
  type        = list(string)
  default     = []
}

variable "api_allowed_cidrs" {
  description = "CIDRs (VPN, Buildkite agents' VPC) allowed to the private EKS API endpoint."
  type        = list(string)
  default     = []
}

variable "oidc" {
  description = "An existing OIDC provider instead of the country's Cognito user pool: {issuer_url, jwks_url, audiences, scope_prefix}. null (default) = Cognito."
  type = object({
    issuer_url   = string
    jwks_url     = string
    audiences    = list(string)
    scope_prefix = optional(string, "")
  })
  default = null
}

variable "admin_ingress_cidrs" {
  description = "Networks (VPN, operators) allowed to the internal ALB that serves the admin routes, besides the VPC."
  type        = list(string)
  default     = []
}

variable "telephony_source_cidrs" {
  description = "The telephony platform's webhook source ranges (its published egress IPs): exempt from the WAF's per-IP rate rule (20,000 per 5 minutes), which the call decisions of a whole country sent from a few addresses exceed."
  type        = list(string)
  default     = []
}

variable "calls_token_key_also_accept" {
  description = "CALLS_TOKEN_KEY rotation step (terraform/README.md): null, AWSPENDING, then AWSPREVIOUS, then null again."
  type        = string
  default     = null
}
