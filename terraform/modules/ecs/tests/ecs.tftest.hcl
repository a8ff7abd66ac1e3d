# Offline, with a mocked aws provider: what every task definition carries (AUTH_* for every
# service, calls' secrets only by reference), and who may read those secrets.

mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_region" {
    defaults = { id = "eu-north-1" }
  }
  mock_data "aws_vpc" {
    defaults = { cidr_block = "10.12.0.0/16" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::111111111111:role/mock" }
  }
  mock_resource "aws_ecs_cluster" {
    defaults = { arn = "arn:aws:ecs:eu-north-1:111111111111:cluster/mock" }
  }
  mock_resource "aws_ecs_task_definition" {
    defaults = { arn = "arn:aws:ecs:eu-north-1:111111111111:task-definition/mock:1" }
  }
}

variables {
  name                        = "meridian-prod-dk"
  vpc_id                      = "vpc-0123456789abcdef0"
  private_subnet_ids          = ["subnet-a", "subnet-b", "subnet-c"]
  alb_security_group_id       = "sg-0123456789abcdef0"
  admin_alb_security_group_id = "sg-0fedcba9876543210"
  image_registry              = "999999999999.dkr.ecr.eu-north-1.amazonaws.com/meridian"
  image_tag                   = "0000000"
  logs_kms_key_arn            = "arn:aws:kms:eu-north-1:111111111111:key/00000000-0000-0000-0000-000000000000"
  secrets_kms_key_arn         = "arn:aws:kms:eu-north-1:111111111111:key/00000000-0000-0000-0000-000000000000"

  auth = {
    AUTH_ISSUER       = "https://cognito-idp.eu-north-1.amazonaws.com/eu-north-1_Test"
    AUTH_AUDIENCE     = "client-a,client-b"
    AUTH_JWKS_URL     = "https://cognito-idp.eu-north-1.amazonaws.com/eu-north-1_Test/.well-known/jwks.json"
    AUTH_SCOPE_PREFIX = "meridian/"
  }
  token_key_arn = "arn:aws:secretsmanager:eu-north-1:111111111111:secret:meridian-prod-dk/calls/token-key-AbCdEf"
  webhook_arn   = "arn:aws:secretsmanager:eu-north-1:111111111111:secret:meridian-prod-dk/calls/webhook-secrets-AbCdEf"

  services = {
    streams = {
      port                = 8080
      target_group_arn    = "arn:aws:elasticloadbalancing:eu-north-1:111111111111:targetgroup/streams/0123456789abcdef"
      image_repository    = "meridian-streams"
      listener_rule_arns  = ["arn:aws:elasticloadbalancing:eu-north-1:111111111111:listener-rule/app/mock/0123456789abcdef/0123456789abcdef/streams"]
      database_secret_arn = "arn:aws:secretsmanager:eu-north-1:111111111111:secret:meridian-prod-dk/db/streams-AbCdEf"
      cpu                 = 256
      memory              = 512
      desired_count       = 2
      max_count           = 6
      environment = {
        AUTH_ISSUER       = "https://cognito-idp.eu-north-1.amazonaws.com/eu-north-1_Test"
        AUTH_AUDIENCE     = "client-a,client-b"
        AUTH_JWKS_URL     = "https://cognito-idp.eu-north-1.amazonaws.com/eu-north-1_Test/.well-known/jwks.json"
        AUTH_SCOPE_PREFIX = "meridian/"
      }
    }
    calls = {
      port                   = 8080
      target_group_arn       = "arn:aws:elasticloadbalancing:eu-north-1:111111111111:targetgroup/calls/0123456789abcdef"
      image_repository       = "meridian-calls"
      listener_rule_arns     = ["arn:aws:elasticloadbalancing:eu-north-1:111111111111:listener-rule/app/mock/0123456789abcdef/0123456789abcdef/calls"]
      admin                  = true
      admin_target_group_arn = "arn:aws:elasticloadbalancing:eu-north-1:111111111111:targetgroup/calls-adm/0123456789abcdef"
      database_secret_arn    = "arn:aws:secretsmanager:eu-north-1:111111111111:secret:meridian-prod-dk/db/calls-AbCdEf"
      cpu                    = 256
      memory                 = 512
      desired_count          = 3
      max_count              = 6
      environment = {
        AUTH_ISSUER       = "https://cognito-idp.eu-north-1.amazonaws.com/eu-north-1_Test"
        AUTH_AUDIENCE     = "client-a"
        AUTH_JWKS_URL     = "https://cognito-idp.eu-north-1.amazonaws.com/eu-north-1_Test/.well-known/jwks.json"
        AUTH_SCOPE_PREFIX = "meridian/"
      }
      secrets = {
        CALLS_TOKEN_KEY             = { arn = "arn:aws:secretsmanager:eu-north-1:111111111111:secret:meridian-prod-dk/calls/token-key-AbCdEf" }
        CALLS_TOKEN_KEY_ALSO_ACCEPT = { arn = "arn:aws:secretsmanager:eu-north-1:111111111111:secret:meridian-prod-dk/calls/token-key-AbCdEf", version_stage = "AWSPREVIOUS" }
        CALLS_WEBHOOK_SECRETS       = { arn = "arn:aws:secretsmanager:eu-north-1:111111111111:secret:meridian-prod-dk/calls/webhook-secrets-AbCdEf" }
      }
    }
  }

  # One blue-green service, as modules/stack passes it for a small country (runs blue_green, deploy_role_*).
  bg_services = {
    streams = {
      port                         = 8080
      target_group_arn             = "arn:aws:elasticloadbalancing:eu-north-1:111111111111:targetgroup/streams/0123456789abcdef"
      blue_green                   = true
      green_target_group_arn       = "arn:aws:elasticloadbalancing:eu-north-1:111111111111:targetgroup/streams-green/0123456789abcdef"
      production_listener_rule_arn = "arn:aws:elasticloadbalancing:eu-north-1:111111111111:listener-rule/app/mock/0123456789abcdef/0123456789abcdef/streams"
      preview_listener_rule_arn    = "arn:aws:elasticloadbalancing:eu-north-1:111111111111:listener-rule/app/mock/0123456789abcdef/fedcba9876543210/streams"
      image_repository             = "meridian-streams"
      listener_rule_arns           = ["arn:aws:elasticloadbalancing:eu-north-1:111111111111:listener-rule/app/mock/0123456789abcdef/0123456789abcdef/streams"]
      database_secret_arn          = "arn:aws:secretsmanager:eu-north-1:111111111111:secret:meridian-prod-dk/db/streams-AbCdEf"
      cpu                          = 256
      memory                       = 512
      desired_count                = 2
      max_count                    = 6
    }
  }
}

