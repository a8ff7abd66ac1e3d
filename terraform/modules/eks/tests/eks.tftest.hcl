# Offline, with a mocked aws provider: who can use the cluster (access entries, API CIDRs), how
# the load balancers reach the pods, and what the node autoscaler may do.

mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "111111111111" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::111111111111:role/mock" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:eu-north-1:111111111111:key/00000000-0000-0000-0000-000000000000" }
  }
  mock_resource "aws_iam_openid_connect_provider" {
    defaults = { arn = "arn:aws:iam::111111111111:oidc-provider/oidc.eks.eu-north-1.amazonaws.com/id/MOCK" }
  }
  mock_resource "aws_eks_cluster" {
    defaults = {
      arn                   = "arn:aws:eks:eu-north-1:111111111111:cluster/mock"
      identity              = [{ oidc = [{ issuer = "https://oidc.eks.eu-north-1.amazonaws.com/id/MOCK" }] }]
      certificate_authority = [{ data = "bW9jaw==" }]
      vpc_config            = { cluster_security_group_id = "sg-0c1u5te70000000000" }
    }
  }
  mock_resource "aws_launch_template" {
    defaults = { id = "lt-0123456789abcdef0" }
  }
}

variables {
  cluster_name      = "meridian-prod-se"
  vpc_id            = "vpc-0123456789abcdef0"
  subnet_ids        = ["subnet-a", "subnet-b", "subnet-c"]
  logs_kms_key_arn  = "arn:aws:kms:eu-north-1:111111111111:key/00000000-0000-0000-0000-000000000000"
  admin_role_arns   = ["arn:aws:iam::111111111111:role/meridian-platform-admin", "arn:aws:iam::111111111111:role/meridian-buildkite-deploy"]
  api_allowed_cidrs = ["10.250.0.0/16"]
  node_groups = {
    general = {
      instance_types = ["m7i.large"]
      capacity_type  = "ON_DEMAND"
      min_size       = 3
      desired_size   = 3
      max_size       = 12
      disk_size      = 50
    }
  }
  pod_ingress = {
    alb-8080          = { security_group_id = "sg-0a1b0000000000000", port = 8080 }
    alb-internal-8080 = { security_group_id = "sg-0a1b1111111111111", port = 8080 }
  }
}

run "access_ingress_and_autoscaling" {
  command = apply

  assert {
    condition = (
      toset([for e in aws_eks_access_entry.admin : e.principal_arn]) == toset(var.admin_role_arns)
      && alltrue([for a in aws_eks_access_policy_association.admin : endswith(a.policy_arn, "/AmazonEKSClusterAdminPolicy")])
      && !aws_eks_cluster.this.access_config[0].bootstrap_cluster_creator_admin_permissions
    )
    error_message = "every admin role gets an access entry with cluster admin (the creator gets none)."
  }

  assert {
    condition     = toset([for r in aws_vpc_security_group_ingress_rule.api : r.cidr_ipv4]) == toset(var.api_allowed_cidrs)
    error_message = "the private API endpoint admits the api_allowed_cidrs on 443."
  }

  assert {
    condition = alltrue([
      for k, r in aws_vpc_security_group_ingress_rule.pods :
      r.security_group_id == "sg-0c1u5te70000000000" && r.referenced_security_group_id == var.pod_ingress[k].security_group_id && r.from_port == 8080 && r.to_port == 8080
    ]) && length(aws_vpc_security_group_ingress_rule.pods) == 2
    error_message = "each load balancer's security group is admitted into the cluster security group (the pods') on the service port."
  }

  assert {
    condition = (
      [for c in one([for s in data.aws_iam_policy_document.cluster_autoscaler.statement : s if s.sid == "ResizeOwnNodeGroups"]).condition : c.variable] == ["aws:ResourceTag/k8s.io/cluster-autoscaler/meridian-prod-se"]
      && contains(one([for s in data.aws_iam_policy_document.cluster_autoscaler.statement : s if s.sid == "ResizeOwnNodeGroups"]).actions, "autoscaling:SetDesiredCapacity")
      && contains(flatten([for c in one(data.aws_iam_policy_document.cluster_autoscaler_assume.statement).condition : c.values]), "system:serviceaccount:kube-system:cluster-autoscaler")
      && output.cluster_autoscaler_role_arn != null
    )
    error_message = "the cluster-autoscaler (IRSA, kube-system/cluster-autoscaler) may resize only this cluster's node groups."
  }

  assert {
    condition     = aws_eks_node_group.this["general"].scaling_config[0].max_size == 12 && aws_eks_node_group.this["general"].scaling_config[0].min_size == 3
    error_message = "the node group scales between min_size and max_size."
  }
}

