variable "name" {
  description = "Name prefix for every resource (e.g. meridian-prod-se)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,40}$", var.name))
    error_message = "name must be 3-41 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "cidr" {
  description = "VPC IPv4 CIDR (a /16 from the plan module)."
  type        = string

  validation {
    condition     = can(cidrhost(var.cidr, 0)) && tonumber(split("/", var.cidr)[1]) <= 20
    error_message = "cidr must be an IPv4 block of /20 or larger."
  }
}

variable "azs" {
  description = "Availability zones, one subnet of each tier per AZ."
  type        = list(string)

  validation {
    condition     = length(var.azs) >= 2 && length(distinct(var.azs)) == length(var.azs)
    error_message = "azs must list at least two distinct availability zones."
  }
}

variable "public_subnets" {
  description = "Public subnet CIDRs (ALB, NAT), same order as azs."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.public_subnets : can(cidrhost(c, 0))])
    error_message = "public_subnets must be IPv4 CIDR blocks."
  }
}

variable "private_subnets" {
  description = "Private subnet CIDRs (EKS nodes and pods, Fargate tasks), same order as azs."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.private_subnets : can(cidrhost(c, 0))])
    error_message = "private_subnets must be IPv4 CIDR blocks."
  }
}

variable "database_subnets" {
  description = "Database subnet CIDRs (Aurora; no route to the internet), same order as azs."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.database_subnets : can(cidrhost(c, 0))])
    error_message = "database_subnets must be IPv4 CIDR blocks."
  }
}

variable "single_nat_gateway" {
  description = "true = one NAT gateway for all AZs (cost option, small profile); false = one NAT per AZ (an AZ outage cannot cut egress elsewhere)."
  type        = bool
  default     = false
}

variable "eks_cluster_name" {
  description = "When set, subnets get the kubernetes.io/cluster/<name> and role/elb tags the AWS Load Balancer Controller uses for discovery."
  type        = string
  default     = null
}

variable "flow_log_retention_days" {
  description = "Retention of the VPC flow log group in CloudWatch Logs."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.flow_log_retention_days)
    error_message = "flow_log_retention_days must be a value CloudWatch Logs accepts (e.g. 30, 90, 365)."
  }
}

variable "kms_key_arn" {
  description = "CMK for the flow log group. Must allow logs.<region>.amazonaws.com to use it (the secrets module's key does)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "tags" {
  description = "Extra tags (the provider's default_tags already carry the country tags)."
  type        = map(string)
  default     = {}
}