run "task_definitions" {
  command = apply

  assert {
    condition = alltrue([
      for s, c in output.containers : alltrue([
        for k, v in var.auth : contains([for e in c.environment : e.name if e.value != ""], k)
      ])
    ]) && length(output.containers) == 2
    error_message = "every service's container carries AUTH_ISSUER, AUTH_AUDIENCE, AUTH_JWKS_URL and AUTH_SCOPE_PREFIX."
  }

  assert {
    condition = (
      one([for x in output.containers.calls.secrets : x.valueFrom if x.name == "CALLS_TOKEN_KEY"]) == var.token_key_arn
      && one([for x in output.containers.calls.secrets : x.valueFrom if x.name == "CALLS_WEBHOOK_SECRETS"]) == var.webhook_arn
      && one([for x in output.containers.calls.secrets : x.valueFrom if x.name == "CALLS_TOKEN_KEY_ALSO_ACCEPT"]) == "${var.token_key_arn}::AWSPREVIOUS:"
    )
    error_message = "calls gets its token key and webhook secrets from Secrets Manager (container secrets, valueFrom), the rotation key from the AWSPREVIOUS stage."
  }

  assert {
    condition = alltrue([
      for s, c in output.containers : alltrue([
        for e in c.environment : !can(regex("^CALLS_TOKEN_KEY|^CALLS_WEBHOOK_SECRETS", e.name))
      ])
    ]) && length(output.containers.streams.secrets) == 0
    error_message = "no calls secret is plain environment, and no other service gets one."
  }

  assert {
    condition = alltrue([
      toset(data.aws_iam_policy_document.execution_secrets["calls"].statement[0].resources) == toset([var.token_key_arn, var.webhook_arn]),
      keys(data.aws_iam_policy_document.execution_secrets) == ["calls"],
      aws_iam_role_policy.execution_secrets["calls"].role == aws_iam_role.execution["calls"].id,
      aws_ecs_task_definition.service["calls"].execution_role_arn == aws_iam_role.execution["calls"].arn,
    ])
    error_message = "only calls' own execution role may read calls' secrets."
  }

  assert {
    condition = alltrue([
      for s, c in output.containers : c.image == "${var.image_registry}/meridian-${s}:${var.image_tag}"
    ])
    error_message = "each task runs <image_registry>/<image_repository>:<image_tag>, the image Buildkite pushes (<registry>/meridian-<service>:<sha>)."
  }

  assert {
    condition = alltrue([
      for s, c in output.containers : c.readonlyRootFilesystem && contains([for m in c.mountPoints : m.containerPath if !m.readOnly], "/var/lib/meridian")
      && one([for e in c.environment : e.value if e.name == "XDG_STATE_HOME"]) == "/var/lib/meridian"
    ]) && toset([for v in aws_ecs_task_definition.service["calls"].volume : v.name]) == toset(["tmp", "state"])
    error_message = "the root filesystem stays read-only and every task (calls: its snapshot file under XDG_STATE_HOME) gets a writable state volume at XDG_STATE_HOME."
  }

  assert {
    condition = alltrue([
      for s, svc in var.services : terraform_data.listener_rules[s].input == svc.listener_rule_arns
    ])
    error_message = "every ECS service waits for the listener rules of its target groups (terraform_data.listener_rules, its depends_on)."
  }

  assert {
    condition     = length(aws_ecs_service.service["calls"].load_balancer) == 2 && length(aws_ecs_service.service["streams"].load_balancer) == 1
    error_message = "calls' tasks are registered behind the public and the internal (admin) target groups."
  }

  assert {
    condition     = [for r in aws_vpc_security_group_ingress_rule.from_internal_alb : r.referenced_security_group_id] == [var.admin_alb_security_group_id]
    error_message = "the internal ALB may reach the admin service's port."
  }
}

