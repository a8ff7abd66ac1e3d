terraform {
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 7.0"
      # aws.dr: the country's disaster-recovery region (plan: dr_region), where the copies live.
      configuration_aliases = [aws.dr]
    }
  }
}
