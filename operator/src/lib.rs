//! The meridian operator: blue-green [`crd::Release`]s with a migration step, SLO analysis and
//! automatic rollback, and multi-country [`crd::Rollout`]s (docs/architecture.md, "Delivery
//! contract").
//!
//! Decisions are pure functions ([`release::state::decide`], [`rollout::plan`]) from observed state
//! and a clock to the next phase and a list of actions; the reconcilers only gather observations
//! and execute actions. That split is what lets the interesting behaviour be tested exhaustively
//! without a cluster, and the I/O be tested against a mocked API server.

pub mod crd;
pub mod metrics;
pub mod preflight;
pub mod rbac;
pub mod release;
pub mod rollout;
pub mod serve;
