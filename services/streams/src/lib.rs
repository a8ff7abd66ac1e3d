//! # streams — the concurrent video-stream guard
//!
//! A streaming service asks this API before it starts a stream. Each user may watch at most
//! `max_streams` streams at once (3 by default, 1..=20 per-user overrides). A session is a
//! *lease*: clients heartbeat every 30 s and a session that misses heartbeats for 90 s stops
//! counting by itself, so crashed players never hold slots.
//!
//! - [`api`]: axum handlers and the request/response types;
//! - [`domain`]: settings, validation and outcome rules (pure);
//! - [`store`]: the SQL, including the one-round-trip admission function;
//! - [`sweeper`]: deletes expired leases in bounded batches.
//!
//! The admission decision is one PostgreSQL statement that serializes on a per-user advisory
//! lock, so the limit holds across any number of replicas (see docs/streams.md).

pub mod api;
pub mod domain;
pub mod store;
pub mod sweeper;

use std::sync::Arc;

use aide::axum::ApiRouter;
use sqlx::{PgPool, migrate::Migrator};

pub use api::AppState;
pub use domain::Settings;

pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/streams");

pub static SERVICE: kit::Service = kit::Service {
    name: "streams",
    schema: "streams",
    migrator: &MIGRATOR,
    start_without_db: false,
};

/// The service's routes (all under `/streams/v1`), without background work.
pub fn router(pool: PgPool, settings: Settings) -> ApiRouter {
    api::routes(AppState {
        pool,
        settings: Arc::new(settings),
    })
}

/// The routes plus the sweeper: what a running service needs.
pub fn start(pool: PgPool, settings: Settings) -> ApiRouter {
    sweeper::spawn(pool.clone(), settings);
    router(pool, settings)
}

/// A few limit overrides for local exploration (idempotent).
pub async fn load_sample_data(pool: &PgPool) -> Result<(), sqlx::Error> {
    for (user, limit) in [("family-plan-user", 5), ("single-screen-user", 1)] {
        store::set_limit(pool, user, limit).await?;
    }
    Ok(())
}
