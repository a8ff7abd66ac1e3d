//! # learning — learning records
//!
//! Learners' attempts at exam and practice questions, with the curriculum and the assessments
//! they belong to, imported from four JSON sources (a Firebase export of attempts, the course,
//! the exam papers, the practice banks) into one normalized schema (docs/learning.md).
//!
//! - [`domain`]: the sources' rules, pure: Firebase keys, timestamps, the row each source record
//!   becomes (or why it is skipped), content hashes;
//! - [`import`]: the streaming, bulk, idempotent importer and its report (`meridian learning
//!   import`); [`generate`]: seeded input files at any scale, in the real shapes;
//! - [`store`]: the SQL (staging tables and set-based upserts);
//! - [`api`]: the HTTP routes under `/learning/v1`; [`settings`]: from the environment.

pub mod api;
pub mod domain;
pub mod settings;
pub mod store;

use std::sync::Arc;

use sqlx::{PgPool, migrate::Migrator};

pub use api::AppState;
pub use settings::Settings;

pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/learning");

/// The service, as every runner sees it (kit's contract, docs/adding-a-service.md).
pub static SERVICE: kit::Service = kit::Service {
    name: "learning",
    schema: "learning",
    migrator: &MIGRATOR,
    start_without_db: false,
    check_settings: |dev| Settings::from_env_with(dev).map(drop),
    start: |ctx| Box::pin(async move { start(ctx) }),
    sample_data: |pool| Box::pin(async move { Ok(load_sample_data(&pool).await?) }),
};

/// `SERVICE.start`: settings from the environment (defaults for the OpenAPI-only start).
fn start(ctx: kit::Ctx) -> Result<kit::ServiceParts, kit::service::BoxError> {
    let settings = if ctx.background {
        Settings::from_env_with(ctx.dev)?
    } else {
        Settings::default()
    };
    Ok(start_with(ctx, settings))
}

/// Starts the service with explicit settings (tests): routes and readiness (database reachable,
/// migrations applied). It has no background work.
pub fn start_with(ctx: kit::Ctx, settings: Settings) -> kit::ServiceParts {
    let ready = kit::health::DbReady::for_service(&SERVICE, ctx.pool.clone());
    let state = AppState {
        pool: ctx.pool,
        settings: Arc::new(settings),
        clock: ctx.clock,
    };
    kit::ServiceParts::new(api::routes(state), vec![ready])
}

/// Sample data: none yet. The importer of the bundled real files (services/learning/data) is
/// the next step of issue 14; until it lands `meridian serve` starts with empty tables.
#[allow(clippy::unused_async)]
pub async fn load_sample_data(_pool: &PgPool) -> Result<(), sqlx::Error> {
    Ok(())
}
