output "country" {
  description = "Country code and registry entry."
  value       = merge(local.country, { code = var.country })
}

output "environment" {
  description = "Environment name."
  value       = var.environment
}

output "region" {
  description = "AWS region of the country stack."
  value       = local.region
}

output "profile" {
  description = "Effective size profile (small | large)."
  value       = local.profile
}

output "platform" {
  description = "Compute platform: \"eks\" (large) or \"ecs\" (small)."
  value       = local.sizing.platform
}

output "name_prefix" {
  description = "Prefix for every resource name, e.g. meridian-prod-se."
  value       = local.name_prefix
}

output "names" {
  description = "Resource names derived from the prefix (all within AWS length limits)."
  value = {
    vpc            = local.name_prefix
    eks_cluster    = local.name_prefix
    ecs_cluster    = local.name_prefix
    aurora_cluster = local.name_prefix
    alb            = local.name_prefix
    secrets_prefix = "${local.name_prefix}/"
    log_prefix     = "/meridian/${var.environment}/${var.country}"
    state_key      = "countries/${var.country}/terraform.tfstate"
  }
}

output "tags" {
  description = "Default tags for the provider's default_tags block."
  value       = local.tags
}

output "network" {
  description = "CIDR plan: VPC /16, AZs and one public, private and database subnet per AZ."
  value = {
    vpc_cidr           = local.vpc_cidr
    azs                = local.azs
    public_subnets     = local.public_subnets
    private_subnets    = local.private_subnets
    database_subnets   = local.database_subnets
    single_nat_gateway = local.sizing.single_nat_gateway
  }

  precondition {
    condition     = length(module.subnet_overlap.overlaps) == 0
    error_message = "Subnets of this country overlap: ${join(", ", module.subnet_overlap.overlaps)}"
  }

  precondition {
    condition     = length(module.registry_overlap.overlaps) == 0
    error_message = "Country registry CIDRs overlap: ${join(", ", module.registry_overlap.overlaps)}"
  }

  precondition {
    condition     = alltrue([for c in values(local.registry) : c.index >= 1 && c.index <= 99]) && length(distinct([for c in values(local.registry) : c.index])) == length(local.registry)
    error_message = "Registry indexes must be unique and within 1..99."
  }
}

output "vpc_cidr" {
  description = "The country's VPC CIDR (shortcut for network.vpc_cidr)."
  value       = local.vpc_cidr
}

output "all_subnets" {
  description = "Every subnet of the country (public, database, private)."
  value       = local.all_subnets
}

output "all_country_cidrs" {
  description = "VPC CIDR of every registered country and environment, keyed \"cc/env\"."
  value       = local.all_country_cidrs
}

output "services" {
  description = "Per-service routing: path prefix, port, schema, health check path, listener rule priority, admin path patterns (internal ALB only), image repository (buildkite/images.conf prefix + name)."
  value       = local.services
}

output "sizing" {
  description = "Profile sizing: EKS node groups, ECS task size and counts, Aurora class/count/ACU, observability mode."
  value = {
    platform           = local.sizing.platform
    single_nat_gateway = local.sizing.single_nat_gateway
    observability      = local.sizing.observability
    eks_node_groups    = local.sizing.eks_node_groups
    ecs                = local.sizing.ecs
    aurora             = local.sizing.aurora
  }
}

output "workspace_services" {
  description = "The deployable services the Cargo workspace defines (members services/<name> with a [[bin]] <name>), in members order: what `services` is built from unless var.services overrides it (tests only)."
  value       = local.workspace_services
}

output "image_repository_prefix" {
  description = "Image repository prefix shared with Buildkite (buildkite/images.conf): a service's image is <registry>/<prefix><service>:<git sha>."
  value       = local.image_repository_prefix
}

output "dr_region" {
  description = "The country's disaster-recovery region: backup copies (AWS Backup, locked vault) and the rebuild target after a region loss."
  value       = local.dr_region
}
