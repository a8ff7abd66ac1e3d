//! Rollout: the pure wave planner ([`plan`]) and the thin layer that reaches target clusters
//! through kubeconfig Secrets ([`clusters`]), signing in to EKS with the operator's IAM role
//! ([`eks_token`]).

pub mod clusters;
pub mod eks_token;
pub mod plan;
