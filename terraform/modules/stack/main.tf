# One country's whole stack: the provider-free plan (names, CIDRs, sizing from the country
# code and profile) and the modules it feeds. Country roots call this once; everything that
# differs between countries comes from the plan registry (modules/plan/main.tf) or from the
# root's terraform.tfvars, passed in as variables.
#
# Production defaults that no country may change live here as literals (deletion protection,
# backup retention, private EKS endpoint); the policy test proves them for every root.

module "plan" {
  source = "../plan"

  country     = var.country
  environment = var.environment
  profile     = var.profile
}

locals {
  eks      = module.plan.platform == "eks"
  ecs      = module.plan.platform == "ecs"
  services = module.plan.services
  sizing   = module.plan.sizing
}

module "secrets" {
  source = "../secrets"

  name                = module.plan.name_prefix
  services            = keys(local.services)
  create_pod_identity = local.eks
  eks_cluster_name    = local.eks ? module.eks[0].cluster_name : null
  database = {
    host   = module.aurora.endpoint
    port   = module.aurora.port
    dbname = module.aurora.database_name
  }
}

module "network" {
  source = "../network"

  name               = module.plan.names.vpc
  cidr               = module.plan.network.vpc_cidr
  azs                = module.plan.network.azs
  public_subnets     = module.plan.network.public_subnets
  private_subnets    = module.plan.network.private_subnets
  database_subnets   = module.plan.network.database_subnets
  single_nat_gateway = module.plan.network.single_nat_gateway
  eks_cluster_name   = local.eks ? module.plan.names.eks_cluster : null
  kms_key_arn        = module.secrets.kms_key_arn
}

module "aurora" {
  source = "../aurora"

  name               = module.plan.names.aurora_cluster
  vpc_id             = module.network.vpc_id
  subnet_ids         = module.network.database_subnet_ids
  availability_zones = module.plan.network.azs
  allowed_security_groups = merge(
    local.eks ? { eks_nodes = module.eks[0].cluster_security_group_id } : {},
    local.ecs ? { ecs_tasks = module.ecs[0].tasks_security_group_id } : {},
  )

  instance_class = local.sizing.aurora.instance_class
  instance_count = local.sizing.aurora.instance_count
  serverless_v2 = local.sizing.aurora.serverless_v2 ? {
    min_capacity = local.sizing.aurora.min_capacity
    max_capacity = local.sizing.aurora.max_capacity
  } : null

  deletion_protection     = true
  backup_retention_period = 14
}

module "eks" {
  source = "../eks"
  count  = local.eks ? 1 : 0

  cluster_name           = module.plan.names.eks_cluster
  vpc_id                 = module.network.vpc_id
  subnet_ids             = module.network.private_subnet_ids
  endpoint_public_access = false
  api_allowed_cidrs      = var.api_allowed_cidrs
  node_groups            = local.sizing.eks_node_groups
  logs_kms_key_arn       = module.secrets.kms_key_arn
  admin_role_arns        = var.admin_role_arns
}

module "alb" {
  source = "../alb"

  name              = module.plan.names.alb
  vpc_id            = module.network.vpc_id
  vpc_cidr          = module.network.vpc_cidr_block
  public_subnet_ids = module.network.public_subnet_ids
  certificate_arn   = var.certificate_arn
  logs_kms_key_arn  = module.secrets.kms_key_arn
  eks_cluster_name  = local.eks ? module.eks[0].cluster_name : null
  services = {
    for name, s in local.services : name => {
      path_pattern = s.path_pattern
      port         = s.port
      health_path  = s.health_path
      priority     = s.priority
    }
  }
}

module "ecs" {
  source = "../ecs"
  count  = local.ecs ? 1 : 0

  name                  = module.plan.names.ecs_cluster
  vpc_id                = module.network.vpc_id
  private_subnet_ids    = module.network.private_subnet_ids
  alb_security_group_id = module.alb.security_group_id
  image_registry        = var.image_registry
  image_tag             = var.image_tag
  logs_kms_key_arn      = module.secrets.kms_key_arn
  secrets_kms_key_arn   = module.secrets.kms_key_arn
  services = {
    for name, s in local.services : name => {
      port                = s.port
      target_group_arn    = module.alb.target_group_arns[name]
      database_secret_arn = module.secrets.db_secret_arns[name]
      cpu                 = local.sizing.ecs.cpu
      memory              = local.sizing.ecs.memory
      desired_count       = s.critical ? local.sizing.ecs.critical_desired_count : local.sizing.ecs.desired_count
      max_count           = local.sizing.ecs.max_count
    }
  }
}

module "observability" {
  source = "../observability"

  name                       = module.plan.name_prefix
  mode                       = local.sizing.observability
  kms_key_arn                = module.secrets.kms_key_arn
  alert_email_addresses      = var.alert_email_addresses
  alb_arn_suffix             = module.alb.alb_arn_suffix
  target_group_arn_suffixes  = module.alb.target_group_arn_suffixes
  aurora_cluster_id          = module.aurora.cluster_id
  aurora_serverless          = local.sizing.aurora.serverless_v2
  eks_cluster_arn            = local.eks ? module.eks[0].cluster_arn : null
  scraper_subnet_ids         = local.eks ? module.network.private_subnet_ids : []
  scraper_security_group_ids = local.eks ? [module.eks[0].cluster_security_group_id] : []
}
