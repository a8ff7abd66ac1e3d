output "vpc_id" {
  description = "VPC ID."
  value       = aws_vpc.this.id
}

output "vpc_cidr_block" {
  description = "VPC CIDR block."
  value       = aws_vpc.this.cidr_block
}

output "azs" {
  description = "Availability zones in subnet order."
  value       = var.azs
}

output "public_subnet_ids" {
  description = "Public subnet IDs (ALB)."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Private subnet IDs (EKS nodes/pods, Fargate tasks)."
  value       = aws_subnet.private[*].id
}

output "database_subnet_ids" {
  description = "Database subnet IDs (Aurora)."
  value       = aws_subnet.database[*].id
}

output "nat_public_ips" {
  description = "Egress IPs (allow-list these at partners)."
  value       = aws_eip.nat[*].public_ip
}

output "nat_gateway_count" {
  description = "Number of NAT gateways (1 when single_nat_gateway)."
  value       = local.nat_count
}
