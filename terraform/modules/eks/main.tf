data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  partition = data.aws_partition.current.partition
}

# ----------------------------------------------------------------------------- secrets encryption key

data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_109:KMS key policy: "*" means this key; the account root statement is the AWS default key policy
  # checkov:skip=CKV_AWS_111:KMS key policy: "*" means this key; the account root statement is the AWS default key policy
  # checkov:skip=CKV_AWS_356:KMS key policy: "*" means this key; the account root statement is the AWS default key policy
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "${var.cluster_name}: Kubernetes secrets envelope encryption"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.cluster_name}-eks"
  target_key_id = aws_kms_key.this.key_id
}

# ----------------------------------------------------------------------------- control plane

data "aws_iam_policy_document" "cluster_assume" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]
    principals {
      type        = "Service"
      identifiers = ["eks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "cluster" {
  name               = "${var.cluster_name}-eks-cluster"
  assume_role_policy = data.aws_iam_policy_document.cluster_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "cluster" {
  role       = aws_iam_role.cluster.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonEKSClusterPolicy"
}

# Created before the cluster so EKS does not create an unencrypted one with infinite retention.
resource "aws_cloudwatch_log_group" "cluster" {
  name              = "/aws/eks/${var.cluster_name}/cluster"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.logs_kms_key_arn
  tags              = var.tags
}

resource "aws_security_group" "cluster_api" {
  name        = "${var.cluster_name}-eks-api"
  description = "Extra rules for the private EKS API endpoint"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.cluster_name}-eks-api" })
}

resource "aws_vpc_security_group_ingress_rule" "api" {
  for_each = toset(var.api_allowed_cidrs)

  security_group_id = aws_security_group.cluster_api.id
  description       = "Kubernetes API from ${each.key}"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.key
}

resource "aws_eks_cluster" "this" {
  name     = var.cluster_name
  version  = var.kubernetes_version
  role_arn = aws_iam_role.cluster.arn

  enabled_cluster_log_types = var.cluster_log_types

  vpc_config {
    subnet_ids              = var.subnet_ids
    security_group_ids      = [aws_security_group.cluster_api.id]
    endpoint_private_access = true
    endpoint_public_access  = var.endpoint_public_access
    public_access_cidrs     = var.endpoint_public_access ? var.endpoint_public_access_cidrs : null
  }

  encryption_config {
    resources = ["secrets"]
    provider {
      key_arn = aws_kms_key.this.arn
    }
  }

  access_config {
    authentication_mode                         = "API"
    bootstrap_cluster_creator_admin_permissions = false
  }

  upgrade_policy {
    support_type = "STANDARD"
  }

  tags = var.tags

  depends_on = [
    aws_iam_role_policy_attachment.cluster,
    aws_cloudwatch_log_group.cluster,
  ]

  lifecycle {
    precondition {
      condition     = !var.endpoint_public_access || length(var.endpoint_public_access_cidrs) > 0
      error_message = "a public endpoint needs an explicit endpoint_public_access_cidrs allow-list."
    }
  }
}

resource "aws_eks_access_entry" "admin" {
  for_each = toset(var.admin_role_arns)

  cluster_name  = aws_eks_cluster.this.name
  principal_arn = each.key
  type          = "STANDARD"
}

resource "aws_eks_access_policy_association" "admin" {
  for_each = toset(var.admin_role_arns)

  cluster_name  = aws_eks_cluster.this.name
  principal_arn = each.key
  policy_arn    = "arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"

  access_scope {
    type = "cluster"
  }

  depends_on = [aws_eks_access_entry.admin]
}

# The pods' ingress: EKS creates the cluster security group admitting only itself; the managed
# nodes (no security groups in their launch template) and so every pod carry it. Each load
# balancer's group is allowed in on the service port here, not by the LB Controller (its
# TargetGroupBindings carry no `networking`, its role cannot edit security groups).
resource "aws_vpc_security_group_ingress_rule" "pods" {
  for_each = var.pod_ingress

  security_group_id            = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
  description                  = "Pods on ${each.value.port} from ${each.key}"
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
  referenced_security_group_id = each.value.security_group_id
}

# ----------------------------------------------------------------------------- IRSA + pod identity
# Both are offered: EKS Pod Identity (agent add-on below) is the default for new roles
# (the alb module uses it); the OIDC provider keeps IRSA available for charts that need it.

# No thumbprint_list: IAM obtains it itself when none is given and verifies the EKS issuer
# against its own trusted root CAs, so fetching the certificate here (tls provider) added nothing.
resource "aws_iam_openid_connect_provider" "this" {
  url            = aws_eks_cluster.this.identity[0].oidc[0].issuer
  client_id_list = ["sts.amazonaws.com"]
  tags           = var.tags
}

# ----------------------------------------------------------------------------- nodes

data "aws_iam_policy_document" "node_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  name               = "${var.cluster_name}-eks-node"
  assume_role_policy = data.aws_iam_policy_document.node_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "node" {
  for_each = toset([
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
    "AmazonSSMManagedInstanceCore",
  ])

  role       = aws_iam_role.node.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/${each.key}"
}

# IMDSv2 only, hop limit 1: pods cannot reach node credentials; they use pod identity.
resource "aws_launch_template" "node" {
  for_each = var.node_groups

  name_prefix            = "${var.cluster_name}-${each.key}-"
  update_default_version = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = each.value.disk_size
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(var.tags, { Name = "${var.cluster_name}-${each.key}" })
  }

  tags = var.tags
}

