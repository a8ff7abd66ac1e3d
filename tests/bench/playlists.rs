//! `bench-playlists`: the playlists service's commands and analytics, beside a baseline in the
//! same run.
//!
//!     cargo run --release -p meridian-tests --bin bench-playlists [-- --events 10000000]
//!
//! 1. The hello-world route through the kit stack (the baseline), closed loop.
//! 2. `--events` events from the seeded generator (`playlists::generate`: users over 52 weekly
//!    cohorts, practice sessions, playlist commands, shares and opens), written to
//!    `playlists.events`, then `playlists::rebuild::rebuild` projects them (both timed).
//! 3. Commands over HTTP on that database, closed loop, one user per worker: add a lesson /
//!    remove it with a reason (alternating; each one transaction with its event and
//!    projections), record a practice session, and ask what to practise next (after the
//!    sessions: a history of thousands of sessions per user).
//! 4. The three analytics endpoints over HTTP, a year's range: they read the counters.
//! 5. For contrast, once each: the removal counts computed by scanning the log instead.
//!
//! Uses DATABASE_URL when set, else a throwaway PostgreSQL.

#![allow(clippy::many_single_char_names)]

#[path = "common.rs"]
mod common;

use std::{sync::Arc, time::Instant};

use anyhow::{Context, bail};
use chrono::{Duration, NaiveDate};
use clap::Parser;
use kit::testing::TestDb;

#[derive(Parser)]
struct Args {
    /// Events to generate (about 15 per generated user).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    #[arg(long, default_value_t = 5)]
    secs: u64,
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    concurrency: Vec<usize>,
}

