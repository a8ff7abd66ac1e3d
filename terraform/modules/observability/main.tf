locals {
  prometheus = var.mode == "prometheus"
}

# ----------------------------------------------------------------------------- alert delivery

resource "aws_sns_topic" "alerts" {
  name              = "${var.name}-alerts"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.alert_email_addresses)

  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.key
}

resource "aws_sns_topic_subscription" "https" {
  count = nonsensitive(length(var.alert_https_endpoints))

  topic_arn              = aws_sns_topic.alerts.arn
  protocol               = "https"
  endpoint               = var.alert_https_endpoints[count.index]
  endpoint_auto_confirms = true
}

# ----------------------------------------------------------------------------- CloudWatch alarms (both modes)
# Each alarm names its runbook page under runbooks/.

resource "aws_cloudwatch_metric_alarm" "latency_p99" {
  for_each = var.target_group_arn_suffixes

  alarm_name          = "${var.name}-${each.key}-latency-p99"
  alarm_description   = "p99 latency of ${each.key} above ${var.latency_p99_threshold_seconds}s. Runbook: runbooks/pages/latency-budget-burn-fast.md"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "TargetResponseTime"
  extended_statistic  = "p99"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  threshold           = var.latency_p99_threshold_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  dimensions          = { LoadBalancer = var.alb_arn_suffix, TargetGroup = each.value }
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "errors_5xx" {
  for_each = var.target_group_arn_suffixes

  alarm_name          = "${var.name}-${each.key}-5xx"
  alarm_description   = "${each.key} returns 5xx. Runbook: runbooks/pages/error-budget-burn-fast.md"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_Target_5XX_Count"
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  threshold           = var.error_5xx_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  dimensions          = { LoadBalancer = var.alb_arn_suffix, TargetGroup = each.value }
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = var.tags
}

# 5xx the load balancer answers itself (no healthy target, target unreachable or timed out, a
# security group that drops the ALB): no target metric sees them.
resource "aws_cloudwatch_metric_alarm" "elb_5xx" {
  alarm_name          = "${var.name}-alb-5xx"
  alarm_description   = "The ALB itself answers 5xx (502/503/504: targets unreachable, unhealthy or timing out). Runbook: runbooks/pages/error-budget-burn-fast.md"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_ELB_5XX_Count"
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  threshold           = var.error_5xx_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  dimensions          = { LoadBalancer = var.alb_arn_suffix }
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = var.tags
}

# Requests the WAF blocks (any rule): an attack, or legitimate callers (the telephony platform
# outside waf_rate_limit_exempt_cidrs) being refused.
resource "aws_cloudwatch_metric_alarm" "waf_blocked" {
  count = var.waf_web_acl_name == null ? 0 : 1

  alarm_name          = "${var.name}-waf-blocked"
  alarm_description   = "WAF blocks more than ${var.waf_blocked_threshold} requests per 5 minutes: check the WAF log (aws-waf-logs-*) for the rule and source; a telephony range that is blocked belongs in waf_rate_limit_exempt_cidrs. Runbook: runbooks/pages/error-budget-burn-fast.md"
  namespace           = "AWS/WAFV2"
  metric_name         = "BlockedRequests"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.waf_blocked_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  dimensions          = { WebACL = var.waf_web_acl_name, Region = var.region, Rule = "ALL" }
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "no_healthy_targets" {
  for_each = var.target_group_arn_suffixes

  alarm_name          = "${var.name}-${each.key}-no-healthy-targets"
  alarm_description   = "${each.key} has fewer than 2 targets passing /readyz. Runbook: runbooks/pages/error-budget-burn-fast.md"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HealthyHostCount"
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 2
  threshold           = 2
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  dimensions          = { LoadBalancer = var.alb_arn_suffix, TargetGroup = each.value }
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "aurora_load" {
  alarm_name          = "${var.name}-aurora-${var.aurora_serverless ? "acu" : "cpu"}"
  alarm_description   = "Aurora ${var.aurora_serverless ? "ACU" : "CPU"} utilisation above 80%. Runbook: runbooks/pages/db-pool-saturated.md"
  namespace           = "AWS/RDS"
  metric_name         = var.aurora_serverless ? "ACUUtilization" : "CPUUtilization"
  statistic           = "Average"
  period              = 300
  evaluation_periods  = 3
  threshold           = 80
  comparison_operator = "GreaterThanThreshold"
  dimensions          = { DBClusterIdentifier = var.aurora_cluster_id }
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "aurora_replica_lag" {
  alarm_name          = "${var.name}-aurora-replica-lag"
  alarm_description   = "Aurora reader lag above 1s: failover would lose freshness. Runbook: runbooks/procedures/aurora-failover.md"
  namespace           = "AWS/RDS"
  metric_name         = "AuroraReplicaLagMaximum"
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  threshold           = 1000
  comparison_operator = "GreaterThanThreshold"
  dimensions          = { DBClusterIdentifier = var.aurora_cluster_id }
  alarm_actions       = [aws_sns_topic.alerts.arn]
  tags                = var.tags
}

# ----------------------------------------------------------------------------- Prometheus (large)

resource "aws_prometheus_workspace" "this" {
  count = local.prometheus ? 1 : 0

  alias       = var.name
  kms_key_arn = var.kms_key_arn
  tags        = var.tags
}

# Agentless scrape of pods annotated prometheus.io/scrape=true (each service's /metrics).
resource "aws_prometheus_scraper" "this" {
  count = local.prometheus ? 1 : 0

  alias = var.name

  source {
    eks {
      cluster_arn        = var.eks_cluster_arn
      subnet_ids         = var.scraper_subnet_ids
      security_group_ids = var.scraper_security_group_ids
    }
  }

  destination {
    amp {
      workspace_arn = aws_prometheus_workspace.this[0].arn
    }
  }

  scrape_configuration = yamlencode({
    global = { scrape_interval = "30s" }
    scrape_configs = [{
      job_name              = "meridian-pods"
      kubernetes_sd_configs = [{ role = "pod" }]
      # The series carry their own `service` (every kit metric) and `namespace` (the operator's
      # Release and Rollout gauges) labels; without this the pod's target labels below would
      # overwrite them (every operator series would claim the operator's own namespace).
      honor_labels = true
      relabel_configs = [
        { source_labels = ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], action = "keep", regex = "true" },
        { source_labels = ["__meta_kubernetes_namespace"], target_label = "namespace" },
        { source_labels = ["__meta_kubernetes_pod_name"], target_label = "pod" },
        { source_labels = ["__meta_kubernetes_pod_label_app_kubernetes_io_name"], target_label = "service" },
      ]
    }]
  })

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.eks_cluster_arn != null && var.eks_cluster_name != null && length(var.scraper_subnet_ids) >= 2
      error_message = "mode = prometheus needs eks_cluster_arn, eks_cluster_name and at least two scraper_subnet_ids."
    }
  }
}

# The scraper reads the Kubernetes API (pod discovery) and the pods' /metrics as its own role:
# without an access entry the API refuses it and nothing is scraped. The entry maps the role to
# the user aps-collector-user, which the ClusterRole/ClusterRoleBinding in output
# scraper_rbac_manifests (applied from the deploy agent with the other in-cluster objects)
# lets list/watch pods and get /metrics, the permissions AWS documents for the managed collector.
resource "aws_eks_access_entry" "scraper" {
  count = local.prometheus ? 1 : 0

  cluster_name  = var.eks_cluster_name
  principal_arn = aws_prometheus_scraper.this[0].role_arn
  type          = "STANDARD"
  user_name     = local.scraper_user
  tags          = var.tags
}

locals {
  scraper_user = "aps-collector-user"
  scraper_rbac_manifests = !local.prometheus ? {} : {
    aps-collector-role = yamlencode({
      apiVersion = "rbac.authorization.k8s.io/v1"
      kind       = "ClusterRole"
      metadata   = { name = "aps-collector-role" }
      rules = [
        { apiGroups = [""], resources = ["nodes", "nodes/proxy", "nodes/metrics", "services", "endpoints", "pods", "ingresses", "configmaps"], verbs = ["describe", "get", "list", "watch"] },
        { apiGroups = ["extensions", "networking.k8s.io"], resources = ["ingresses/status", "ingresses"], verbs = ["describe", "get", "list", "watch"] },
        { apiGroups = ["discovery.k8s.io"], resources = ["endpointslices"], verbs = ["describe", "get", "list", "watch"] },
        { nonResourceURLs = ["/metrics"], verbs = ["get"] },
      ]
    })
    aps-collector-user-role-binding = yamlencode({
      apiVersion = "rbac.authorization.k8s.io/v1"
      kind       = "ClusterRoleBinding"
      metadata   = { name = "aps-collector-user-role-binding" }
      subjects   = [{ kind = "User", name = local.scraper_user, apiGroup = "rbac.authorization.k8s.io" }]
      roleRef    = { kind = "ClusterRole", name = "aps-collector-role", apiGroup = "rbac.authorization.k8s.io" }
    })
  }
}

resource "aws_prometheus_alert_manager_definition" "this" {
  count = local.prometheus ? 1 : 0

  workspace_id = aws_prometheus_workspace.this[0].id
  definition = yamlencode({
    alertmanager_config = yamlencode({
      route = { receiver = "sns", group_by = ["alertname", "service"], group_wait = "30s", repeat_interval = "1h" }
      receivers = [{
        name = "sns"
        sns_configs = [{
          topic_arn = aws_sns_topic.alerts.arn
          sigv4     = { region = split(":", aws_sns_topic.alerts.arn)[3] }
          subject   = "meridian ${var.name}"
        }]
      }]
    })
  })
}

# SLO alerts on the two series every service exports (docs/architecture.md, "Service conventions").
resource "aws_prometheus_rule_group_namespace" "slo" {
  count = local.prometheus ? 1 : 0

  name         = "meridian-slo"
  workspace_id = aws_prometheus_workspace.this[0].id
  data = yamlencode({
    groups = [{
      name = "meridian-slo"
      rules = [
        {
          alert       = "HighErrorRate"
          expr        = "sum by (service) (rate(http_requests_total{status=~\"5..\"}[5m])) / sum by (service) (rate(http_requests_total[5m])) > 0.01"
          "for"       = "5m"
          labels      = { severity = "page" }
          annotations = { summary = "{{ $labels.service }} 5xx ratio above 1%", runbook = "runbooks/pages/error-budget-burn-fast.md" }
        },
        {
          alert       = "HighLatencyP99"
          expr        = "histogram_quantile(0.99, sum by (service, le) (rate(http_request_duration_seconds_bucket[5m]))) > ${var.latency_p99_threshold_seconds}"
          "for"       = "5m"
          labels      = { severity = "page" }
          annotations = { summary = "{{ $labels.service }} p99 above ${var.latency_p99_threshold_seconds}s", runbook = "runbooks/pages/latency-budget-burn-fast.md" }
        },
      ]
    }]
  })
}

# ----------------------------------------------------------------------------- runbooks: recording rules and dashboards (large)
# Both are read from runbooks/ at plan time, so the repository keeps one copy of each: the
# recording rules of runbooks/rules/*.rules.yml (the SLO burn panels of the dashboards read
# meridian:* series, which exist only where these rules are evaluated) and the Grafana dashboards
# of runbooks/dashboards/*.json (runbooks/README.md, "Dashboards"). Only groups made entirely of
# recording rules are loaded; the runbook alert groups are not (alerting here is the
# meridian-slo namespace above). A copy of terraform/ without runbooks/ next to it renders
# neither (fileset of a missing directory is empty); the module's tests assert what the real
# tree renders.

locals {
  runbooks_dir    = "${path.module}/../../../runbooks"
  rule_files      = local.prometheus ? sort(fileset("${local.runbooks_dir}/rules", "*.rules.yml")) : []
  dashboard_files = local.prometheus ? sort(fileset("${local.runbooks_dir}/dashboards", "*.json")) : []

  recording_groups = flatten([
    for f in local.rule_files : [
      for g in yamldecode(file("${local.runbooks_dir}/rules/${f}")).groups : g
      if length(g.rules) > 0 && alltrue([for r in g.rules : can(r.record)])
    ]
  ])

  # One ConfigMap per dashboard for the Grafana dashboard sidecar (grafana Helm chart,
  # sidecar.dashboards.enabled, label grafana_dashboard=1, folderAnnotation grafana_folder). They
  # are outputs, not resources: Terraform never talks to the cluster (private endpoint); the
  # Buildkite cluster-addons step applies them like kubernetes_env_manifests.
  dashboard_manifests = {
    for f in local.dashboard_files : "grafana-dashboard-meridian-${trimsuffix(f, ".json")}" => yamlencode({
      apiVersion = "v1"
      kind       = "ConfigMap"
      metadata = {
        name      = "grafana-dashboard-meridian-${trimsuffix(f, ".json")}"
        namespace = var.dashboards_namespace
        labels = {
          grafana_dashboard           = "1"
          "app.kubernetes.io/part-of" = "meridian"
        }
        annotations = { grafana_folder = var.dashboards_folder }
      }
      data = { (f) = file("${local.runbooks_dir}/dashboards/${f}") }
    })
  }
}

resource "aws_prometheus_rule_group_namespace" "recording" {
  count = local.prometheus && length(local.recording_groups) > 0 ? 1 : 0

  name         = "meridian-recording"
  workspace_id = aws_prometheus_workspace.this[0].id
  data         = yamlencode({ groups = local.recording_groups })
}

data "aws_iam_policy_document" "sns" {
  statement {
    sid       = "AlarmsAndAlertmanagerPublish"
    actions   = ["sns:Publish", "sns:GetTopicAttributes"]
    resources = [aws_sns_topic.alerts.arn]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "aps.amazonaws.com"]
    }
  }
}

