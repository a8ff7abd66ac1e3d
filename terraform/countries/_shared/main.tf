# Thin country root: the whole stack is modules/stack, fed with the country code (backend.tf)
# and terraform.tfvars. The one copy for every country: countries/<cc>/main.tf is a symlink to
# this file (like moved.tf, variables.tf, outputs.tf, versions.tf); only backend.tf and
# terraform.tfvars are per country. Not a root itself: run Terraform in countries/<cc>.

module "stack" {
  source = "../../modules/stack"
  # aws.generator opens the ephemeral generators of secret values; in a country it is the same
  # provider (offline tests replace it, see modules/secrets/versions.tf).
  providers = {
    aws           = aws
    aws.generator = aws
    aws.dr        = aws.dr
  }

  country               = local.country
  environment           = "prod"
  profile               = var.profile
  certificate_arn       = var.certificate_arn
  api_hostname          = var.api_hostname
  image_registry        = var.image_registry
  image_tag             = var.image_tag
  alert_email_addresses = var.alert_email_addresses
  admin_role_arns       = var.admin_role_arns
  api_allowed_cidrs     = var.api_allowed_cidrs
  deploy_principal_arns = var.deploy_principal_arns

  oidc                        = var.oidc
  admin_ingress_cidrs         = var.admin_ingress_cidrs
  telephony_source_cidrs      = var.telephony_source_cidrs
  calls_token_key_also_accept = var.calls_token_key_also_accept
}