run "rejects_a_secret_as_plain_environment" {
  command = plan

  variables {
    services = {
      calls = {
        port                = 8080
        target_group_arn    = "arn:aws:elasticloadbalancing:eu-north-1:111111111111:targetgroup/calls/0123456789abcdef"
        image_repository    = "meridian-calls"
        listener_rule_arns  = ["arn:aws:elasticloadbalancing:eu-north-1:111111111111:listener-rule/app/mock/0123456789abcdef/0123456789abcdef/calls"]
        database_secret_arn = "arn:aws:secretsmanager:eu-north-1:111111111111:secret:meridian-prod-dk/db/calls-AbCdEf"
        cpu                 = 256
        memory              = 512
        desired_count       = 3
        max_count           = 6
        environment         = { CALLS_TOKEN_KEY = "0123456789abcdef0123456789abcdef" }
      }
    }
  }

  expect_failures = [var.services]
}

run "rejects_a_secret_in_the_shared_environment" {
  command = plan

  variables {
    environment = { CALLS_WEBHOOK_SECRETS = "telephony:0123456789abcdef0123456789abcdef" }
  }

  expect_failures = [var.environment]
}

run "rejects_a_secret_reference_that_is_not_secrets_manager" {
  command = plan

  variables {
    services = {
      calls = {
        port                = 8080
        target_group_arn    = "arn:aws:elasticloadbalancing:eu-north-1:111111111111:targetgroup/calls/0123456789abcdef"
        image_repository    = "meridian-calls"
        listener_rule_arns  = ["arn:aws:elasticloadbalancing:eu-north-1:111111111111:listener-rule/app/mock/0123456789abcdef/0123456789abcdef/calls"]
        database_secret_arn = "arn:aws:secretsmanager:eu-north-1:111111111111:secret:meridian-prod-dk/db/calls-AbCdEf"
        cpu                 = 256
        memory              = 512
        desired_count       = 3
        max_count           = 6
        secrets             = { CALLS_TOKEN_KEY = { arn = "0123456789abcdef0123456789abcdef" } }
      }
    }
  }

  expect_failures = [var.services]
}

