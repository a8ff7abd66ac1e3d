//! # calls — mobile + PBX call control
//!
//! The telephony platform POSTs a webhook when a call starts and after every PBX step; the
//! answer (what to do next) must arrive within 3 s or the call fails. Decisions therefore come
//! from an immutable in-memory snapshot of all routing configuration ([`snapshot`]), never from
//! a database round trip; PostgreSQL only stores configuration (admin API) and call logs
//! (asynchronously, [`calllog`]). When the database is down the service keeps answering from the
//! last snapshot, or from a file snapshot on a cold start.
//!
//! - [`api`]: the decision webhook and the admin API;
//! - [`domain`]: configuration model, whole-graph validation, the decision engine, state tokens;
//! - [`store`]: SQL; [`snapshot`]: the snapshot and its refresher; [`calllog`]: async step log.

pub mod api;
pub mod calllog;
pub mod domain;
pub mod metrics;
pub mod settings;
pub mod snapshot;
pub mod store;
pub mod webhook;

use std::sync::Arc;

use chrono::Utc;
use kit::health::{CheckFuture, ReadinessCheck};
use sqlx::{PgPool, migrate::Migrator};

pub use api::AppState;
pub use kit::clock::{Clock, SystemClock};
pub use settings::Settings;
pub use snapshot::Snapshots;

pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/calls");

pub static SERVICE: kit::Service = kit::Service {
    name: "calls",
    schema: "calls",
    migrator: &MIGRATOR,
    // Calls must keep answering when PostgreSQL is down, including right after a restart.
    start_without_db: true,
    check_settings: |dev| Settings::from_env_with(dev).map(drop),
    start: |ctx| Box::pin(start(ctx)),
    sample_data: |pool| Box::pin(async move { load_sample_data(&pool).await }),
};

/// Ready while a snapshot is loaded (from the database or the file), whatever the database's
/// state: that is when this replica can answer calls.
pub struct SnapshotReady(pub Arc<Snapshots>);

impl ReadinessCheck for SnapshotReady {
    fn name(&self) -> &'static str {
        "calls_snapshot"
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let info = api::snapshot_info(&self.0, Utc::now());
            if info.loaded {
                Ok(serde_json::to_value(&info).unwrap_or_default())
            } else {
                Err(
                    "no routing snapshot loaded (database and snapshot file unavailable)"
                        .to_owned(),
                )
            }
        })
    }
}

/// A started calls service: its parts, and the snapshot (tests inspect it).
pub struct Calls {
    pub parts: kit::ServiceParts,
    pub snapshots: Arc<Snapshots>,
}

/// `SERVICE.start`: settings from the environment (dev fallbacks only in development mode),
/// defaults and no background work for the OpenAPI-only start.
async fn start(ctx: kit::Ctx) -> Result<kit::ServiceParts, kit::service::BoxError> {
    let settings = if ctx.background {
        Settings::from_env_with(ctx.dev)?
    } else {
        Settings::default()
    };
    Ok(start_with(ctx, settings).await.parts)
}

/// Starts the service with explicit settings (tests). Unless `ctx` is docs-only: loads the
/// first snapshot (database, else file), starts the refresher, the call log and its retention.
pub async fn start_with(ctx: kit::Ctx, settings: Settings) -> Calls {
    let pool = ctx.pool;
    let snapshots = Snapshots::new(settings.stale_after, settings.snapshot_path.clone());
    if !ctx.background {
        let state = AppState {
            log: calllog::CallLog::spawn(pool.clone(), 1).0,
            pool,
            snapshots: Arc::clone(&snapshots),
            settings: Arc::new(settings),
            clock: ctx.clock,
        };
        let parts = kit::ServiceParts::new(api::routes(state), Vec::new());
        return Calls { parts, snapshots };
    }
    for note in &settings.dev_notes {
        tracing::warn!(
            "DEVELOPMENT MODE (MERIDIAN_DEV=1): {note}; never run like this in production"
        );
    }
    if settings.webhook_keys.is_empty() {
        tracing::error!("no webhook secrets configured: every call decision will be refused (401)");
    }
    snapshots
        .load_initial(&pool, std::time::Duration::from_secs(2))
        .await;
    let mut background = snapshots.spawn_refresher(pool.clone(), settings.refresh_interval);
    crate::metrics::register();
    let (log, writer) = calllog::CallLog::spawn(pool.clone(), settings.log_queue);
    background.push(calllog::spawn_retention(
        pool.clone(),
        settings.step_retention,
        std::time::Duration::from_mins(1),
    ));
    let state = AppState {
        pool,
        settings: Arc::new(settings),
        snapshots: Arc::clone(&snapshots),
        clock: ctx.clock,
        log,
    };
    let parts = kit::ServiceParts {
        router: api::routes(state),
        readiness: vec![Arc::new(SnapshotReady(Arc::clone(&snapshots)))],
        background,
        // The step log's writer ends once the routes (holding its senders) are gone, after
        // writing what is queued.
        flush: vec![writer],
    };
    Calls { parts, snapshots }
}

/// The hospital switchboard of docs/calls.md (opening hours, menu, ring groups, queue, voicemail).
pub const SAMPLE_HOSPITAL: &str = include_str!("../samples/hospital.json");
/// The PBX number the sample flow is loaded under.
pub const SAMPLE_PBX_NUMBER: &str = "+46101110099";

/// Loads the sample PBX flow and one mobile subscriber (idempotent).
pub async fn load_sample_data(pool: &PgPool) -> Result<(), kit::service::BoxError> {
    let hospital: domain::model::PbxConfig = serde_json::from_str(SAMPLE_HOSPITAL)?;
    let actor = store::Actor("sample-data");
    store::put_pbx(pool, actor, SAMPLE_PBX_NUMBER, &hospital).await?;
    let subscriber = domain::model::SubscriberConfig {
        rules: domain::model::MobileRules {
            forward_busy: Some("+46705550000".into()),
            ..domain::model::MobileRules::default()
        },
        fallback_target: "+46705550000".into(),
    };
    store::put_subscriber(pool, actor, "+46701234567", &subscriber).await?;
    Ok(())
}
