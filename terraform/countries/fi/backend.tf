# The only per-country literals besides terraform.tfvars: state location and country code.
terraform {
  backend "s3" {
    bucket       = "meridian-tfstate-prod-fi"
    key          = "countries/fi/terraform.tfstate"
    region       = "eu-north-1"
    encrypt      = true
    use_lockfile = true
  }
}

locals {
  country = "fi"
}
