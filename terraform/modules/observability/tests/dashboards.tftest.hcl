# Offline, with a mocked aws provider: what the module renders from runbooks/ (the recording
# rules loaded into AMP and the Grafana dashboard ConfigMaps), in both modes.

mock_provider "aws" {
  mock_resource "aws_prometheus_scraper" {
    defaults = { role_arn = "arn:aws:iam::111111111111:role/AWSServiceRoleForAmazonPrometheusScraper_mock" }
  }
  # Providers validate ARNs and policy JSON even when mocked.
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_resource "aws_sns_topic" {
    defaults = { arn = "arn:aws:sns:eu-north-1:111111111111:meridian-prod-se-alerts" }
  }
  mock_resource "aws_prometheus_workspace" {
    defaults = {
      arn = "arn:aws:aps:eu-north-1:111111111111:workspace/ws-00000000-0000-0000-0000-000000000000"
      id  = "ws-00000000-0000-0000-0000-000000000000"
    }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::111111111111:role/mock" }
  }
}

variables {
  name                      = "meridian-prod-se"
  kms_key_arn               = "arn:aws:kms:eu-north-1:111111111111:key/00000000-0000-0000-0000-000000000000"
  alb_arn_suffix            = "app/meridian-prod-se/0123456789abcdef"
  target_group_arn_suffixes = { streams = "targetgroup/streams/0123456789abcdef", calls = "targetgroup/calls/0123456789abcdef" }
  aurora_cluster_id         = "meridian-prod-se"
}

run "prometheus_mode_renders_dashboards_and_recording_rules" {
  command = apply

  variables {
    mode               = "prometheus"
    eks_cluster_arn    = "arn:aws:eks:eu-north-1:111111111111:cluster/meridian-prod-se"
    eks_cluster_name   = "meridian-prod-se"
    scraper_subnet_ids = ["subnet-a", "subnet-b"]
    operator_role_name = "meridian-prod-se-operator"
  }

  assert {
    condition = (
      aws_iam_role_policy.operator[0].role == "meridian-prod-se-operator"
      && jsonencode(one(data.aws_iam_policy_document.operator[0].statement).resources) == jsonencode([aws_prometheus_workspace.this[0].arn])
    )
    error_message = "the operator's one role (modules/eks, IRSA) may query this workspace; the module creates no second role for it."
  }

  assert {
    condition = (
      aws_eks_access_entry.scraper[0].principal_arn == aws_prometheus_scraper.this[0].role_arn
      && aws_eks_access_entry.scraper[0].cluster_name == "meridian-prod-se"
      && yamldecode(output.scraper_rbac_manifests["aps-collector-user-role-binding"]).subjects[0].name == aws_eks_access_entry.scraper[0].user_name
      && contains(yamldecode(output.scraper_rbac_manifests["aps-collector-role"]).rules[0].resources, "pods")
    )
    error_message = "the managed scraper's role has an EKS access entry whose user the RBAC binds to list pods and read /metrics (without it nothing is scraped)."
  }

  assert {
    condition     = toset(keys(output.dashboard_manifests)) == toset(["grafana-dashboard-meridian-attendance", "grafana-dashboard-meridian-calls", "grafana-dashboard-meridian-delivery", "grafana-dashboard-meridian-learning", "grafana-dashboard-meridian-playlists", "grafana-dashboard-meridian-streams"])
    error_message = "one dashboard ConfigMap per runbooks/dashboards/*.json (calls, delivery, learning, streams)"
  }

  assert {
    condition = alltrue([for m in values(output.dashboard_manifests) : (
      yamldecode(m).apiVersion == "v1" && yamldecode(m).kind == "ConfigMap" &&
      yamldecode(m).metadata.namespace == "monitoring" &&
      yamldecode(m).metadata.labels.grafana_dashboard == "1" &&
      yamldecode(m).metadata.annotations.grafana_folder == "Meridian"
    )])
    error_message = "every dashboard is a v1 ConfigMap in monitoring, labelled grafana_dashboard=1 for the sidecar, in folder Meridian"
  }

  assert {
    condition = alltrue([for k, m in output.dashboard_manifests : (
      length(yamldecode(m).data) == 1 &&
      jsondecode(values(yamldecode(m).data)[0]).uid == trimprefix(k, "grafana-dashboard-")
    )])
    error_message = "each ConfigMap holds exactly its dashboard's JSON, whose uid is meridian-<file name>"
  }

  assert {
    # kubectl apply (client side) keeps the whole object in an annotation limited to 256 KiB.
    condition     = alltrue([for m in values(output.dashboard_manifests) : length(m) < 262144])
    error_message = "a dashboard ConfigMap is too large for kubectl apply's last-applied annotation (256 KiB)"
  }

  assert {
    condition     = output.recording_rule_groups == ["meridian-slo-objectives", "meridian-slo-sli"]
    error_message = "the recording-rule groups of runbooks/rules (slo.rules.yml) are loaded, and only those"
  }

  assert {
    condition = alltrue(flatten([
      for g in yamldecode(aws_prometheus_rule_group_namespace.recording[0].data).groups : [for r in g.rules : can(r.record) && !can(r.alert)]
    ]))
    error_message = "the meridian-recording namespace holds recording rules only (no runbook alert is loaded twice)"
  }

  assert {
    condition     = contains([for g in yamldecode(aws_prometheus_rule_group_namespace.recording[0].data).groups : g.interval if can(g.interval)], "30s")
    error_message = "the SLI group keeps its 30 s evaluation interval"
  }
}

run "cloudwatch_mode_renders_nothing_for_prometheus" {
  command = apply

  variables {
    mode = "cloudwatch"
  }

  assert {
    condition     = length(output.dashboard_manifests) == 0 && length(output.recording_rule_groups) == 0
    error_message = "without Prometheus (small countries) there are no dashboards and no recording rules"
  }

  assert {
    condition     = length(aws_prometheus_rule_group_namespace.recording) == 0
    error_message = "no AMP rule namespace in cloudwatch mode"
  }
}

run "alarms_on_alb_generated_5xx_and_waf_blocks" {
  command = apply

  variables {
    mode             = "cloudwatch"
    waf_web_acl_name = "meridian-prod-dk"
    region           = "eu-north-1"
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.elb_5xx.metric_name == "HTTPCode_ELB_5XX_Count"
      && aws_cloudwatch_metric_alarm.elb_5xx.dimensions == tomap({ LoadBalancer = var.alb_arn_suffix })
      && contains(aws_cloudwatch_metric_alarm.elb_5xx.alarm_actions, aws_sns_topic.alerts.arn)
    )
    error_message = "5xx the ALB answers itself (no target reached) raise an alarm to the alert topic."
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.waf_blocked[0].namespace == "AWS/WAFV2" && aws_cloudwatch_metric_alarm.waf_blocked[0].metric_name == "BlockedRequests"
      && aws_cloudwatch_metric_alarm.waf_blocked[0].dimensions == tomap({ WebACL = "meridian-prod-dk", Region = "eu-north-1", Rule = "ALL" })
      && contains(aws_cloudwatch_metric_alarm.waf_blocked[0].alarm_actions, aws_sns_topic.alerts.arn)
    )
    error_message = "requests blocked by the WAF (any rule) raise an alarm to the alert topic."
  }
}
