# Thin country root: the whole stack is modules/stack, fed with the country code (backend.tf)
# and terraform.tfvars. The one copy for every country: countries/<cc>/main.tf is a symlink to
# this file (like moved.tf, variables.tf, outputs.tf, versions.tf); only backend.tf and
# terraform.tfvars are per country. Not a root itself: run Terraform in countries/<cc>.

module "stack" {
  source = "../../modules/stack"

  country               = local.country
  environment           = "prod"
  profile               = var.profile
  certificate_arn       = var.certificate_arn
  image_registry        = var.image_registry
  image_tag             = var.image_tag
  alert_email_addresses = var.alert_email_addresses
  admin_role_arns       = var.admin_role_arns
  api_allowed_cidrs     = var.api_allowed_cidrs
}
