output "alb_arn" {
  description = "ALB ARN."
  value       = aws_lb.this.arn
}

output "alb_arn_suffix" {
  description = "ALB ARN suffix (CloudWatch LoadBalancer dimension)."
  value       = aws_lb.this.arn_suffix
}

output "dns_name" {
  description = "ALB DNS name: point the country's API record (Route 53 alias) here."
  value       = aws_lb.this.dns_name
}

output "zone_id" {
  description = "ALB hosted zone ID for Route 53 alias records."
  value       = aws_lb.this.zone_id
}

output "security_group_id" {
  description = "ALB security group: allow it into the service tasks/pods on their port."
  value       = aws_security_group.alb.id
}

output "target_group_arns" {
  description = "Service name => target group ARN."
  value       = { for s, tg in aws_lb_target_group.this : s => tg.arn }
}

output "target_group_arn_suffixes" {
  description = "Service name => target group ARN suffix (CloudWatch TargetGroup dimension)."
  value       = { for s, tg in aws_lb_target_group.this : s => tg.arn_suffix }
}

output "lb_controller_role_arn" {
  description = "IAM role of the AWS Load Balancer Controller (null on ECS countries)."
  value       = try(aws_iam_role.lbc[0].arn, null)
}

output "admin_target_group_arns" {
  description = "Service name => target group of its admin routes on the internal ALB (only services with admin_path_patterns)."
  value       = { for s, tg in aws_lb_target_group.admin : s => tg.arn }
}

output "internal_dns_name" {
  description = "Internal ALB DNS name (admin routes; null without admin paths): point the admin hostname (private record) here."
  value       = try(aws_lb.internal[0].dns_name, null)
}

output "internal_zone_id" {
  description = "Internal ALB hosted zone ID for alias records."
  value       = try(aws_lb.internal[0].zone_id, null)
}

output "internal_security_group_id" {
  description = "Internal ALB security group: allow it into the admin services' tasks/pods on their port (null without admin paths)."
  value       = try(aws_security_group.internal[0].id, null)
}

output "target_group_bindings" {
  description = "TargetGroupBinding manifests (YAML) that the Buildkite cluster-addons step applies on EKS: each binds the service's active Service to its target group (<service>), and to its admin target group on the internal ALB (<service>-admin)."
  value = merge(
    {
      for s, tg in aws_lb_target_group.this : s => yamlencode({
        apiVersion = "elbv2.k8s.aws/v1beta1"
        kind       = "TargetGroupBinding"
        metadata   = { name = s, namespace = var.kubernetes_namespace }
        spec = {
          serviceRef     = { name = s, port = var.services[s].port }
          targetGroupARN = tg.arn
          targetType     = "ip"
        }
      })
    },
    {
      for s, tg in aws_lb_target_group.admin : "${s}-admin" => yamlencode({
        apiVersion = "elbv2.k8s.aws/v1beta1"
        kind       = "TargetGroupBinding"
        metadata   = { name = "${s}-admin", namespace = var.kubernetes_namespace }
        spec = {
          serviceRef     = { name = s, port = var.services[s].port }
          targetGroupARN = tg.arn
          targetType     = "ip"
        }
      })
    },
  )
}

output "listener_rule_arns" {
  description = "Service => ARNs of the listener rules that forward to its target groups (public, test listener with blue_green, and internal for admin routes): an ECS service registering into a target group must be created after the rule that attaches it to a load balancer."
  value = {
    for s, r in aws_lb_listener_rule.service : s => concat(
      [r.arn],
      [for k, p in aws_lb_listener_rule.preview : p.arn if k == s],
      [for k, a in aws_lb_listener_rule.admin : a.arn if k == s],
      [for k, a in aws_lb_listener_rule.admin_method : a.arn if local.method_admin[k].service == s],
    )
  }
}

output "waf_web_acl_name" {
  description = "Name of the WAF web ACL (the WebACL dimension of its CloudWatch metrics); null without WAF."
  value       = try(aws_wafv2_web_acl.this[0].name, null)
}

output "green_target_group_arns" {
  description = "Service => ARN of its green target group (blue_green; blue is target_group_arns)."
  value       = { for s, tg in aws_lb_target_group.green : s => tg.arn }
}

output "production_listener_rule_arns" {
  description = "Service => ARN of the public listener rule forwarding its paths (with blue_green, to the active colour)."
  value       = { for s, r in aws_lb_listener_rule.service : s => r.arn }
}

output "preview_listener_rule_arns" {
  description = "Service => ARN of the test listener rule forwarding its paths to the colour being analysed (blue_green)."
  value       = { for s, r in aws_lb_listener_rule.preview : s => r.arn }
}

output "preview_url" {
  description = "Base URL of the blue-green test listener (blue_green), null without it."
  value       = var.blue_green ? "https://${coalesce(var.preview_hostname, aws_lb.this.dns_name)}:${var.preview_port}" : null
}
