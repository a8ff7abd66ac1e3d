//! The stream guard through HTTP against a real PostgreSQL: the race, leases, idempotency,
//! limits and bad input (with proof that bad input writes nothing).

use std::time::Duration;

use futures_util::future::join_all;
use kit::testing::{TestDb, app_for, spawn_app};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use streams::Settings;

/// The playback service (acting for users) with admin rights: what these behaviour tests need.
/// tests/auth.rs covers who may call what.
fn client() -> Client {
    Client::builder()
        .default_headers(kit::testing::auth_headers(
            "playback",
            &[streams::api::SCOPE_SESSIONS, streams::api::SCOPE_ADMIN],
        ))
        .build()
        .expect("http client")
}

struct Harness {
    db: TestDb,
    pool: PgPool,
    base: String,
    http: Client,
}

async fn harness(settings: Settings) -> Harness {
    let db = TestDb::new().await;
    let pool = db.service_pool(&streams::SERVICE).await;
    let base = spawn_instance(&db, settings).await;
    Harness {
        db,
        pool,
        base,
        http: client(),
    }
}

/// One more service instance (its own pool and router) on the same database.
async fn spawn_instance(db: &TestDb, settings: Settings) -> String {
    let pool = db.pool_with(
        streams::SERVICE.schema,
        &kit::db::PoolSettings {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
            ..Default::default()
        },
    );
    spawn_app(app_for(
        &streams::SERVICE,
        streams::start_with(kit::Ctx::routes_only(pool), settings),
    ))
    .await
}

impl Harness {
    async fn start(&self, user: &str, device: &str, content: &str) -> reqwest::Response {
        start_on(&self.http, &self.base, user, device, content, None).await
    }

    async fn rows(&self) -> (i64, i64) {
        let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM streams.sessions")
            .fetch_one(&self.pool)
            .await
            .expect("count sessions");
        let limits: i64 = sqlx::query_scalar("SELECT count(*) FROM streams.user_limits")
            .fetch_one(&self.pool)
            .await
            .expect("count limits");
        (sessions, limits)
    }
}

async fn start_on(
    http: &Client,
    base: &str,
    user: &str,
    device: &str,
    content: &str,
    key: Option<&str>,
) -> reqwest::Response {
    let mut req = http
        .post(format!("{base}/streams/v1/users/{user}/sessions"))
        .json(&json!({ "device_id": device, "content_id": content }));
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    req.send().await.expect("send start")
}

fn short_leases() -> Settings {
    Settings {
        lease_ttl: Duration::from_millis(1200),
        heartbeat_interval: Duration::from_millis(400),
        ..Settings::default()
    }
}