resource "aws_eks_node_group" "this" {
  for_each = var.node_groups

  cluster_name    = aws_eks_cluster.this.name
  node_group_name = each.key
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = var.subnet_ids
  version         = var.kubernetes_version

  ami_type       = each.value.ami_type
  capacity_type  = each.value.capacity_type
  instance_types = each.value.instance_types
  labels         = merge(each.value.labels, { "meridian.io/node-group" = each.key })

  launch_template {
    id      = aws_launch_template.node[each.key].id
    version = aws_launch_template.node[each.key].latest_version
  }

  scaling_config {
    min_size     = each.value.min_size
    desired_size = each.value.desired_size
    max_size     = each.value.max_size
  }

  update_config {
    max_unavailable_percentage = 33
  }

  tags = var.tags

  depends_on = [aws_iam_role_policy_attachment.node]

  lifecycle {
    # The cluster autoscaler / Karpenter owns desired_size after creation.
    ignore_changes = [scaling_config[0].desired_size]
  }
}

# ----------------------------------------------------------------------------- add-ons

resource "aws_eks_addon" "this" {
  for_each = toset(["vpc-cni", "kube-proxy", "coredns", "eks-pod-identity-agent"])

  cluster_name                = aws_eks_cluster.this.name
  addon_name                  = each.key
  resolve_conflicts_on_create = "OVERWRITE"
  resolve_conflicts_on_update = "PRESERVE"
  tags                        = var.tags

  depends_on = [aws_eks_node_group.this]
}

# ----------------------------------------------------------------------------- node autoscaling
# cluster-autoscaler (chart installed from the deploy agent like the LB Controller, service
# account kube-system/cluster-autoscaler annotated with this role, IRSA) grows each managed node
# group up to its max_size and shrinks it to min_size. EKS tags every managed node group's Auto
# Scaling group k8s.io/cluster-autoscaler/<cluster> = owned: the role may resize only those.

