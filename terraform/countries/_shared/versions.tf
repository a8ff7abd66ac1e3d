terraform {
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 7.0"
    }
  }
}

provider "aws" {
  region              = module.stack.region
  allowed_account_ids = [var.aws_account_id]

  default_tags {
    tags = module.stack.tags
  }
}
