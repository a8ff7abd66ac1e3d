//! `bench-learning-api`: the learning API's single-entity reads at 100× the real data, next to a
//! hello-world route through the same kit app stack, in the same run.
//!
//!     cargo run --release -p meridian-tests --bin bench-learning-api [-- --scale 100 --secs 5]
//!
//! Generates the four files at `--scale` with the library generator (copy 0 is the real data,
//! each further copy re-keyed; ≈ 10,000 practice parts and 1,061 attempts per copy), imports them
//! with the library importer (its own transaction per file, as `learning import` does), runs
//! ANALYZE (what autovacuum does after a bulk load), then for each concurrency measures, closed
//! loop: the hello route, then `GET /learning/v1/users/{id}`, `/items/{questionID}`,
//! `/lessons/{lessonID}` and `/papers/{paperID}`, each request on a key drawn at random from
//! 10,000 sampled ones (so the cache sees the spread a real population gives, not one row).
//! Uses DATABASE_URL when set, else a throwaway PostgreSQL; always a fresh database. The service
//! runs in this process (its real router, middleware, token check and pool) on loopback; the load
//! client, the service and PostgreSQL share the machine's cores.

#[path = "common.rs"]
mod common;

use std::{sync::Arc, time::Duration, time::Instant};

use anyhow::{Context, bail};
use clap::Parser;
use common::Stats;
use kit::testing::TestDb;

#[derive(Parser)]
struct Args {
    /// Copies of the real data (100 = the 100×).
    #[arg(long, default_value_t = 100)]
    scale: u32,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Concurrency levels (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    concurrency: Vec<usize>,
    /// The generator's seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// `concurrency` workers GET `{base}{prefix}{key}` for keys drawn from `keys`; anything but 200
/// is an error.
async fn run(
    base: &str,
    prefix: &str,
    keys: Arc<Vec<String>>,
    concurrency: usize,
    secs: u64,
) -> Stats {
    let url: Arc<str> = format!("{base}{prefix}").into();
    common::closed_loop(concurrency, secs, move |http, w, i| {
        let (url, keys) = (url.clone(), keys.clone());
        async move {
            let mut seed = 0x9E37_79B9_7F4A_7C15_u64 ^ ((w as u64) << 32 | i);
            let key = match keys.len() {
                0 => "",
                n => keys[(common::next_rand(&mut seed) % n as u64) as usize].as_str(),
            };
            let (status, _) = http
                .send(hyper::Method::GET, &format!("{url}{key}"), None)
                .await?;
            if status != 200 {
                bail!("{url}{key} answered {status}");
            }
            Ok(())
        }
    })
    .await
}

async fn sample(pool: &sqlx::PgPool, sql: &str) -> anyhow::Result<Arc<Vec<String>>> {
    let keys: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .with_context(|| sql.to_owned())?;
    if keys.is_empty() {
        bail!("no keys: {sql}");
    }
    Ok(Arc::new(keys))
}

async fn count(pool: &sqlx::PgPool, table: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM learning.{table}"
    )))
    .fetch_one(pool)
    .await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = TestDb::new().await;
    let pool = db.pool_with(
        learning::SERVICE.schema,
        &kit::db::PoolSettings {
            max_connections: 32,
            acquire_timeout: Duration::from_secs(5),
            ..Default::default()
        },
    );
    kit::db::migrate(&pool, learning::SERVICE.schema, learning::SERVICE.migrator).await?;

    let input = tempfile::tempdir()?;
    let t = Instant::now();
    let summary = learning::generate::write_all(input.path(), args.scale, args.seed)?;
    eprintln!("generated in {:.1} s: {summary}", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let opts = learning::import::Options {
        progress: learning::import::Progress::Quiet,
        ..learning::import::Options::default()
    };
    let report = learning::import::run(&pool, input.path(), &opts).await?;
    eprintln!(
        "imported in {:.1} s ({} rows inserted)",
        t.elapsed().as_secs_f64(),
        report.total_inserted()
    );
    drop(input);
    sqlx::query("ANALYZE").execute(&pool).await?;

    let users = sample(
        &pool,
        "SELECT firebase_uid FROM learning.users ORDER BY random() LIMIT 10000",
    )
    .await?;
    let items = sample(
        &pool,
        "SELECT question_id FROM learning.items ORDER BY random() LIMIT 10000",
    )
    .await?;
    let lessons = sample(
        &pool,
        "SELECT lesson_key FROM learning.lessons ORDER BY random() LIMIT 10000",
    )
    .await?;
    let papers = sample(
        &pool,
        "SELECT paper_key FROM learning.papers ORDER BY random() LIMIT 10000",
    )
    .await?;

    // An admin reads any learner (the learner themself would take the same path: one string
    // comparison instead of a scope lookup).
    common::set_authorization(kit::testing::bearer(
        "bench-admin",
        &[learning::api::SCOPE_ADMIN],
    ));
    let app = kit::testing::app_for(
        &learning::SERVICE,
        learning::start_with(
            kit::Ctx::routes_only(pool.clone()),
            learning::Settings::default(),
        ),
    );
    let base = kit::testing::spawn_app(app).await;
    let hello = common::hello_through_kit(&kit::testing::http_settings()).await;

    println!(
        "bench-learning-api: scale {}, {} s per run, {} cores",
        args.scale,
        args.secs,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    let mut sizes = Vec::new();
    for table in [
        "users",
        "attempts",
        "items",
        "lessons",
        "practice_parts",
        "exam_parts",
        "papers",
    ] {
        sizes.push(format!("{table} {}", count(&pool, table).await?));
    }
    println!("tables: {}\n", sizes.join(", "));

    let routes: [(&str, &str, &Arc<Vec<String>>); 4] = [
        ("GET users/{id}", "/learning/v1/users/", &users),
        ("GET items/{questionID}", "/learning/v1/items/", &items),
        ("GET lessons/{id}", "/learning/v1/lessons/", &lessons),
        ("GET papers/{id}", "/learning/v1/papers/", &papers),
    ];
    let mut worst: Vec<(String, f64)> = Vec::new();
    for &c in &args.concurrency {
        let h = run(&hello, "/hello", Arc::new(Vec::new()), c, args.secs).await;
        println!("{}", h.line(&format!("hello (kit stack)       c={c}")));
        for (label, prefix, keys) in &routes {
            let s = run(&base, prefix, Arc::clone(keys), c, args.secs).await;
            println!("{}", s.line(&format!("{label:<23} c={c}")));
            worst.push((format!("{label} c={c}"), s.p(0.99)));
        }
        println!();
    }
    let (at, p99) = worst.iter().fold((String::new(), 0.0_f64), |acc, (l, p)| {
        if *p > acc.1 { (l.clone(), *p) } else { acc }
    });
    println!(
        "summary: worst single-entity p99 {p99:.2} ms ({at}) at scale {} (target < 20 ms)",
        args.scale
    );
    Ok(())
}
