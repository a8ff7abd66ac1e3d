//! `bench-attendance`: attendance's two hot paths, each beside a baseline in the same run.
//!
//!     cargo run --release -p meridian-tests --bin bench-attendance -- visits [--visits 10000000]
//!     cargo run --release -p meridian-tests --bin bench-attendance -- feed [--subscribers 1000]
//!
//! `visits`: generates `--visits` visits by 100,000 visitors in SQL (generate_series, indexes
//! built after the load, then ANALYZE), then for each page depth measures, closed loop: the
//! hello-world route through the kit stack; `GET /attendance/v1/visits?limit=100&cursor=...`
//! (keyset, over HTTP with a token); the same keyset statement on the pool; and the same page
//! with `OFFSET depth` on the pool (what a page-number API does), for contrast.
//!
//! `feed`: `--subscribers` Server-Sent Events streams of one site on loopback (raw sockets,
//! one task each); a writer signs children in at `--rate` per second for `--secs`; each
//! subscriber records, per event, the time from just before the write's transaction began to
//! its arrival (an upper bound of commit → receive). First with one subscriber (the baseline),
//! then with all of them. Uses DATABASE_URL when set, else a throwaway PostgreSQL.

#[path = "common.rs"]
mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use kit::testing::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// GET /visits by keyset vs the same page by OFFSET, at several depths.
    Visits {
        #[arg(long, default_value_t = 10_000_000)]
        visits: i64,
        /// Page depths, in rows from the newest.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "0,10000,100000,1000000,5000000"
        )]
        depths: Vec<i64>,
        #[arg(long, default_value_t = 3)]
        secs: u64,
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        concurrency: Vec<usize>,
    },
    /// Commit → receive latency of the live feed with many subscribers.
    Feed {
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        /// Sign-ins per second.
        #[arg(long, default_value_t = 20)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        secs: u64,
    },
}

const PAGE_SQL_OFFSET: &str = "SELECT v.id, v.visited_at, v.visitor_id, v.page_path,
        r.first_visit_at, r.last_visit_at, r.visits
 FROM (SELECT id, visited_at, visitor_id, page_path FROM attendance.visits
       ORDER BY visited_at DESC, id DESC OFFSET $1 LIMIT 101) v
 LEFT JOIN LATERAL (SELECT first_visit_at, last_visit_at, visits FROM attendance.visitors
                    WHERE id = v.visitor_id LIMIT 1) r ON true
 ORDER BY v.visited_at DESC, v.id DESC";

async fn pool_for(db: &TestDb) -> anyhow::Result<sqlx::PgPool> {
    let pool = db.pool_with(
        attendance::SERVICE.schema,
        &kit::db::PoolSettings {
            max_connections: 32,
            acquire_timeout: Duration::from_secs(30),
            ..Default::default()
        },
    );
    kit::db::migrate(
        &pool,
        attendance::SERVICE.schema,
        attendance::SERVICE.migrator,
    )
    .await?;
    Ok(pool)
}

async fn exec(pool: &sqlx::PgPool, sql: &str) -> anyhow::Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .with_context(|| sql.to_owned())?;
    Ok(())
}

async fn generate(pool: &sqlx::PgPool, n: i64) -> anyhow::Result<()> {
    let t = Instant::now();
    exec(pool, "DROP INDEX attendance.visits_recent").await?;
    exec(pool, "DROP INDEX attendance.visits_visitor").await?;
    exec(
        pool,
        "INSERT INTO attendance.visitors (id, first_visit_at, last_visit_at, visits)
         SELECT md5('visitor' || v)::uuid, now() - interval '80 days', now(), 0
         FROM generate_series(1, 100000) v",
    )
    .await?;
    let chunk = 1_000_000;
    let mut done = 0;
    while done < n {
        let upto = (done + chunk).min(n);
        sqlx::query(
            "INSERT INTO attendance.visits (id, visited_at, visitor_id, page_path)
             SELECT md5('visit' || i)::uuid,
                    now() - (i * (interval '80 days' / $3)),
                    md5('visitor' || (i % 100000 + 1))::uuid,
                    '/page/' || (i % 50)
             FROM generate_series($1, $2) i",
        )
        .bind(done + 1)
        .bind(upto)
        .bind(n)
        .execute(pool)
        .await?;
        done = upto;
        eprintln!("  {done} visits ({:.0} s)", t.elapsed().as_secs_f64());
    }
    exec(
        pool,
        "CREATE INDEX visits_recent ON attendance.visits (visited_at DESC, id DESC)",
    )
    .await?;
    exec(
        pool,
        "CREATE INDEX visits_visitor ON attendance.visits (visitor_id, visited_at DESC, id DESC)",
    )
    .await?;
    exec(pool, "ANALYZE attendance.visits").await?;
    exec(pool, "ANALYZE attendance.visitors").await?;
    eprintln!("generated {n} visits in {:.0} s", t.elapsed().as_secs_f64());
    Ok(())
}

