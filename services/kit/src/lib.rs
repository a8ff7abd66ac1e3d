//! What every meridian service shares, so that the five services look and behave the same:
//! configuration from the environment, bearer-token identity ([`auth`]), JSON logs with request ids, Prometheus metrics labelled by
//! route template, health endpoints, RFC 9457 problem+json errors, keyset pagination, the
//! PostgreSQL pool and per-service migrations, the OpenAPI document, and graceful shutdown.
//!
//! A service crate supplies an [`aide::axum::ApiRouter`] and a [`Service`] description; [`app`]
//! turns one or more of them into a finished HTTP application. The `meridian` binary mounts all of
//! them in one process, each per-service binary mounts one.

pub mod app;
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod extract;
pub mod health;
pub mod metrics;
pub mod pagination;
pub mod pg;
pub mod secret;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod testing;
pub mod validate;

pub use app::Service;
pub use auth::Caller;
pub use error::{ApiError, ApiResult, FieldError};
pub use extract::{Created, IdempotencyKey, Json, NoContent, Path, Query};
pub use validate::Validator;
