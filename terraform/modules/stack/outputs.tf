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
  description = "TargetGroupBinding YAML per service (EKS countries; applied by Buildkite)."
  value       = local.eks ? module.alb.target_group_bindings : {}
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
