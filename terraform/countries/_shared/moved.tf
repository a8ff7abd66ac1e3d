# The modules used to be called from this root directly (module.network, ...). These blocks
# move their state to module.stack.module.<name> on the next plan/apply, so an existing
# country keeps every resource (plan: "has moved to", 0 to destroy). Without them Terraform
# would destroy and recreate the whole country, database included (deletion protection would
# stop the Aurora destroy halfway). Keep them until every country has applied this layout;
# tests/policy/terraform.sh checks that each root moves every module of the old layout.

moved {
  from = module.plan
  to   = module.stack.module.plan
}

moved {
  from = module.secrets
  to   = module.stack.module.secrets
}

moved {
  from = module.network
  to   = module.stack.module.network
}

moved {
  from = module.aurora
  to   = module.stack.module.aurora
}

moved {
  from = module.eks
  to   = module.stack.module.eks
}

moved {
  from = module.alb
  to   = module.stack.module.alb
}

moved {
  from = module.ecs
  to   = module.stack.module.ecs
}

moved {
  from = module.observability
  to   = module.stack.module.observability
}
