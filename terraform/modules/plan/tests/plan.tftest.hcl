# Offline: the plan module has no providers. Run with
#   terraform init -backend=false && terraform test

run "se_is_large_on_eks" {
  command = plan

  variables {
    country = "se"
  }

  assert {
    condition     = output.profile == "large" && output.platform == "eks"
    error_message = "se must default to the large profile on EKS."
  }

  assert {
    condition     = output.vpc_cidr == "10.10.0.0/16"
    error_message = "se owns 10.10.0.0/16 in prod."
  }

  assert {
    condition     = output.network.single_nat_gateway == false && length(output.network.azs) == 3
    error_message = "large runs one NAT per AZ over three AZs."
  }

  assert {
    condition     = output.sizing.aurora.instance_count >= 3 && output.sizing.aurora.serverless_v2 == false
    error_message = "large runs a provisioned Aurora writer plus at least one reader."
  }

  assert {
    condition     = output.sizing.eks_node_groups.general.min_size >= 3
    error_message = "large keeps at least one node per AZ."
  }

  assert {
    condition     = output.names.state_key == "countries/se/terraform.tfstate" && output.name_prefix == "meridian-prod-se"
    error_message = "naming convention changed."
  }
}

run "dk_is_small_on_ecs" {
  command = plan

  variables {
    country = "dk"
  }

  assert {
    condition     = output.profile == "small" && output.platform == "ecs" && !output.network.single_nat_gateway
    error_message = "dk must default to small: ECS, with a NAT gateway per AZ (a single NAT is a single AZ of failure)."
  }

  assert {
    condition     = output.dr_region != null && output.dr_region != output.region
    error_message = "every country has a DR region other than its own (backup copies survive the loss of the region)."
  }

  assert {
    condition     = output.sizing.aurora.serverless_v2 && output.sizing.aurora.instance_class == "db.serverless" && output.sizing.aurora.min_capacity == 0.5
    error_message = "small runs Aurora Serverless v2 from 0.5 ACU."
  }

  assert {
    condition     = output.sizing.aurora.instance_count >= 3
    error_message = "small keeps a writer and two readers, one per AZ: after an AZ failover two instances remain."
  }

  assert {
    condition     = length(output.sizing.eks_node_groups) == 0
    error_message = "small has no EKS node groups."
  }
}

run "profile_override" {
  command = plan

  variables {
    country = "fi"
    profile = "large"
  }

  assert {
    condition     = output.platform == "eks" && output.tags.Profile == "large"
    error_message = "an explicit profile overrides the registry default."
  }
}

run "staging_gets_its_own_range" {
  command = plan

  variables {
    country     = "se"
    environment = "staging"
  }

  assert {
    condition     = output.vpc_cidr == "10.110.0.0/16" && output.name_prefix == "meridian-staging-se"
    error_message = "staging is offset by 100 in the second octet."
  }
}

run "subnets_inside_vpc" {
  command = plan

  variables {
    country = "no"
  }

  assert {
    condition = alltrue([
      for s in output.all_subnets : cidrsubnet(s, 0, 0) == s && startswith(s, "10.11.")
    ])
    error_message = "every subnet must be inside the country's /16."
  }

  assert {
    condition     = output.network.private_subnets == ["10.11.64.0/18", "10.11.128.0/18", "10.11.192.0/18"]
    error_message = "private subnets are the three upper /18s."
  }

  assert {
    condition     = output.network.database_subnets == ["10.11.8.0/24", "10.11.9.0/24", "10.11.10.0/24"]
    error_message = "database subnets are 10.N.8-10.0/24."
  }
}

run "services_routing" {
  command = plan

  variables {
    country = "se"
  }

  assert {
    condition     = output.services.calls.path_prefix == "/calls" && output.services.calls.health_path == "/readyz"
    error_message = "path prefix per service, ALB health check on /readyz."
  }

  assert {
    condition     = length(distinct([for s in values(output.services) : s.priority])) == length(output.services)
    error_message = "listener rule priorities must be unique."
  }

  # Only what the workspace builds is deployed (an ECS service without an image never becomes
  # steady): every service is a crate services/<name> of this repository with a binary <name>.
  assert {
    condition = tolist(keys(output.services)) == tolist(sort(output.workspace_services)) && alltrue([
      for s in keys(output.services) : can(regex("\\[\\[bin\\]\\]\\s*\\n\\s*name\\s*=\\s*\"${s}\"", file("../../../services/${s}/Cargo.toml")))
    ]) && contains(keys(output.services), "streams") && contains(keys(output.services), "calls")
    error_message = "the services are exactly the workspace's services/<name> crates with a binary <name>."
  }

  assert {
    condition     = alltrue([for s, v in output.services : v.image_repository == "meridian-${s}"])
    error_message = "each service's image repository is buildkite/images.conf's prefix + its name (meridian-<name>, what buildkite/lib.sh image_ref pushes)."
  }

  assert {
    condition = (
      toset(output.services.calls.admin_path_patterns) == toset(["/calls/v1/pbx*", "/calls/v1/subscribers*", "/calls/v1/audit*", "/calls/v1/snapshot*"])
      && alltrue([for k, s in output.services : length(s.admin_path_patterns) == 0 if k != "calls"])
    )
    error_message = "calls' admin routes (pbx, subscribers, audit, snapshot) are its admin path patterns; no other service has any yet."
  }

  assert {
    condition     = alltrue([for k, v in output.tags : length(v) > 0]) && output.tags.Country == "SE"
    error_message = "default tags must be non-empty."
  }
}

run "two_az_minimum_is_allowed" {
  command = plan

  variables {
    country  = "fi"
    az_count = 2
  }

  assert {
    condition     = length(output.network.azs) == 2 && length(output.network.private_subnets) == 2
    error_message = "az_count = 2 yields two of everything."
  }
}

run "services_derived_from_the_workspace" {
  command = plan

  variables {
    country       = "dk"
    workspace_dir = "tests/fixtures/workspace"
  }

  assert {
    condition     = tolist(output.workspace_services) == tolist(["beta", "alpha"]) && tolist(keys(output.services)) == tolist(["alpha", "beta"])
    error_message = "only members services/<name> with a [[bin]] <name> are services (not a library, not a binary of another name, not a member without a crate), in members order."
  }

  assert {
    condition     = output.services.beta.priority == 100 && output.services.alpha.priority == 110
    error_message = "listener rule priorities follow the workspace members order (a new crate appended at the end moves no existing rule)."
  }

  assert {
    condition     = output.image_repository_prefix == "fixture/img-" && output.services.alpha.image_repository == "fixture/img-alpha"
    error_message = "the image repository prefix is read from buildkite/images.conf."
  }
}
