//! The kit's HTTP contract, exercised through a real server on loopback: route-template metrics,
//! problem+json for every kind of bad input, request ids, readiness that follows the database,
//! and shutdown that drains in-flight requests.

use std::time::Duration;

use aide::axum::{
    ApiRouter,
    routing::{get_with, post_with},
};
use axum::extract::State;
use kit::{
    ApiResult, Json, Path,
    app::{HttpSettings, Mounted},
    health::{DbReady, Health},
    pg::PgServer,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, migrate::Migrator};

static MIGRATOR: Migrator = sqlx::migrate!("tests/migrations");
static SERVICE: kit::Service = kit::Service {
    name: "things",
    schema: "kit_test",
    migrator: &MIGRATOR,
    start_without_db: false,
    check_settings: |_| Ok(()),
    start: |ctx| {
        Box::pin(async move {
            let ready = DbReady::for_service(&SERVICE, ctx.pool);
            Ok(kit::ServiceParts::new(
                things_router(Duration::from_millis(800)),
                vec![ready],
            ))
        })
    },
    sample_data: |_| Box::pin(async { Ok(()) }),
};

#[derive(Deserialize, JsonSchema)]
struct ThingPath {
    id: i64,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NewThing {
    name: String,
    size: u8,
}

async fn get_thing(Path(ThingPath { id }): Path<ThingPath>) -> ApiResult<Json<i64>> {
    Ok(Json(id))
}

async fn create_thing(Json(t): Json<NewThing>) -> ApiResult<Json<NewThing>> {
    Ok(Json(t))
}

async fn slow(State(delay): State<Duration>) -> ApiResult<Json<&'static str>> {
    tokio::time::sleep(delay).await;
    Ok(Json("done"))
}

fn things_router(delay: Duration) -> ApiRouter {
    ApiRouter::new()
        .api_route("/things/{id}", get_with(get_thing, |op| op))
        .api_route("/things", post_with(create_thing, |op| op))
        .api_route("/slow", get_with(slow, |op| op))
        .with_state(delay)
}

fn app(health: Health) -> axum::Router {
    kit::app::build(
        "kit-test",
        vec![Mounted {
            name: "things",
            router: things_router(Duration::from_millis(800)),
        }],
        health,
        &HttpSettings::default(),
    )
}

async fn metrics_text(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body")
}

fn series_count(metrics: &str, prefix: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn metrics_label_by_route_template_not_raw_path() {
    let base = kit::testing::spawn_app(app(Health::default())).await;
    let http = reqwest::Client::new();
    for id in [123, 456] {
        let res = http
            .get(format!("{base}/things/{id}"))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200);
    }
    // Same route, another status: a second counter series, the same histogram series.
    let res = http
        .get(format!("{base}/things/abc"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 400);
    let metrics = metrics_text(&http, &base).await;
    let counters = series_count(&metrics, "http_requests_total{service=\"things\"");
    assert_eq!(counters.len(), 2, "one series per status: {counters:?}");
    let with_status = |status: &str| {
        counters
            .iter()
            .find(|c| c.contains(&format!("status=\"{status}\"")))
            .unwrap_or_else(|| panic!("no {status} series in {counters:?}"))
    };
    let ok = with_status("200");
    assert!(
        ok.contains("route=\"/things/{id}\"") && ok.ends_with(" 2"),
        "both ids count in one series: {counters:?}"
    );
    assert!(with_status("400").ends_with(" 1"), "{counters:?}");
    assert!(!metrics.contains("/things/123") && !metrics.contains("/things/456"));
    let histogram = series_count(
        &metrics,
        "http_request_duration_seconds_count{service=\"things\"",
    );
    assert_eq!(histogram.len(), 1, "{histogram:?}");
    assert!(histogram[0].ends_with(" 3"), "{histogram:?}");
}

async fn problem(res: reqwest::Response) -> (u16, serde_json::Value) {
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(ct, "application/problem+json", "status {status}");
    let body: serde_json::Value = res.json().await.expect("json problem body");
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["type"].is_string() && body["title"].is_string(),
        "{body}"
    );
    (status, body)
}