data "aws_iam_policy_document" "cluster_autoscaler_assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.this.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${replace(aws_eks_cluster.this.identity[0].oidc[0].issuer, "https://", "")}:sub"
      values   = ["system:serviceaccount:${var.cluster_autoscaler_service_account.namespace}:${var.cluster_autoscaler_service_account.name}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${replace(aws_eks_cluster.this.identity[0].oidc[0].issuer, "https://", "")}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "cluster_autoscaler" {
  name               = "${var.cluster_name}-cluster-autoscaler"
  assume_role_policy = data.aws_iam_policy_document.cluster_autoscaler_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "cluster_autoscaler" {
  statement {
    sid = "Discover"
    actions = [
      "autoscaling:DescribeAutoScalingGroups",
      "autoscaling:DescribeAutoScalingInstances",
      "autoscaling:DescribeLaunchConfigurations",
      "autoscaling:DescribeScalingActivities",
      "autoscaling:DescribeTags",
      "ec2:DescribeImages",
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeLaunchTemplateVersions",
      "ec2:GetInstanceTypesFromInstanceRequirements",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "DescribeOwnNodeGroups"
    actions   = ["eks:DescribeNodegroup"]
    resources = ["arn:${local.partition}:eks:*:${data.aws_caller_identity.current.account_id}:nodegroup/${var.cluster_name}/*/*"]
  }

  statement {
    sid = "ResizeOwnNodeGroups"
    actions = [
      "autoscaling:SetDesiredCapacity",
      "autoscaling:TerminateInstanceInAutoScalingGroup",
    ]
    resources = ["arn:${local.partition}:autoscaling:*:${data.aws_caller_identity.current.account_id}:autoScalingGroup:*:autoScalingGroupName/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/k8s.io/cluster-autoscaler/${var.cluster_name}"
      values   = ["owned"]
    }
  }
}

resource "aws_iam_role_policy" "cluster_autoscaler" {
  name   = "cluster-autoscaler"
  role   = aws_iam_role.cluster_autoscaler.id
  policy = data.aws_iam_policy_document.cluster_autoscaler.json
}

# ----------------------------------------------------------------------------- the operator's role
# One IAM role per cluster for the meridian operator (input `operator`), assumed by its service
# account through IRSA: annotate meridian-system/meridian-operator with
# eks.amazonaws.com/role-arn = output operator_role_arn. One service account gets one set of
# credentials (the SDKs' chain takes IRSA's web identity before Pod Identity's container
# credentials), so everything the operator does with AWS is granted to this role:
#  - snapshot before migrate (operator/src/release/snapshot.rs): the policy below;
#  - in prometheus-mode countries, querying AMP (modules/observability attaches that policy to
#    this role by name, output operator_role_name);
#  - in the management cluster (operator.rollout_controller), cross-country Rollouts: the
#    Rollout controller signs EKS tokens for the other countries' clusters itself
#    (operator/src/rollout/eks_token.rs, a presigned sts:GetCallerIdentity, which needs no IAM
#    permission), and each target cluster maps this role (output rollout_role_arn) through an
#    access entry to the group meridian:rollout, which the Role of rollout_rbac_manifest lets get
#    and patch Releases, nothing else. No kubeconfig holds a secret.

locals {
  operator = var.operator != null
  # arn:<partition>:rds:<region>:<account> of the country's Aurora cluster, and the snapshots the
  # operator takes of it: meridian-<service>-<spec hash>-<stamp> (snapshot.rs PREFIX "meridian-").
  operator_rds_prefix   = local.operator ? join(":", slice(split(":", var.operator.aurora_cluster_arn), 0, 5)) : null
  operator_snapshot_arn = local.operator ? "${local.operator_rds_prefix}:cluster-snapshot:meridian-*" : null
  oidc_issuer_host      = replace(aws_eks_cluster.this.identity[0].oidc[0].issuer, "https://", "")
}

data "aws_iam_policy_document" "operator_assume" {
  count = local.operator ? 1 : 0

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.this.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer_host}:sub"
      values   = ["system:serviceaccount:${var.operator.service_account.namespace}:${var.operator.service_account.name}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "operator" {
  count = local.operator ? 1 : 0

  name               = "${var.cluster_name}-operator"
  assume_role_policy = data.aws_iam_policy_document.operator_assume[0].json
  tags               = var.tags
}

# Snapshot before migrate: a manual cluster snapshot meridian-<service>-... of the country's
# Aurora cluster before each migration Job, waited for, older ones pruned. Resource-level
# permissions as the Service Authorization Reference (Amazon RDS) lists them:
#  - CreateDBClusterSnapshot needs both the cluster and the new snapshot; with Tags in the
#    request it also needs AddTagsToResource on the snapshot.
#  - DescribeDBClusterSnapshots is authorized on the cluster when called with
#    DBClusterIdentifier (the list of its manual snapshots) and on the snapshot when called with
#    DBClusterSnapshotIdentifier (one by name); the operator makes only those two calls.
#  - DeleteDBClusterSnapshot: only meridian-* snapshots that carry the operator's
#    meridian:release tag (set at create), so neither the aurora module's final snapshot
#    (<cluster>-final, also "meridian-...") nor one taken by hand can be pruned by it.
# KMS: the cluster's storage is encrypted with the country's customer managed key, and this role
# gets no KMS permission. A cluster snapshot is encrypted with the cluster's own key:
# CreateDBClusterSnapshot takes no KmsKeyId, unlike CopyDBClusterSnapshot and the restores. The
# Aurora user guide ("AWS KMS key management") asks the caller for kms:CreateGrant and
# kms:DescribeKey to create a resource *with* a customer managed key, which is what a cluster, a
# copy to another key and a restore do; AWS's aurora-snapshot-tool (awslabs) takes and deletes
# snapshots of CMK-encrypted clusters with an rds-only role, its KMS needs being the copies'. Not
# proven here against AWS (moto evaluates no IAM): if a first snapshot is refused with
# KMSKeyNotAccessibleFault, grant kms:CreateGrant + kms:DescribeKey on the key with
# kms:ViaService = rds.<region>.amazonaws.com. Restoring (runbooks/procedures/
# restore-from-snapshot.md) is a person's role, which does need the key.
data "aws_iam_policy_document" "operator_snapshots" {
  count = local.operator ? 1 : 0

  statement {
    sid       = "SnapshotBeforeMigrate"
    actions   = ["rds:CreateDBClusterSnapshot"]
    resources = [var.operator.aurora_cluster_arn, local.operator_snapshot_arn]
  }

  statement {
    sid       = "TagSnapshotsAtCreate"
    actions   = ["rds:AddTagsToResource"]
    resources = [local.operator_snapshot_arn]
  }

  statement {
    sid       = "WaitForAndListSnapshots"
    actions   = ["rds:DescribeDBClusterSnapshots"]
    resources = [var.operator.aurora_cluster_arn, local.operator_snapshot_arn]
  }

  statement {
    sid       = "PruneOwnSnapshots"
    actions   = ["rds:DeleteDBClusterSnapshot"]
    resources = [local.operator_snapshot_arn]
    condition {
      test     = "Null"
      variable = "aws:ResourceTag/meridian:release"
      values   = ["false"]
    }
  }
}

resource "aws_iam_role_policy" "operator_snapshots" {
  count = local.operator ? 1 : 0

  name   = "rds-snapshot-before-migrate"
  role   = aws_iam_role.operator[0].id
  policy = data.aws_iam_policy_document.operator_snapshots[0].json
}

# In a target country: the management operator's role (another account is fine for a STANDARD
# entry) as the Kubernetes group meridian:rollout, with no EKS access policy: only the RBAC below.
resource "aws_eks_access_entry" "rollout" {
  for_each = toset(var.rollout_principal_arns)

  cluster_name      = aws_eks_cluster.this.name
  principal_arn     = each.key
  type              = "STANDARD"
  kubernetes_groups = [local.rollout_group]
}

locals {
  rollout_group = "meridian:rollout"
  # Applied by the Buildkite cluster-addons step like the other manifests (Terraform does not
  # talk to the private API endpoint): get and patch of the Releases in the services' namespace.
  rollout_rbac_manifest = length(var.rollout_principal_arns) == 0 ? null : join("---\n", [
    yamlencode({
      apiVersion = "rbac.authorization.k8s.io/v1"
      kind       = "Role"
      metadata   = { name = "meridian-rollout", namespace = var.rollout_release_namespace }
      rules      = [{ apiGroups = ["meridian.dev"], resources = ["releases"], verbs = ["get", "patch"] }]
    }),
    yamlencode({
      apiVersion = "rbac.authorization.k8s.io/v1"
      kind       = "RoleBinding"
      metadata   = { name = "meridian-rollout", namespace = var.rollout_release_namespace }
      roleRef    = { apiGroup = "rbac.authorization.k8s.io", kind = "Role", name = "meridian-rollout" }
      subjects   = [{ apiGroup = "rbac.authorization.k8s.io", kind = "Group", name = local.rollout_group }]
    }),
  ])
}
