output "cluster_name" {
  description = "Cluster name."
  value       = aws_eks_cluster.this.name
}

output "cluster_arn" {
  description = "Cluster ARN."
  value       = aws_eks_cluster.this.arn
}

output "cluster_endpoint" {
  description = "Private API server endpoint."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64 CA bundle of the API server."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "cluster_security_group_id" {
  description = "EKS-managed cluster security group (attached to managed nodes): allow it into Aurora."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

output "oidc_provider_arn" {
  description = "IAM OIDC provider ARN (IRSA)."
  value       = aws_iam_openid_connect_provider.this.arn
}

output "oidc_issuer_url" {
  description = "OIDC issuer URL."
  value       = aws_eks_cluster.this.identity[0].oidc[0].issuer
}

output "node_role_arn" {
  description = "Node IAM role ARN."
  value       = aws_iam_role.node.arn
}

output "cluster_autoscaler_role_arn" {
  description = "IRSA role of the cluster-autoscaler (annotate its service account kube-system/cluster-autoscaler with eks.amazonaws.com/role-arn): resizes the managed node groups between min_size and max_size."
  value       = aws_iam_role.cluster_autoscaler.arn
}

output "pod_ingress" {
  description = "Rules on the cluster security group (the pods'): key => {from (security group), port}."
  value       = { for k, r in aws_vpc_security_group_ingress_rule.pods : k => { from = r.referenced_security_group_id, port = r.from_port, to = r.security_group_id } }
}

output "operator_role_arn" {
  description = "IRSA role of the meridian operator (input operator): annotate its service account (meridian-system/meridian-operator) with eks.amazonaws.com/role-arn = this. Snapshots the Aurora cluster before migrations; AMP queries (modules/observability); Rollouts in the management cluster. null without operator."
  value       = try(aws_iam_role.operator[0].arn, null)
}

output "operator_role_name" {
  description = "Name of the operator's role, for policies other modules attach to it (modules/observability: AMP queries). null without operator."
  value       = try(aws_iam_role.operator[0].name, null)
}

output "operator_snapshot_arns" {
  description = "What the operator's role may snapshot: the Aurora cluster (operator.aurora_cluster_arn) and the snapshots it takes of it (cluster-snapshot:meridian-*). Empty without operator."
  value       = local.operator ? [var.operator.aurora_cluster_arn, local.operator_snapshot_arn] : []
}

output "rollout_role_arn" {
  description = "The management cluster's operator role (operator.rollout_controller = true), which signs the other countries' EKS tokens: pass it as rollout_principal_arns to the target countries. null elsewhere."
  value       = try(var.operator.rollout_controller, false) ? try(aws_iam_role.operator[0].arn, null) : null
}

output "rollout_rbac_manifest" {
  description = "Role + RoleBinding (YAML) letting the group meridian:rollout get and patch Releases, for the cluster-addons step to apply; null without rollout_principal_arns."
  value       = local.rollout_rbac_manifest
}