run "nobody_could_use_the_api" {
  command = plan

  variables {
    admin_role_arns   = []
    api_allowed_cidrs = []
  }

  expect_failures = [var.admin_role_arns, var.api_allowed_cidrs]
}

# The operator's one role (IRSA), in every cluster that runs it: trusted for its service account
# only, and allowed exactly the RDS calls of snapshot before migrate on this country's cluster
# and its meridian-* snapshots. Not the Rollout role outside the management cluster.
run "operator_role_snapshots_before_migrate" {
  command = apply

  variables {
    operator = { aurora_cluster_arn = "arn:aws:rds:eu-north-1:111111111111:cluster:meridian-prod-se" }
  }

  assert {
    condition = (
      output.operator_role_arn != null
      && aws_iam_role.operator[0].name == "meridian-prod-se-operator"
      && one(data.aws_iam_policy_document.operator_assume[0].statement).actions == toset(["sts:AssumeRoleWithWebIdentity"])
      && one(one(data.aws_iam_policy_document.operator_assume[0].statement).principals).type == "Federated"
      && one(one(data.aws_iam_policy_document.operator_assume[0].statement).principals).identifiers == toset([aws_iam_openid_connect_provider.this.arn])
      && length(one(data.aws_iam_policy_document.operator_assume[0].statement).condition) == 2
      && alltrue([for c in one(data.aws_iam_policy_document.operator_assume[0].statement).condition : c.test == "StringEquals"])
      && flatten([for c in one(data.aws_iam_policy_document.operator_assume[0].statement).condition : c.values if c.variable == "oidc.eks.eu-north-1.amazonaws.com/id/MOCK:sub"]) == ["system:serviceaccount:meridian-system:meridian-operator"]
      && flatten([for c in one(data.aws_iam_policy_document.operator_assume[0].statement).condition : c.values if c.variable == "oidc.eks.eu-north-1.amazonaws.com/id/MOCK:aud"]) == ["sts.amazonaws.com"]
    )
    error_message = "the operator's role trusts its service account meridian-system/meridian-operator (IRSA: sub = the service account, aud = sts.amazonaws.com) and nothing else."
  }

  assert {
    condition = jsonencode({
      for s in data.aws_iam_policy_document.operator_snapshots[0].statement : s.sid => {
        actions   = sort(tolist(s.actions))
        resources = sort(tolist(s.resources))
      }
      }) == jsonencode({
      SnapshotBeforeMigrate = {
        actions   = ["rds:CreateDBClusterSnapshot"]
        resources = ["arn:aws:rds:eu-north-1:111111111111:cluster-snapshot:meridian-*", "arn:aws:rds:eu-north-1:111111111111:cluster:meridian-prod-se"]
      }
      TagSnapshotsAtCreate = {
        actions   = ["rds:AddTagsToResource"]
        resources = ["arn:aws:rds:eu-north-1:111111111111:cluster-snapshot:meridian-*"]
      }
      WaitForAndListSnapshots = {
        actions   = ["rds:DescribeDBClusterSnapshots"]
        resources = ["arn:aws:rds:eu-north-1:111111111111:cluster-snapshot:meridian-*", "arn:aws:rds:eu-north-1:111111111111:cluster:meridian-prod-se"]
      }
      PruneOwnSnapshots = {
        actions   = ["rds:DeleteDBClusterSnapshot"]
        resources = ["arn:aws:rds:eu-north-1:111111111111:cluster-snapshot:meridian-*"]
      }
    })
    error_message = "the operator may create (and tag) snapshots of this country's Aurora cluster named meridian-*, describe them and the cluster's list, and delete meridian-* snapshots: exactly those actions on exactly those resources."
  }

  assert {
    condition = (
      alltrue([for r in flatten([for s in data.aws_iam_policy_document.operator_snapshots[0].statement : tolist(s.resources)]) : r != "*"])
      && alltrue([for s in data.aws_iam_policy_document.operator_snapshots[0].statement : alltrue([for a in s.actions : !strcontains(a, "*")])])
      && jsonencode([for c in one([for s in data.aws_iam_policy_document.operator_snapshots[0].statement : s if s.sid == "PruneOwnSnapshots"]).condition : [c.test, c.variable, c.values]]) == jsonencode([["Null", "aws:ResourceTag/meridian:release", ["false"]]])
      && aws_iam_role_policy.operator_snapshots[0].role == aws_iam_role.operator[0].id
    )
    error_message = "no wildcard action and no \"*\" resource; a snapshot is deleted only when it carries the operator's meridian:release tag (not the final snapshot, not one taken by hand)."
  }

  assert {
    condition     = output.rollout_role_arn == null && output.rollout_rbac_manifest == null
    error_message = "outside the management cluster the operator's role is not the Rollout role."
  }
}

