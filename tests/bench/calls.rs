//! `bench-calls`: decision throughput and p50/p99 over HTTP next to an axum hello-world route
//! measured in the same run, with the database up and then stopped.
//!
//!     cargo run --release -p meridian-tests --bin bench-calls [-- --secs 2 --reps 3 --rate 2000]
//!
//! The three servers share the machine's two cores with the load generator, so single runs swing
//! by a quarter from one to the next. Each concurrency therefore alternates hello-world, kit
//! hello and decision runs `--reps` times and compares medians.
//!
//! Always starts its own throwaway PostgreSQL (it stops it mid-run). The calls service runs in
//! this process with its real router and middleware, on loopback.

#[path = "common.rs"]
mod common;

use std::{sync::Arc, time::Duration};

use anyhow::{Context, bail};
use clap::Parser;
use common::{Stats, closed_loop, fixed_rate};

#[derive(Parser)]
struct Args {
    /// Seconds of each closed-loop run.
    #[arg(long, default_value_t = 2)]
    secs: u64,
    /// Alternating repetitions per concurrency; medians are compared.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    concurrency: Vec<usize>,
    /// Target rate of the fixed-rate runs (decisions per second).
    #[arg(long, default_value_t = 2000)]
    rate: u64,
}

async fn hello_world() -> String {
    let app = axum::Router::new().route("/hello", axum::routing::get(|| async { "hello, world" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// One `call_started` webhook. Formatted, not built as a `serde_json::Value`: the load generator
/// shares the two cores with the service, and whatever it spends is taken from the decisions'
/// side of the comparison only.
fn body(call: u64) -> String {
    format!(
        r#"{{"request_id":"r{call}","call_id":"c{call}","call_type":"pbx","direction":"inbound","from":"+46700000001","to":"{}","event":"call_started"}}"#,
        calls::SAMPLE_PBX_NUMBER
    )
}

async fn decide(
    http: common::Http,
    base: Arc<str>,
    call: u64,
    want: &'static str,
) -> anyhow::Result<()> {
    let uri = format!("{base}/calls/v1/decisions");
    let body = body(call);
    // Signed as the provider would (the client's HMAC shares the cores with the service).
    let signature = calls::webhook::testing::signature(body.as_bytes());
    let (status, bytes) = http
        .send_with(
            hyper::Method::POST,
            &uri,
            Some(body.into()),
            Some((calls::webhook::SIGNATURE_HEADER.as_str(), &signature)),
        )
        .await?;
    if status != 200 {
        bail!("decision answered {status}");
    }
    // A byte search, not a JSON parse: the client should cost as little as the hello-world's.
    let needle = match want {
        "live" => &br#""source":"live""#[..],
        _ => &br#""source":"snapshot""#[..],
    };
    if !bytes.windows(needle.len()).any(|w| w == needle) {
        bail!(
            "answer without source {want}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    Ok(())
}

async fn hello(http: common::Http, base: Arc<str>) -> anyhow::Result<()> {
    let (status, _) = http
        .send(hyper::Method::GET, &format!("{base}/hello"), None)
        .await?;
    if status != 200 {
        bail!("hello answered {status}");
    }
    Ok(())
}

/// The run with the median throughput.
fn median(mut runs: Vec<Stats>) -> Stats {
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    runs.swap_remove(runs.len() / 2)
}

/// One database state: closed-loop medians per concurrency, then the fixed-rate latency run.
struct Round {
    /// (hello-world, decisions) medians per concurrency.
    closed: Vec<(Stats, Stats)>,
    fixed: common::FixedRate,
}

impl Round {
    /// Best ratio at equal concurrency.
    fn best_ratio(&self) -> f64 {
        self.closed
            .iter()
            .map(|(h, d)| d.rate() / h.rate())
            .fold(0.0_f64, f64::max)
    }

    /// Peak decisions over peak hello-world, whatever the concurrency of each.
    fn peak_ratio(&self) -> f64 {
        let peak = |f: fn(&(Stats, Stats)) -> f64| self.closed.iter().map(f).fold(0.0, f64::max);
        peak(|(_, d)| d.rate()) / peak(|(h, _)| h.rate())
    }
}

async fn round(
    label: &str,
    base: &Arc<str>,
    hello_base: &Arc<str>,
    kit_base: &Arc<str>,
    args: &Args,
    want: &'static str,
) -> Round {
    println!("--- {label} (medians of {} alternating runs)", args.reps);
    let mut closed = Vec::new();
    for &c in &args.concurrency {
        let (mut hs, mut ks, mut ds) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.reps.max(1) {
            let hb = hello_base.clone();
            hs.push(closed_loop(c, args.secs, move |http, _, _| hello(http, hb.clone())).await);
            let kb = kit_base.clone();
            ks.push(closed_loop(c, args.secs, move |http, _, _| hello(http, kb.clone())).await);
            let b = base.clone();
            ds.push(
                closed_loop(c, args.secs, move |http, w, i| {
                    decide(http, b.clone(), (w as u64) << 32 | i, want)
                })
                .await,
            );
        }
        let (h, k, d) = (median(hs), median(ks), median(ds));
        println!("{}", h.line(&format!("axum hello-world     c={c}")));
        println!("{}", k.line(&format!("hello via kit stack  c={c}")));
        println!("{}", d.line(&format!("decision ({want}) c={c}")));
        println!(
            "{:<32} {:>8.0} %\n",
            "  decisions / hello-world",
            d.rate() / h.rate() * 100.0
        );
        closed.push((h, d));
    }
    let b = base.clone();
    let fixed = fixed_rate(args.rate, args.secs.max(10), move |http, i| {
        decide(http, b.clone(), i, want)
    })
    .await;
    println!(
        "{}",
        fixed
            .scheduled
            .line(&format!("fixed rate {} /s ({want})", args.rate))
    );
    println!(
        "{}",
        fixed.sent.line("  (from send, generator lag excluded)")
    );
    println!();
    Round { closed, fixed }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = kit::pg::PgServer::ensure(None).await?;
    let pool = kit::db::pool(server.url(), "calls", &kit::db::PoolSettings::default())?;
    kit::db::migrate(&pool, "calls", calls::SERVICE.migrator).await?;
    calls::load_sample_data(&pool)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let dir = tempfile::tempdir()?;
    let settings = calls::Settings {
        snapshot_path: Some(dir.path().join("snapshot.json")),
        stale_after: Duration::from_secs(1),
        refresh_interval: Duration::from_millis(500),
        webhook_keys: calls::webhook::testing::keys(),
        ..calls::Settings::default()
    };
    let c = calls::start_with(kit::Ctx::new(pool.clone(), true), settings).await;
    let app = kit::testing::app_with(&calls::SERVICE, c.parts, &kit::app::HttpSettings::default());
    let base: Arc<str> = kit::testing::spawn_app(app).await.into();
    let hello_base: Arc<str> = hello_world().await.into();
    let kit_base: Arc<str> = common::hello_through_kit(&kit::app::HttpSettings::default())
        .await
        .into();
    println!(
        "bench-calls: {} s per run, {} cores; one op = one HTTP request",
        args.secs,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    let up = round("database up", &base, &hello_base, &kit_base, &args, "live").await;
    server.stop().context("stop PostgreSQL")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let down = round(
        "database stopped",
        &base,
        &hello_base,
        &kit_base,
        &args,
        "snapshot",
    )
    .await;

    println!(
        "summary: decision/hello-world throughput, best at equal concurrency {:.0} % (db up), {:.0} % (db down);\n         \
         peak against peak {:.0} % (db up), {:.0} % (db down); target >= 50 %\n         \
         p99 at {} decisions/s = {:.2} ms (db up), {:.2} ms (db down), target <= 5 ms",
        up.best_ratio() * 100.0,
        down.best_ratio() * 100.0,
        up.peak_ratio() * 100.0,
        down.peak_ratio() * 100.0,
        args.rate,
        up.fixed.scheduled.p(0.99),
        down.fixed.scheduled.p(0.99)
    );
    Ok(())
}
