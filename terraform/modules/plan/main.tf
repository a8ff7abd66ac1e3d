# Provider-free planning module: naming, CIDR plan and profile sizing for one country.
# Every other module takes its inputs from here, so a new country is one registry line
# plus a copied root (see terraform/README.md, "Deploying to a new country").

locals {
  # ---------------------------------------------------------------------------
  # Country registry. `index` owns the country's /16 and must never be reused or
  # changed once a country is live: prod = 10.<index>.0.0/16, staging = 10.<index+100>.0.0/16.
  # Valid indexes are 1..99. Add new countries at the end.
  # ---------------------------------------------------------------------------
  registry = {
    # dr_region: where the country's backups are copied (AWS Backup, locked vault) and where it is
    # rebuilt if its region is lost (runbooks/procedures/region-evacuation.md); EU, another region.
    se = { index = 10, name = "Sweden", region = "eu-north-1", dr_region = "eu-west-1", profile = "large" }
    no = { index = 11, name = "Norway", region = "eu-north-1", dr_region = "eu-west-1", profile = "large" }
    dk = { index = 12, name = "Denmark", region = "eu-north-1", dr_region = "eu-west-1", profile = "small" }
    fi = { index = 13, name = "Finland", region = "eu-north-1", dr_region = "eu-west-1", profile = "small" }
  }

  environment_offset = { prod = 0, staging = 100 }
  base_cidr          = "10.0.0.0/8"

  # ---------------------------------------------------------------------------
  # Size profiles. Both have the same shape so either can be indexed by name.
  # Cost per month of each is in terraform/README.md.
  # ---------------------------------------------------------------------------
  profiles = {
    # Thousands of users: no EKS control plane, Aurora that scales to 0.5 ACU. A NAT gateway per
    # AZ like large: with one, losing its AZ stops image pulls, log delivery and secret reads of
    # every replacement task (the cost of both options and the choice: terraform/README.md).
    small = {
      platform           = "ecs"
      single_nat_gateway = false
      observability      = "cloudwatch"
      eks_node_groups    = {}
      ecs = {
        cpu           = 256
        memory        = 512
        desired_count = 2
        max_count     = 6
        # call control answers the PBX: one task per AZ so an AZ loss never drops it to zero.
        critical_desired_count = 3
      }
      # Three instances, one per AZ: after an AZ takes the writer, the promoted writer still has
      # a reader to fail over to (two instances would leave one).
      aurora = {
        serverless_v2  = true
        instance_class = "db.serverless"
        instance_count = 3
        min_capacity   = 0.5
        max_capacity   = 8
      }
    }

    # Hundreds of thousands of users: EKS (operator-driven blue/green, cluster-autoscaler between
    # min_size and max_size), NAT per AZ, provisioned Graviton Aurora writer + two readers.
    large = {
      platform           = "eks"
      single_nat_gateway = false
      observability      = "prometheus"
      eks_node_groups = {
        general = {
          instance_types = ["m7i.large"]
          capacity_type  = "ON_DEMAND"
          min_size       = 3
          desired_size   = 3
          max_size       = 12
          disk_size      = 50
        }
      }
      ecs = {
        cpu                    = 512
        memory                 = 1024
        desired_count          = 3
        max_count              = 12
        critical_desired_count = 3
      }
      aurora = {
        serverless_v2  = false
        instance_class = "db.r7g.large"
        instance_count = 3
        min_capacity   = 0.5
        max_capacity   = 16
      }
    }
  }

  country = local.registry[var.country]
  profile = coalesce(var.profile, local.country.profile)
  sizing  = local.profiles[local.profile]
  region  = local.country.region
  # A registry entry without dr_region gets none (and the stack refuses it: no region-loss copy).
  dr_region = lookup(local.country, "dr_region", null)

  name_prefix = "meridian-${var.environment}-${var.country}"

  # ---------------------------------------------------------------------------
  # CIDR plan. Inside the country's /16:
  #   10.N.0.0/24, .1/24, .2/24   public  (ALB, NAT)          cidrsubnet(vpc, 8, az)
  #   10.N.8.0/24, .9/24, .10/24  database (Aurora, no route out) cidrsubnet(vpc, 8, 8 + az)
  #   10.N.64.0/18, .128/18, .192/18  private (nodes, pods, Fargate tasks) cidrsubnet(vpc, 2, 1 + az)
  # ---------------------------------------------------------------------------
  vpc_index        = local.country.index + local.environment_offset[var.environment]
  vpc_cidr         = cidrsubnet(local.base_cidr, 8, local.vpc_index)
  azs              = [for i in range(var.az_count) : "${local.region}${substr("abc", i, 1)}"]
  public_subnets   = [for i in range(var.az_count) : cidrsubnet(local.vpc_cidr, 8, i)]
  database_subnets = [for i in range(var.az_count) : cidrsubnet(local.vpc_cidr, 8, 8 + i)]
  private_subnets  = [for i in range(var.az_count) : cidrsubnet(local.vpc_cidr, 2, 1 + i)]
  all_subnets      = concat(local.public_subnets, local.database_subnets, local.private_subnets)

  # Every registered country x environment, for the registry-wide overlap precondition.
  all_country_cidrs = merge([
    for cc, c in local.registry : {
      for env, offset in local.environment_offset : "${cc}/${env}" => cidrsubnet(local.base_cidr, 8, c.index + offset)
    }
  ]...)

  # Admin routes of each service, as ALB path patterns (at most 5 per service: one listener rule).
  # The public listener answers them 404 before the service's forward rule; only the internal
  # ALB forwards them (the service still requires an admin scope on every one of them).
  admin_path_patterns = {
    calls = ["/calls/v1/pbx*", "/calls/v1/subscribers*", "/calls/v1/audit*", "/calls/v1/snapshot*"]
  }

  # Admin routes that share a path with a public one and differ by method: the public listener
  # answers these methods 404 on those paths (one rule each, before the service's forward rule),
  # the internal ALB forwards them. streams: setting or removing a user's limit (streams:admin);
  # reading it (GET) stays public for the playback clients. attendance: registering a site (PUT,
  # attendance:admin); its staff routes under the same prefix use the other methods.
  admin_method_routes = {
    streams    = [{ path_patterns = ["/streams/v1/users/*/limit"], methods = ["PUT", "DELETE", "POST", "PATCH"] }]
    attendance = [{ path_patterns = ["/attendance/v1/sites/*"], methods = ["PUT"] }]
  }

  # ---------------------------------------------------------------------------
  # Deployable services, derived from the Cargo workspace (never a hand-kept list): every member
  # "services/<name>" whose crate builds a binary called <name> (services/platform builds
  # `meridian`, kit and kit-aws are libraries). Members order fixes each service's listener rule
  # priority, so a new service crate is appended at the end of `members`. Buildkite builds an
  # image only for a crate in the workspace (buildkite/lib.sh in_workspace): what is deployed here
  # is exactly what has an image.
  # ---------------------------------------------------------------------------
  workspace_dir      = coalesce(var.workspace_dir, "${path.module}/../../..")
  workspace_manifest = file("${local.workspace_dir}/Cargo.toml")
  workspace_members  = [for m in regexall("\"services/([a-z][a-z0-9]*)\"", regex("(?s)\\bmembers\\s*=\\s*\\[([^\\]]*)\\]", local.workspace_manifest)[0]) : m[0]]
  workspace_services = [
    for m in local.workspace_members : m
    if can(regex("(?m)^\\[\\[bin\\]\\]\\s*\\n\\s*name\\s*=\\s*\"${m}\"", file("${local.workspace_dir}/services/${m}/Cargo.toml")))
  ]
  service_names = var.services == null ? local.workspace_services : var.services

  # Image repository of each service: <prefix><name>, the prefix from buildkite/images.conf, the
  # file buildkite/lib.sh's image_ref reads (one source for what is pushed and what ECS pulls).
  image_repository_prefix = regex("(?m)^repository_prefix=([a-z0-9._/-]+)$", file("${local.workspace_dir}/buildkite/images.conf"))[0]

  services = {
    for i, s in local.service_names : s => {
      path_prefix         = "/${s}"
      path_pattern        = ["/${s}", "/${s}/*"]
      port                = var.service_port
      schema              = s
      health_path         = "/readyz"
      liveness            = "/healthz"
      metrics_path        = "/metrics"
      priority            = 100 + i * 10
      critical            = s == "calls"
      admin_path_patterns = lookup(local.admin_path_patterns, s, [])
      admin_method_routes = lookup(local.admin_method_routes, s, [])
      # Served (also) behind the internal ALB: admin path patterns or admin method routes.
      admin            = length(lookup(local.admin_path_patterns, s, [])) + length(lookup(local.admin_method_routes, s, [])) > 0
      image_repository = "${local.image_repository_prefix}${s}"
    }
  }

  tags = {
    Project     = "meridian"
    Country     = upper(var.country)
    Environment = var.environment
    Profile     = local.profile
    ManagedBy   = "terraform"
    Stack       = "countries/${var.country}"
  }
}

module "registry_overlap" {
  source = "./cidr-overlap"
  cidrs  = values(local.all_country_cidrs)
}

module "subnet_overlap" {
  source = "./cidr-overlap"
  cidrs  = local.all_subnets
}
