output "platform" {
  description = "eks or ecs."
  value       = module.stack.platform
}

output "vpc_cidr" {
  description = "The country's VPC CIDR."
  value       = module.stack.vpc_cidr
}

output "alb_dns_name" {
  description = "Point the country's API hostname (Route 53 alias) here."
  value       = module.stack.alb_dns_name
}

output "alb_zone_id" {
  description = "Hosted zone of the ALB for the alias record."
  value       = module.stack.alb_zone_id
}

output "eks_cluster_name" {
  description = "EKS cluster (null on ECS countries)."
  value       = module.stack.eks_cluster_name
}

output "ecs_cluster_name" {
  description = "ECS cluster (null on EKS countries)."
  value       = module.stack.ecs_cluster_name
}

output "aurora_endpoint" {
  description = "Aurora writer endpoint."
  value       = module.stack.aurora_endpoint
}

output "aurora_master_secret_arn" {
  description = "RDS-managed master secret (db-bootstrap step only)."
  value       = module.stack.aurora_master_secret_arn
}

output "database_secret_arns" {
  description = "Service => DATABASE_SECRET_ARN."
  value       = module.stack.database_secret_arns
}

output "target_group_arns" {
  description = "Service => ALB target group ARN (check with aws elbv2 describe-target-health)."
  value       = module.stack.target_group_arns
}

output "target_group_bindings" {
  description = "TargetGroupBinding YAML per service (EKS countries; applied by Buildkite)."
  value       = module.stack.target_group_bindings
}

output "lb_controller_role_arn" {
  description = "AWS Load Balancer Controller role (pod identity)."
  value       = module.stack.lb_controller_role_arn
}

output "alert_topic_arn" {
  description = "SNS alert topic."
  value       = module.stack.alert_topic_arn
}

output "prometheus_endpoint" {
  description = "AMP query endpoint (EKS countries)."
  value       = module.stack.prometheus_endpoint
}

output "kubernetes_env_manifests" {
  description = "EKS countries: <service>-env Secret / ExternalSecret manifests (each Release's envFromSecret) and the SecretStore; applied by Buildkite."
  value       = module.stack.kubernetes_env_manifests
}

output "dashboard_manifests" {
  description = "Prometheus-mode countries: Grafana dashboard ConfigMaps (runbooks/dashboards) for the Grafana sidecar; applied like kubernetes_env_manifests."
  value       = module.stack.dashboard_manifests
}

output "external_secrets_role_arn" {
  description = "EKS: IAM role of the External Secrets Operator controller."
  value       = module.stack.external_secrets_role_arn
}

output "calls_secret_arns" {
  description = "Secrets Manager ARNs of the calls token key and webhook secrets."
  value       = module.stack.calls_secret_arns
}

output "auth_issuer" {
  description = "AUTH_ISSUER of every service."
  value       = module.stack.auth_issuer
}

output "token_endpoint" {
  description = "OAuth token endpoint (Cognito); null with an existing OIDC provider."
  value       = module.stack.token_endpoint
}

output "identity_client_secret_arns" {
  description = "Client => Secrets Manager ARN of its credentials (client_id, client_secret, token_url, scope)."
  value       = module.stack.identity_client_secret_arns
}

output "internal_alb_dns_name" {
  description = "Internal ALB of the admin routes: point the admin hostname (reachable from the VPC / VPN only) here."
  value       = module.stack.internal_alb_dns_name
}

output "internal_alb_zone_id" {
  description = "Hosted zone of the internal ALB."
  value       = module.stack.internal_alb_zone_id
}

output "scraper_rbac_manifests" {
  description = "Large countries: RBAC (YAML) of the managed Prometheus scraper's access entry user; apply from a deploy agent in the VPC."
  value       = module.stack.scraper_rbac_manifests
}

output "cluster_autoscaler_role_arn" {
  description = "Large countries: IRSA role for the cluster-autoscaler chart (kube-system/cluster-autoscaler). null on ECS."
  value       = module.stack.cluster_autoscaler_role_arn
}

output "ecs_deploy_role_arn" {
  description = "Small countries: the role the production step assumes for `meridian-deploy ecs` (point the deploy agents' profile meridian-prod-<cc> at it). null on EKS or without deploy_principal_arns."
  value       = module.stack.ecs_deploy_role_arn
}

output "operator_role_arn" {
  description = "Large countries: IRSA role of the meridian operator; annotate its service account meridian-system/meridian-operator with eks.amazonaws.com/role-arn = this. null on ECS."
  value       = module.stack.operator_role_arn
}

output "backup_vault_arns" {
  description = "Locked AWS Backup vaults: primary and dr (a copy of every Aurora recovery point in the DR region)."
  value       = module.stack.backup_vault_arns
}
