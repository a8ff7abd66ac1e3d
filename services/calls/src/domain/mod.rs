//! Pure call-control logic: the configuration model, its validation, the decision engine and the
//! signed state token. Nothing here does I/O or reads a clock: callers pass `now` (from the
//! service's `kit::clock::Clock`) and the decision budget (an `engine::Budget`).

pub mod engine;
pub mod model;
pub mod token;
pub mod validate;
