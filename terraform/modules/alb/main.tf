# One ALB layout for both platforms: the target groups (target_type = ip), listener rules and
# /readyz health checks are created here. ECS services register tasks through their
# load_balancer block; on EKS the AWS Load Balancer Controller registers pod IPs through a
# TargetGroupBinding that points at each service's *active* Kubernetes Service, so the
# operator's blue/green selector switch moves ALB traffic without touching the ALB.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  partition           = data.aws_partition.current.partition
  log_prefix          = "alb"
  internal_log_prefix = "alb-internal"

  # Services with admin routes: the public listener answers those paths 404; the internal ALB
  # (scheme internal, reachable from the VPC and var.admin_ingress_cidrs only) forwards them.
  admin_services = { for k, s in var.services : k => s if length(s.admin_path_patterns) + length(s.admin_method_routes) > 0 }
  internal       = length(local.admin_services) > 0
  path_admin     = { for k, s in var.services : k => s if length(s.admin_path_patterns) > 0 }
  # "<service>-<i>" => one admin method route with its listener priority (priority - 2 - i).
  method_admin = merge([
    for k, s in var.services : {
      for i, r in s.admin_method_routes : "${k}-${i}" => {
        service       = k
        priority      = s.priority - 2 - i
        path_patterns = r.path_patterns
        methods       = r.methods
      }
    }
  ]...)

  not_found = {
    content_type = "application/json"
    status_code  = "404"
    message_body = "{\"type\":\"about:blank\",\"title\":\"Not Found\",\"status\":404}"
  }
}

# ----------------------------------------------------------------------------- security group

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "ALB ${var.name}: HTTPS in, service ports out to the VPC"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-alb" })
}

resource "aws_vpc_security_group_ingress_rule" "https" {
  for_each = toset(var.ingress_cidrs)

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from ${each.key}"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.key
}

resource "aws_vpc_security_group_egress_rule" "targets" {
  for_each = toset([for s in values(var.services) : tostring(s.port)])

  security_group_id = aws_security_group.alb.id
  description       = "To service targets on ${each.key}"
  ip_protocol       = "tcp"
  from_port         = tonumber(each.key)
  to_port           = tonumber(each.key)
  cidr_ipv4         = var.vpc_cidr
}

# ----------------------------------------------------------------------------- access logs bucket
# ALB access logs only support SSE-S3 (not SSE-KMS).

