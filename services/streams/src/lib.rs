//! # streams — the concurrent video-stream guard
//!
//! A streaming service asks this API before it starts a stream. Each user may watch at most
//! `max_streams` streams at once (3 by default, 1..=20 per-user overrides). A session is a
//! *lease*: clients heartbeat every 30 s and a session that misses heartbeats for 90 s stops
//! counting by itself, so crashed players never hold slots.
//!
//! - [`api`]: axum handlers and the request/response types;
//! - [`domain`]: validation and outcome rules (pure); [`settings`]: from the environment;
//! - [`store`]: the SQL, including the one-round-trip admission function;
//! - [`sweeper`]: deletes expired leases in bounded batches.
//!
//! The admission decision is one PostgreSQL statement that serializes on a per-user advisory
//! lock, so the limit holds across any number of replicas (see docs/streams.md).

pub mod api;
pub mod domain;
pub mod settings;
pub mod store;
pub mod sweeper;

use std::sync::Arc;

use aide::axum::ApiRouter;
use sqlx::{PgPool, migrate::Migrator};

pub use api::AppState;
pub use settings::Settings;

pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/streams");

/// The service, as every runner sees it (kit's contract, docs/adding-a-service.md).
pub static SERVICE: kit::Service = kit::Service {
    name: "streams",
    schema: "streams",
    migrator: &MIGRATOR,
    start_without_db: false,
    check_settings: |_dev| Settings::from_env().map(drop),
    start: |ctx| Box::pin(async move { start(ctx) }),
    sample_data: |pool| Box::pin(async move { Ok(load_sample_data(&pool).await?) }),
};

/// `SERVICE.start`: settings from the environment (defaults for the OpenAPI-only start).
fn start(ctx: kit::Ctx) -> Result<kit::ServiceParts, kit::service::BoxError> {
    let settings = if ctx.background {
        Settings::from_env()?
    } else {
        Settings::default()
    };
    Ok(start_with(ctx, settings))
}

/// Starts the service with explicit settings (tests): routes, readiness (database reachable,
/// migrations applied) and, unless `ctx` is docs-only, the sweeper.
pub fn start_with(ctx: kit::Ctx, settings: Settings) -> kit::ServiceParts {
    let ready = kit::health::DbReady::for_service(&SERVICE, ctx.pool.clone());
    let mut parts = kit::ServiceParts::new(router(ctx.pool.clone(), settings), vec![ready]);
    if ctx.background {
        parts.background.push(sweeper::spawn(ctx.pool, settings));
    }
    parts
}

fn router(pool: PgPool, settings: Settings) -> ApiRouter {
    api::routes(AppState {
        pool,
        settings: Arc::new(settings),
    })
}

/// A few limit overrides for local exploration (idempotent).
pub async fn load_sample_data(pool: &PgPool) -> Result<(), sqlx::Error> {
    for (user, limit) in [("family-plan-user", 5), ("single-screen-user", 1)] {
        store::set_limit(pool, user, limit).await?;
    }
    Ok(())
}
