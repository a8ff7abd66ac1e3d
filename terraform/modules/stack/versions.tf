terraform {
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 7.0"
      # Generates secret values (modules/secrets/generated); the root passes its default
      # provider. Separate so that offline tests can mock everything else.
      # aws.dr: the country's DR region (plan: dr_region), for the backup copies' vault and key.
      configuration_aliases = [aws.generator, aws.dr]
    }
  }
}
