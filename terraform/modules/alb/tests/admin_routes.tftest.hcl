# Offline, with a mocked aws provider: which rule answers which path, on the public and on the
# internal listener, with the services as modules/plan routes them for a real country.
#
# The listener semantics are evaluated here: rules in priority order, the first whose path
# pattern matches wins (ALB patterns: * = any characters, ? = one character, case-sensitive).

mock_provider "aws" {
  # Providers validate ARNs and policy JSON even when mocked.
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "111111111111" }
  }
  mock_resource "aws_lb" {
    defaults = { arn = "arn:aws:elasticloadbalancing:eu-north-1:111111111111:loadbalancer/app/mock/0123456789abcdef" }
  }
  mock_resource "aws_lb_listener" {
    defaults = { arn = "arn:aws:elasticloadbalancing:eu-north-1:111111111111:listener/app/mock/0123456789abcdef/0123456789abcdef" }
  }
  mock_resource "aws_lb_target_group" {
    defaults = { arn = "arn:aws:elasticloadbalancing:eu-north-1:111111111111:targetgroup/mock/0123456789abcdef" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::mock-alb-logs", id = "mock-alb-logs" }
  }
  mock_resource "aws_wafv2_web_acl" {
    defaults = { arn = "arn:aws:wafv2:eu-north-1:111111111111:regional/webacl/mock/00000000-0000-0000-0000-000000000000" }
  }
  mock_resource "aws_wafv2_ip_set" {
    defaults = { arn = "arn:aws:wafv2:eu-north-1:111111111111:regional/ipset/mock/00000000-0000-0000-0000-000000000001" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:eu-north-1:111111111111:log-group:aws-waf-logs-mock" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::111111111111:role/mock" }
  }
}

run "plan" {
  module {
    source = "../plan"
  }

  variables {
    country = "se"
  }
}

