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

use aide::axum::ApiRouter;
use chrono::Utc;
use kit::health::{CheckFuture, ReadinessCheck};
use sqlx::{PgPool, migrate::Migrator};

pub use api::{AppState, Clock, SystemClock};
pub use settings::Settings;
pub use snapshot::Snapshots;

pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/calls");

pub static SERVICE: kit::Service = kit::Service {
    name: "calls",
    schema: "calls",
    migrator: &MIGRATOR,
    // Calls must keep answering when PostgreSQL is down, including right after a restart.
    start_without_db: true,
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

/// A running calls service: routes, readiness, and the snapshot (tests inspect it).
pub struct Calls {
    pub router: ApiRouter,
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
    pub snapshots: Arc<Snapshots>,
}

/// Loads the first snapshot (database, else file), starts the refresher and the call log.
pub async fn start(pool: PgPool, settings: Settings, clock: Arc<dyn Clock>) -> Calls {
    for note in &settings.dev_notes {
        tracing::warn!(
            "DEVELOPMENT MODE (MERIDIAN_DEV=1): {note}; never run like this in production"
        );
    }
    if settings.webhook_keys.is_empty() {
        tracing::error!("no webhook secrets configured: every call decision will be refused (401)");
    }
    let snapshots = Snapshots::new(settings.stale_after, settings.snapshot_path.clone());
    snapshots
        .load_initial(&pool, std::time::Duration::from_secs(2))
        .await;
    snapshots.spawn_refresher(pool.clone(), settings.refresh_interval);
    crate::metrics::register();
    let log = calllog::CallLog::spawn(pool.clone(), settings.log_queue);
    calllog::spawn_retention(
        pool.clone(),
        settings.step_retention,
        std::time::Duration::from_mins(1),
    );
    let state = AppState {
        pool,
        settings: Arc::new(settings),
        snapshots: Arc::clone(&snapshots),
        clock,
        log,
    };
    Calls {
        router: api::routes(state),
        readiness: vec![Arc::new(SnapshotReady(Arc::clone(&snapshots)))],
        snapshots,
    }
}

/// The hospital switchboard of docs/calls.md (opening hours, menu, ring groups, queue, voicemail).
pub const SAMPLE_HOSPITAL: &str = include_str!("../samples/hospital.json");
/// The PBX number the sample flow is loaded under.
pub const SAMPLE_PBX_NUMBER: &str = "+46101110099";

/// Loads the sample PBX flow and one mobile subscriber (idempotent).
pub async fn load_sample_data(
    pool: &PgPool,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
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

/// The routes over an empty snapshot with no refresher: for generating the OpenAPI document.
pub fn routes_for_docs(pool: PgPool) -> ApiRouter {
    let settings = Settings::default();
    api::routes(AppState {
        log: calllog::CallLog::spawn(pool.clone(), 1),
        pool,
        snapshots: Snapshots::new(settings.stale_after, None),
        settings: Arc::new(settings),
        clock: Arc::new(SystemClock),
    })
}
