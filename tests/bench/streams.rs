//! `bench-streams`: start+stop cycles over HTTP against the streams service, next to pgbench
//! running the same SQL on the same database in the same run, then a fixed-rate run at the
//! issue's target rate.
//!
//!     cargo run --release -p meridian-tests --bin bench-streams [-- --secs 5 --rate 1000]
//!
//! Uses DATABASE_URL when set, else a throwaway PostgreSQL; always a fresh database. The service
//! runs in this process (its real router, middleware and pool) on loopback, so the load client,
//! the service and PostgreSQL share this machine's cores, like pgbench and PostgreSQL do.

use std::{
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use kit::testing::TestDb;

#[derive(Parser)]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Concurrency levels (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    concurrency: Vec<usize>,
    /// Target rate of the fixed-rate run (starts per second).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Distinct users the load is spread over.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
}

struct Stats {
    ops: u64,
    errors: u64,
    secs: f64,
    hist: Histogram<u64>,
}

impl Stats {
    fn line(&self, label: &str) -> String {
        format!(
            "{label:<28} {:>9.0} /s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
            self.ops as f64 / self.secs,
            self.hist.value_at_quantile(0.50) as f64 / 1000.0,
            self.hist.value_at_quantile(0.99) as f64 / 1000.0,
            self.errors
        )
    }
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds")
}

/// A cheap per-worker PRNG (xorshift) so user choice costs nothing measurable.
fn next_user(state: &mut u64, users: u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state % users
}

async fn cycle(http: &reqwest::Client, base: &str, user: u64, device: &str) -> anyhow::Result<()> {
    let res = http
        .post(format!("{base}/streams/v1/users/bench-{user}/sessions"))
        .json(&serde_json::json!({ "device_id": device, "content_id": "film" }))
        .send()
        .await?;
    if res.status() != 201 {
        bail!("start answered {}", res.status());
    }
    let body: serde_json::Value = res.json().await?;
    let id = body["session_id"].as_str().context("session_id")?;
    let res = http
        .delete(format!("{base}/streams/v1/sessions/{id}"))
        .send()
        .await?;
    if res.status() != 204 {
        bail!("stop answered {}", res.status());
    }
    Ok(())
}

async fn closed_loop(base: &str, concurrency: usize, secs: u64, users: u64) -> Stats {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let workers = (0..concurrency).map(|w| {
        let http = http.clone();
        let base = base.to_owned();
        tokio::spawn(async move {
            let mut hist = new_hist();
            let (mut ops, mut errors) = (0, 0);
            let mut seed = 0x9E37_79B9_7F4A_7C15_u64 ^ (w as u64 + 1);
            // One device per worker: two workers drawing the same user must not look like a
            // retry of each other's start (that would be an idempotent replay, 200).
            let device = format!("dev-{w}");
            while Instant::now() < deadline {
                let t = Instant::now();
                match cycle(&http, &base, next_user(&mut seed, users), &device).await {
                    Ok(()) => {
                        ops += 1;
                        let _ = hist.record(t.elapsed().as_micros() as u64);
                    }
                    Err(e) => {
                        if errors == 0 {
                            eprintln!("  first error of worker {w}: {e:#}");
                        }
                        errors += 1;
                    }
                }
            }
            (hist, ops, errors)
        })
    });
    let mut total = Stats {
        ops: 0,
        errors: 0,
        secs: 0.0,
        hist: new_hist(),
    };
    for w in futures_util::future::join_all(workers).await {
        let (h, ops, errors) = w.expect("worker");
        total.hist.add(h).expect("same bounds");
        total.ops += ops;
        total.errors += errors;
    }
    total.secs = started.elapsed().as_secs_f64();
    total
}