run "no_operator_no_role" {
  command = plan

  assert {
    condition     = length(aws_iam_role.operator) == 0 && output.operator_role_arn == null && output.rollout_role_arn == null
    error_message = "without operator there is no operator role."
  }
}

run "operator_needs_an_aurora_cluster_arn" {
  command = plan

  variables {
    operator = { aurora_cluster_arn = "arn:aws:rds:eu-north-1:111111111111:db:meridian-prod-se" }
  }

  expect_failures = [var.operator]
}

# Cross-country Rollouts by IAM role: the management cluster's operator role (IRSA) is the Rollout
# controller's; a target cluster maps that role (from another account) to the group
# meridian:rollout, with no EKS access policy, and RBAC that gets and patches Releases only.
run "rollout_by_iam_role" {
  command = apply

  variables {
    operator = {
      service_account    = { namespace = "meridian-system", name = "meridian-operator" }
      aurora_cluster_arn = "arn:aws:rds:eu-north-1:111111111111:cluster:meridian-prod-se"
      rollout_controller = true
    }
    rollout_principal_arns = ["arn:aws:iam::222222222222:role/meridian-prod-mgmt-operator"]
  }

  assert {
    condition = (
      output.rollout_role_arn != null
      && output.rollout_role_arn == output.operator_role_arn
      && flatten([for c in one(data.aws_iam_policy_document.operator_assume[0].statement).condition : c.values if endswith(c.variable, ":sub")]) == ["system:serviceaccount:meridian-system:meridian-operator"]
      && one(data.aws_iam_policy_document.operator_assume[0].statement).actions == toset(["sts:AssumeRoleWithWebIdentity"])
    )
    error_message = "the Rollout controller's role is the operator's role, trusting its service account (IRSA) and nothing else."
  }

  assert {
    condition = (
      jsonencode([for e in aws_eks_access_entry.rollout : e.principal_arn]) == jsonencode(var.rollout_principal_arns)
      && alltrue([for e in aws_eks_access_entry.rollout : jsonencode(sort(tolist(e.kubernetes_groups))) == jsonencode(["meridian:rollout"]) && e.type == "STANDARD"])
      && length([for a in aws_eks_access_policy_association.admin : a if contains(var.rollout_principal_arns, a.principal_arn)]) == 0
    )
    error_message = "each Rollout principal is the group meridian:rollout, with no EKS access policy."
  }

  assert {
    condition = (
      jsonencode(yamldecode(split("---\n", output.rollout_rbac_manifest)[0]).rules) == jsonencode([{ apiGroups = ["meridian.dev"], resources = ["releases"], verbs = ["get", "patch"] }])
      && yamldecode(split("---\n", output.rollout_rbac_manifest)[1]).subjects[0].name == "meridian:rollout"
    )
    error_message = "the group may get and patch Releases only."
  }
}
