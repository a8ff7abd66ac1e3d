variable "cluster_name" {
  description = "EKS cluster name (e.g. meridian-prod-se)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,99}$", var.cluster_name))
    error_message = "cluster_name must be lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "kubernetes_version" {
  description = "Kubernetes minor version of the control plane and node groups."
  type        = string
  default     = "1.33"

  validation {
    condition     = can(regex("^1\\.[0-9]{2}$", var.kubernetes_version))
    error_message = "kubernetes_version must look like 1.33."
  }
}

variable "vpc_id" {
  description = "VPC ID."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnet IDs for the control-plane ENIs and the nodes (at least two AZs)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids must span at least two availability zones."
  }
}

variable "endpoint_public_access" {
  description = "Expose the Kubernetes API publicly. Keep false: operators and CI reach the private endpoint via VPN/SSM; the policy test fails any country that sets true."
  type        = bool
  default     = false
}

variable "endpoint_public_access_cidrs" {
  description = "Allowed CIDRs when endpoint_public_access = true (never 0.0.0.0/0)."
  type        = list(string)
  default     = []

  validation {
    condition     = !contains(var.endpoint_public_access_cidrs, "0.0.0.0/0")
    error_message = "endpoint_public_access_cidrs must not contain 0.0.0.0/0."
  }
}

variable "api_allowed_cidrs" {
  description = "CIDRs (VPN, CI runners' VPC) allowed to reach the private API endpoint on 443. At least one: the endpoint is private and its security group admits nothing else, so without one nobody outside the cluster reaches the API."
  type        = list(string)

  validation {
    condition     = length(var.api_allowed_cidrs) > 0 && alltrue([for c in var.api_allowed_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "api_allowed_cidrs must list at least one IPv4 CIDR (the VPN, the Buildkite deploy agents' VPC), never 0.0.0.0/0: otherwise nobody can reach the private EKS API."
  }
}

variable "cluster_log_types" {
  description = "Control-plane log types shipped to CloudWatch."
  type        = list(string)
  default     = ["api", "audit", "authenticator", "controllerManager", "scheduler"]

  validation {
    condition     = alltrue([for t in var.cluster_log_types : contains(["api", "audit", "authenticator", "controllerManager", "scheduler"], t)]) && contains(var.cluster_log_types, "audit")
    error_message = "cluster_log_types must be a subset of api, audit, authenticator, controllerManager, scheduler and include audit."
  }
}

variable "log_retention_days" {
  description = "Retention of the control-plane log group."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts."
  }
}

variable "logs_kms_key_arn" {
  description = "CMK for the control-plane log group (the secrets module's country key)."
  type        = string
}

variable "node_groups" {
  description = "Managed node groups, keyed by name."
  type = map(object({
    instance_types = list(string)
    capacity_type  = optional(string, "ON_DEMAND")
    min_size       = number
    desired_size   = number
    max_size       = number
    disk_size      = optional(number, 50)
    ami_type       = optional(string, "AL2023_x86_64_STANDARD")
    labels         = optional(map(string), {})
  }))

  validation {
    condition     = length(var.node_groups) > 0
    error_message = "at least one node group is required."
  }

  validation {
    condition = alltrue([
      for ng in values(var.node_groups) :
      ng.min_size >= 1 && ng.min_size <= ng.desired_size && ng.desired_size <= ng.max_size && contains(["ON_DEMAND", "SPOT"], ng.capacity_type)
    ])
    error_message = "each node group needs 1 <= min_size <= desired_size <= max_size and capacity_type ON_DEMAND or SPOT."
  }
}

variable "admin_role_arns" {
  description = "IAM roles granted cluster-admin through EKS access entries (platform engineers' SSO role, the Buildkite deploy role). At least one: the cluster creator gets no admin (bootstrap_cluster_creator_admin_permissions = false)."
  type        = list(string)

  validation {
    condition     = length(var.admin_role_arns) > 0 && alltrue([for a in var.admin_role_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", a))])
    error_message = "admin_role_arns must list at least one IAM role ARN: the cluster creator is not admin, so without one nobody can use the Kubernetes API."
  }
}

variable "pod_ingress" {
  description = "Security groups allowed into the pods on a port: key => {security_group_id, port}. Rules on the EKS cluster security group, which the managed nodes (and so the pods, VPC CNI) carry: the public and the internal ALB reach their targets (and health checks) this way. Keys must be known at plan time."
  type = map(object({
    security_group_id = string
    port              = number
  }))
  default = {}
}

variable "cluster_autoscaler_service_account" {
  description = "Namespace and name of the cluster-autoscaler's service account, trusted by its IRSA role."
  type = object({
    namespace = string
    name      = string
  })
  default = { namespace = "kube-system", name = "cluster-autoscaler" }
}

variable "tags" {
  description = "Extra tags."
  type        = map(string)
  default     = {}
}

variable "operator" {
  description = "The meridian operator runs in this cluster: an IAM role for its service account (IRSA; annotate it eks.amazonaws.com/role-arn = output operator_role_arn) that may snapshot `aurora_cluster_arn` before migrations (manual snapshots meridian-*). `rollout_controller = true` in the management cluster: the same role is the one the other countries map for Rollouts (output rollout_role_arn). null: no operator role."
  type = object({
    service_account = optional(object({
      namespace = string
      name      = string
    }), { namespace = "meridian-system", name = "meridian-operator" })
    aurora_cluster_arn = string
    rollout_controller = optional(bool, false)
  })
  default = null

  validation {
    condition     = var.operator == null || can(regex("^arn:aws[a-z-]*:rds:[a-z0-9-]+:[0-9]{12}:cluster:[a-z][a-z0-9-]*$", var.operator.aurora_cluster_arn))
    error_message = "operator.aurora_cluster_arn must be an Aurora cluster ARN (arn:aws:rds:<region>:<account>:cluster:<name>)."
  }
}

variable "rollout_principal_arns" {
  description = "IAM roles of the Rollout controller (modules/eks output rollout_role_arn of the management cluster: its operator role, any account) allowed to get and patch this cluster's Releases: an access entry each, as the group meridian:rollout (RBAC: output rollout_rbac_manifest)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.rollout_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", a))])
    error_message = "rollout_principal_arns must be IAM role ARNs."
  }
}

variable "rollout_release_namespace" {
  description = "Namespace of the Releases the Rollout controller may get and patch."
  type        = string
  default     = "meridian"
}