resource "aws_s3_bucket" "logs" {
  # checkov:skip=CKV_AWS_18:this is the access-log bucket; logging it to itself would loop, and a second bucket per country adds cost for no reader
  # checkov:skip=CKV_AWS_144:ALB access logs are diagnostic, 365-day retention in-region is enough; replication would double the storage bill
  # checkov:skip=CKV_AWS_145:ALB access log delivery supports only SSE-S3 (AES256), not SSE-KMS
  # checkov:skip=CKV2_AWS_62:nothing consumes object-created events of access logs
  bucket_prefix = "${var.name}-alb-logs-"
  force_destroy = false
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket                  = aws_s3_bucket.logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    id     = "expire"
    status = "Enabled"
    filter {}

    expiration {
      days = var.log_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 30
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

data "aws_iam_policy_document" "logs" {
  statement {
    sid     = "ElbLogDelivery"
    actions = ["s3:PutObject"]
    resources = [
      for prefix in [local.log_prefix, local.internal_log_prefix] :
      "${aws_s3_bucket.logs.arn}/${prefix}/AWSLogs/${data.aws_caller_identity.current.account_id}/*"
    ]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${var.elb_log_delivery_account_id}:root"]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.logs.arn, "${aws_s3_bucket.logs.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "logs" {
  bucket = aws_s3_bucket.logs.id
  policy = data.aws_iam_policy_document.logs.json
}

# ----------------------------------------------------------------------------- load balancer

resource "aws_lb" "this" {
  # checkov:skip=CKV2_AWS_76:the check also demands AWSManagedRulesAnonymousIpList, which blocks hosting-provider IPs where customers' cloud PBXes live; Log4j is covered by KnownBadInputs (rule aws-known-bad-inputs)
  name               = var.name
  load_balancer_type = "application"
  internal           = false
  subnets            = var.public_subnet_ids
  security_groups    = [aws_security_group.alb.id]

  drop_invalid_header_fields = true
  enable_deletion_protection = true
  idle_timeout               = var.idle_timeout
  # Route 53 ARC zonal shift: moves this ALB's traffic out of an impaired AZ
  # (runbooks/procedures/region-evacuation.md).
  enable_zonal_shift = true

  access_logs {
    bucket  = aws_s3_bucket.logs.id
    prefix  = local.log_prefix
    enabled = true
  }

  tags = var.tags

  depends_on = [aws_s3_bucket_policy.logs]
}

resource "aws_lb_target_group" "this" {
  # checkov:skip=CKV_AWS_378:TLS terminates at the ALB (TLS 1.3 policy); ALB -> pod/task is HTTP inside the VPC, restricted by security groups
  for_each = var.services

  name                 = "${var.name}-${each.key}"
  vpc_id               = var.vpc_id
  target_type          = "ip"
  protocol             = "HTTP"
  port                 = each.value.port
  deregistration_delay = var.deregistration_delay

  health_check {
    enabled             = true
    path                = each.value.health_path
    protocol            = "HTTP"
    port                = "traffic-port"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = merge(var.tags, { Service = each.key })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type = "fixed-response"
    fixed_response {
      content_type = local.not_found.content_type
      status_code  = local.not_found.status_code
      message_body = local.not_found.message_body
    }
  }

  tags = var.tags
}

# Admin routes are not on the internet: answered 404 here, one priority before the service's
# forward rule (a listener evaluates rules in priority order, first match wins). Same body as
# the default action, so the public side does not learn that the path exists.
resource "aws_lb_listener_rule" "admin_not_public" {
  for_each = local.path_admin

  listener_arn = aws_lb_listener.https.arn
  priority     = each.value.priority - 1

  condition {
    path_pattern {
      values = each.value.admin_path_patterns
    }
  }

  action {
    type = "fixed-response"
    fixed_response {
      content_type = local.not_found.content_type
      status_code  = local.not_found.status_code
      message_body = local.not_found.message_body
    }
  }

  tags = merge(var.tags, { Service = each.key })
}

# Admin methods on public paths (e.g. PUT/DELETE of a streams user's limit): 404 here too.
resource "aws_lb_listener_rule" "admin_method_not_public" {
  for_each = local.method_admin

  listener_arn = aws_lb_listener.https.arn
  priority     = each.value.priority

  condition {
    path_pattern {
      values = each.value.path_patterns
    }
  }

  condition {
    http_request_method {
      values = each.value.methods
    }
  }

  action {
    type = "fixed-response"
    fixed_response {
      content_type = local.not_found.content_type
      status_code  = local.not_found.status_code
      message_body = local.not_found.message_body
    }
  }

  tags = merge(var.tags, { Service = each.value.service })
}

resource "aws_lb_listener_rule" "service" {
  for_each = var.services

  listener_arn = aws_lb_listener.https.arn
  priority     = each.value.priority

  condition {
    path_pattern {
      values = each.value.path_pattern
    }
  }

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this[each.key].arn
  }

  tags = merge(var.tags, { Service = each.key })

  lifecycle {
    # With blue_green (ECS), `meridian-deploy ecs` points this rule at the active colour's target
    # group (blue: `this`, green: `green`); Terraform creates it on blue and leaves it. On EKS the
    # action never changes (the TargetGroupBinding moves pods, not the rule), so ignoring it costs
    # nothing there, except that replacing `this` needs `terraform apply -replace` of the rule.
    ignore_changes = [action]
  }
}

# ----------------------------------------------------------------------------- blue-green (ECS)
# On ECS a colour is an ECS service with its own target group: blue registers in `this`, green in
# `green`. The public rule above forwards to the active one; a test listener (preview_port,
# reachable from preview_ingress_cidrs only) forwards the same paths to the colour being analysed,
# which is what `meridian-deploy ecs` probes before it moves the public rule (deploy/ecs).

resource "aws_lb_target_group" "green" {
  # checkov:skip=CKV_AWS_378:TLS terminates at the ALB (TLS 1.3 policy); ALB -> task is HTTP inside the VPC, restricted by security groups
  for_each = var.blue_green ? var.services : {}

  # 26 + "-green": within the 32 characters a target group name may have.
  name                 = "${substr("${var.name}-${each.key}", 0, 26)}-green"
  vpc_id               = var.vpc_id
  target_type          = "ip"
  protocol             = "HTTP"
  port                 = each.value.port
  deregistration_delay = var.deregistration_delay

  health_check {
    enabled             = true
    path                = each.value.health_path
    protocol            = "HTTP"
    port                = "traffic-port"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = merge(var.tags, { Service = each.key, Colour = "green" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "preview" {
  for_each = var.blue_green ? toset(var.preview_ingress_cidrs) : toset([])

  security_group_id = aws_security_group.alb.id
  description       = "Test listener (blue-green preview) from ${each.key}"
  ip_protocol       = "tcp"
  from_port         = var.preview_port
  to_port           = var.preview_port
  cidr_ipv4         = each.key
}

resource "aws_lb_listener" "preview" {
  count = var.blue_green ? 1 : 0

  load_balancer_arn = aws_lb.this.arn
  port              = var.preview_port
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type = "fixed-response"
    fixed_response {
      content_type = local.not_found.content_type
      status_code  = local.not_found.status_code
      message_body = local.not_found.message_body
    }
  }

  tags = var.tags
}

# Admin paths are not previewed either: the same 404 as on the public listener.
resource "aws_lb_listener_rule" "preview_admin_not_public" {
  for_each = var.blue_green ? local.path_admin : {}

  listener_arn = aws_lb_listener.preview[0].arn
  priority     = each.value.priority - 1

  condition {
    path_pattern {
      values = each.value.admin_path_patterns
    }
  }

  action {
    type = "fixed-response"
    fixed_response {
      content_type = local.not_found.content_type
      status_code  = local.not_found.status_code
      message_body = local.not_found.message_body
    }
  }

  tags = merge(var.tags, { Service = each.key })
}

resource "aws_lb_listener_rule" "preview_admin_method_not_public" {
  for_each = var.blue_green ? local.method_admin : {}

  listener_arn = aws_lb_listener.preview[0].arn
  priority     = each.value.priority

  condition {
    path_pattern {
      values = each.value.path_patterns
    }
  }

  condition {
    http_request_method {
      values = each.value.methods
    }
  }

  action {
    type = "fixed-response"
    fixed_response {
      content_type = local.not_found.content_type
      status_code  = local.not_found.status_code
      message_body = local.not_found.message_body
    }
  }

  tags = merge(var.tags, { Service = each.value.service })
}

resource "aws_lb_listener_rule" "preview" {
  for_each = var.blue_green ? var.services : {}

  listener_arn = aws_lb_listener.preview[0].arn
  priority     = each.value.priority

  condition {
    path_pattern {
      values = each.value.path_pattern
    }
  }

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.green[each.key].arn
  }

  tags = merge(var.tags, { Service = each.key })

  lifecycle {
    # meridian-deploy ecs points it at the colour it analyses.
    ignore_changes = [action]
  }
}

# ----------------------------------------------------------------------------- internal ALB (admin routes)
# Bearer-token API clients (operators' tooling, the pipeline) call the admin routes; ALB
# authenticate-oidc would turn them into browser redirects, so they get a separate internal
# ALB instead of an authenticating rule on the public one. The service still checks the
# token's admin scope on every request: this is the network layer in front of it.

resource "aws_security_group" "internal" {
  count = local.internal ? 1 : 0

  name        = "${var.name}-alb-internal"
  description = "Internal ALB ${var.name}: HTTPS from the VPC and admin networks, service ports out"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-alb-internal" })
}

resource "aws_vpc_security_group_ingress_rule" "internal_https" {
  for_each = local.internal ? toset(distinct(concat([var.vpc_cidr], var.admin_ingress_cidrs))) : toset([])

  security_group_id = aws_security_group.internal[0].id
  description       = "HTTPS from ${each.key}"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.key
}

resource "aws_vpc_security_group_egress_rule" "internal_targets" {
  for_each = toset([for s in values(local.admin_services) : tostring(s.port)])

  security_group_id = aws_security_group.internal[0].id
  description       = "To admin service targets on ${each.key}"
  ip_protocol       = "tcp"
  from_port         = tonumber(each.key)
  to_port           = tonumber(each.key)
  cidr_ipv4         = var.vpc_cidr
}

resource "aws_lb" "internal" {
  # checkov:skip=CKV2_AWS_76:internal ALB, unreachable from the internet (private subnets, security group admits the VPC and admin CIDRs); its callers are operators' tooling with admin tokens, the WAF's public-traffic rules (anonymous IPs, Log4j payloads) protect the public ALB
  count = local.internal ? 1 : 0

  name               = "${var.name}-int"
  load_balancer_type = "application"
  internal           = true
  subnets            = var.private_subnet_ids
  security_groups    = [aws_security_group.internal[0].id]

  drop_invalid_header_fields = true
  enable_deletion_protection = true
  idle_timeout               = var.idle_timeout
  enable_zonal_shift         = true

  access_logs {
    bucket  = aws_s3_bucket.logs.id
    prefix  = local.internal_log_prefix
    enabled = true
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = length(var.private_subnet_ids) >= 2
      error_message = "services with admin paths need the internal ALB: pass private_subnet_ids (two AZs at least)."
    }
  }

  depends_on = [aws_s3_bucket_policy.logs]
}

# A target group belongs to one load balancer, so the admin routes get their own, registered
# with the same tasks/pods as the service's public one (ECS: a second load_balancer block; EKS:
# a second TargetGroupBinding, output target_group_bindings).
resource "aws_lb_target_group" "admin" {
  # checkov:skip=CKV_AWS_378:TLS terminates at the internal ALB (TLS 1.3 policy); ALB -> pod/task is HTTP inside the VPC, restricted by security groups
  for_each = local.admin_services

  name                 = "${var.name}-${each.key}-adm"
  vpc_id               = var.vpc_id
  target_type          = "ip"
  protocol             = "HTTP"
  port                 = each.value.port
  deregistration_delay = var.deregistration_delay

  health_check {
    enabled             = true
    path                = each.value.health_path
    protocol            = "HTTP"
    port                = "traffic-port"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = merge(var.tags, { Service = each.key, Listener = "internal" })

  lifecycle {
    create_before_destroy = true

    precondition {
      condition     = length("${var.name}-${each.key}-adm") <= 32
      error_message = "target group name ${var.name}-${each.key}-adm is longer than 32 characters."
    }
  }
}

resource "aws_lb_listener" "internal_https" {
  count = local.internal ? 1 : 0

  load_balancer_arn = aws_lb.internal[0].arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = coalesce(var.admin_certificate_arn, var.certificate_arn)

  default_action {
    type = "fixed-response"
    fixed_response {
      content_type = local.not_found.content_type
      status_code  = local.not_found.status_code
      message_body = local.not_found.message_body
    }
  }

  tags = var.tags
}

resource "aws_lb_listener_rule" "admin" {
  for_each = local.path_admin

  listener_arn = aws_lb_listener.internal_https[0].arn
  priority     = each.value.priority

  condition {
    path_pattern {
      values = each.value.admin_path_patterns
    }
  }

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.admin[each.key].arn
  }

  tags = merge(var.tags, { Service = each.key })
}

resource "aws_lb_listener_rule" "admin_method" {
  for_each = local.method_admin

  listener_arn = aws_lb_listener.internal_https[0].arn
  priority     = each.value.priority

  condition {
    path_pattern {
      values = each.value.path_patterns
    }
  }

  condition {
    http_request_method {
      values = each.value.methods
    }
  }

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.admin[each.value.service].arn
  }

  tags = merge(var.tags, { Service = each.value.service })
}

# ----------------------------------------------------------------------------- WAF

# The telephony platform sends every call decision (/calls/v1/decisions) from a few addresses:
# per IP it exceeds the rate limit at about 67 requests/s, so its ranges are not rate-limited
# (the webhook is HMAC-signed, and the managed rule groups below still inspect it).
resource "aws_wafv2_ip_set" "rate_limit_exempt" {
  count = var.enable_waf && length(var.waf_rate_limit_exempt_cidrs) > 0 ? 1 : 0

  name               = "${var.name}-rate-limit-exempt"
  scope              = "REGIONAL"
  ip_address_version = "IPV4"
  addresses          = var.waf_rate_limit_exempt_cidrs
  tags               = var.tags
}

resource "aws_wafv2_web_acl" "this" {
  count = var.enable_waf ? 1 : 0

  name  = var.name
  scope = "REGIONAL"

  default_action {
    allow {}
  }

  rule {
    name     = "rate-limit-per-ip"
    priority = 1
    action {
      block {}
    }
    statement {
      rate_based_statement {
        limit              = var.waf_rate_limit
        aggregate_key_type = "IP"

        # Only requests from outside the exempt ranges count and are blocked.
        dynamic "scope_down_statement" {
          for_each = aws_wafv2_ip_set.rate_limit_exempt
          content {
            not_statement {
              statement {
                ip_set_reference_statement {
                  arn = scope_down_statement.value.arn
                }
              }
            }
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-rate-limit"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-common"
    priority = 10
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesCommonRuleSet"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-common"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-known-bad-inputs"
    priority = 20
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-known-bad-inputs"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = var.name
    sampled_requests_enabled   = true
  }

  tags = var.tags
}

resource "aws_wafv2_web_acl_association" "this" {
  count = var.enable_waf ? 1 : 0

  resource_arn = aws_lb.this.arn
  web_acl_arn  = aws_wafv2_web_acl.this[0].arn
}

resource "aws_cloudwatch_log_group" "waf" {
  count = var.enable_waf ? 1 : 0

  # WAF requires the aws-waf-logs- prefix.
  name              = "aws-waf-logs-${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.logs_kms_key_arn
  tags              = var.tags
}

resource "aws_wafv2_web_acl_logging_configuration" "this" {
  count = var.enable_waf ? 1 : 0

  resource_arn            = aws_wafv2_web_acl.this[0].arn
  log_destination_configs = [aws_cloudwatch_log_group.waf[0].arn]
}

# ----------------------------------------------------------------------------- AWS Load Balancer Controller (EKS)
# IAM for the controller via EKS Pod Identity. The chart itself and the TargetGroupBindings are
# applied by the Buildkite cluster-addons step from inside the VPC: the API endpoint is private,
# so Terraform (running outside) does not talk to Kubernetes.

data "aws_iam_policy_document" "lbc_assume" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]
    principals {
      type        = "Service"
      identifiers = ["pods.eks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lbc" {
  count = var.eks_cluster_name == null ? 0 : 1

  name               = "${var.name}-aws-lb-controller"
  assume_role_policy = data.aws_iam_policy_document.lbc_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "lbc" {
  statement {
    sid = "Describe"
    actions = [
      "ec2:DescribeAvailabilityZones",
      "ec2:DescribeInstances",
      "ec2:DescribeNetworkInterfaces",
      "ec2:DescribeSecurityGroups",
      "ec2:DescribeSubnets",
      "ec2:DescribeVpcs",
      "elasticloadbalancing:DescribeListeners",
      "elasticloadbalancing:DescribeListenerAttributes",
      "elasticloadbalancing:DescribeLoadBalancers",
      "elasticloadbalancing:DescribeRules",
      "elasticloadbalancing:DescribeTags",
      "elasticloadbalancing:DescribeTargetGroupAttributes",
      "elasticloadbalancing:DescribeTargetGroups",
      "elasticloadbalancing:DescribeTargetHealth",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "RegisterPodsInOurTargetGroups"
    actions   = ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"]
    resources = concat([for tg in aws_lb_target_group.this : tg.arn], [for tg in aws_lb_target_group.admin : tg.arn])
  }

  # No ec2:AuthorizeSecurityGroupIngress: the TargetGroupBindings carry no `networking`, so the
  # controller never edits security groups. The pods' ingress from both ALBs is a Terraform rule
  # on the EKS cluster security group (modules/eks, pod_ingress), visible in every plan.
}

resource "aws_iam_role_policy" "lbc" {
  count = var.eks_cluster_name == null ? 0 : 1

  name   = "target-group-binding"
  role   = aws_iam_role.lbc[0].id
  policy = data.aws_iam_policy_document.lbc.json
}

resource "aws_eks_pod_identity_association" "lbc" {
  count = var.eks_cluster_name == null ? 0 : 1

  cluster_name    = var.eks_cluster_name
  namespace       = "kube-system"
  service_account = "aws-load-balancer-controller"
  role_arn        = aws_iam_role.lbc[0].arn
  tags            = var.tags
}