async fn race(bases: &[String], user: &str, n: usize) -> (usize, usize, usize) {
    let http = client();
    let attempts = (0..n).map(|i| {
        let base = bases[i % bases.len()].clone();
        let http = http.clone();
        let user = user.to_owned();
        async move {
            start_on(&http, &base, &user, &format!("device-{i}"), "movie", None)
                .await
                .status()
        }
    });
    let statuses = join_all(attempts).await;
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let rejected = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    (created, rejected, n - created - rejected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_parallel_starts_admit_exactly_three() {
    let h = harness(Settings::default()).await;
    let (created, rejected, other) = race(std::slice::from_ref(&h.base), "racer", 64).await;
    assert_eq!((created, rejected, other), (3, 61, 0));
    let live: i64 =
        sqlx::query_scalar("SELECT count(*) FROM streams.sessions WHERE user_id = 'racer'")
            .fetch_one(&h.pool)
            .await
            .expect("count");
    assert_eq!(live, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_sharing_one_database_still_admit_exactly_three() {
    let h = harness(Settings::default()).await;
    let second = spawn_instance(&h.db, Settings::default()).await;
    let (created, rejected, other) = race(&[h.base.clone(), second], "racer2", 64).await;
    assert_eq!((created, rejected, other), (3, 61, 0));
}

#[tokio::test]
async fn rejection_lists_the_active_sessions() {
    let h = harness(Settings::default()).await;
    for d in ["tv", "phone", "laptop"] {
        assert_eq!(h.start("u1", d, "film").await.status(), 201);
    }
    let res = h.start("u1", "tablet", "film").await;
    assert_eq!(res.status(), 409);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["limit"], 3);
    let devices: Vec<&str> = body["active_sessions"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["device_id"].as_str())
        .collect();
    assert_eq!(devices, ["tv", "phone", "laptop"]);
    // Another user is unaffected.
    assert_eq!(h.start("u2", "tv", "film").await.status(), 201);
}

#[tokio::test]
async fn a_session_without_heartbeats_frees_its_slot() {
    let h = harness(short_leases()).await;
    let mut ids = Vec::new();
    for d in ["a", "b", "c"] {
        let res = h.start("leasy", d, "film").await;
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.expect("json");
        ids.push(body["session_id"].as_str().expect("id").to_owned());
    }
    assert_eq!(h.start("leasy", "d", "film").await.status(), 409);

    // Keep "a" alive with heartbeats; let "b" and "c" lapse.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let hb = h
            .http
            .post(format!(
                "{}/streams/v1/sessions/{}/heartbeat",
                h.base, ids[0]
            ))
            .send()
            .await
            .expect("hb");
        assert_eq!(hb.status(), 200);
    }
    // 1.6 s after start, b and c have expired; two slots are free again.
    assert_eq!(h.start("leasy", "d", "film").await.status(), 201);
    assert_eq!(h.start("leasy", "e", "film").await.status(), 201);
    assert_eq!(h.start("leasy", "f", "film").await.status(), 409);

    // A heartbeat on an expired lease is 410 once (the row is removed), then 404.
    let hb = h
        .http
        .post(format!(
            "{}/streams/v1/sessions/{}/heartbeat",
            h.base, ids[1]
        ))
        .send()
        .await
        .expect("hb");
    assert_eq!(hb.status(), 410);
    let hb = h
        .http
        .post(format!(
            "{}/streams/v1/sessions/{}/heartbeat",
            h.base, ids[1]
        ))
        .send()
        .await
        .expect("hb");
    assert_eq!(hb.status(), 404);
}

#[tokio::test]
async fn sweeper_deletes_expired_leases_in_batches() {
    let h = harness(Settings {
        lease_ttl: Duration::from_millis(300),
        heartbeat_interval: Duration::from_millis(100),
        default_limit: 20,
        ..Settings::default()
    })
    .await;
    for i in 0..7 {
        assert_eq!(
            h.start(&format!("user{}", i % 2), &format!("d{i}"), "x")
                .await
                .status(),
            201
        );
    }
    assert_eq!(
        streams::sweeper::sweep_once(&h.pool, 3)
            .await
            .expect("sweep"),
        0,
        "nothing expired yet"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(h.start("fresh", "d", "x").await.status(), 201);
    assert_eq!(
        streams::sweeper::sweep_once(&h.pool, 3)
            .await
            .expect("sweep"),
        7
    );
    assert_eq!(h.rows().await.0, 1, "only the fresh session remains");
}

#[tokio::test]
async fn one_replica_samples_the_active_sessions_gauge_and_another_takes_over() {
    use streams::sweeper::GaugeSampler;
    let h = harness(Settings::default()).await;
    for d in ["d1", "d2"] {
        assert_eq!(h.start("gauge-user", d, "x").await.status(), 201);
    }
    // Two replicas' samplers on one database: the first to try becomes the sampler.
    let (mut a, mut b) = (GaugeSampler::default(), GaugeSampler::default());
    assert_eq!(a.sample(&h.pool).await.expect("a"), Some(2));
    assert_eq!(
        b.sample(&h.pool).await.expect("b"),
        None,
        "one sampler only"
    );
    assert_eq!(a.sample(&h.pool).await.expect("a again"), Some(2));
    assert!(a.is_leader() && !b.is_leader());
    // The sampling replica goes away (its connection closes): the other takes over.
    drop(a);
    let mut took_over = None;
    for _ in 0..100 {
        took_over = b.sample(&h.pool).await.expect("b");
        if took_over.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        took_over,
        Some(2),
        "the lock was released with the connection"
    );
}

#[tokio::test]
async fn retried_starts_return_the_same_session() {
    let h = harness(Settings::default()).await;
    let first = start_on(&h.http, &h.base, "idem", "tv", "film", Some("key-1")).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    let again = start_on(&h.http, &h.base, "idem", "tv", "film", Some("key-1")).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.expect("json");
    assert_eq!(first["session_id"], again["session_id"]);

    // Without a key, the same device and content is the same stream.
    let a = h.start("idem", "phone", "show").await;
    assert_eq!(a.status(), 201);
    let b = h.start("idem", "phone", "show").await;
    assert_eq!(b.status(), 200);
    assert_eq!(h.rows().await.0, 2);
    // The same key for another stream is refused (422) and starts nothing.
    let reused = start_on(
        &h.http,
        &h.base,
        "idem",
        "tv",
        "another-film",
        Some("key-1"),
    )
    .await;
    assert_eq!(reused.status(), 422);
    assert_eq!(reused.headers()["content-type"], "application/problem+json");
    assert_eq!(h.rows().await.0, 2);
    // A new key from the same device is a new stream.
    assert_eq!(
        start_on(&h.http, &h.base, "idem", "phone", "show", Some("key-2"))
            .await
            .status(),
        201
    );
    assert_eq!(h.rows().await.0, 3);
}

#[tokio::test]
async fn stop_is_idempotent_and_frees_the_slot() {
    let h = harness(Settings::default()).await;
    let mut ids = Vec::new();
    for d in ["a", "b", "c"] {
        let res = h.start("stopper", d, "film").await;
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.expect("json");
        ids.push(body["session_id"].as_str().expect("id").to_owned());
    }
    for _ in 0..2 {
        let res = h
            .http
            .delete(format!("{}/streams/v1/sessions/{}", h.base, ids[0]))
            .send()
            .await
            .expect("stop");
        assert_eq!(res.status(), 204);
    }
    assert_eq!(h.start("stopper", "d", "film").await.status(), 201);
    let get = h
        .http
        .get(format!("{}/streams/v1/sessions/{}", h.base, ids[0]))
        .send()
        .await
        .expect("get");
    assert_eq!(get.status(), 404);
}

#[tokio::test]
async fn per_user_limits_and_pagination() {
    let h = harness(Settings::default()).await;
    let url = format!("{}/streams/v1/users/fam/limit", h.base);
    let got: Value = h
        .http
        .get(&url)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (got["max_streams"].as_i64(), got["source"].as_str()),
        (Some(3), Some("default"))
    );
    let put = h
        .http
        .put(&url)
        .json(&json!({ "max_streams": 5 }))
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 200);
    for i in 0..5 {
        assert_eq!(h.start("fam", &format!("d{i}"), "film").await.status(), 201);
    }
    assert_eq!(h.start("fam", "d5", "film").await.status(), 409);

    // Two pages of 3 + 2 through the cursor.
    let list = format!("{}/streams/v1/users/fam/sessions", h.base);
    let p1: Value = h
        .http
        .get(format!("{list}?limit=3"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(p1["items"].as_array().map(Vec::len), Some(3));
    let cursor = p1["next_cursor"].as_str().expect("cursor");
    let p2: Value = h
        .http
        .get(format!("{list}?limit=3&cursor={cursor}"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(p2["items"].as_array().map(Vec::len), Some(2));
    assert!(p2.get("next_cursor").is_none());

    // Back to the default.
    assert_eq!(
        h.http.delete(&url).send().await.expect("delete").status(),
        204
    );
    let got: Value = h
        .http
        .get(&url)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got["source"], "default");
}

async fn assert_problem(res: reqwest::Response, status: u16, field: Option<&str>) {
    assert_eq!(res.status().as_u16(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: Value = res.json().await.expect("problem json");
    if let Some(f) = field {
        let fields: Vec<&str> = body["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(fields.contains(&f), "expected field {f} in {body}");
    }
}

/// One bad request: method, path (relative to the base URL), extra header, body, and the problem
/// it must get (status, and the field it must name).
struct Bad {
    method: reqwest::Method,
    path: String,
    header: Option<(&'static str, &'static str)>,
    body: Body,
    status: u16,
    field: Option<&'static str>,
}

enum Body {
    None,
    Json(Value),
    Raw(&'static str, &'static str),
}

fn bad(method: reqwest::Method, path: impl Into<String>, body: Body) -> Bad {
    Bad {
        method,
        path: path.into(),
        header: None,
        body,
        status: 400,
        field: None,
    }
}

impl Bad {
    fn field(mut self, f: &'static str) -> Self {
        self.field = Some(f);
        self
    }
    fn status(mut self, s: u16) -> Self {
        self.status = s;
        self
    }
    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.header = Some((name, value));
        self
    }
}

#[tokio::test]
async fn bad_input_is_rejected_and_writes_nothing() {
    use reqwest::Method;
    let h = harness(Settings::default()).await;
    let before = h.rows().await;
    let start = "/streams/v1/users/ok/sessions";
    let good = || json!({ "device_id": "a", "content_id": "b" });
    let limit = |v: Value| Body::Json(json!({ "max_streams": v }));
    let cases = vec![
        // Malformed ids.
        bad(
            Method::POST,
            "/streams/v1/users/bad%20user/sessions",
            Body::Json(good()),
        )
        .field("user_id"),
        bad(
            Method::POST,
            start,
            Body::Json(json!({ "device_id": "", "content_id": "film" })),
        )
        .field("device_id"),
        bad(
            Method::POST,
            start,
            Body::Json(json!({ "device_id": "tv", "content_id": "x".repeat(200) })),
        )
        .field("content_id"),
        bad(
            Method::POST,
            "/streams/v1/sessions/not-a-uuid/heartbeat",
            Body::None,
        )
        .field("session_id"),
        // Unknown session.
        bad(
            Method::POST,
            format!("/streams/v1/sessions/{}/heartbeat", uuid::Uuid::nil()),
            Body::None,
        )
        .status(404),
        // Limits out of range or of the wrong type.
        bad(Method::PUT, "/streams/v1/users/u/limit", limit(json!(0))).field("max_streams"),
        bad(Method::PUT, "/streams/v1/users/u/limit", limit(json!(1000))).field("max_streams"),
        bad(Method::PUT, "/streams/v1/users/u/limit", limit(json!(-1))).field("max_streams"),
        bad(
            Method::PUT,
            "/streams/v1/users/u/limit",
            limit(json!("five")),
        )
        .field("max_streams"),
        // Empty body, wrong content type, unknown field, missing field, bad Idempotency-Key.
        bad(Method::POST, start, Body::Raw("application/json", "")).field("body"),
        bad(
            Method::POST,
            start,
            Body::Raw("text/plain", r#"{"device_id":"a","content_id":"b"}"#),
        )
        .status(415),
        bad(
            Method::POST,
            start,
            Body::Json(json!({ "device_id": "a", "content_id": "b", "quality": "4k" })),
        )
        .field("quality"),
        bad(Method::POST, start, Body::Json(json!({ "device_id": "a" }))).field("content_id"),
        bad(Method::POST, start, Body::Json(good()))
            .header("Idempotency-Key", "")
            .field("Idempotency-Key"),
        // Bad page parameters.
        bad(Method::GET, format!("{start}?limit=0"), Body::None).field("limit"),
        bad(Method::GET, format!("{start}?cursor=garbage"), Body::None).field("cursor"),
    ];
    for case in cases {
        let mut req = h
            .http
            .request(case.method.clone(), format!("{}{}", h.base, case.path));
        if let Some((name, value)) = case.header {
            req = req.header(name, value);
        }
        req = match case.body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Raw(content_type, body) => req.header("content-type", content_type).body(body),
        };
        let res = req.send().await.expect("send");
        let what = format!("{} {}", case.method, case.path);
        assert_eq!(res.status().as_u16(), case.status, "{what}");
        assert_problem(res, case.status, case.field).await;
    }
    assert_eq!(h.rows().await, before, "bad input must not write anything");
}

#[tokio::test]
async fn openapi_lists_every_streams_route() {
    let h = harness(Settings::default()).await;
    let doc: Value = h
        .http
        .get(format!("{}/openapi.json", h.base))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let expected = [
        ("/streams/v1/users/{user_id}/sessions", "post"),
        ("/streams/v1/users/{user_id}/sessions", "get"),
        ("/streams/v1/users/{user_id}/limit", "get"),
        ("/streams/v1/users/{user_id}/limit", "put"),
        ("/streams/v1/users/{user_id}/limit", "delete"),
        ("/streams/v1/sessions/{session_id}", "get"),
        ("/streams/v1/sessions/{session_id}", "delete"),
        ("/streams/v1/sessions/{session_id}/heartbeat", "post"),
    ];
    for (path, method) in expected {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
    let documented: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|p| {
            p.as_object().map_or(0, |m| {
                m.keys()
                    .filter(|k| ["get", "post", "put", "delete", "patch"].contains(&k.as_str()))
                    .count()
            })
        })
        .sum();
    assert_eq!(
        documented,
        expected.len(),
        "a route exists that this test does not know about"
    );
    let start = &doc["paths"]["/streams/v1/users/{user_id}/sessions"]["post"]["responses"];
    assert!(
        start["201"].is_object() && start["200"].is_object(),
        "{start}"
    );
}