resource "aws_sns_topic_policy" "alerts" {
  arn    = aws_sns_topic.alerts.arn
  policy = data.aws_iam_policy_document.sns.json
}

# ----------------------------------------------------------------------------- operator query access
# The operator's release analysis queries the two SLO series in AMP. The permission goes on the
# operator's one IAM role (modules/eks: IRSA on its service account, input operator_role_name):
# a second role by Pod Identity on the same service account would never be used, the SDKs'
# credential chain taking IRSA's web identity first.

data "aws_iam_policy_document" "operator" {
  count = local.prometheus ? 1 : 0

  statement {
    sid       = "QuerySloMetrics"
    actions   = ["aps:QueryMetrics", "aps:GetSeries", "aps:GetLabels", "aps:GetMetricMetadata"]
    resources = [aws_prometheus_workspace.this[0].arn]
  }
}

resource "aws_iam_role_policy" "operator" {
  count = local.prometheus ? 1 : 0

  name   = "query-prometheus"
  role   = var.operator_role_name
  policy = data.aws_iam_policy_document.operator[0].json

  lifecycle {
    precondition {
      condition     = var.operator_role_name != null
      error_message = "mode = prometheus needs operator_role_name (modules/eks output operator_role_name): the operator's release analysis queries the workspace."
    }
  }
}
