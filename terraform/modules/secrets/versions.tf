terraform {
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 7.0"
      # Generates secret values (ephemeral, module ./generated). The same configuration as the
      # default in a stack; a separate name so that offline tests can mock everything else
      # (mocked providers cannot open ephemeral resources).
      configuration_aliases = [aws.generator]
    }
  }
}
