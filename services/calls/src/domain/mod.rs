//! Pure call-control logic: the configuration model, its validation, the decision engine and the
//! signed state token. Nothing here does I/O or reads the clock; callers pass `now`.

pub mod engine;
pub mod model;
pub mod token;
pub mod validate;
