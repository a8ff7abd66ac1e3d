//! `bench-streams`: start+stop cycles over HTTP against the streams service, next to pgbench
//! running the same SQL on the same database in the same run, then a fixed-rate run at the
//! issue's target rate.
//!
//!     cargo run --release -p meridian-tests --bin bench-streams [-- --secs 5 --rate 1000]
//!
//! Uses DATABASE_URL when set, else a throwaway PostgreSQL; always a fresh database. The service
//! runs in this process (its real router, middleware and pool) on loopback, so the load client,
//! the service and PostgreSQL share this machine's cores, like pgbench and PostgreSQL do.

#[path = "common.rs"]
mod common;

use std::{path::Path, process::Command, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use clap::Parser;
use common::{Stats, new_hist};
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

async fn cycle(http: &common::Http, base: &str, user: u64, device: &str) -> anyhow::Result<()> {
    let body =
        serde_json::to_vec(&serde_json::json!({ "device_id": device, "content_id": "film" }))?;
    let (status, bytes) = http
        .send(
            hyper::Method::POST,
            &format!("{base}/streams/v1/users/bench-{user}/sessions"),
            Some(body.into()),
        )
        .await?;
    if status != 201 {
        bail!("start answered {status}");
    }
    let started: serde_json::Value = serde_json::from_slice(&bytes)?;
    let id = started["session_id"].as_str().context("session_id")?;
    let (status, _) = http
        .send(
            hyper::Method::DELETE,
            &format!("{base}/streams/v1/sessions/{id}"),
            None,
        )
        .await?;
    if status != 204 {
        bail!("stop answered {status}");
    }
    Ok(())
}

async fn closed_loop(base: &str, concurrency: usize, secs: u64, users: u64) -> Stats {
    let base: Arc<str> = base.into();
    common::closed_loop(concurrency, secs, move |http, w, i| {
        let base = base.clone();
        async move {
            // One device per worker: two workers drawing the same user must not look like a
            // retry of each other's start (that would be an idempotent replay, 200).
            let mut seed = 0x9E37_79B9_7F4A_7C15_u64 ^ ((w as u64) << 32 | i);
            let user = common::next_rand(&mut seed) % users;
            cycle(&http, &base, user, &format!("dev-{w}")).await
        }
    })
    .await
}

/// Starts at a fixed rate (latency of the start, from its scheduled time); each admitted session
/// is stopped afterwards, outside the measured latency.
async fn fixed_rate(base: &str, rate: u64, secs: u64, users: u64) -> common::FixedRate {
    let base: Arc<str> = base.into();
    common::fixed_rate(rate, secs, move |http, i| {
        let base = base.clone();
        async move {
            let mut seed = 0xDEAD_BEEF_u64 ^ i;
            let user = common::next_rand(&mut seed) % users;
            let body = serde_json::to_vec(
                &serde_json::json!({ "device_id": format!("d{i}"), "content_id": "film" }),
            )?;
            let uri = format!("{base}/streams/v1/users/rate-{user}/sessions");
            let (status, bytes) = http
                .send(hyper::Method::POST, &uri, Some(body.into()))
                .await?;
            if status != 201 {
                bail!("start answered {status}");
            }
            let started: serde_json::Value = serde_json::from_slice(&bytes)?;
            if let Some(id) = started["session_id"].as_str() {
                let (http, uri) = (http.clone(), format!("{base}/streams/v1/sessions/{id}"));
                // Stop outside the measured latency.
                tokio::spawn(async move {
                    let _ = http.send(hyper::Method::DELETE, &uri, None).await;
                });
            }
            Ok(())
        }
    })
    .await
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
             SELECT session_id AS sid FROM streams.admit_v2(gen_random_uuid(), 'pgb-' || :uid, 'dev', 'film', NULL, 3, 90000) \\gset\n\
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
            ..Default::default()
        },
    );
    kit::db::migrate(&pool, streams::SERVICE.schema, streams::SERVICE.migrator).await?;
    // The production caller: the playback service, acting for users, with a verified token.
    common::set_authorization(kit::testing::bearer(
        "playback",
        &[streams::api::SCOPE_SESSIONS],
    ));
    let app = kit::testing::app_for(
        &streams::SERVICE,
        streams::start_with(
            kit::Ctx::routes_only(pool.clone()),
            streams::Settings::default(),
        ),
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
        rows.push((c, ratio, svc.rate(), pg.rate()));
    }
    let fr = fixed_rate(&base, args.rate, args.secs.max(10), args.users).await;
    println!(
        "{}",
        fr.scheduled
            .line(&format!("fixed rate {} starts/s", args.rate))
    );
    println!("{}", fr.sent.line("  (from send, generator lag excluded)"));
    let best = rows.iter().map(|r| r.1).fold(0.0_f64, f64::max);
    let svc_peak = rows.iter().map(|r| r.2).fold(0.0_f64, f64::max);
    let pg_peak = rows.iter().map(|r| r.3).fold(0.0_f64, f64::max);
    println!(
        "\nsummary: best service/pgbench ratio at equal concurrency {:.0} %, peak vs peak {:.0} % ({svc_peak:.0} vs {pg_peak:.0} /s) (target >= 50 %);\n         start p99 at {} /s = {:.2} ms (target <= 5 ms)",
        best * 100.0,
        svc_peak / pg_peak * 100.0,
        args.rate,
        fr.scheduled.p(0.99)
    );
    Ok(())
}