run "admin_routes_only_on_the_internal_alb" {
  command = apply

  variables {
    name               = "meridian-prod-se"
    vpc_id             = "vpc-0123456789abcdef0"
    vpc_cidr           = run.plan.vpc_cidr
    public_subnet_ids  = ["subnet-a", "subnet-b", "subnet-c"]
    private_subnet_ids = ["subnet-d", "subnet-e", "subnet-f"]
    certificate_arn    = "arn:aws:acm:eu-north-1:111111111111:certificate/00000000-0000-0000-0000-000000000000"
    logs_kms_key_arn   = "arn:aws:kms:eu-north-1:111111111111:key/00000000-0000-0000-0000-000000000000"
    eks_cluster_name   = "meridian-prod-se"
    services = {
      for k, s in run.plan.services : k => {
        path_pattern        = s.path_pattern
        port                = s.port
        health_path         = s.health_path
        priority            = s.priority
        admin_path_patterns = s.admin_path_patterns
        admin_method_routes = s.admin_method_routes
      }
    }
    admin_ingress_cidrs = ["192.0.2.0/24"]

    # The identity contract's admin routes, and routes that must stay public.
    admin_paths  = ["/calls/v1/pbx", "/calls/v1/pbx/+46812345678", "/calls/v1/pbx/+46812345678/flow", "/calls/v1/subscribers", "/calls/v1/subscribers/u-1", "/calls/v1/audit", "/calls/v1/snapshot"]
    public_paths = ["/calls/v1/decisions", "/calls/v1/routes/probe", "/calls/healthz", "/streams/v1/sessions", "/streams/v1/users/u-1/limit"]
  }

  assert {
    condition     = !aws_lb.this.internal && aws_lb.internal[0].internal
    error_message = "the public ALB is internet-facing, the admin ALB is internal."
  }

  # Public listener: the first rule matching an admin path must be the fixed 404.
  assert {
    condition = alltrue([
      for path in var.admin_paths : try([
        for prio in sort([for r in concat(values(aws_lb_listener_rule.service), values(aws_lb_listener_rule.admin_not_public)) : format("%05d", r.priority)]) :
        one([for r in concat(values(aws_lb_listener_rule.service), values(aws_lb_listener_rule.admin_not_public)) : r if format("%05d", r.priority) == prio])
        if anytrue([
          for p in one([for r in concat(values(aws_lb_listener_rule.service), values(aws_lb_listener_rule.admin_not_public)) : r if format("%05d", r.priority) == prio]).condition : anytrue([
            for pattern in p.path_pattern[0].values : can(regex("^${replace(replace(replace(pattern, ".", "\\."), "*", ".*"), "?", ".")}$", path))
          ])
        ])
      ][0].action[0].type == "fixed-response", false)
    ])
    error_message = "an admin path is forwarded by the public (internet-facing) listener: its first matching rule must be the fixed 404."
  }

  # Public listener: the webhook, the streams API and the kit routes stay forwarded.
  assert {
    condition = alltrue([
      for path in var.public_paths : try([
        for prio in sort([for r in concat(values(aws_lb_listener_rule.service), values(aws_lb_listener_rule.admin_not_public)) : format("%05d", r.priority)]) :
        one([for r in concat(values(aws_lb_listener_rule.service), values(aws_lb_listener_rule.admin_not_public)) : r if format("%05d", r.priority) == prio])
        if anytrue([
          for p in one([for r in concat(values(aws_lb_listener_rule.service), values(aws_lb_listener_rule.admin_not_public)) : r if format("%05d", r.priority) == prio]).condition : anytrue([
            for pattern in p.path_pattern[0].values : can(regex("^${replace(replace(replace(pattern, ".", "\\."), "*", ".*"), "?", ".")}$", path))
          ])
        ])
      ][0].action[0].type == "forward", false)
    ])
    error_message = "a public route (webhook, streams, kit routes) is not forwarded by the public listener."
  }

  # Internal listener: every admin path reaches the calls admin target group.
  assert {
    condition = alltrue([
      for path in var.admin_paths : anytrue([
        for r in aws_lb_listener_rule.admin : r.action[0].target_group_arn == aws_lb_target_group.admin["calls"].arn && anytrue([
          for c in r.condition : anytrue([
            for pattern in c.path_pattern[0].values : can(regex("^${replace(replace(replace(pattern, ".", "\\."), "*", ".*"), "?", ".")}$", path))
          ])
        ])
      ])
    ]) && aws_lb_listener_rule.admin["calls"].listener_arn == aws_lb_listener.internal_https[0].arn
    error_message = "the internal listener must forward every calls admin path to the calls admin target group."
  }

  assert {
    condition = (
      toset([for r in aws_vpc_security_group_ingress_rule.internal_https : r.cidr_ipv4]) == toset([run.plan.vpc_cidr, "192.0.2.0/24"])
      && toset(aws_lb.internal[0].subnets) == toset(["subnet-d", "subnet-e", "subnet-f"])
    )
    error_message = "the internal ALB sits in the private subnets and admits only the VPC and the admin CIDRs."
  }

  assert {
    condition     = contains(keys(output.target_group_bindings), "calls-admin") && yamldecode(output.target_group_bindings["calls-admin"]).spec.serviceRef.name == "calls"
    error_message = "EKS binds the calls Service to its admin target group too."
  }
}

run "rejects_an_internet_wide_admin_cidr" {
  command = plan

  variables {
    name                = "meridian-prod-se"
    vpc_id              = "vpc-0123456789abcdef0"
    vpc_cidr            = "10.10.0.0/16"
    public_subnet_ids   = ["subnet-a", "subnet-b"]
    private_subnet_ids  = ["subnet-d", "subnet-e"]
    certificate_arn     = "arn:aws:acm:eu-north-1:111111111111:certificate/00000000-0000-0000-0000-000000000000"
    logs_kms_key_arn    = "arn:aws:kms:eu-north-1:111111111111:key/00000000-0000-0000-0000-000000000000"
    services            = { calls = { path_pattern = ["/calls", "/calls/*"], port = 8080, health_path = "/readyz", priority = 110, admin_path_patterns = ["/calls/v1/pbx*"] } }
    admin_ingress_cidrs = ["0.0.0.0/0"]
  }

  expect_failures = [var.admin_ingress_cidrs]
}

