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

# The country's DR region (modules/plan registry, dr_region): the locked vault that holds a copy
# of every backup, and its key. Same account, same guard.
provider "aws" {
  alias               = "dr"
  region              = module.stack.dr_region
  allowed_account_ids = [var.aws_account_id]

  default_tags {
    tags = module.stack.tags
  }
}
