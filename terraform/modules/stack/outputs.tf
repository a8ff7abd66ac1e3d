# region and tags configure the root's aws provider; they come from the provider-free plan
# module only, so the provider never waits on a resource of this stack.
output "region" {
  description = "AWS region of the country (the root's provider region)."
  value       = module.plan.region
}

output "tags" {
  description = "Default tags for the root provider's default_tags (Project, Country, Environment, Profile, ManagedBy, Stack)."
  value       = module.plan.tags
}

output "platform" {
  description = "eks or ecs."
  value       = module.plan.platform
}

output "vpc_cidr" {
  description = "The country's VPC CIDR."
  value       = module.plan.vpc_cidr
}

output "alb_dns_name" {
  description = "Point the country's API hostname (Route 53 alias) here."
  value       = module.alb.dns_name
}

output "alb_zone_id" {
  description = "Hosted zone of the ALB for the alias record."
  value       = module.alb.zone_id
}

output "eks_cluster_name" {
  description = "EKS cluster (null on ECS countries)."
  value       = try(module.eks[0].cluster_name, null)
}

output "ecs_cluster_name" {
  description = "ECS cluster (null on EKS countries)."
  value       = try(module.ecs[0].cluster_name, null)
}

output "aurora_endpoint" {
  description = "Aurora writer endpoint."
  value       = module.aurora.endpoint
}

output "aurora_master_secret_arn" {
  description = "RDS-managed master secret (db-bootstrap step only)."
  value       = module.aurora.master_user_secret_arn
}

output "database_secret_arns" {
  description = "Service => DATABASE_SECRET_ARN."
  value       = module.secrets.db_secret_arns
}

output "target_group_arns" {
  description = "Service => ALB target group ARN (check with aws elbv2 describe-target-health)."
  value       = module.alb.target_group_arns
}

output "target_group_bindings" {
  description = "TargetGroupBinding YAML per service, and per admin target group (<service>-admin) (EKS countries; applied by Buildkite)."
  value       = local.eks ? module.alb.target_group_bindings : {}
}

output "kubernetes_env_manifests" {
  description = "EKS countries: the <service>-env Secret (or ExternalSecret, for services with runtime secrets) each Release names in envFromSecret, and the SecretStore; applied by Buildkite. Empty on ECS."
  value       = local.kubernetes_env_manifests
}

output "dashboard_manifests" {
  description = "Prometheus-mode countries: one ConfigMap per Grafana dashboard of runbooks/dashboards (label grafana_dashboard=1, for the Grafana sidecar); applied in the cluster like kubernetes_env_manifests. Empty in CloudWatch mode."
  value       = module.observability.dashboard_manifests
}

output "service_env" {
  description = "Service => plain environment it is started with on either platform (DATABASE_SECRET_ARN, AWS_REGION, AUTH_*); secrets are not in it."
  value       = local.service_env
}

output "external_secrets_role_arn" {
  description = "EKS: IAM role of the External Secrets Operator controller (Pod Identity association created)."
  value       = module.secrets.external_secrets_role_arn
}

output "calls_secret_arns" {
  description = "Secrets Manager ARNs of the calls token key and webhook secrets (token-key, webhook-secrets)."
  value       = module.secrets.calls_secret_arns
}

output "auth_issuer" {
  description = "AUTH_ISSUER of every service."
  value       = module.identity.issuer
}

output "auth_jwks_url" {
  description = "AUTH_JWKS_URL of every service."
  value       = module.identity.jwks_url
}

output "token_endpoint" {
  description = "OAuth token endpoint of the country's Cognito domain (null with an existing OIDC provider)."
  value       = module.identity.token_endpoint
}

output "identity_client_secret_arns" {
  description = "Client (playback, admin, slo-probe) => Secrets Manager ARN of its {client_id, client_secret, token_url, scope}."
  value       = module.identity.client_secret_arns
}

output "internal_alb_dns_name" {
  description = "Internal ALB of the admin routes (reachable from the VPC and admin_ingress_cidrs): point the admin hostname here."
  value       = module.alb.internal_dns_name
}

output "internal_alb_zone_id" {
  description = "Hosted zone of the internal ALB for the alias record."
  value       = module.alb.internal_zone_id
}

output "lb_controller_role_arn" {
  description = "AWS Load Balancer Controller role (pod identity)."
  value       = module.alb.lb_controller_role_arn
}

output "alert_topic_arn" {
  description = "SNS alert topic."
  value       = module.observability.alert_topic_arn
}

output "prometheus_endpoint" {
  description = "AMP query endpoint (EKS countries)."
  value       = module.observability.prometheus_endpoint
}

output "scraper_rbac_manifests" {
  description = "Large countries: the ClusterRole/ClusterRoleBinding of the managed Prometheus scraper's access entry user (apply from the deploy agent). Empty on ECS."
  value       = module.observability.scraper_rbac_manifests
}

output "cluster_autoscaler_role_arn" {
  description = "Large countries: IRSA role of the cluster-autoscaler (service account kube-system/cluster-autoscaler). null on ECS."
  value       = try(module.eks[0].cluster_autoscaler_role_arn, null)
}

output "ecs_deploy_role_arn" {
  description = "ECS countries with deploy_principal_arns: the role the production step assumes to run `meridian-deploy ecs` (the deploy agents' AWS profile for this country). null otherwise."
  value       = try(module.ecs[0].deploy_role_arn, null)
}

output "operator_role_arn" {
  description = "EKS countries: IRSA role of the meridian operator; annotate its service account meridian-system/meridian-operator with eks.amazonaws.com/role-arn = this (snapshot before migrate, AMP queries, Rollouts). null on ECS."
  value       = try(module.eks[0].operator_role_arn, null)
}

output "rollout_role_arn" {
  description = "The management country (rollout_controller = true): its operator role, to pass as rollout_principal_arns to the other EKS countries. null elsewhere."
  value       = try(module.eks[0].rollout_role_arn, null)
}

output "dr_region" {
  description = "The country's DR region (backup copies; rebuild target after a region loss)."
  value       = module.plan.dr_region
}

output "backup_vault_arns" {
  description = "Locked AWS Backup vaults: primary (the country's region) and dr (the DR region's copy of every recovery point)."
  value       = { primary = module.backup.vault_arn, dr = module.backup.dr_vault_arn }
}