run "rejects_an_admin_rule_that_cannot_come_first" {
  command = plan

  variables {
    name               = "meridian-prod-se"
    vpc_id             = "vpc-0123456789abcdef0"
    vpc_cidr           = "10.10.0.0/16"
    public_subnet_ids  = ["subnet-a", "subnet-b"]
    private_subnet_ids = ["subnet-d", "subnet-e"]
    certificate_arn    = "arn:aws:acm:eu-north-1:111111111111:certificate/00000000-0000-0000-0000-000000000000"
    logs_kms_key_arn   = "arn:aws:kms:eu-north-1:111111111111:key/00000000-0000-0000-0000-000000000000"
    services = {
      streams = { path_pattern = ["/streams", "/streams/*"], port = 8080, health_path = "/readyz", priority = 109 }
      calls   = { path_pattern = ["/calls", "/calls/*"], port = 8080, health_path = "/readyz", priority = 110, admin_path_patterns = ["/calls/v1/pbx*"] }
    }
  }

  expect_failures = [var.services]
}

run "zonal_shift_and_telephony_not_rate_limited" {
  command = apply

  variables {
    name                        = "meridian-prod-dk"
    vpc_id                      = "vpc-0123456789abcdef0"
    vpc_cidr                    = run.plan.vpc_cidr
    public_subnet_ids           = ["subnet-a", "subnet-b", "subnet-c"]
    private_subnet_ids          = ["subnet-d", "subnet-e", "subnet-f"]
    certificate_arn             = "arn:aws:acm:eu-north-1:111111111111:certificate/00000000-0000-0000-0000-000000000000"
    logs_kms_key_arn            = "arn:aws:kms:eu-north-1:111111111111:key/00000000-0000-0000-0000-000000000000"
    waf_rate_limit_exempt_cidrs = ["198.51.100.0/28", "203.0.113.16/28"]
    services = {
      for k, s in run.plan.services : k => {
        path_pattern        = s.path_pattern
        port                = s.port
        health_path         = s.health_path
        priority            = s.priority
        admin_path_patterns = s.admin_path_patterns
        admin_method_routes = s.admin_method_routes
      }
    }
  }

  assert {
    condition     = aws_lb.this.enable_zonal_shift && aws_lb.internal[0].enable_zonal_shift
    error_message = "zonal shift is on for both ALBs (the AZ evacuation procedure shifts their traffic out of an impaired AZ)."
  }

  assert {
    condition = (
      toset(aws_wafv2_ip_set.rate_limit_exempt[0].addresses) == toset(var.waf_rate_limit_exempt_cidrs)
      && one([
        for r in aws_wafv2_web_acl.this[0].rule :
        try(one(one(one(one(one(one(r.statement).rate_based_statement).scope_down_statement).not_statement).statement).ip_set_reference_statement).arn, "no scope-down")
        if r.name == "rate-limit-per-ip"
      ]) == aws_wafv2_ip_set.rate_limit_exempt[0].arn
    )
    error_message = "the WAF rate rule counts and blocks only requests from outside the telephony platform's ranges."
  }

  assert {
    condition     = output.waf_web_acl_name == "meridian-prod-dk"
    error_message = "the web ACL's name is an output (the WAF blocked-requests alarm's dimension)."
  }
}