async fn visits(
    visits: i64,
    depths: Vec<i64>,
    secs: u64,
    concurrency: Vec<usize>,
) -> anyhow::Result<()> {
    let db = TestDb::new().await;
    let pool = pool_for(&db).await?;
    generate(&pool, visits).await?;
    common::set_authorization(kit::testing::bearer(
        "bench-reader",
        &[attendance::api::SCOPE_READ],
    ));
    let app = kit::testing::app_for(
        &attendance::SERVICE,
        attendance::start_with(
            kit::Ctx::routes_only(pool.clone()),
            attendance::Settings::default(),
        ),
    );
    let base = kit::testing::spawn_app(app).await;
    println!(
        "bench-attendance visits: {visits} visits, pages of 100, {secs} s per run, {} cores\n",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    common::hello_baseline(&concurrency, secs).await;
    for &depth in depths.iter().filter(|d| **d < visits) {
        let cursor: Option<(DateTime<Utc>, Uuid)> = if depth == 0 {
            None
        } else {
            Some(
                sqlx::query_as(
                    "SELECT visited_at, id FROM attendance.visits
                     ORDER BY visited_at DESC, id DESC OFFSET $1 LIMIT 1",
                )
                .bind(depth - 1)
                .fetch_one(&pool)
                .await?,
            )
        };
        let url: Arc<str> = match &cursor {
            None => format!("{base}/attendance/v1/visits?limit=100").into(),
            Some(k) => format!(
                "{base}/attendance/v1/visits?limit=100&cursor={}",
                kit::pagination::encode_cursor(k)
            )
            .into(),
        };
        println!("\ndepth {depth}:");
        for &c in &concurrency {
            let u = Arc::clone(&url);
            let s = common::closed_loop(c, secs, move |http, _, _| {
                let u = Arc::clone(&u);
                async move {
                    let (s, body) = http.send(hyper::Method::GET, &u, None).await?;
                    if s != 200 || body.len() < 100 {
                        bail!("visits {s}");
                    }
                    Ok(())
                }
            })
            .await;
            println!("{}", s.line(&format!("  keyset HTTP   c={c}")));
            let p = pool.clone();
            let s = common::closed_loop(c, secs, move |_, _, _| {
                let p = p.clone();
                async move {
                    let rows = attendance::store::visits(
                        &p,
                        &attendance::store::VisitFilter::default(),
                        cursor.as_ref(),
                        101,
                    )
                    .await?;
                    if rows.len() != 101 {
                        bail!("keyset page of {}", rows.len());
                    }
                    Ok(())
                }
            })
            .await;
            println!("{}", s.line(&format!("  keyset SQL    c={c}")));
            let p = pool.clone();
            let s = common::closed_loop(c, secs, move |_, _, _| {
                let p = p.clone();
                async move {
                    let rows = sqlx::query(PAGE_SQL_OFFSET)
                        .bind(depth)
                        .fetch_all(&p)
                        .await?;
                    if rows.len() != 101 {
                        bail!("offset page of {}", rows.len());
                    }
                    Ok(())
                }
            })
            .await;
            println!("{}", s.line(&format!("  OFFSET SQL    c={c}")));
        }
    }
    // Retention: delete the oldest day (visits span 80 days) as the sweeper does, in batches of
    // the default size, timing each batch.
    let batch = attendance::Settings::default().sweep_batch;
    let cutoff: DateTime<Utc> =
        sqlx::query_scalar("SELECT min(visited_at) + interval '1 day' FROM attendance.visits")
            .fetch_one(&pool)
            .await?;
    let mut hist = common::new_hist();
    let (mut deleted, t) = (0_u64, Instant::now());
    loop {
        let b = Instant::now();
        let n = attendance::store::sweep_visits(&pool, cutoff, batch).await?;
        let _ = hist.record((b.elapsed().as_micros() as u64).max(1));
        deleted += n;
        if n < batch as u64 {
            break;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "\nretention: the oldest day, {deleted} visits, in batches of {batch}: {secs:.2} s \
         ({:.0} rows/s), per batch p50 {:.1} ms p99 {:.1} ms",
        deleted as f64 / secs,
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0
    );
    Ok(())
}

/// One SSE subscriber on a raw socket: records `arrival - sent[seq]` for each `created` event.
async fn subscribe(
    addr: String,
    path: String,
    sent: Arc<Mutex<Vec<Option<Instant>>>>,
    hist: Arc<Mutex<hdrhistogram::Histogram<u64>>>,
    ready: tokio::sync::mpsc::Sender<()>,
    stop: Arc<tokio::sync::Notify>,
) -> anyhow::Result<u64> {
    let mut sock = tokio::net::TcpStream::connect(&addr).await?;
    sock.set_nodelay(true)?;
    sock.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending = String::new();
    let mut got = 0;
    let mut announced = false;
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        let n = tokio::select! {
            n = sock.read(&mut buf) => n?,
            () = &mut stopped => return Ok(got),
        };
        if n == 0 {
            bail!("stream closed");
        }
        let now = Instant::now();
        pending.push_str(&String::from_utf8_lossy(&buf[..n]));
        if !announced && pending.contains("event: snapshot") {
            announced = true;
            let _ = ready.send(()).await;
        }
        // Each created event's entity is `e<seq>`.
        while let Some(i) = pending.find("\"entity_id\":\"e") {
            let rest = &pending[i + 14..];
            let Some(end) = rest.find('"') else { break };
            if let Ok(seq) = rest[..end].parse::<usize>() {
                let at = sent.lock().ok().and_then(|s| s.get(seq).copied().flatten());
                if let Some(at) = at {
                    let us = now.saturating_duration_since(at).as_micros() as u64;
                    if let Ok(mut h) = hist.lock() {
                        let _ = h.record(us.max(1));
                    }
                    got += 1;
                }
            }
            pending.drain(..i + 14 + end);
        }
        if pending.len() > 1 << 20 {
            pending.clear();
        }
    }
}

async fn feed_run(
    base: &str,
    pool: &sqlx::PgPool,
    ticket: &str,
    subscribers: usize,
    rate: u64,
    secs: u64,
) -> anyhow::Result<()> {
    // The previous run's children are still signed in: clear them (no events) so every
    // sign-in of this run is a new attendance.
    exec(pool, "DELETE FROM attendance.attendances").await?;
    let addr = base.trim_start_matches("http://").to_owned();
    let path = format!("/attendance/v1/sites/bench/attendance/stream?ticket={ticket}");
    let total = (rate * secs) as usize;
    let sent = Arc::new(Mutex::new(vec![None; total]));
    let hist = Arc::new(Mutex::new(common::new_hist()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel(subscribers);
    let mut tasks = Vec::new();
    // Connect in waves of 50 (a browser fleet does not open 1,000 streams in one millisecond,
    // and the listener's accept backlog is finite), each wave streaming before the next.
    for wave in (0..subscribers).collect::<Vec<_>>().chunks(50) {
        for _ in wave {
            tasks.push(tokio::spawn(subscribe(
                addr.clone(),
                path.clone(),
                Arc::clone(&sent),
                Arc::clone(&hist),
                ready_tx.clone(),
                Arc::clone(&stop),
            )));
        }
        for _ in wave {
            if tokio::time::timeout(Duration::from_secs(30), ready.recv())
                .await
                .is_err()
            {
                let failed = tasks.iter().filter(|t| t.is_finished()).count();
                bail!(
                    "subscribers connecting: {} streaming, {failed} ended",
                    tasks.len() - failed
                );
            }
        }
    }
    let t = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    for seq in 0..total {
        tick.tick().await;
        let at = Instant::now();
        if let Ok(mut s) = sent.lock() {
            s[seq] = Some(at);
        }
        let now = Utc::now();
        let n = attendance::store::NewSignIn {
            id: Uuid::new_v4(),
            site_id: "bench",
            entity_id: &format!("e{seq}"),
            source: "bench",
            at: now,
        };
        attendance::store::sign_in(pool, &n, now).await?;
    }
    let writing = t.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.notify_waiters();
    let mut received = 0;
    let mut failed = 0;
    for task in tasks {
        match task.await? {
            Ok(n) => received += n,
            Err(_) => failed += 1,
        }
    }
    let h = hist
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let expected = (total * subscribers) as u64;
    println!(
        "{subscribers:>5} subscribers  {total} events at {rate}/s in {:.1} s  received {received}/{expected}  \
         p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  failed streams {failed}",
        writing.as_secs_f64(),
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
    );
    Ok(())
}

async fn feed(subscribers: usize, rate: u64, secs: u64) -> anyhow::Result<()> {
    let db = TestDb::new().await;
    let pool = pool_for(&db).await?;
    attendance::store::upsert_site(&pool, "bench", "Bench").await?;
    let settings = attendance::Settings {
        max_subscribers: subscribers.max(1) + 10,
        ..attendance::Settings::default()
    };
    let app = kit::testing::app_for(
        &attendance::SERVICE,
        attendance::start_with(kit::Ctx::new(pool.clone(), false), settings),
    );
    let base = kit::testing::spawn_app(app).await;
    let http = common::client(4).with_authorization(&kit::testing::bearer(
        "bench-admin",
        &[attendance::api::SCOPE_ADMIN],
    ));
    let (s, body) = http
        .send(
            hyper::Method::POST,
            &format!("{base}/attendance/v1/sites/bench/stream-tickets"),
            None,
        )
        .await?;
    if s != 201 {
        bail!("ticket: {s}");
    }
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    let ticket = v["ticket"].as_str().context("ticket")?.to_owned();
    println!(
        "bench-attendance feed: one site, {rate} sign-ins/s for {secs} s, write start → SSE arrival, {} cores\n",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    feed_run(&base, &pool, &ticket, 1, rate, secs).await?;
    feed_run(&base, &pool, &ticket, subscribers, rate, secs).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().mode {
        Mode::Visits {
            visits: n,
            depths,
            secs,
            concurrency,
        } => visits(n, depths, secs, concurrency).await,
        Mode::Feed {
            subscribers,
            rate,
            secs,
        } => feed(subscribers, rate, secs).await,
    }
}