# Blue-green (deploy/ecs): green is a second ECS service at 0 tasks in its own target group, both
# colours autoscale (the idle one pinned at 0), and the target `meridian-deploy ecs` reads is
# published with exactly the fields its EcsTarget has (deny_unknown_fields on the Rust side).
run "blue_green" {
  command = apply

  variables {
    preview_url             = "https://dk.api.meridian.example:8443"
    deploy_parameter_prefix = "/meridian/prod/dk/ecs-deploy"
    services                = var.bg_services
  }

  assert {
    condition = (
      aws_ecs_service.service["streams"].desired_count == 2 && aws_ecs_service.service["streams-green"].desired_count == 0
      && [for lb in aws_ecs_service.service["streams-green"].load_balancer : lb.target_group_arn] == [var.services.streams.green_target_group_arn]
      && [for lb in aws_ecs_service.service["streams"].load_balancer : lb.target_group_arn] == [var.services.streams.target_group_arn]
    )
    error_message = "blue keeps its tasks and target group; green starts at 0 tasks in the green target group."
  }

  assert {
    condition = (
      aws_appautoscaling_target.service["streams"].min_capacity == 2 && aws_appautoscaling_target.service["streams"].max_capacity == 6
      && aws_appautoscaling_target.service["streams-green"].min_capacity == 0 && aws_appautoscaling_target.service["streams-green"].max_capacity == 0
    )
    error_message = "the idle colour's autoscaling range is pinned at 0, the active one has production's."
  }

  assert {
    condition = (
      # value is marked sensitive by the provider; it holds names and ARNs only.
      jsonencode(sort(keys(jsondecode(nonsensitive(aws_ssm_parameter.deploy_target["streams"].value))))) == jsonencode(["capacity", "cluster", "listener_rule_arn", "preview_listener_rule_arn", "preview_url", "services", "target_groups"])
      && jsonencode(jsondecode(nonsensitive(aws_ssm_parameter.deploy_target["streams"].value)).services) == jsonencode({ blue = "streams", green = "streams-green" })
      && aws_ssm_parameter.deploy_target["streams"].name == "/meridian/prod/dk/ecs-deploy/streams"
      && jsonencode(output.blue_green.streams.capacity) == jsonencode({ max = 6, min = 2 })
    )
    error_message = "the published target has exactly EcsTarget's fields, under buildkite/lib.sh's ecs_target_parameter name."
  }
}

