output "cluster_name" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.this.name
}

output "cluster_arn" {
  description = "ECS cluster ARN."
  value       = aws_ecs_cluster.this.arn
}

output "service_names" {
  description = "Service name => ECS service name (blue; a blue-green service's green one is in blue_green)."
  value       = { for s, svc in aws_ecs_service.service : s => svc.name if contains(keys(var.services), s) }
}

output "blue_green" {
  description = "Blue-green service => the target `meridian-deploy ecs` reads (also published in SSM under deploy_parameter_prefix): cluster, ECS services and target groups by colour, listener rules, preview URL."
  value = {
    for s, svc in local.blue_green : s => {
      cluster                   = aws_ecs_cluster.this.name
      services                  = { blue = aws_ecs_service.service[s].name, green = aws_ecs_service.service["${s}-green"].name }
      target_groups             = { blue = svc.target_group_arn, green = svc.green_target_group_arn }
      listener_rule_arn         = svc.production_listener_rule_arn
      preview_listener_rule_arn = svc.preview_listener_rule_arn
      preview_url               = var.preview_url
      capacity                  = { min = svc.desired_count, max = svc.max_count }
    }
  }
}

output "task_definition_families" {
  description = "Service name => task definition family (Buildkite registers new revisions with the new image SHA; migrations run as a one-off task of the same family with the command overridden)."
  value       = { for s, td in aws_ecs_task_definition.service : s => td.family }
}

output "tasks_security_group_id" {
  description = "Security group of the tasks: allow it into Aurora."
  value       = aws_security_group.tasks.id
}

output "task_role_arns" {
  description = "Service name => task role ARN."
  value       = { for s, r in aws_iam_role.task : s => r.arn }
}

output "execution_role_arns" {
  description = "Service name => execution role ARN (the only principal that reads that service's runtime secrets)."
  value       = { for s, r in aws_iam_role.execution : s => r.arn }
}

output "containers" {
  description = "Service name => its container definition as registered (image, environment, secrets as ARNs, never values): the base Buildkite registers new revisions from."
  value       = { for s, td in aws_ecs_task_definition.service : s => one(jsondecode(td.container_definitions)) }
}

output "deploy_policy_json" {
  description = "IAM policy (JSON) of what `meridian-deploy ecs` and the production step do to this module's blue-green services: attached to deploy_role_arn, or to attach to a deploy role made elsewhere. null without blue-green services."
  value       = try(data.aws_iam_policy_document.deploy[0].json, null)
}

output "deploy_role_arn" {
  description = "Role deploy_principal_arns may assume to release the blue-green services (the Buildkite deploy agents' AWS profile for this country). null without deploy_principal_arns or blue-green services."
  value       = try(aws_iam_role.deploy[0].arn, null)
}
