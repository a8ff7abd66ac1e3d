//! What every meridian service shares, so that the five services look and behave the same:
//! configuration from the environment, bearer-token identity ([`auth`]), JSON logs with request ids, Prometheus metrics labelled by
//! route template, health endpoints, RFC 9457 problem+json errors, keyset pagination, the
//! PostgreSQL pool and per-service migrations, the OpenAPI document, and graceful shutdown.
//!
//! A service crate exports one [`Service`] (the contract, [`service`]): its schema, migrations and
//! a `start` that turns a [`Ctx`] into [`ServiceParts`]; [`app`] turns one or more of them into
//! a finished HTTP application. The `meridian` binary mounts all of them in one process, each
//! per-service binary mounts one ([`app::main`]).

pub mod app;
pub mod auth;
pub mod clock;
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
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod testing;
pub mod validate;

pub use auth::Caller;
pub use error::{ApiError, ApiResult, FieldError};
pub use extract::{Created, IdempotencyKey, Json, NoContent, Path, Query};
pub use service::{Ctx, Service, ServiceParts};
pub use validate::Validator;
