//! Rollout: the pure wave planner ([`plan`]) and the thin layer that reaches target clusters
//! through kubeconfig Secrets ([`clusters`]).

pub mod clusters;
pub mod plan;
