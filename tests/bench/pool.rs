//! `bench-pool`: what the pool's checkout check (`kit::db::pool_with`: a connection idle longer
//! than `kit::db::CHECK_IDLE_AFTER` is pinged, so a database restart costs no request) adds to
//! one query, next to the same pool without any check and with a ping on every checkout (the
//! alternative it avoids), in the same run.
//!
//!     cargo run --release -p meridian-tests --bin bench-pool [-- --secs 5 --concurrency 1,8]
//!
//! Uses DATABASE_URL when set, else a throwaway PostgreSQL. Each round runs `SELECT 1` through
//! a checkout, back to back, for `--secs` per pool; rounds alternate the two pools so drift on a
//! shared machine hits both.

#[path = "common.rs"]
mod common;

use std::time::Duration;

use clap::Parser;
use kit::testing::TestDb;
use sqlx::{PgPool, postgres::PgPoolOptions};

#[derive(Parser)]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Concurrency levels (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    concurrency: Vec<usize>,
    /// Rounds per level (each measures both pools).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
}

async fn query(pool: &PgPool) -> anyhow::Result<()> {
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(pool).await?;
    anyhow::ensure!(one == 1, "SELECT 1 returned {one}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = TestDb::new().await;
    let max = args.concurrency.iter().copied().max().unwrap_or(1) as u32;
    let settings = kit::db::PoolSettings {
        max_connections: max,
        acquire_timeout: Duration::from_secs(5),
        ..kit::db::PoolSettings::default()
    };
    // The kit's pool (ping on checkout) and the baseline: the same options without the ping.
    let kit_pool = db.pool_with("bench", &settings);
    let options = kit::db::connect_options(db.url())?;
    let bare = PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(settings.acquire_timeout)
        .test_before_acquire(false)
        .connect_lazy_with(options);
    let always = PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(settings.acquire_timeout)
        .test_before_acquire(true)
        .connect_lazy_with(kit::db::connect_options(db.url())?);
    for pool in [&kit_pool, &bare, &always] {
        query(pool).await?;
    }
    println!("bench-pool: SELECT 1 per checkout, {} s per run", args.secs);
    for &c in &args.concurrency {
        for round in 1..=args.rounds {
            for (label, pool) in [
                ("no check (baseline)", &bare),
                ("kit pool (idle check)", &kit_pool),
                ("ping every checkout", &always),
            ] {
                let pool = pool.clone();
                let stats = common::closed_loop(c, args.secs, move |_, _, _| {
                    let pool = pool.clone();
                    async move { query(&pool).await }
                })
                .await;
                println!("{}", stats.line(&format!("c={c} r{round} {label}")));
            }
        }
    }
    Ok(())
}
