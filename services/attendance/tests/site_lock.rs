//! What the site lock costs: sign-ins from 8 concurrent writers, all to one site (they queue on
//! its advisory lock) and spread over 8 sites (they do not), through `store::sign_in` (the
//! route's transaction) on the pool services use. Asserts that every write lands; prints the
//! throughput and per-write latency that docs/attendance.md quotes ("A site with a burst of
//! writes"):
//!
//! `cargo nextest run -p meridian-attendance --test site_lock --no-capture`

use std::time::{Duration, Instant};

use kit::testing::TestDb;

const WRITERS: usize = 8;
const WRITES: usize = 2000;

/// `WRITES` sign-ins by `writers` tasks, writer `w` at `sites[w % sites.len()]`: the
/// throughput and the sorted per-write latencies.
async fn run(
    pool: &sqlx::PgPool,
    writers: usize,
    sites: &[String],
    tag: &str,
) -> (f64, Vec<Duration>) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let pool = pool.clone();
            let site = sites[w % sites.len()].clone();
            let tag = tag.to_owned();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                for i in 0..WRITES / writers {
                    let now = chrono::Utc::now();
                    let t = Instant::now();
                    let out = attendance::store::sign_in(
                        &pool,
                        &attendance::store::NewSignIn {
                            id: uuid::Uuid::new_v4(),
                            site_id: &site,
                            entity_id: &format!("{tag}-{w}-{i}"),
                            source: "bench",
                            at: now,
                        },
                        now,
                    )
                    .await
                    .expect("sign in");
                    assert!(matches!(out, attendance::store::SignIn::Created(_)));
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("writer"));
    }
    let rate = WRITES as f64 / started.elapsed().as_secs_f64();
    all.sort();
    (rate, all)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::test]
async fn one_site_serialises_its_writes_other_sites_do_not_wait() {
    let db = TestDb::new().await;
    let pool = db.service_pool(&attendance::SERVICE).await;
    let sites: Vec<String> = (0..WRITERS).map(|i| format!("site-{i}")).collect();
    for s in &sites {
        attendance::store::upsert_site(&pool, s, s)
            .await
            .expect("site");
    }
    // Warm the pool and the plans.
    run(&pool, WRITERS, &sites, "warm").await;
    let (base_rate, base) = run(&pool, 1, &sites[..1], "base").await;
    let (one_rate, one) = run(&pool, WRITERS, &sites[..1], "one").await;
    let (many_rate, many) = run(&pool, WRITERS, &sites, "many").await;
    for (name, rate, lat) in [
        ("1 writer, 1 site", base_rate, &base),
        ("8 writers, 1 site", one_rate, &one),
        ("8 writers, 8 sites", many_rate, &many),
    ] {
        println!(
            "{WRITES} sign-ins, {name}: {rate:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
            pct(lat, 0.5),
            pct(lat, 0.99)
        );
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM attendance.outbox")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(n, 4 * WRITES as i64, "every write and its event landed");
}
