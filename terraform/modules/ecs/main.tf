# The small-country option: the same images as on EKS, on Fargate, behind the same ALB target
# groups (registered through the service's load_balancer block). Deploys roll with the
# deployment circuit breaker (automatic rollback) — see terraform/README.md for how this
# relates to the operator's blue/green on EKS.

data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.id

  # Names that must never be plain environment (variable validations use it): secrets reach a
  # task only through `secrets` (valueFrom), resolved by ECS at start.
  secret_name_pattern = "(^CALLS_TOKEN_KEY|^CALLS_WEBHOOK_SECRETS|(KEY|SECRETS?|PASSWORD|PASSWD|TOKEN|CREDENTIALS?)$)"

  # ECS valueFrom: the secret ARN (current version) or "<arn>::<version stage>:" (no JSON key).
  secret_refs = {
    for name, s in var.services : name => {
      for env, ref in s.secrets : env => ref.version_stage == "AWSCURRENT" ? ref.arn : "${ref.arn}::${ref.version_stage}:"
    }
  }
  admin_services = { for name, s in var.services : name => s if s.admin }

  # ECS service name => its colour. Blue keeps the plain service name (the service Terraform
  # always created); a blue-green service also gets "<name>-green", created at 0 tasks.
  # `meridian-deploy ecs` (deploy/ecs) moves tasks, the public listener rule and the autoscaling
  # range between the two; Terraform creates them and then leaves those to it.
  colours = merge(
    {
      for name, s in var.services : name => {
        service      = name
        colour       = "blue"
        target_group = s.target_group_arn
        desired      = s.desired_count
        min          = s.desired_count
        max          = s.max_count
      }
    },
    {
      for name, s in var.services : "${name}-green" => {
        service      = name
        colour       = "green"
        target_group = s.green_target_group_arn
        desired      = 0
        min          = 0
        max          = 0
      } if s.blue_green
    },
  )
  blue_green = { for name, s in var.services : name => s if s.blue_green }
}

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = var.tags
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

# ----------------------------------------------------------------------------- IAM

data "aws_iam_policy_document" "tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# One execution role per service (ECS pulls the image, writes logs and resolves `secrets` with
# it): a service's secrets are readable by its own execution role only.
resource "aws_iam_role" "execution" {
  for_each = var.services

  name               = "${var.name}-${each.key}-execution"
  assume_role_policy = data.aws_iam_policy_document.tasks_assume.json
  tags               = merge(var.tags, { Service = each.key })
}

