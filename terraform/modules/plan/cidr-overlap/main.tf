# Provider-free helper: given a list of IPv4 CIDRs, report every pair that overlaps.
# Used by the plan module (registry-wide precondition) and by `terraform test`.

variable "cidrs" {
  description = "IPv4 CIDR blocks to compare pairwise."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.cidrs : can(cidrhost(c, 0)) && can(regex("^[0-9.]+/[0-9]+$", c))])
    error_message = "Every entry must be an IPv4 CIDR block such as 10.10.0.0/16."
  }
}

locals {
  # Each CIDR as a half-open integer range [start, end).
  ranges = [
    for c in var.cidrs : {
      cidr = c
      start = sum([
        for i, octet in split(".", cidrhost(c, 0)) : tonumber(octet) * pow(256, 3 - i)
      ])
      size = pow(2, 32 - tonumber(split("/", c)[1]))
    }
  ]

  overlaps = flatten([
    for i, a in local.ranges : [
      for j, b in local.ranges : "${a.cidr} overlaps ${b.cidr}"
      if j > i && a.start < b.start + b.size && b.start < a.start + a.size
    ]
  ])
}

output "overlaps" {
  description = "One message per overlapping pair; empty when all CIDRs are disjoint."
  value       = local.overlaps
}