/// Open-loop: a start every 1/rate s, latency measured from the *scheduled* send time so a
/// stall is not hidden by the client waiting (coordinated omission). Each admitted session is
/// stopped afterwards, outside the measured latency.
async fn fixed_rate(base: &str, rate: u64, secs: u64, users: u64) -> Stats {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    let hist = Arc::new(std::sync::Mutex::new(new_hist()));
    let errors = Arc::new(AtomicU64::new(0));
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let total = rate * secs;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    let mut seed = 0xDEAD_BEEF_u64;
    for i in 0..total {
        let scheduled = started + interval * i as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        let (http, base, hist, errors) =
            (http.clone(), base.to_owned(), hist.clone(), errors.clone());
        let user = next_user(&mut seed, users);
        tasks.push(tokio::spawn(async move {
            let res = http
                .post(format!("{base}/streams/v1/users/rate-{user}/sessions"))
                .json(&serde_json::json!({ "device_id": format!("d{i}"), "content_id": "film" }))
                .send()
                .await;
            let latency = scheduled.elapsed();
            match res {
                Ok(r) if r.status() == 201 => {
                    if let Ok(h) = hist.lock().as_mut() {
                        let _ = h.record(latency.as_micros() as u64);
                    }
                    if let Ok(body) = r.json::<serde_json::Value>().await
                        && let Some(id) = body["session_id"].as_str()
                    {
                        let _ = http
                            .delete(format!("{base}/streams/v1/sessions/{id}"))
                            .send()
                            .await;
                    }
                }
                _ => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    futures_util::future::join_all(tasks).await;
    let hist = Arc::try_unwrap(hist).map_or_else(
        |_| new_hist(),
        |m| {
            m.into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        },
    );
    Stats {
        ops: hist.len(),
        errors: errors.load(Ordering::Relaxed),
        secs: secs as f64,
        hist,
    }
}

fn find_pgbench() -> Option<std::path::PathBuf> {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v pgbench"])
        .output()
        && out.status.success()
    {
        return Some(String::from_utf8_lossy(&out.stdout).trim().into());
    }
    kit::pg::find_binaries()
        .map(|dir| dir.join("pgbench"))
        .filter(|p| p.is_file())
}

/// pgbench running the service's SQL: the admission function, then the delete by session id.
fn pgbench(
    url: &str,
    concurrency: usize,
    secs: u64,
    users: u64,
    dir: &Path,
) -> anyhow::Result<Stats> {
    let bin = find_pgbench()
        .context("pgbench not found: apt-get install postgresql-contrib (or postgresql)")?;
    let script = dir.join("cycle.sql");
    std::fs::write(
        &script,
        format!(
            "\\set uid random(0, {})\n\
             SELECT session_id AS sid FROM streams.admit_v1(gen_random_uuid(), 'pgb-' || :uid, 'dev', 'film', NULL, 3, 90000) \\gset\n\
             DELETE FROM streams.sessions WHERE session_id = :sid;\n",
            users - 1
        ),
    )?;
    let prefix = dir.join(format!("log-{concurrency}"));
    let out = Command::new(&bin)
        .current_dir(dir)
        .args(["-n", "-M", "prepared", "-f"])
        .arg(&script)
        .args([
            "-c",
            &concurrency.to_string(),
            "-j",
            &concurrency.min(2).to_string(),
        ])
        .args(["-T", &secs.to_string(), "-l", "--log-prefix"])
        .arg(&prefix)
        .arg(url)
        .output()?;
    if !out.status.success() {
        bail!("pgbench failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tps: f64 = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .context("tps line in pgbench output")?;
    let failed: u64 = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("number of failed transactions: ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    // Per-transaction log lines: client_id transaction_no time(us) script_no time_epoch time_us
    let mut hist = new_hist();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if !name.starts_with(&format!("log-{concurrency}.")) {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            if let Some(us) = line
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<u64>().ok())
            {
                let _ = hist.record(us.max(1));
            }
        }
        std::fs::remove_file(&path)?;
    }
    Ok(Stats {
        ops: (tps * secs as f64) as u64,
        errors: failed,
        secs: secs as f64,
        hist,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = TestDb::new().await;
    let pool = db.pool_with(
        streams::SERVICE.schema,
        &kit::db::PoolSettings {
            max_connections: 32,
            acquire_timeout: Duration::from_secs(5),
        },
    );
    kit::db::migrate(&pool, streams::SERVICE.schema, streams::SERVICE.migrator).await?;
    let app = kit::testing::app_for(
        &streams::SERVICE,
        streams::router(pool.clone(), streams::Settings::default()),
        pool.clone(),
    );
    let base = kit::testing::spawn_app(app).await;
    let work = tempfile::tempdir()?;
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )?;

    println!(
        "bench-streams: {} s per run, {} users, {} cores",
        args.secs,
        args.users,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!("one op = start + stop (2 HTTP requests / 2 SQL statements)\n");
    let mut rows = Vec::new();
    for &c in &args.concurrency {
        let pg = pgbench(db.url(), c, args.secs, args.users, work.path())?;
        println!("{}", pg.line(&format!("pgbench (same SQL) c={c}")));
        let svc = closed_loop(&base, c, args.secs, args.users).await;
        println!("{}", svc.line(&format!("HTTP start+stop     c={c}")));
        let ratio = (svc.ops as f64 / svc.secs) / (pg.ops as f64 / pg.secs);
        println!("{:<28} {:>8.0} %\n", "  service / pgbench", ratio * 100.0);
        rows.push((c, ratio));
    }
    let fr = fixed_rate(&base, args.rate, args.secs.max(10), args.users).await;
    println!("{}", fr.line(&format!("fixed rate {} starts/s", args.rate)));
    let best = rows.iter().map(|r| r.1).fold(0.0_f64, f64::max);
    println!(
        "\nsummary: best service/pgbench throughput ratio {:.0} % (target >= 50 %); start p99 at {} /s = {:.2} ms (target <= 5 ms)",
        best * 100.0,
        args.rate,
        fr.hist.value_at_quantile(0.99) as f64 / 1000.0
    );
    Ok(())
}