# The same listener semantics with methods: a rule matches a request when every one of its
# conditions does (path pattern, and HTTP method where the rule has one).
run "admin_methods_only_on_the_internal_alb" {
  command = apply

  variables {
    name               = "meridian-prod-se"
    vpc_id             = "vpc-0123456789abcdef0"
    vpc_cidr           = run.plan.vpc_cidr
    public_subnet_ids  = ["subnet-a", "subnet-b", "subnet-c"]
    private_subnet_ids = ["subnet-d", "subnet-e", "subnet-f"]
    certificate_arn    = "arn:aws:acm:eu-north-1:111111111111:certificate/00000000-0000-0000-0000-000000000000"
    logs_kms_key_arn   = "arn:aws:kms:eu-north-1:111111111111:key/00000000-0000-0000-0000-000000000000"
    eks_cluster_name   = "meridian-prod-se"
    services = {
      for k, s in run.plan.services : k => {
        path_pattern        = s.path_pattern
        port                = s.port
        health_path         = s.health_path
        priority            = s.priority
        admin_path_patterns = s.admin_path_patterns
        admin_method_routes = s.admin_method_routes
      }
    }

    # streams: setting or removing a user's limit needs streams:admin; reading it does not.
    admin_requests  = [["PUT", "/streams/v1/users/u-1/limit"], ["DELETE", "/streams/v1/users/u-1/limit"]]
    public_requests = [["GET", "/streams/v1/users/u-1/limit"], ["POST", "/streams/v1/users/u-1/sessions"], ["POST", "/calls/v1/decisions"]]
  }

  assert {
    condition = alltrue([
      for req in var.admin_requests : try([
        for prio in sort([for r in concat(values(aws_lb_listener_rule.service), values(aws_lb_listener_rule.admin_not_public), values(aws_lb_listener_rule.admin_method_not_public)) : format("%05d", r.priority)]) :
        one([for r in concat(values(aws_lb_listener_rule.service), values(aws_lb_listener_rule.admin_not_public), values(aws_lb_listener_rule.admin_method_not_public)) : r if format("%05d", r.priority) == prio])
        if alltrue([
          for c in one([for r in concat(values(aws_lb_listener_rule.service), values(aws_lb_listener_rule.admin_not_public), values(aws_lb_listener_rule.admin_method_not_public)) : r if format("%05d", r.priority) == prio]).condition :
          try(anytrue([for pattern in c.path_pattern[0].values : can(regex("^${replace(replace(replace(pattern, ".", "\\."), "*", ".*"), "?", ".")}$", req[1]))]), true)
          && try(contains(c.http_request_method[0].values, req[0]), true)
        ])
      ][0].action[0].type == "fixed-response", false)
    ])
    error_message = "an admin method (PUT/DELETE of a streams user's limit) is forwarded by the public listener: its first matching rule must be the fixed 404."
  }

  assert {
    condition = alltrue([
      for req in var.public_requests : try([
        for prio in sort([for r in concat(values(aws_lb_listener_rule.service), values(aws_lb_listener_rule.admin_not_public), values(aws_lb_listener_rule.admin_method_not_public)) : format("%05d", r.priority)]) :
        one([for r in concat(values(aws_lb_listener_rule.service), values(aws_lb_listener_rule.admin_not_public), values(aws_lb_listener_rule.admin_method_not_public)) : r if format("%05d", r.priority) == prio])
        if alltrue([
          for c in one([for r in concat(values(aws_lb_listener_rule.service), values(aws_lb_listener_rule.admin_not_public), values(aws_lb_listener_rule.admin_method_not_public)) : r if format("%05d", r.priority) == prio]).condition :
          try(anytrue([for pattern in c.path_pattern[0].values : can(regex("^${replace(replace(replace(pattern, ".", "\\."), "*", ".*"), "?", ".")}$", req[1]))]), true)
          && try(contains(c.http_request_method[0].values, req[0]), true)
        ])
      ][0].action[0].type == "forward", false)
    ])
    error_message = "a public request (reading a limit, starting a session, the webhook) is not forwarded by the public listener."
  }

  assert {
    condition = alltrue([
      for req in var.admin_requests : anytrue([
        for r in aws_lb_listener_rule.admin_method : r.action[0].target_group_arn == aws_lb_target_group.admin["streams"].arn && r.listener_arn == aws_lb_listener.internal_https[0].arn && alltrue([
          for c in r.condition :
          try(anytrue([for pattern in c.path_pattern[0].values : can(regex("^${replace(replace(replace(pattern, ".", "\\."), "*", ".*"), "?", ".")}$", req[1]))]), true)
          && try(contains(c.http_request_method[0].values, req[0]), true)
        ])
      ])
    ]) && contains(keys(output.target_group_bindings), "streams-admin")
    error_message = "the internal listener forwards the streams admin methods to the streams admin target group (bound to the streams pods)."
  }
}