/// Users per requested event: a little under the generator's mean (about 16 events per user), so
/// the log is at least `--events` long.
const EVENTS_PER_USER: f64 = 15.3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = TestDb::new().await;
    let pool = db.pool_with(
        playlists::SERVICE.schema,
        &kit::db::PoolSettings {
            max_connections: 32,
            acquire_timeout: std::time::Duration::from_mins(1),
            ..Default::default()
        },
    );
    kit::db::migrate(
        &pool,
        playlists::SERVICE.schema,
        playlists::SERVICE.migrator,
    )
    .await?;
    let catalogue = playlists::sample_catalogue();
    playlists::store::upsert_lessons(&pool, &catalogue).await?;
    println!(
        "bench-playlists: {} events, {} s per run, {} cores\n",
        args.events,
        args.secs,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );

    // 1. The baseline.
    common::hello_baseline(&args.concurrency, args.secs).await;

    // 2. The log, then the projections.
    let start = NaiveDate::from_ymd_opt(2025, 1, 6).context("a Monday")?;
    let spec = playlists::generate::Spec {
        users: ((args.events as f64 / EVENTS_PER_USER).ceil() as u32).max(1),
        weeks: 52,
        start,
        seed: 42,
        lessons: catalogue.iter().map(|l| l.id.clone()).collect(),
        planted: playlists::generate::Planted::default(),
        prefix: "bench-gen-".into(),
    };
    let t = Instant::now();
    let tally = playlists::generate::insert(&pool, &spec).await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "\ngenerated {} events ({} users) in {secs:.0} s ({:.0} events/s)",
        tally.events,
        spec.users,
        tally.events as f64 / secs
    );
    sqlx::query("ANALYZE playlists.events")
        .execute(&pool)
        .await?;
    let report = playlists::rebuild::rebuild(&pool).await?;
    println!(
        "rebuild: {} events -> {} playlists, {} sessions, {} shares, {} cohort users in {:.1} s \
         ({:.0} events/s)",
        report.events,
        report.playlists,
        report.sessions,
        report.shares,
        report.cohort_users,
        report.millis as f64 / 1000.0,
        report.events as f64 / (report.millis.max(1) as f64 / 1000.0)
    );
    for t in [
        "playlists",
        "playlist_items",
        "practice_sessions",
        "shares",
        "removal_counts",
        "removal_counts_month",
        "share_counts",
        "cohort_counts",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE playlists.{t}")))
            .execute(&pool)
            .await?;
    }
    let counters: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM playlists.removal_counts),
                (SELECT count(*) FROM playlists.share_counts),
                (SELECT count(*) FROM playlists.cohort_counts)",
    )
    .fetch_one(&pool)
    .await?;
    println!(
        "counter rows: removal_counts {}, share_counts {}, cohort_counts {}",
        counters.0, counters.1, counters.2
    );

    let app = kit::testing::app_for(
        &playlists::SERVICE,
        playlists::start_with(
            kit::Ctx::new(pool.clone(), false),
            playlists::Settings::default(),
        ),
    );
    let base = kit::testing::spawn_app(app).await;
    common::set_authorization(kit::testing::bearer(
        "bench",
        &[playlists::api::SCOPE_ADMIN, playlists::api::SCOPE_ANALYTICS],
    ));

    // 3. Commands: a playlist per worker, then add/remove one lesson alternately.
    println!();
    let max_c = args.concurrency.iter().copied().max().unwrap_or(1);
    let http = common::client(max_c);
    let mut playlists_of = Vec::new();
    for w in 0..max_c {
        let (s, body) = http
            .send(
                hyper::Method::POST,
                &format!("{base}/playlists/v1/users/bench-{w}/playlists"),
                Some(bytes::Bytes::from_static(br#"{"name":"bench"}"#)),
            )
            .await?;
        if s != 201 {
            bail!("create {s}: {}", String::from_utf8_lossy(&body));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        let id = v["id"].as_str().context("id")?.to_owned();
        for lesson in ["drums-rock-1", "keys-jazz-1"] {
            let (s, body) = http
                .send(
                    hyper::Method::POST,
                    &format!("{base}/playlists/v1/users/bench-{w}/playlists/{id}/lessons"),
                    Some(bytes::Bytes::from(format!(r#"{{"lesson_id":"{lesson}"}}"#))),
                )
                .await?;
            if s != 201 {
                bail!("add {s}: {}", String::from_utf8_lossy(&body));
            }
        }
        playlists_of.push(id);
    }
    let playlists_of: Arc<Vec<String>> = Arc::new(playlists_of);
    for &c in &args.concurrency {
        // Each run starts with the lesson out of every playlist (a run may end after an add).
        for (w, p) in playlists_of.iter().enumerate() {
            http.send(
                hyper::Method::DELETE,
                &format!(
                    "{base}/playlists/v1/users/bench-{w}/playlists/{p}/lessons/drums-funk-1?reason=too_hard"
                ),
                None,
            )
            .await?;
        }
        let (b, p) = (Arc::<str>::from(base.as_str()), Arc::clone(&playlists_of));
        let s = common::closed_loop(c, args.secs, move |http, w, i| {
            let (b, p) = (Arc::clone(&b), Arc::clone(&p));
            async move {
                let u = format!(
                    "{b}/playlists/v1/users/bench-{w}/playlists/{}/lessons",
                    p[w]
                );
                let (s, body) = if i % 2 == 0 {
                    http.send(
                        hyper::Method::POST,
                        &u,
                        Some(bytes::Bytes::from_static(
                            br#"{"lesson_id":"drums-funk-1"}"#,
                        )),
                    )
                    .await?
                } else {
                    http.send(
                        hyper::Method::DELETE,
                        &format!("{u}/drums-funk-1?reason=too_hard"),
                        None,
                    )
                    .await?
                };
                if !(s == 201 || s == 200) {
                    bail!("command {s}: {}", String::from_utf8_lossy(&body));
                }
                Ok(())
            }
        })
        .await;
        println!("{}", s.line(&format!("add/remove lesson c={c}")));
        let b = Arc::<str>::from(base.as_str());
        let s = common::closed_loop(c, args.secs, move |http, w, _| {
            let b = Arc::clone(&b);
            async move {
                let (s, body) = http
                    .send(
                        hyper::Method::POST,
                        &format!("{b}/playlists/v1/users/bench-{w}/sessions"),
                        Some(bytes::Bytes::from_static(
                            br#"{"lesson_id":"drums-rock-1","accuracy":0.7,"duration_secs":120}"#,
                        )),
                    )
                    .await?;
                if s != 201 {
                    bail!("session {s}: {}", String::from_utf8_lossy(&body));
                }
                Ok(())
            }
        })
        .await;
        println!("{}", s.line(&format!("record session c={c}")));
        let (b, p) = (Arc::<str>::from(base.as_str()), Arc::clone(&playlists_of));
        let s = common::closed_loop(c, args.secs, move |http, w, _| {
            let (b, p) = (Arc::clone(&b), Arc::clone(&p));
            async move {
                let (s, body) = http
                    .send(
                        hyper::Method::GET,
                        &format!("{b}/playlists/v1/users/bench-{w}/playlists/{}/next", p[w]),
                        None,
                    )
                    .await?;
                if s != 200 {
                    bail!("next {s}: {}", String::from_utf8_lossy(&body));
                }
                Ok(())
            }
        })
        .await;
        println!("{}", s.line(&format!("what next c={c}")));
    }

    // 4. Analytics over a year of counters.
    println!();
    let to = start + Duration::weeks(56);
    for what in [
        format!("removals?from={start}&to={to}&limit=100"),
        format!("shares?from={start}&to={to}"),
        format!("retention?from={start}&to={to}"),
    ] {
        for &c in &args.concurrency {
            let url: Arc<str> = format!("{base}/playlists/v1/analytics/{what}").into();
            let s = common::closed_loop(c, args.secs, move |http, _, _| {
                let url = Arc::clone(&url);
                async move {
                    let (s, body) = http.send(hyper::Method::GET, &url, None).await?;
                    if s != 200 || body.len() < 50 {
                        bail!("analytics {s}");
                    }
                    Ok(())
                }
            })
            .await;
            let name = what.split('?').next().unwrap_or_default();
            println!("{}", s.line(&format!("analytics/{name} c={c}")));
        }
    }

    // 5. The same removal counts by scanning the log, once.
    let t = Instant::now();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT payload->>'reason', count(*) FROM playlists.events
         WHERE type = 'lesson_removed' AND occurred_at >= $1 AND occurred_at < $2
         GROUP BY 1",
    )
    .bind(start.and_hms_opt(0, 0, 0).context("midnight")?.and_utc())
    .bind(to.and_hms_opt(0, 0, 0).context("midnight")?.and_utc())
    .fetch_all(&pool)
    .await?;
    println!(
        "\ncontrast: removal reasons by scanning the log: {:.0} ms ({} reasons)",
        t.elapsed().as_secs_f64() * 1000.0,
        rows.len()
    );
    Ok(())
}
