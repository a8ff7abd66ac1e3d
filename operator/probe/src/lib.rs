//! Placeholder; see the operator issue.
