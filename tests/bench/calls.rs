//! `bench-calls`: decision throughput and p50/p99 over HTTP next to an axum hello-world route
//! measured in the same run, with the database up and then stopped.
//!
//!     cargo run --release -p meridian-tests --bin bench-calls [-- --secs 5 --rate 2000]
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
    #[arg(long, default_value_t = 5)]
    secs: u64,
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

/// The same trivial route behind the whole kit stack (request id, metrics, access-log span,
/// timeout, panic guard, problem+json fallbacks): shows how much of a decision's cost is the
/// shared middleware rather than call control itself.
async fn hello_through_kit() -> String {
    use aide::axum::{ApiRouter, routing::get_with};
    let router =
        ApiRouter::new().api_route("/hello", get_with(|| async { "hello, world" }, |op| op));
    let app = kit::app::build(
        "hello",
        vec![kit::app::Mounted {
            name: "hello",
            router,
        }],
        kit::health::Health::default(),
        &kit::app::HttpSettings::default(),
    );
    kit::testing::spawn_app(app).await
}

fn body(call: u64) -> serde_json::Value {
    serde_json::json!({
        "request_id": format!("r{call}"), "call_id": format!("c{call}"), "call_type": "pbx",
        "direction": "inbound", "from": "+46700000001", "to": calls::SAMPLE_PBX_NUMBER,
        "event": "call_started"
    })
}

async fn decide(
    http: common::Http,
    base: Arc<str>,
    call: u64,
    want: &'static str,
) -> anyhow::Result<()> {
    let uri = format!("{base}/calls/v1/decisions");
    let body = serde_json::to_vec(&body(call))?;
    let (status, bytes) = http
        .send(hyper::Method::POST, &uri, Some(body.into()))
        .await?;
    if status != 200 {
        bail!("decision answered {status}");
    }
    // A byte search, not a JSON parse: the client should cost as little as the hello-world's.
    let needle = format!("\"source\":\"{want}\"");
    if !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
        bail!(
            "answer without {needle}: {}",
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

async fn round(
    label: &str,
    base: &Arc<str>,
    hello_base: &Arc<str>,
    kit_base: &Arc<str>,
    args: &Args,
    want: &'static str,
) -> Vec<(Stats, Stats)> {
    println!("--- {label}");
    let mut rows = Vec::new();
    for &c in &args.concurrency {
        let hb = hello_base.clone();
        let h = closed_loop(c, args.secs, move |http, _, _| hello(http, hb.clone())).await;
        println!("{}", h.line(&format!("axum hello-world     c={c}")));
        let kb = kit_base.clone();
        let k = closed_loop(c, args.secs, move |http, _, _| hello(http, kb.clone())).await;
        println!("{}", k.line(&format!("hello via kit stack  c={c}")));
        let b = base.clone();
        let d = closed_loop(c, args.secs, move |http, w, i| {
            decide(http, b.clone(), (w as u64) << 32 | i, want)
        })
        .await;
        println!("{}", d.line(&format!("decision ({want}) c={c}")));
        println!(
            "{:<32} {:>8.0} %\n",
            "  decisions / hello-world",
            d.rate() / h.rate() * 100.0
        );
        rows.push((h, d));
    }
    let b = base.clone();
    let fr = fixed_rate(args.rate, args.secs.max(10), move |http, i| {
        decide(http, b.clone(), i, want)
    })
    .await;
    println!(
        "{}",
        fr.line(&format!("fixed rate {} /s ({want})", args.rate))
    );
    println!();
    rows.push((
        fr,
        Stats {
            ops: 0,
            errors: 0,
            secs: 1.0,
            hist: common::new_hist(),
        },
    ));
    rows
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
        ..calls::Settings::default()
    };
    let c = calls::start(pool.clone(), settings, Arc::new(calls::SystemClock)).await;
    let app = kit::app::build(
        "calls",
        vec![kit::app::Mounted {
            name: "calls",
            router: c.router,
        }],
        kit::health::Health::new(c.readiness),
        &kit::app::HttpSettings::default(),
    );
    let base: Arc<str> = kit::testing::spawn_app(app).await.into();
    let hello_base: Arc<str> = hello_world().await.into();
    let kit_base: Arc<str> = hello_through_kit().await.into();
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

    let best = |rows: &[(Stats, Stats)]| {
        rows[..rows.len() - 1]
            .iter()
            .map(|(h, d)| d.rate() / h.rate())
            .fold(0.0_f64, f64::max)
    };
    let fr_p99 = |rows: &[(Stats, Stats)]| rows[rows.len() - 1].0.p(0.99);
    println!(
        "summary: best decision/hello-world throughput ratio {:.0} % (db up), {:.0} % (db down), target >= 50 %;\n         p99 at {} decisions/s = {:.2} ms (db up), {:.2} ms (db down), target <= 5 ms",
        best(&up) * 100.0,
        best(&down) * 100.0,
        args.rate,
        fr_p99(&up),
        fr_p99(&down)
    );
    Ok(())
}
