//! Release: the pure state machine ([`state`]), the objects it writes ([`manifests`], pure too)
//! and the reconciler that executes it ([`reconcile`]).

pub mod manifests;
pub mod reconcile;
pub mod state;
