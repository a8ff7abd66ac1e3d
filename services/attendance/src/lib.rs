//! # attendance — sign-ins with a live feed, and page visits with a fast /visits
//!
//! - Attendance: staff sign children (entities) in and out at their site, correct and delete
//!   attendances; every write appends an outbox event in its transaction, and every replica's
//!   [`feed::Hub`] fans the events out as Server-Sent Events per site (resumable with
//!   `Last-Event-ID`, heartbeat, a bounded queue per subscriber).
//! - Visits: a producer ingests page visits singly or in batches of up to 1,000, idempotent by
//!   visit id, visitors upserted in the same statement; `GET /visits` and `GET /visitors/{id}`
//!   page by keyset on indexes. Retention is a batched delete ([`sweeper`]).
//!
//! docs/attendance.md has the API, the identity rules, the consistency argument and the
//! measurements.

pub mod api;
pub mod domain;
pub mod feed;
pub mod settings;
pub mod store;
pub mod sweeper;

use std::sync::Arc;

use chrono::{Duration, Utc};
use sqlx::{PgPool, migrate::Migrator};
use uuid::Uuid;

pub use api::AppState;
pub use settings::Settings;

pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/attendance");

/// The service, as every runner sees it (kit's contract, docs/adding-a-service.md).
pub static SERVICE: kit::Service = kit::Service {
    name: "attendance",
    schema: "attendance",
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

/// Starts the service with explicit settings (tests). With `ctx.background` the feed's hub
/// (its LISTEN connection) and the retention sweeper run; without it (the OpenAPI document)
/// the stream route answers 503.
pub fn start_with(ctx: kit::Ctx, settings: Settings) -> kit::ServiceParts {
    let ready = kit::health::DbReady::for_service(&SERVICE, ctx.pool.clone());
    let (hub, hub_task) = if ctx.background {
        let (hub, task) = feed::Hub::spawn(ctx.pool.clone(), settings.subscriber_buffer);
        (hub, Some(task))
    } else {
        (feed::Hub::idle(settings.subscriber_buffer), None)
    };
    let state = AppState {
        pool: ctx.pool.clone(),
        settings: Arc::new(settings),
        clock: Arc::clone(&ctx.clock),
        hub,
    };
    let mut parts = kit::ServiceParts::new(api::routes(state), vec![ready]);
    if ctx.background {
        parts.background.extend(hub_task);
        parts
            .background
            .push(sweeper::spawn(ctx.pool, settings, Arc::clone(&ctx.clock)));
    }
    parts
}

/// Sample sites, children signed in and out today, and a day of visits (idempotent: fixed ids,
/// and a re-run finds everything in place).
pub async fn load_sample_data(pool: &PgPool) -> Result<(), sqlx::Error> {
    for (id, name) in [
        ("oak-primary", "Oak Primary School"),
        ("elm-nursery", "Elm Nursery"),
    ] {
        store::upsert_site(pool, id, name).await?;
    }
    let now = Utc::now();
    let start = now - Duration::hours(8);
    let children = ["ada", "bo", "cyd", "dee", "eli", "fay", "gus", "hal"];
    for (i, child) in children.iter().enumerate() {
        let site = if i % 2 == 0 {
            "oak-primary"
        } else {
            "elm-nursery"
        };
        // Ids from the day and child, so a second start replays instead of duplicating.
        let id = fixed_id(&format!("sample:{}:{child}", now.date_naive()));
        let at = start + Duration::minutes(7 * i as i64);
        let signed = store::sign_in(
            pool,
            &store::NewSignIn {
                id,
                site_id: site,
                entity_id: child,
                source: "kiosk",
                at,
            },
            now,
        )
        .await?;
        if i % 3 == 0
            && let store::SignIn::Created(_) = signed
        {
            store::sign_out(pool, site, id, Some(at + Duration::hours(4)), now).await?;
        }
    }
    let visitors: Vec<Uuid> = (0..20_u32)
        .map(|i| fixed_id(&format!("sample-visitor:{i}")))
        .collect();
    let pages = [
        "/",
        "/visits",
        "/attendance",
        "/about",
        "/sites/oak-primary",
    ];
    let visits: Vec<store::NewVisit> = (0..500_u32)
        .map(|i| store::NewVisit {
            id: fixed_id(&format!("sample-visit:{}:{i}", now.date_naive())),
            visited_at: now - Duration::seconds(i64::from(i) * 170),
            visitor_id: visitors[(i as usize * 7) % visitors.len()],
            page_path: pages[i as usize % pages.len()].to_owned(),
        })
        .collect();
    store::ingest(pool, &visits).await?;
    Ok(())
}

/// A stable id for a sample row (the first 16 bytes of the name's SHA-256).
fn fixed_id(name: &str) -> Uuid {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(name.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}
