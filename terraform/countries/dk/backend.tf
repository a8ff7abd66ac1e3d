# The only per-country literals besides terraform.tfvars: state location and country code.
terraform {
  backend "s3" {
    bucket       = "meridian-tfstate-prod-dk"
    key          = "countries/dk/terraform.tfstate"
    region       = "eu-north-1"
    encrypt      = true
    use_lockfile = true
  }
}

locals {
  country = "dk"
}
