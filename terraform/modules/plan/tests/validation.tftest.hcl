# Bad inputs are rejected by variable validation.

run "rejects_unregistered_country" {
  command = plan

  variables {
    country = "xx"
  }

  expect_failures = [var.country]
}

run "rejects_upper_case_country" {
  command = plan

  variables {
    country = "SE"
  }

  expect_failures = [var.country]
}

run "rejects_unknown_profile" {
  command = plan

  variables {
    country = "se"
    profile = "medium"
  }

  expect_failures = [var.profile]
}

run "rejects_single_az" {
  command = plan

  variables {
    country  = "se"
    az_count = 1
  }

  expect_failures = [var.az_count]
}

run "rejects_unknown_environment" {
  command = plan

  variables {
    country     = "se"
    environment = "dev"
  }

  expect_failures = [var.environment]
}

run "rejects_duplicate_services" {
  command = plan

  variables {
    country  = "se"
    services = ["calls", "calls"]
  }

  expect_failures = [var.services]
}

run "rejects_bad_cidr_in_detector" {
  command = plan

  module {
    source = "./cidr-overlap"
  }

  variables {
    cidrs = ["10.10.0.0"]
  }

  expect_failures = [var.cidrs]
}
