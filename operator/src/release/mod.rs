//! Release: the pure state machine ([`state`]), the objects it writes ([`manifests`], pure too),
//! the RDS snapshot before a migration ([`snapshot`], behind a trait) and the reconciler that
//! executes it ([`reconcile`]).

pub mod manifests;
pub mod reconcile;
pub mod snapshot;
pub mod state;
