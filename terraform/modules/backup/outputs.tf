output "vault_arn" {
  description = "Primary-region backup vault (locked)."
  value       = aws_backup_vault.primary.arn
}

output "dr_vault_arn" {
  description = "DR-region backup vault (locked) holding a copy of every recovery point: what a region evacuation restores from."
  value       = aws_backup_vault.dr.arn
}

output "plan_id" {
  description = "Backup plan ID."
  value       = aws_backup_plan.this.id
}
