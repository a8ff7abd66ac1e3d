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
pub mod gauges;
pub mod generate;
pub mod import;
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
    sample_data: |pool| Box::pin(async move { Ok(load_sample_data(&pool).await.map(drop)?) }),
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
/// migrations applied). With `ctx.background` it samples the importer's last outcome into
/// gauges ([`gauges`]).
pub fn start_with(ctx: kit::Ctx, settings: Settings) -> kit::ServiceParts {
    let ready = kit::health::DbReady::for_service(&SERVICE, ctx.pool.clone());
    let state = AppState {
        pool: ctx.pool.clone(),
        settings: Arc::new(settings),
        clock: ctx.clock,
    };
    let mut parts = kit::ServiceParts::new(api::routes(state), vec![ready]);
    if ctx.background {
        parts
            .background
            .push(gauges::spawn(ctx.pool, gauges::SAMPLE_EVERY));
    }
    parts
}

/// The real input files (services/learning/data), compiled in so that an installed binary loads
/// them without a data folder next to it. There is no practices file: its content was never
/// published (data/README.md).
pub const SAMPLE_FILES: &[(&str, &[u8])] = &[
    (
        "aqaGCSEBio_course.json",
        include_bytes!("../data/aqaGCSEBio_course.json"),
    ),
    (
        "aqaGCSEBio_exams.json",
        include_bytes!("../data/aqaGCSEBio_exams.json"),
    ),
    ("user_data.json", include_bytes!("../data/user_data.json")),
];

/// Imports the bundled real files (`meridian serve` on every start). The import is idempotent,
/// so only the first start inserts anything; later ones report 0 inserted, 0 updated.
pub async fn load_sample_data(pool: &PgPool) -> Result<import::Report, import::ImportError> {
    let sources = SAMPLE_FILES
        .iter()
        .map(|(name, bytes)| import::Source::bytes(name, bytes))
        .collect();
    let opts = import::Options {
        progress: import::Progress::Quiet,
        ..import::Options::default()
    };
    let report = import::run_sources(pool, sources, &opts).await?;
    tracing::info!(
        inserted = report.total_inserted(),
        updated = report.total_updated(),
        "learning sample data imported"
    );
    Ok(report)
}