#[tokio::test]
async fn every_bad_input_gets_problem_json_naming_the_field() {
    let base = kit::testing::spawn_app(app(Health::default())).await;
    let http = reqwest::Client::new();
    let post = |body: &'static str, ct: &'static str| {
        http.post(format!("{base}/things"))
            .header("content-type", ct)
            .body(body)
            .send()
    };

    let (s, b) = problem(
        post(r#"{"name": "a", "size"#, "application/json")
            .await
            .expect("send"),
    )
    .await;
    assert_eq!((s, b["errors"][0]["field"].as_str()), (400, Some("body")));

    let (s, b) = problem(
        post(r#"{"name": "a", "size": "big"}"#, "application/json")
            .await
            .expect("send"),
    )
    .await;
    assert_eq!((s, b["errors"][0]["field"].as_str()), (400, Some("size")));

    let (s, b) = problem(
        post(
            r#"{"name": "a", "size": 1, "colour": "red"}"#,
            "application/json",
        )
        .await
        .expect("send"),
    )
    .await;
    assert_eq!((s, b["errors"][0]["field"].as_str()), (400, Some("colour")));

    let (s, b) = problem(
        post(r#"{"size": 1}"#, "application/json")
            .await
            .expect("send"),
    )
    .await;
    assert_eq!((s, b["errors"][0]["field"].as_str()), (400, Some("name")));

    let (s, _) = problem(post("", "application/json").await.expect("send")).await;
    assert_eq!(s, 400);

    let (s, _) = problem(
        post(r#"{"name": "a", "size": 1}"#, "text/plain")
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(s, 415);

    let (s, b) = problem(
        http.get(format!("{base}/things/abc"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!((s, b["errors"][0]["field"].as_str()), (400, Some("id")));

    let (s, _) = problem(
        http.get(format!("{base}/nowhere"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(s, 404);

    let (s, _) = problem(
        http.delete(format!("{base}/things"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(s, 405);

    let ok = post(r#"{"name": "a", "size": 1}"#, "application/json")
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let base = kit::testing::spawn_app(app(Health::default())).await;
    let http = reqwest::Client::new();
    let res = http
        .get(format!("{base}/healthz"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .expect("send");
    assert_eq!(res.headers()["x-request-id"], "trace-me-42");
    let res = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("send");
    let generated = res.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let base = kit::testing::spawn_app(app(Health::default())).await;
    let doc: serde_json::Value = reqwest::get(format!("{base}/openapi.json"))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method) in [
        ("/things/{id}", "get"),
        ("/things", "post"),
        ("/slow", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing from {doc}"
        );
    }
}

async fn wait_for_status(http: &reqwest::Client, url: &str, want: u16) -> u16 {
    let mut last = 0;
    for _ in 0..60 {
        last = http
            .get(url)
            .send()
            .await
            .map_or(0, |r| r.status().as_u16());
        if last == want {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    last
}

#[tokio::test]
async fn readyz_follows_the_database_down_and_back() {
    // A server of this test's own, because the test stops it.
    let server = PgServer::ensure(None)
        .await
        .expect("throwaway PostgreSQL (install postgresql)");
    let pool: PgPool = kit::db::pool(
        server.url(),
        SERVICE.schema,
        &kit::db::PoolSettings::default(),
    )
    .expect("pool");
    kit::db::migrate(&pool, SERVICE.schema, SERVICE.migrator)
        .await
        .expect("migrate");
    let health = Health::new(vec![std::sync::Arc::new(DbReady::new(
        SERVICE.schema,
        pool.clone(),
        SERVICE.migrator,
    ))]);
    let base = kit::testing::spawn_app(app(health)).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/readyz");

    assert_eq!(wait_for_status(&http, &url, 200).await, 200);
    server.stop().expect("stop PostgreSQL");
    assert_eq!(wait_for_status(&http, &url, 503).await, 503);
    // Liveness never depends on the database.
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .expect("send")
            .status(),
        200
    );
    server.start().expect("restart PostgreSQL");
    assert_eq!(wait_for_status(&http, &url, 200).await, 200);
}

#[tokio::test]
async fn readyz_is_503_before_migrations() {
    let db = kit::testing::TestDb::new().await;
    let pool = db.pool(SERVICE.schema);
    let health = Health::new(vec![std::sync::Arc::new(DbReady::new(
        SERVICE.schema,
        pool.clone(),
        SERVICE.migrator,
    ))]);
    let base = kit::testing::spawn_app(app(health)).await;
    let res = reqwest::get(format!("{base}/readyz")).await.expect("get");
    assert_eq!(res.status(), 503);
    kit::db::migrate(&pool, SERVICE.schema, SERVICE.migrator)
        .await
        .expect("migrate");
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .expect("get")
            .status(),
        200
    );
}

#[tokio::test]
async fn shutdown_drains_an_in_flight_request() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let health = Health::default();
    let server = tokio::spawn(kit::shutdown::serve(
        listener,
        app(health.clone()),
        health,
        async move {
            let _ = stop_rx.await;
        },
        Duration::from_secs(5),
    ));
    let http = reqwest::Client::new();
    let in_flight = tokio::spawn({
        let http = http.clone();
        let url = format!("{base}/slow");
        async move { http.get(url).send().await }
    });
    // Let the slow request reach its handler, then ask the server to stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_tx.send(()).expect("signal");
    let res = in_flight
        .await
        .expect("join")
        .expect("the in-flight request completes");
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.expect("body"), "\"done\"");
    let drained = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server exits")
        .expect("join");
    assert!(
        drained.expect("serve ok"),
        "drained within the grace period"
    );
    // And it no longer accepts connections.
    assert!(
        reqwest::Client::new()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn shutdown_gives_up_after_the_grace_period() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let health = Health::default();
    let app = kit::app::build(
        "kit-test",
        vec![Mounted {
            name: "things",
            router: things_router(Duration::from_secs(30)),
        }],
        health.clone(),
        &HttpSettings::default(),
    );
    let server = tokio::spawn(kit::shutdown::serve(
        listener,
        app,
        health,
        tokio::time::sleep(Duration::from_millis(200)),
        Duration::from_millis(300),
    ));
    let _in_flight = tokio::spawn(async move { reqwest::get(format!("{base}/slow")).await });
    let drained = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("bounded")
        .expect("join");
    assert!(
        !drained.expect("serve ok"),
        "a 30 s request cannot drain in 300 ms"
    );
}

#[tokio::test]
async fn fault_injection_delays_only_the_chosen_prefix() {
    let app = kit::app::build(
        "kit-test",
        vec![Mounted {
            name: "things",
            router: things_router(Duration::from_millis(1)),
        }],
        Health::default(),
        &HttpSettings {
            fault_delay: Some(("/things".into(), Duration::from_millis(300))),
            ..HttpSettings::default()
        },
    );
    let base = kit::testing::spawn_app(app).await;
    let http = reqwest::Client::new();
    let t = std::time::Instant::now();
    assert_eq!(
        http.get(format!("{base}/things/1"))
            .send()
            .await
            .expect("send")
            .status(),
        200
    );
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "delayed: {:?}",
        t.elapsed()
    );
    let t = std::time::Instant::now();
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .expect("send")
            .status(),
        200
    );
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "not delayed: {:?}",
        t.elapsed()
    );
}

/// The contract end to end: `kit::testing::start` runs the service's own `start`, and the app
/// built from its parts serves its routes and its readiness (which needs its migrations).
#[tokio::test]
async fn a_service_started_through_its_contract_serves_routes_and_readiness() {
    let db = kit::testing::TestDb::new().await;
    let pool = db.pool(SERVICE.schema);
    let parts = kit::testing::start(&SERVICE, pool.clone()).await;
    let base = kit::testing::spawn_app(kit::testing::app_for(&SERVICE, parts)).await;
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503, "not ready before its migrations ran");
    kit::db::migrate(&pool, SERVICE.schema, SERVICE.migrator)
        .await
        .expect("migrate");
    let ready = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let thing = http
        .get(format!("{base}/things/7"))
        .send()
        .await
        .expect("thing");
    assert_eq!(thing.status(), 200);
}

/// A request the timeout cuts off answers 503 problem+json, and the metrics count it as that
/// 503 (the timeout sits inside the metrics layer): the error SLO sees timeouts.
#[tokio::test]
async fn a_timed_out_request_is_a_503_the_metrics_count() {
    let app = kit::app::build(
        "kit-test",
        vec![Mounted {
            name: "things",
            router: things_router(Duration::from_millis(800)),
        }],
        Health::default(),
        &HttpSettings {
            request_timeout: Duration::from_millis(100),
            ..HttpSettings::default()
        },
    );
    let base = kit::testing::spawn_app(app).await;
    let http = reqwest::Client::new();
    let res = http.get(format!("{base}/slow")).send().await.expect("slow");
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let metrics = metrics_text(&http, &base).await;
    let counted = series_count(&metrics, "http_requests_total{service=\"things\"");
    assert!(
        counted.iter().any(|l| l.contains("route=\"/slow\"")
            && l.contains("status=\"503\"")
            && l.ends_with(" 1")),
        "the timeout is not counted: {counted:?}"
    );
}

/// `stop` aborts background loops, waits for flush tasks after a completed drain, and abandons
/// them (aborted, not waited for) when the drain did not complete.
#[tokio::test]
async fn stop_waits_for_flush_tasks_only_after_a_completed_drain() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    let run = |flag: Arc<AtomicBool>| {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            flag.store(true, Ordering::SeqCst);
        })
    };
    let looped = Arc::new(AtomicBool::new(false));
    let looping = Arc::clone(&looped);
    let background = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_hours(1)).await;
        looping.store(true, Ordering::SeqCst);
    });
    let flushed = Arc::new(AtomicBool::new(false));
    let tasks = kit::service::Tasks {
        background: vec![background],
        flush: vec![run(Arc::clone(&flushed))],
    };
    kit::service::stop(vec![tasks], true).await;
    assert!(
        flushed.load(Ordering::SeqCst),
        "the flush task was not waited for"
    );
    assert!(!looped.load(Ordering::SeqCst));

    let abandoned = Arc::new(AtomicBool::new(false));
    let tasks = kit::service::Tasks {
        background: Vec::new(),
        flush: vec![run(Arc::clone(&abandoned))],
    };
    let started = std::time::Instant::now();
    kit::service::stop(vec![tasks], false).await;
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "waited after a failed drain"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!abandoned.load(Ordering::SeqCst), "not aborted");
}
