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
  providers = {
    aws           = aws
    aws.generator = aws.generator
  }

  name                        = module.plan.name_prefix
  services                    = keys(local.services)
  create_pod_identity         = local.eks
  eks_cluster_name            = local.eks ? module.eks[0].cluster_name : null
  calls_token_key_also_accept = var.calls_token_key_also_accept
  database = {
    host   = module.aurora.endpoint
    port   = module.aurora.port
    dbname = module.aurora.database_name
  }
}

# The token issuer every service verifies (AUTH_*): Cognito per country, or var.oidc.
module "identity" {
  source = "../identity"

  name                = module.plan.name_prefix
  services            = keys(local.services)
  oidc                = var.oidc
  secrets_kms_key_arn = module.secrets.kms_key_arn
}

locals {
  # What every service is started with besides its image, on either platform: where its
  # database credentials are, the region, and the issuer it verifies tokens against.
  service_env = {
    for name in keys(local.services) : name => merge(module.identity.service_env[name], {
      DATABASE_SECRET_ARN = module.secrets.db_secret_arns[name]
      AWS_REGION          = module.plan.region
    })
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

# Region loss: every Aurora recovery point copied to a locked vault in the DR region.
module "backup" {
  source = "../backup"
  providers = {
    aws    = aws
    aws.dr = aws.dr
  }

  name          = module.plan.name_prefix
  resource_arns = { aurora = module.aurora.cluster_arn }
  kms_key_arn   = module.secrets.kms_key_arn
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
  # The operator's one IAM role (IRSA, service account meridian-system/meridian-operator):
  # snapshot before migrate on this country's Aurora cluster, AMP queries (module.observability)
  # and, in the management cluster, cross-country Rollouts by IAM role, no kubeconfig
  # credentials (operator README, "Rollout").
  operator = {
    aurora_cluster_arn = module.aurora.cluster_arn
    rollout_controller = var.rollout_controller
  }
  rollout_principal_arns = var.rollout_principal_arns
  # Both ALBs reach the pods (traffic and /readyz health checks) on the service ports.
  pod_ingress = merge(
    { for p in distinct([for s in values(local.services) : s.port]) : "alb-${p}" => { security_group_id = module.alb.security_group_id, port = p } },
    { for p in distinct([for s in values(local.services) : s.port if s.admin]) : "alb-internal-${p}" => { security_group_id = module.alb.internal_security_group_id, port = p } },
  )
}

module "alb" {
  source = "../alb"

  name                = module.plan.names.alb
  vpc_id              = module.network.vpc_id
  vpc_cidr            = module.network.vpc_cidr_block
  public_subnet_ids   = module.network.public_subnet_ids
  private_subnet_ids  = module.network.private_subnet_ids
  admin_ingress_cidrs = var.admin_ingress_cidrs
  certificate_arn     = var.certificate_arn
  # The telephony platform's webhook senders: not rate-limited per IP by the WAF.
  waf_rate_limit_exempt_cidrs = var.telephony_source_cidrs
  logs_kms_key_arn            = module.secrets.kms_key_arn
  eks_cluster_name            = local.eks ? module.eks[0].cluster_name : null
  # ECS: a green target group per service and the test listener `meridian-deploy ecs` probes,
  # reachable from the same networks as the admin ALB (operators, the pipeline's agents).
  blue_green            = local.ecs
  preview_ingress_cidrs = local.ecs ? var.admin_ingress_cidrs : []
  # The test listener by the name the certificate covers (else the probe's TLS check fails).
  preview_hostname = local.ecs ? var.api_hostname : null
  services = {
    for name, s in local.services : name => {
      path_pattern        = s.path_pattern
      port                = s.port
      health_path         = s.health_path
      priority            = s.priority
      admin_path_patterns = s.admin_path_patterns
      admin_method_routes = s.admin_method_routes
    }
  }
}

module "ecs" {
  source = "../ecs"
  count  = local.ecs ? 1 : 0

  name                        = module.plan.names.ecs_cluster
  vpc_id                      = module.network.vpc_id
  private_subnet_ids          = module.network.private_subnet_ids
  alb_security_group_id       = module.alb.security_group_id
  admin_alb_security_group_id = module.alb.internal_security_group_id
  image_registry              = var.image_registry
  image_tag                   = var.image_tag
  logs_kms_key_arn            = module.secrets.kms_key_arn
  secrets_kms_key_arn         = module.secrets.kms_key_arn
  services = {
    for name, s in local.services : name => {
      port                   = s.port
      image_repository       = s.image_repository
      target_group_arn       = module.alb.target_group_arns[name]
      listener_rule_arns     = module.alb.listener_rule_arns[name]
      admin                  = s.admin
      admin_target_group_arn = lookup(module.alb.admin_target_group_arns, name, null)
      database_secret_arn    = module.secrets.db_secret_arns[name]
      cpu                    = local.sizing.ecs.cpu
      memory                 = local.sizing.ecs.memory
      desired_count          = s.critical ? local.sizing.ecs.critical_desired_count : local.sizing.ecs.desired_count
      max_count              = local.sizing.ecs.max_count
      environment            = module.identity.service_env[name]
      secrets                = module.secrets.service_secret_env[name]
      # Blue-green (deploy/ecs): green's target group and the two rules the command switches.
      blue_green                   = true
      green_target_group_arn       = module.alb.green_target_group_arns[name]
      production_listener_rule_arn = module.alb.production_listener_rule_arns[name]
      preview_listener_rule_arn    = module.alb.preview_listener_rule_arns[name]
    }
  }
  preview_url             = module.alb.preview_url
  deploy_parameter_prefix = "/meridian/${var.environment}/${var.country}/ecs-deploy"
  # The role the production step's `meridian-deploy ecs` runs as (modules/ecs README).
  deploy_principal_arns = var.deploy_principal_arns
}

# ----------------------------------------------------------------------------- EKS: each service's env Secret
# The operator starts a service with its Release's envFromSecret, "<service>-env" in the
# services' namespace. Terraform does not talk to the cluster (private endpoint): these
# manifests are outputs that the Buildkite cluster-addons step applies, like the
# TargetGroupBindings. A service without runtime secrets gets a plain Secret (its values are
# ARNs and URLs); one with runtime secrets (calls) gets an ExternalSecret, which the External
# Secrets Operator (role: module.secrets, Pod Identity) fills from Secrets Manager, so no secret
# value ever passes through Terraform or Buildkite.

locals {
  kubernetes_namespace = "meridian"
  secret_store_name    = "aws-secrets-manager"

  kubernetes_env_manifests = !local.eks ? {} : merge(
    {
      for name in keys(local.services) : "${name}-env" => length(module.secrets.service_secret_env[name]) == 0 ? yamlencode({
        apiVersion = "v1"
        kind       = "Secret"
        type       = "Opaque"
        metadata   = { name = "${name}-env", namespace = local.kubernetes_namespace, labels = { "app.kubernetes.io/name" = name, "app.kubernetes.io/part-of" = "meridian" } }
        stringData = local.service_env[name]
        }) : yamlencode({
        apiVersion = "external-secrets.io/v1"
        kind       = "ExternalSecret"
        metadata   = { name = "${name}-env", namespace = local.kubernetes_namespace, labels = { "app.kubernetes.io/name" = name, "app.kubernetes.io/part-of" = "meridian" } }
        spec = {
          refreshInterval = "1h"
          secretStoreRef  = { kind = "SecretStore", name = local.secret_store_name }
          target = {
            name           = "${name}-env"
            creationPolicy = "Owner"
            template = {
              type = "Opaque"
              # Plain settings as literals; each secret as a reference to the fetched value.
              data = merge(local.service_env[name], { for env in keys(module.secrets.service_secret_env[name]) : env => "{{ .${env} }}" })
            }
          }
          data = [
            for env, ref in module.secrets.service_secret_env[name] : {
              secretKey = env
              remoteRef = { key = ref.arn, version = ref.version_stage }
            }
          ]
        }
      })
    },
    anytrue([for name in keys(local.services) : length(module.secrets.service_secret_env[name]) > 0]) ? {
      (local.secret_store_name) = yamlencode({
        apiVersion = "external-secrets.io/v1"
        kind       = "SecretStore"
        metadata   = { name = local.secret_store_name, namespace = local.kubernetes_namespace }
        # No auth block: the controller's own Pod Identity role (module.secrets), which may read
        # the calls secrets and nothing else.
        spec = { provider = { aws = { service = "SecretsManager", region = module.plan.region } } }
      })
    } : {},
  )
}

module "observability" {
  source = "../observability"

  name                       = module.plan.name_prefix
  mode                       = local.sizing.observability
  kms_key_arn                = module.secrets.kms_key_arn
  alert_email_addresses      = var.alert_email_addresses
  alb_arn_suffix             = module.alb.alb_arn_suffix
  waf_web_acl_name           = module.alb.waf_web_acl_name
  region                     = module.plan.region
  target_group_arn_suffixes  = module.alb.target_group_arn_suffixes
  aurora_cluster_id          = module.aurora.cluster_id
  aurora_serverless          = local.sizing.aurora.serverless_v2
  eks_cluster_arn            = local.eks ? module.eks[0].cluster_arn : null
  eks_cluster_name           = local.eks ? module.eks[0].cluster_name : null
  scraper_subnet_ids         = local.eks ? module.network.private_subnet_ids : []
  scraper_security_group_ids = local.eks ? [module.eks[0].cluster_security_group_id] : []
  operator_role_name         = local.eks ? module.eks[0].operator_role_name : null
}

# The operator's AMP query role used to be modules/observability's own (Pod Identity); it is now
# the operator's one role in modules/eks (IRSA), same name ("<name>-operator"): moved, its trust
# policy changes in place and its query-prometheus policy stays, so the ARN does not change.
moved {
  from = module.observability.aws_iam_role.operator
  to   = module.eks[0].aws_iam_role.operator
}