# The deploy role: what `meridian-deploy ecs` and the production step call, on this module's
# blue-green services only. The same stack as blue_green, with the Buildkite deploy role trusted.
run "deploy_role_may_do_what_meridian_deploy_ecs_does" {
  command = apply
  # Its own state: the roles must be created here, with the overridden ARNs below.
  state_key = "deploy_role"

  variables {
    preview_url             = "https://dk.api.meridian.example:8443"
    deploy_parameter_prefix = "/meridian/prod/dk/ecs-deploy"
    deploy_principal_arns   = ["arn:aws:iam::222222222222:role/meridian-buildkite-deploy"]
    services                = var.bg_services
  }

  # Distinct role ARNs (the mock gives every role the same one); the other resources' ARNs are
  # compared with the resources themselves.
  override_resource {
    target = aws_iam_role.task
    values = { arn = "arn:aws:iam::111111111111:role/meridian-prod-dk-streams-task" }
  }
  override_resource {
    target = aws_iam_role.execution
    values = { arn = "arn:aws:iam::111111111111:role/meridian-prod-dk-streams-execution" }
  }

  assert {
    condition = (
      output.deploy_role_arn != null
      && one(data.aws_iam_policy_document.deploy_assume[0].statement).actions == toset(["sts:AssumeRole"])
      && one(one(data.aws_iam_policy_document.deploy_assume[0].statement).principals).type == "AWS"
      && one(one(data.aws_iam_policy_document.deploy_assume[0].statement).principals).identifiers == toset(var.deploy_principal_arns)
      && aws_iam_role_policy.deploy[0].role == aws_iam_role.deploy[0].id
      && output.deploy_policy_json == data.aws_iam_policy_document.deploy[0].json
      && length(aws_ecs_service.service) == 2 && length(aws_appautoscaling_target.service) == 2
    )
    error_message = "the deploy role is assumed by deploy_principal_arns only and carries the deploy policy (also output as JSON)."
  }

  assert {
    condition = jsonencode({
      for st in data.aws_iam_policy_document.deploy[0].statement : st.sid => {
        actions   = sort(tolist(st.actions))
        resources = sort(tolist(st.resources))
      }
      }) == jsonencode({
      ReadWhatIsDeployed = {
        actions   = ["application-autoscaling:DescribeScalableTargets", "ecs:DescribeTaskDefinition", "elasticloadbalancing:DescribeRules", "elasticloadbalancing:DescribeTargetHealth"]
        resources = ["*"]
      }
      RegisterNewRevisions = {
        actions   = ["ecs:RegisterTaskDefinition"]
        resources = ["*"]
      }
      PassOnlyTheServicesRoles = {
        actions   = ["iam:PassRole"]
        resources = ["arn:aws:iam::111111111111:role/meridian-prod-dk-streams-execution", "arn:aws:iam::111111111111:role/meridian-prod-dk-streams-task"]
      }
      MoveTasksBetweenColours = {
        actions   = ["ecs:CreateService", "ecs:DescribeServices", "ecs:UpdateService"]
        resources = sort([aws_ecs_service.service["streams"].id, aws_ecs_service.service["streams-green"].id])
      }
      ListTheColoursTasks = {
        actions   = ["ecs:ListTasks"]
        resources = ["*"]
      }
      DescribeTheColoursTasks = {
        actions   = ["ecs:DescribeTasks"]
        resources = ["arn:aws:ecs:eu-north-1:111111111111:task/mock/*"]
      }
      SwitchListenerRules = {
        actions   = ["elasticloadbalancing:ModifyRule"]
        resources = sort([var.services.streams.production_listener_rule_arn, var.services.streams.preview_listener_rule_arn])
      }
      MoveAutoscalingRanges = {
        actions   = ["application-autoscaling:RegisterScalableTarget"]
        resources = sort([aws_appautoscaling_target.service["streams"].arn, aws_appautoscaling_target.service["streams-green"].arn])
      }
      ReadPublishedTargets = {
        actions   = ["ssm:GetParameter"]
        resources = [aws_ssm_parameter.deploy_target["streams"].arn]
      }
    })
    error_message = "the deploy policy grants exactly the calls of meridian-deploy ecs and the production step, scoped to this country's blue-green services, rules, scalable targets, parameters and roles; \"*\" only where AWS has no resource-level permission."
  }

  assert {
    condition = (
      alltrue([for st in data.aws_iam_policy_document.deploy[0].statement : alltrue([for a in st.actions : !strcontains(a, "*")])])
      && jsonencode([for c in one([for st in data.aws_iam_policy_document.deploy[0].statement : st if st.sid == "PassOnlyTheServicesRoles"]).condition : [c.test, c.variable, c.values]]) == jsonencode([["StringEquals", "iam:PassedToService", ["ecs-tasks.amazonaws.com"]]])
      && !contains(flatten([for st in data.aws_iam_policy_document.deploy[0].statement : st.actions]), "elasticloadbalancing:ModifyListener")
    )
    error_message = "no wildcard action; the task and execution roles are passed to ECS tasks only; listeners are never modified (the command moves rules)."
  }

  assert {
    condition = alltrue([
      for c in one([for st in data.aws_iam_policy_document.deploy[0].statement : st if st.sid == "ListTheColoursTasks"]).condition :
      c.test == "ArnEquals" && c.variable == "ecs:cluster" && jsonencode(c.values) == jsonencode([aws_ecs_cluster.this.arn])
    ]) && length(one([for st in data.aws_iam_policy_document.deploy[0].statement : st if st.sid == "ListTheColoursTasks"]).condition) == 1
    error_message = "ListTasks (resource \"*\") is held to this cluster by ecs:cluster."
  }
}

run "no_deploy_principals_no_deploy_role" {
  command = plan

  variables {
    preview_url             = "https://dk.api.meridian.example:8443"
    deploy_parameter_prefix = "/meridian/prod/dk/ecs-deploy"
    services                = var.bg_services
  }

  assert {
    condition     = length(aws_iam_role.deploy) == 0 && length(data.aws_iam_policy_document.deploy) == 1
    error_message = "without deploy_principal_arns there is no deploy role, only the policy to attach elsewhere."
  }
}
