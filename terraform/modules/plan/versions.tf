terraform {
  # Provider-free on purpose: `terraform init -backend=false && terraform test` runs offline.
  required_version = ">= 1.9.0"
}
