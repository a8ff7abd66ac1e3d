# Two countries' CIDRs never overlap, and the overlap detector itself can fail.

run "se" {
  command = plan

  variables {
    country = "se"
  }
}

run "no" {
  command = plan

  variables {
    country = "no"
  }
}

run "dk_staging" {
  command = plan

  variables {
    country     = "dk"
    environment = "staging"
  }
}

run "se_and_no_vpcs_are_disjoint" {
  command = plan

  module {
    source = "./cidr-overlap"
  }

  variables {
    cidrs = [run.se.vpc_cidr, run.no.vpc_cidr, run.dk_staging.vpc_cidr]
  }

  assert {
    condition     = length(output.overlaps) == 0
    error_message = "country VPCs overlap: ${join(", ", output.overlaps)}"
  }
}

run "se_and_no_subnets_are_disjoint" {
  command = plan

  module {
    source = "./cidr-overlap"
  }

  variables {
    cidrs = concat(run.se.all_subnets, run.no.all_subnets)
  }

  assert {
    condition     = length(output.overlaps) == 0
    error_message = "subnets overlap: ${join(", ", output.overlaps)}"
  }
}

run "every_registered_country_is_disjoint" {
  command = plan

  module {
    source = "./cidr-overlap"
  }

  variables {
    cidrs = values(run.se.all_country_cidrs)
  }

  assert {
    condition     = length(output.overlaps) == 0 && length(var.cidrs) == 8
    error_message = "registry CIDRs overlap: ${join(", ", output.overlaps)}"
  }
}

# The detector must be able to fail: a /17 inside a /16 is an overlap, adjacent /16s are not.
run "overlap_detector_detects_overlap" {
  command = plan

  module {
    source = "./cidr-overlap"
  }

  variables {
    cidrs = ["10.10.0.0/16", "10.11.0.0/16", "10.10.128.0/17"]
  }

  assert {
    condition     = output.overlaps == ["10.10.0.0/16 overlaps 10.10.128.0/17"]
    error_message = "the overlap detector missed a nested CIDR: ${jsonencode(output.overlaps)}"
  }
}

run "overlap_detector_identical_blocks" {
  command = plan

  module {
    source = "./cidr-overlap"
  }

  variables {
    cidrs = ["10.12.0.0/16", "10.12.0.0/16"]
  }

  assert {
    condition     = length(output.overlaps) == 1
    error_message = "the overlap detector missed identical CIDRs."
  }
}
