//! Release: the pure state machine ([`state`]) and the reconciler that executes it
//! ([`reconcile`]).

pub mod reconcile;
pub mod state;