resource "aws_iam_role_policy_attachment" "execution" {
  for_each = var.services

  role       = aws_iam_role.execution[each.key].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution_secrets" {
  for_each = { for name, s in var.services : name => s if length(s.secrets) > 0 }

  statement {
    sid       = "ReadOwnRuntimeSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = distinct([for ref in values(each.value.secrets) : ref.arn])
  }

  statement {
    sid       = "DecryptSecret"
    actions   = ["kms:Decrypt"]
    resources = [var.secrets_kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  for_each = data.aws_iam_policy_document.execution_secrets

  name   = "runtime-secrets"
  role   = aws_iam_role.execution[each.key].id
  policy = each.value.json
}

# One task role per service: it may read only its own DB secret.
resource "aws_iam_role" "task" {
  for_each = var.services

  name               = "${var.name}-${each.key}-task"
  assume_role_policy = data.aws_iam_policy_document.tasks_assume.json
  tags               = merge(var.tags, { Service = each.key })
}

data "aws_iam_policy_document" "task" {
  for_each = var.services

  statement {
    sid       = "ReadOwnDatabaseSecret"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [each.value.database_secret_arn]
  }

  statement {
    sid       = "DecryptSecret"
    actions   = ["kms:Decrypt"]
    resources = [var.secrets_kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "task" {
  for_each = var.services

  name   = "database-secret"
  role   = aws_iam_role.task[each.key].id
  policy = data.aws_iam_policy_document.task[each.key].json
}

# ----------------------------------------------------------------------------- networking

resource "aws_security_group" "tasks" {
  name        = "${var.name}-ecs-tasks"
  description = "Fargate tasks of ${var.name}: service ports from the ALB, HTTPS and Postgres out"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-ecs-tasks" })
}

resource "aws_vpc_security_group_ingress_rule" "from_alb" {
  for_each = toset([for s in values(var.services) : tostring(s.port)])

  security_group_id            = aws_security_group.tasks.id
  description                  = "Service port ${each.key} from the ALB"
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.key)
  to_port                      = tonumber(each.key)
  referenced_security_group_id = var.alb_security_group_id
}

resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to AWS APIs (Secrets Manager, ECR, logs) via NAT"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "from_internal_alb" {
  for_each = toset([for s in values(local.admin_services) : tostring(s.port)])

  security_group_id            = aws_security_group.tasks.id
  description                  = "Service port ${each.key} from the internal (admin) ALB"
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.key)
  to_port                      = tonumber(each.key)
  referenced_security_group_id = var.admin_alb_security_group_id

  lifecycle {
    precondition {
      condition     = var.admin_alb_security_group_id != null
      error_message = "services with admin = true need admin_alb_security_group_id (the internal ALB's group)."
    }
  }
}

data "aws_vpc" "this" {
  id = var.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "postgres" {
  security_group_id = aws_security_group.tasks.id
  description       = "Postgres to Aurora inside the VPC"
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
  cidr_ipv4         = data.aws_vpc.this.cidr_block
}

# ----------------------------------------------------------------------------- services

resource "aws_cloudwatch_log_group" "service" {
  for_each = var.services

  name              = "/meridian/ecs/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.logs_kms_key_arn
  tags              = merge(var.tags, { Service = each.key })
}

resource "aws_ecs_task_definition" "service" {
  for_each = var.services

  family                   = "${var.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = aws_iam_role.execution[each.key].arn
  task_role_arn            = aws_iam_role.task[each.key].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  container_definitions = jsonencode([{
    name                   = each.key
    image                  = "${var.image_registry}/${each.value.image_repository}:${var.image_tag}"
    essential              = true
    readonlyRootFilesystem = true
    # The only writable paths: scratch space and the state directory (calls' snapshot file).
    mountPoints = [
      { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
      { sourceVolume = "state", containerPath = var.state_dir, readOnly = false },
    ]
    privileged   = false
    user         = "10001:10001"
    stopTimeout  = 60
    portMappings = [{ containerPort = each.value.port, protocol = "tcp" }]
    environment = [for k, v in merge(var.environment, each.value.environment, {
      PORT                = tostring(each.value.port)
      LOG_FORMAT          = "json"
      RUST_LOG            = "info"
      DATABASE_SECRET_ARN = each.value.database_secret_arn
      AWS_REGION          = local.region
      SERVICE_NAME        = each.key
      XDG_STATE_HOME      = var.state_dir
      # No migration Job runs before an ECS deployment (the operator's Release does that on
      # EKS): here each task applies its migrations at start (expand/contract, so a task of the
      # previous release still starts against the newer schema).
      MIGRATE_ON_START = "1"
    }) : { name = k, value = v }]
    secrets = [for k, ref in local.secret_refs[each.key] : { name = k, valueFrom = ref }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.service[each.key].name
        awslogs-region        = local.region
        awslogs-stream-prefix = each.key
      }
    }
  }])

  # Empty bind mounts, removed with the task (Fargate ephemeral storage).
  volume {
    name = "tmp"
  }

  volume {
    name = "state"
  }

  tags = merge(var.tags, { Service = each.key })
}

# The listener rules that forward to each service's target groups: a target group that no
# listener uses has no load balancer, and ECS rejects a service registering into it. Every
# ECS service depends on this, so it is created after its rules (and destroyed before them).
resource "terraform_data" "listener_rules" {
  for_each = var.services

  input = each.value.listener_rule_arns
}

resource "aws_ecs_service" "service" {
  for_each = local.colours

  name            = each.key
  cluster         = aws_ecs_cluster.this.id
  task_definition = aws_ecs_task_definition.service[each.value.service].arn
  desired_count   = each.value.desired
  launch_type     = "FARGATE"

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 30
  enable_execute_command             = false
  propagate_tags                     = "SERVICE"
  wait_for_steady_state              = true

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = each.value.target_group
    container_name   = each.value.service
    container_port   = var.services[each.value.service].port
  }

  # Admin routes: the same tasks behind the internal ALB's target group (both colours: the
  # internal ALB has no test listener, so admin calls reach whichever colour has tasks).
  dynamic "load_balancer" {
    for_each = var.services[each.value.service].admin ? [var.services[each.value.service].admin_target_group_arn] : []
    content {
      target_group_arn = load_balancer.value
      container_name   = each.value.service
      container_port   = var.services[each.value.service].port
    }
  }

  tags = merge(var.tags, { Service = each.value.service, Colour = each.value.colour })

  depends_on = [terraform_data.listener_rules]

  lifecycle {
    # meridian-deploy ecs registers new task definitions (new image SHA, on the family's latest
    # revision, so a definition changed here ships with the next release) and moves tasks
    # between the colours; autoscaling owns desired_count in between.
    ignore_changes = [task_definition, desired_count]
  }
}

resource "aws_appautoscaling_target" "service" {
  for_each = local.colours

  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.service[each.key].name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = each.value.min
  max_capacity       = each.value.max

  lifecycle {
    # Blue-green: the deploy command gives the promoted colour production's range (the one
    # published in its target, so a changed sizing applies at the next deploy) and pins the idle
    # one at 0.
    ignore_changes = [min_capacity, max_capacity]
  }
}

resource "aws_appautoscaling_policy" "cpu" {
  for_each = local.colours

  name               = "${each.key}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service[each.key].service_namespace
  resource_id        = aws_appautoscaling_target.service[each.key].resource_id
  scalable_dimension = aws_appautoscaling_target.service[each.key].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.target_cpu_utilization
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

# ----------------------------------------------------------------------------- blue-green target
# What `meridian-deploy ecs --target` reads (deploy/ecs EcsTarget), one parameter per blue-green
# service, fetched by the production step (buildkite/lib.sh ecs_target_parameter). Names, ARNs and
# a URL: no secret, so a plain String.
resource "aws_ssm_parameter" "deploy_target" {
  # checkov:skip=CKV2_AWS_34:not a secret: the names and ARNs of the service's ECS services, target groups and listener rules, and the test listener URL
  for_each = var.deploy_parameter_prefix == null ? {} : local.blue_green

  name = "${var.deploy_parameter_prefix}/${each.key}"
  type = "String"
  value = jsonencode({
    cluster                   = aws_ecs_cluster.this.name
    services                  = { blue = aws_ecs_service.service[each.key].name, green = aws_ecs_service.service["${each.key}-green"].name }
    target_groups             = { blue = each.value.target_group_arn, green = each.value.green_target_group_arn }
    listener_rule_arn         = each.value.production_listener_rule_arn
    preview_listener_rule_arn = each.value.preview_listener_rule_arn
    preview_url               = var.preview_url
    capacity                  = { min = each.value.desired_count, max = each.value.max_count }
  })

  tags = merge(var.tags, { Service = each.key })

  lifecycle {
    precondition {
      condition     = var.preview_url != null
      error_message = "a published blue-green target needs preview_url (modules/alb output preview_url)."
    }
  }
}

# ----------------------------------------------------------------------------- the deploy role
# What `meridian-deploy ecs` (deploy/ecs/src/lib.rs) calls, and the production step around it
# (buildkite/deploy-prod.sh: `aws ssm get-parameter` of the target, then the command, both with
# the country's AWS profile), for this module's blue-green services and nothing else:
#  - ECS DescribeServices / UpdateService / CreateService (the idle colour, created only if it is
#    gone) on the two colours' services; ListTasks (held to this cluster) and DescribeTasks (its
#    tasks), to match the healthy targets to the new revision's running tasks; DescribeTaskDefinition and RegisterTaskDefinition (a
#    revision of the active one's family with the new image) have no resource-level permissions
#    in the Service Authorization Reference, so "*"; iam:PassRole of exactly the services' task
#    and execution roles, to ECS tasks only (RegisterTaskDefinition passes them);
#  - ELBv2 ModifyRule on the production and the test listener rules; DescribeRules and
#    DescribeTargetHealth support no resource-level permissions ("*"). The command never calls
#    ModifyListener (it moves rules, not listeners), so that is not granted;
#  - Application Auto Scaling RegisterScalableTarget on the colours' scalable targets (their ARNs;
#    the command only updates targets Terraform registered), DescribeScalableTargets ("*");
#  - SSM GetParameter of the published targets.
# deploy_policy_json is the document; with deploy_principal_arns the module also creates a role
# (deploy_role_arn) they may assume: the Buildkite deploy agents' profile for this country.

locals {
  deploy_colours = { for k, c in local.colours : k => c if contains(keys(local.blue_green), c.service) }
}

data "aws_iam_policy_document" "deploy" {
  count = length(local.blue_green) > 0 ? 1 : 0

  # checkov:skip=CKV_AWS_111:ecs:RegisterTaskDefinition supports no resource-level permissions (Resource must be "*"); what a new revision may run is bounded by the PassRole statement
  # checkov:skip=CKV_AWS_356:Describe* of ECS task definitions, ELBv2 rules and target health, Application Auto Scaling targets and ecs:RegisterTaskDefinition support no resource-level permissions
  statement {
    sid = "ReadWhatIsDeployed"
    actions = [
      "ecs:DescribeTaskDefinition",
      "elasticloadbalancing:DescribeRules",
      "elasticloadbalancing:DescribeTargetHealth",
      "application-autoscaling:DescribeScalableTargets",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "RegisterNewRevisions"
    actions   = ["ecs:RegisterTaskDefinition"]
    resources = ["*"]
  }

  statement {
    sid       = "PassOnlyTheServicesRoles"
    actions   = ["iam:PassRole"]
    resources = sort(distinct(concat([for s in keys(local.blue_green) : aws_iam_role.task[s].arn], [for s in keys(local.blue_green) : aws_iam_role.execution[s].arn])))
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  statement {
    sid       = "MoveTasksBetweenColours"
    actions   = ["ecs:DescribeServices", "ecs:UpdateService", "ecs:CreateService"]
    resources = [for k in keys(local.deploy_colours) : aws_ecs_service.service[k].id]
  }

  # Before the analysis the command matches the idle colour's healthy targets to its running
  # tasks of the new revision: ListTasks authorizes on container instances (none on Fargate), so
  # "*" held to this cluster by ecs:cluster; DescribeTasks on this cluster's tasks.
  statement {
    sid       = "ListTheColoursTasks"
    actions   = ["ecs:ListTasks"]
    resources = ["*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }

  statement {
    sid       = "DescribeTheColoursTasks"
    actions   = ["ecs:DescribeTasks"]
    resources = [format("%s/*", replace(aws_ecs_cluster.this.arn, ":cluster/", ":task/"))]
  }

  statement {
    sid       = "SwitchListenerRules"
    actions   = ["elasticloadbalancing:ModifyRule"]
    resources = distinct(flatten([for s in values(local.blue_green) : [s.production_listener_rule_arn, s.preview_listener_rule_arn]]))
  }

  statement {
    sid       = "MoveAutoscalingRanges"
    actions   = ["application-autoscaling:RegisterScalableTarget"]
    resources = [for k in keys(local.deploy_colours) : aws_appautoscaling_target.service[k].arn]
  }

  dynamic "statement" {
    for_each = var.deploy_parameter_prefix == null ? [] : [1]
    content {
      sid       = "ReadPublishedTargets"
      actions   = ["ssm:GetParameter"]
      resources = [for p in aws_ssm_parameter.deploy_target : p.arn]
    }
  }
}

data "aws_iam_policy_document" "deploy_assume" {
  count = length(var.deploy_principal_arns) > 0 && length(local.blue_green) > 0 ? 1 : 0

  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = var.deploy_principal_arns
    }
  }
}

resource "aws_iam_role" "deploy" {
  count = length(data.aws_iam_policy_document.deploy_assume)

  name               = "${var.name}-ecs-deploy"
  assume_role_policy = data.aws_iam_policy_document.deploy_assume[0].json
  tags               = var.tags
}

resource "aws_iam_role_policy" "deploy" {
  count = length(aws_iam_role.deploy)

  name   = "meridian-deploy-ecs"
  role   = aws_iam_role.deploy[0].id
  policy = data.aws_iam_policy_document.deploy[0].json
}
