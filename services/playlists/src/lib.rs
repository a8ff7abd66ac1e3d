//! # playlists — practice playlists as an event log with projections
//!
//! - Commands (create, rename, add, reorder, remove with a reason, delete, share, revoke, record
//!   a practice session) append a domain event to `playlists.events` and update the read models
//!   from that event in the same transaction; an `Idempotency-Key` retry answers what the first
//!   attempt answered and appends nothing.
//! - Read models (playlist views, practice sessions, share links, analytics counters) are
//!   projections of the log: [`rebuild::rebuild`] truncates them and replays it
//!   (`meridian playlists rebuild`).
//! - `GET .../playlists/{id}/next`: the rotation rule ([`domain::rotation`]).
//! - A public, read-only view of a shared playlist; analytics over the counters.
//!
//! docs/playlists.md has the API, the identity rules, the consistency argument, the rotation
//! rule and the measurements.

pub mod api;
pub mod domain;
pub mod generate;
pub mod rebuild;
pub mod settings;
pub mod store;

use std::sync::Arc;

use chrono::{Duration, Utc};
use sqlx::{PgPool, migrate::Migrator};

pub use api::AppState;
pub use settings::Settings;

pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/playlists");

/// The service, as every runner sees it (kit's contract, docs/adding-a-service.md).
pub static SERVICE: kit::Service = kit::Service {
    name: "playlists",
    schema: "playlists",
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

/// Starts the service with explicit settings (tests). Playlists has no background work: the
/// projections are updated in the commands' transactions.
pub fn start_with(ctx: kit::Ctx, settings: Settings) -> kit::ServiceParts {
    let kit::Ctx { pool, clock, .. } = ctx;
    let ready = kit::health::DbReady::for_service(&SERVICE, pool.clone());
    let state = AppState {
        pool,
        settings: Arc::new(settings),
        clock,
    };
    kit::ServiceParts::new(api::routes(state), vec![ready])
}

/// The sample catalogue: 4 instruments × 6 genres × 2 lessons.
pub fn sample_catalogue() -> Vec<store::Lesson> {
    let instruments = ["drums", "keys", "guitar", "bass"];
    let genres = ["pop", "rock", "funk", "jazz", "hip-hop", "electronic"];
    let titles = [
        "Groove Foundations",
        "Syncopation Street",
        "Offbeat Avenue",
        "Ghost Note Gallery",
        "Fill Factory",
        "Tempo Trail",
        "Backbeat Boulevard",
        "Chord Climb",
        "Walking Lines",
        "Shuffle Station",
        "Pocket Practice",
        "Dynamic Drive",
    ];
    let mut out = Vec::new();
    for (i, inst) in instruments.iter().enumerate() {
        for (j, genre) in genres.iter().enumerate() {
            for level in 1..=2 {
                let n = i * 12 + j * 2 + level - 1;
                out.push(store::Lesson {
                    id: format!("{inst}-{genre}-{level}"),
                    title: format!("{} ({genre} {inst})", titles[(n * 7) % titles.len()]),
                    instrument: (*inst).to_owned(),
                    genre: (*genre).to_owned(),
                    difficulty: i32::try_from((n % 5) + 1).unwrap_or(1),
                    duration_secs: i32::try_from(120 + (n % 6) * 30).unwrap_or(120),
                });
            }
        }
    }
    out
}

/// The sample user with a hand-made playlist and today's sessions (`meridian token --sub alice`).
pub const SAMPLE_USER: &str = "alice";

/// The catalogue, alice's playlist with a practice history, and a few weeks of generated users
/// (their events appended and projected like any command's). Idempotent: nothing is added
/// when alice has events already.
pub async fn load_sample_data(pool: &PgPool) -> Result<(), sqlx::Error> {
    let catalogue = sample_catalogue();
    store::upsert_lessons(pool, &catalogue).await?;
    let mut tx = store::begin_user(pool, SAMPLE_USER).await?;
    let seen: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM playlists.events WHERE user_id = $1)")
            .bind(SAMPLE_USER)
            .fetch_one(&mut *tx)
            .await?;
    if seen {
        return Ok(());
    }
    let now = Utc::now();
    let playlist = uuid::Uuid::now_v7();
    let lessons = [
        "drums-funk-1",
        "drums-rock-1",
        "keys-jazz-1",
        "drums-pop-2",
        "guitar-rock-1",
    ];
    let t0 = now - Duration::hours(3);
    store::record(
        &mut tx,
        SAMPLE_USER,
        t0,
        domain::Event::PlaylistCreated {
            playlist_id: playlist,
            name: "Evening practice".into(),
            default: true,
        },
    )
    .await?;
    for (i, l) in lessons.iter().enumerate() {
        store::record(
            &mut tx,
            SAMPLE_USER,
            t0 + Duration::seconds(i as i64),
            domain::Event::LessonAdded {
                playlist_id: playlist,
                lesson_id: (*l).to_owned(),
                position: i as u32,
            },
        )
        .await?;
    }
    // drums-funk-1 mastered, drums-rock-1 improving (twice yesterday, once today), keys-jazz-1
    // falling, drums-pop-2 just played: "next" is drums-rock-1.
    let history: [(&str, f32, i64); 9] = [
        ("drums-funk-1", 0.93, 1700),
        ("drums-funk-1", 0.95, 1690),
        ("drums-funk-1", 0.97, 1680),
        ("drums-rock-1", 0.52, 1600),
        ("drums-rock-1", 0.61, 1590),
        ("drums-rock-1", 0.74, 100),
        ("keys-jazz-1", 0.70, 1500),
        ("keys-jazz-1", 0.55, 60),
        ("drums-pop-2", 0.80, 20),
    ];
    for (lesson, accuracy, mins) in history {
        let at = now - Duration::minutes(mins);
        store::record(
            &mut tx,
            SAMPLE_USER,
            at,
            domain::Event::PracticeRecorded {
                session_id: uuid::Uuid::now_v7(),
                lesson_id: lesson.to_owned(),
                accuracy,
                duration_secs: 300,
                at,
            },
        )
        .await?;
    }
    tx.commit().await?;
    // Generated learners: cohorts 9..6 weeks ago, so their retention weeks are over.
    let spec = generate::Spec {
        users: 60,
        weeks: 4,
        start: domain::week(now) - Duration::weeks(9),
        seed: 15,
        lessons: catalogue.iter().map(|l| l.id.clone()).collect(),
        planted: generate::Planted::default(),
        prefix: "sample-learner-".into(),
    };
    let mut tally = generate::Tally::default();
    for u in 0..spec.users {
        let events = generate::user_events(&spec, u, &mut tally);
        let Some(first) = events.first() else {
            continue;
        };
        let mut tx = store::begin_user(pool, &first.user_id).await?;
        for g in events {
            store::record(&mut tx, &g.user_id, g.at, g.event).await?;
        }
        tx.commit().await?;
    }
    Ok(())
}
