//! Call control keeps answering when PostgreSQL is down: a real server that this test stops
//! mid-run, a fresh `calls` process started during the outage (answers from the file snapshot),
//! and a flow change made after the database returns reaching decisions within the refresh
//! interval.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use calls::Settings;
use kit::pg::PgServer;
use reqwest::Client;
use serde_json::{Value, json};

const HOSPITAL: &str = include_str!("../samples/hospital.json");
const PBX: &str = "+46101110099";

fn call(id: &str) -> Value {
    json!({ "request_id": id, "call_id": id, "call_type": "pbx", "direction": "inbound",
            "from": "+46700000001", "to": PBX, "event": "call_started" })
}

async fn decide(http: &Client, base: &str, id: &str) -> Value {
    let body = serde_json::to_vec(&call(id)).expect("body");
    let res = http
        .post(format!("{base}/calls/v1/decisions"))
        .header("content-type", "application/json")
        .header(
            calls::webhook::SIGNATURE_HEADER.as_str(),
            calls::webhook::testing::signature(&body),
        )
        .body(body)
        .send()
        .await
        .expect("decide");
    assert_eq!(res.status(), 200);
    res.json().await.expect("json")
}

/// Polls until `check` holds or `limit` passes; returns the last value seen.
async fn eventually(limit: Duration, mut f: impl AsyncFnMut() -> (bool, Value)) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (ok, v) = f().await;
        if ok || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn say_text(d: &Value) -> String {
    d["actions"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_survive_a_database_outage_and_a_cold_start_during_it() {
    let server = PgServer::ensure(None)
        .await
        .expect("throwaway PostgreSQL (install postgresql)");
    let pool = kit::db::pool(
        server.url(),
        "calls",
        &kit::db::PoolSettings {
            max_connections: 4,
            acquire_timeout: Duration::from_millis(500),
            ..Default::default()
        },
    )
    .expect("pool");
    kit::db::migrate(&pool, "calls", calls::SERVICE.migrator)
        .await
        .expect("migrate");
    let dir = tempfile_dir();
    let snapshot_file = dir.join("snapshot.json");
    let settings = Settings {
        snapshot_path: Some(snapshot_file.clone()),
        refresh_interval: Duration::from_millis(300),
        stale_after: Duration::from_secs(1),
        webhook_keys: calls::webhook::testing::keys(),
        ..Settings::default()
    };
    let c = calls::start_with(kit::Ctx::new(pool.clone(), true), settings).await;
    let app = kit::testing::app_for(&calls::SERVICE, c.parts);
    let base = kit::testing::spawn_app(app).await;
    let http = Client::builder()
        .default_headers(kit::testing::auth_headers(
            "ops",
            &[calls::api::SCOPE_ADMIN],
        ))
        .build()
        .expect("http client");

    let mut hospital: Value = serde_json::from_str(HOSPITAL).expect("fixture");
    // A pinned "always open" flow keeps this test independent of the wall clock.
    hospital["flow"]["entry"] = json!("welcome");
    let res = http
        .put(format!("{base}/calls/v1/pbx/{PBX}"))
        .json(&hospital)
        .send()
        .await
        .expect("put");
    assert_eq!(res.status(), 200);
    let d = eventually(Duration::from_secs(5), async || {
        let d = decide(&http, &base, "before").await;
        (
            d["source"] == "live" && d["actions"][1]["type"] == "menu",
            d,
        )
    })
    .await;
    assert_eq!(
        (d["source"].as_str(), d["actions"][1]["type"].as_str()),
        (Some("live"), Some("menu")),
        "{d}"
    );
    assert!(
        snapshot_file.exists(),
        "the refresh wrote the file snapshot"
    );

    // The database goes away mid-run.
    server.stop().expect("stop PostgreSQL");
    let d = eventually(Duration::from_secs(5), async || {
        let d = decide(&http, &base, "during").await;
        (d["source"] == "snapshot", d)
    })
    .await;
    assert_eq!(d["source"], "snapshot", "{d}");
    assert_eq!(
        d["actions"][1]["type"], "menu",
        "same routing as before the outage"
    );
    let ready = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200, "ready while serving from the snapshot");
    // Configuration writes need the database: a clear 503 problem, not a 500.
    let write = http
        .put(format!("{base}/calls/v1/pbx/{PBX}"))
        .json(&hospital)
        .send()
        .await
        .expect("put during outage");
    assert_eq!(write.status(), 503);
    assert_eq!(write.headers()["content-type"], "application/problem+json");

    // A fresh process started while the database is down answers from the file.
    let port = kit::testing::free_port();
    // A production-mode process: its own issuer configuration, token key and webhook secret.
    let jwks = kit::testing::JwksServer::start(&kit::testing::issuer().jwks()).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_calls"))
        .envs(jwks.env(kit::testing::issuer()))
        .env("CALLS_TOKEN_KEY", "outage-test-token-key-0123456789abcdef")
        .env("CALLS_WEBHOOK_SECRETS", calls::webhook::testing::env())
        .env_remove("MERIDIAN_DEV")
        .env("DATABASE_URL", server.url())
        .env("PORT", port.to_string())
        .env("CALLS_SNAPSHOT_PATH", &snapshot_file)
        .env("CALLS_REFRESH_INTERVAL_MS", "500")
        .env("DB_ACQUIRE_TIMEOUT_MS", "500")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn calls");
    let fresh = format!("http://127.0.0.1:{port}");
    let ready = eventually(Duration::from_secs(30), async || {
        let s = http
            .get(format!("{fresh}/readyz"))
            .send()
            .await
            .map_or(0, |r| r.status().as_u16());
        (s == 200, json!(s))
    })
    .await;
    assert_eq!(
        ready,
        json!(200),
        "cold start during the outage becomes ready from the file"
    );
    let d = decide(&http, &fresh, "cold").await;
    assert_eq!(
        (d["source"].as_str(), d["actions"][1]["type"].as_str()),
        (Some("snapshot"), Some("menu")),
        "{d}"
    );

    // The database returns; a flow change written now reaches both processes' decisions.
    server.start().expect("restart PostgreSQL");
    hospital["flow"]["nodes"]["welcome"]["prompt"] = json!({ "say": "Welcome back." });
    let put = eventually(Duration::from_secs(10), async || {
        let s = http
            .put(format!("{base}/calls/v1/pbx/{PBX}"))
            .json(&hospital)
            .send()
            .await
            .map_or(0, |r| r.status().as_u16());
        (s == 200, json!(s))
    })
    .await;
    assert_eq!(put, json!(200));
    for target in [&base, &fresh] {
        let d = eventually(Duration::from_secs(5), async || {
            let d = decide(&http, target, "after").await;
            (say_text(&d) == "Welcome back." && d["source"] == "live", d)
        })
        .await;
        assert_eq!(
            (say_text(&d).as_str(), d["source"].as_str()),
            ("Welcome back.", Some("live")),
            "{target}: {d}"
        );
    }

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("calls-outage-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
