//! Hostile input against a real server and a real PostgreSQL: a PBX flow far past the node cap
//! (the recursive graph check once overflowed the stack on 10,000 nodes and took the process
//! down), control characters and oversized fields in configuration and decisions, a step-log
//! batch with a row PostgreSQL refuses, and the permissions of the snapshot file.

use std::{
    fmt::Write as _,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use calls::{
    Settings, Snapshots,
    calllog::{self, CallLog},
    domain::engine::{CallType, Decision, DecisionRequest, Direction, Event, Source},
    store::StepRecord,
};
use kit::testing::{TestDb, spawn_app};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};

const HOSPITAL: &str = include_str!("../samples/hospital.json");
const PBX: &str = "+46101110099";

/// An admin request (`calls:admin`): the one place that knows how admin calls authenticate.
fn admin(req: RequestBuilder) -> RequestBuilder {
    req.header(
        "authorization",
        kit::testing::bearer("ops", &[calls::api::SCOPE_ADMIN]),
    )
}

/// A decision request as the telephony provider sends it: the one place that knows how the
/// webhook authenticates.
fn webhook(req: RequestBuilder, body: &[u8]) -> RequestBuilder {
    req.header("content-type", "application/json")
        .header(
            calls::webhook::SIGNATURE_HEADER.as_str(),
            calls::webhook::testing::signature(body),
        )
        .body(body.to_vec())
}

/// The status the kit answers validation problems with.
fn validation_status() -> StatusCode {
    StatusCode::from_u16(kit::ApiError::validation(Vec::new()).status.as_u16())
        .expect("a status code")
}

struct H {
    _db: TestDb,
    pool: sqlx::PgPool,
    base: String,
    http: Client,
    snapshots: Arc<Snapshots>,
    dir: PathBuf,
}

impl Drop for H {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A calls server whose body limit is raised to 16 MiB, so that oversized flows reach the
/// validator instead of stopping at the kit's 2 MiB default (a deployment may raise it too).
async fn harness() -> H {
    let db = TestDb::new().await;
    let pool = db.service_pool(&calls::SERVICE).await;
    let dir = std::env::temp_dir().join(format!("calls-hardening-{}", uuid::Uuid::new_v4()));
    let settings = Settings {
        snapshot_path: Some(dir.join("snapshot.json")),
        webhook_keys: calls::webhook::testing::keys(),
        ..Settings::default()
    };
    let c = calls::start_with(kit::Ctx::new(pool.clone(), true), settings).await;
    let snapshots = c.snapshots;
    let app = kit::testing::app_with(
        &calls::SERVICE,
        c.parts,
        &kit::app::HttpSettings {
            body_limit: 16 * 1024 * 1024,
            ..kit::testing::http_settings()
        },
    );
    H {
        _db: db,
        pool,
        base: spawn_app(app).await,
        http: Client::new(),
        snapshots,
        dir,
    }
}

impl H {
    async fn put_pbx(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        admin(self.http.put(format!("{}/calls/v1/pbx/{PBX}", self.base)))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("put")
    }

    async fn decide(&self, body: &Value) -> reqwest::Response {
        let bytes = serde_json::to_vec(body).expect("body");
        webhook(
            self.http.post(format!("{}/calls/v1/decisions", self.base)),
            &bytes,
        )
        .send()
        .await
        .expect("decide")
    }

    /// Stores the hospital flow and waits until the snapshot serves it.
    async fn configure_hospital(&self) {
        assert_eq!(self.put_pbx(HOSPITAL).await.status(), 200);
        // Wait for this write's version, not merely for the number: the number may still be in
        // the snapshot with the flow it had before.
        let written = self.config_version().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while self
            .snapshots
            .current()
            .is_none_or(|l| l.routing.version < written || !l.routing.pbxes.contains_key(PBX))
        {
            assert!(
                Instant::now() < deadline,
                "snapshot did not pick up the flow"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stored_flow(&self) -> Option<Value> {
        sqlx::query_scalar("SELECT flow FROM calls.pbx_flows WHERE number = $1")
            .bind(PBX)
            .fetch_optional(&self.pool)
            .await
            .expect("read flow")
    }

    async fn config_version(&self) -> i64 {
        sqlx::query_scalar("SELECT version FROM calls.config_version")
            .fetch_one(&self.pool)
            .await
            .expect("version")
    }

    async fn steps_of(&self, call_id: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM calls.call_steps WHERE call_id = $1")
            .bind(call_id)
            .fetch_one(&self.pool)
            .await
            .expect("count steps")
    }
}

/// Asserts a validation problem naming `field`; returns the problem.
async fn expect_invalid(res: reqwest::Response, field: &str) -> Value {
    assert_eq!(res.status(), validation_status());
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let p: Value = res.json().await.expect("problem");
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert!(fields.contains(&field), "expected {field} in {p}");
    p
}

/// A PBX body whose flow is a chain of `len` announcements ending in a hangup, written directly
/// (building it as a `serde_json::Value` would take longer than the request).
fn chain_body(len: usize) -> String {
    let mut s = String::with_capacity(len * 80);
    s.push_str(r#"{"fallback_target":"+46101110000","flow":{"entry":"n0","timezone":"Europe/Stockholm","nodes":{"#);
    for i in 0..len - 1 {
        let _ = write!(
            s,
            r#""n{i}":{{"type":"announcement","prompt":{{"say":"step {i}"}},"next":"n{}"}},"#,
            i + 1
        );
    }
    let _ = write!(
        s,
        r#""n{}":{{"type":"hangup","reason":"normal"}}}}}}}}"#,
        len - 1
    );
    s
}

fn start(call_id: &str) -> Value {
    json!({ "request_id": format!("{call_id}-0"), "call_id": call_id, "call_type": "pbx",
            "direction": "inbound", "from": "+46700000001", "to": PBX, "event": "call_started" })
}

#[tokio::test]
async fn a_100k_node_chain_is_refused_and_the_process_keeps_serving() {
    let h = harness().await;
    h.configure_hospital().await;
    let before = (h.stored_flow().await, h.config_version().await);

    // 10,000 nodes (about 720 KB, under the default body limit) aborted the process when the
    // graph check recursed; 100,000 nodes is 7 MB.
    for len in [10_000, 100_000] {
        let body = chain_body(len);
        assert!(
            serde_json::from_str::<Value>(&body).is_ok(),
            "the body is JSON"
        );
        let started = Instant::now();
        let p = expect_invalid(h.put_pbx(body).await, "flow.nodes").await;
        assert_eq!(
            p["errors"].as_array().map(Vec::len),
            Some(1),
            "the cap is reported alone, before any per-node work: {p}"
        );
        assert!(
            p["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("at most 1000")),
            "{p}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    // A chain at the cap is accepted (and its validation walks all of it).
    let at_cap = chain_body(calls::domain::validate::MAX_NODES);
    let res = h.put_pbx(at_cap).await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    h.configure_hospital().await;
    let before_refused = (h.stored_flow().await, h.config_version().await);
    assert_eq!(before_refused.0, before.0, "the hospital is back");

    let res = h.put_pbx(chain_body(100_000)).await;
    assert_eq!(res.status(), validation_status());
    // Nothing stored: same flow, same configuration version.
    assert_eq!(
        (h.stored_flow().await, h.config_version().await),
        before_refused
    );

    // Still serving: health and decisions.
    let health = h
        .http
        .get(format!("{}/healthz", h.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let res = h.decide(&start("after-the-chain")).await;
    assert_eq!(res.status(), 200);
    let d: Value = res.json().await.expect("decision");
    assert_eq!(d["source"], "live", "{d}");
}

#[tokio::test]
async fn control_characters_in_configuration_are_refused_by_field() {
    let h = harness().await;
    let base: Value = serde_json::from_str(HOSPITAL).expect("fixture");

    // A NUL in a spoken prompt once reached PostgreSQL (jsonb refuses \u0000): a 500.
    let mut nul_prompt = base.clone();
    nul_prompt["flow"]["nodes"]["welcome"]["prompt"]["say"] = json!("Welcome\u{0}");
    let mut escape_in_queue = base.clone();
    escape_in_queue["flow"]["nodes"]["ward-queue"]["queue"] = json!("ward\u{1b}[2J");
    let mut long_prompt = base.clone();
    long_prompt["flow"]["nodes"]["welcome"]["prompt"]["say"] = json!("a".repeat(100_000));
    let mut nul_node_id = base.clone();
    if let Some(nodes) = nul_node_id["flow"]["nodes"].as_object_mut() {
        nodes.insert(
            "bad\u{0}id".into(),
            json!({ "type": "hangup", "reason": "normal" }),
        );
    }
    for (body, field) in [
        (nul_prompt, "flow.nodes.welcome.prompt.say"),
        (escape_in_queue, "flow.nodes.ward-queue.queue"),
        (long_prompt, "flow.nodes.welcome.prompt.say"),
        (nul_node_id, "flow.nodes"),
    ] {
        let p = expect_invalid(h.put_pbx(body.to_string()).await, field).await;
        assert!(
            p.to_string().len() < 2_000,
            "the problem does not echo the input: {p}"
        );
    }
    assert_eq!(h.stored_flow().await, None, "nothing stored");

    // Line breaks are what a spoken prompt may deliberately contain.
    let mut multiline = base.clone();
    multiline["flow"]["nodes"]["welcome"]["prompt"]["say"] =
        json!("Welcome to Northside Hospital.\nCalls are recorded.");
    assert_eq!(h.put_pbx(multiline.to_string()).await.status(), 200);

    let res = admin(
        h.http
            .put(format!("{}/calls/v1/subscribers/+46701234567", h.base)),
    )
    .json(&json!({ "rules": { "mailbox": "box\u{0}" }, "fallback_target": "+46705550000" }))
    .send()
    .await
    .expect("put subscriber");
    expect_invalid(res, "rules.mailbox").await;
    let subscribers: i64 = sqlx::query_scalar("SELECT count(*) FROM calls.subscribers")
        .fetch_one(&h.pool)
        .await
        .expect("count");
    assert_eq!(subscribers, 0);
}

#[tokio::test]
async fn decision_fields_are_bounded_and_nothing_of_a_refused_request_is_logged() {
    let h = harness().await;
    h.configure_hospital().await;

    let mut nul_call = start("call\u{0}1");
    nul_call["request_id"] = json!("nul-call");
    let mut huge_node = start("huge-node");
    huge_node["event"] = json!("action_result");
    // Over the field caps, under the webhook's 64 KiB body limit: refused naming the field.
    huge_node["node"] = json!("n".repeat(1_000));
    let mut huge_state = start("huge-state");
    huge_state["event"] = json!("action_result");
    huge_state["state"] = json!("s".repeat(10_000));
    let mut escape_in_request = start("escape");
    escape_in_request["request_id"] = json!("r\u{1b}]0;owned\u{7}");
    let mut c1_in_from = start("c1");
    c1_in_from["from"] = json!("+4670\u{9b}2J");
    for (body, field) in [
        (&nul_call, "call_id"),
        (&huge_node, "node"),
        (&huge_state, "state"),
        (&escape_in_request, "request_id"),
        (&c1_in_from, "from"),
    ] {
        let p = expect_invalid(h.decide(body).await, field).await;
        assert!(p.to_string().len() < 2_000, "{p}");
    }

    // Over the body limit (1.9 MB once went through whole, and into the log): 413 unread.
    let mut too_big = start("too-big");
    too_big["event"] = json!("action_result");
    too_big["node"] = json!("n".repeat(1_900_000));
    let res = h.decide(&too_big).await;
    assert_eq!(res.status(), 413);
    assert_eq!(res.headers()["content-type"], "application/problem+json");

    // A good call is logged; the refused ones never reached the step log.
    assert_eq!(h.decide(&start("good")).await.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.steps_of("good").await == 0 {
        assert!(
            Instant::now() < deadline,
            "the good call's step was not logged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in [
        "call\u{0}1",
        "huge-node",
        "huge-state",
        "escape",
        "c1",
        "too-big",
    ] {
        // A NUL cannot even be a query parameter: look the call id up without it.
        let id = id.replace('\u{0}', "");
        assert_eq!(h.steps_of(&id).await, 0, "{id} was logged");
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM calls.call_steps")
        .fetch_one(&h.pool)
        .await
        .expect("count");
    assert_eq!(total, 1);
}

fn step(call_id: &str) -> StepRecord {
    StepRecord {
        call_id: call_id.to_owned(),
        request_id: format!("{call_id}-r"),
        number: PBX.to_owned(),
        event: "call_started",
        node: Some("welcome".into()),
        source: "live",
        actions: r#"[{"type":"say","text":"Welcome"}]"#.to_owned(),
        decided_at: chrono::Utc::now(),
    }
}

/// Queues one `call_started` decision for `call_id`, as the webhook handler records it.
fn record_start(log: &CallLog, call_id: &str) {
    let req = DecisionRequest {
        request_id: format!("{call_id}-r"),
        call_id: call_id.to_owned(),
        call_type: CallType::Pbx,
        direction: Direction::Inbound,
        from: "+46700000001".into(),
        to: PBX.into(),
        event: Event::CallStarted,
        node: None,
        state: None,
        result: None,
        digits: None,
    };
    let decision = Decision {
        actions: Vec::new(),
        next: None,
        source: Source::Live,
        snapshot_version: 1,
        notes: Vec::new(),
    };
    log.record(&req, &decision, chrono::Utc::now());
}

async fn logged_call_ids(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT call_id FROM calls.call_steps ORDER BY call_id")
        .fetch_all(pool)
        .await
        .expect("read steps")
}

/// `calls_log_queue_dropped_total` as this process's recorder renders it.
fn dropped_total() -> f64 {
    calls::metrics::register();
    kit::metrics::install()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("calls_log_queue_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the dropped counter is exported")
}

#[tokio::test]
async fn a_row_postgresql_refuses_costs_only_itself() {
    let db = TestDb::new().await;
    let pool = db.service_pool(&calls::SERVICE).await;
    let dropped_before = dropped_total();

    // Seven steps of seven calls; PostgreSQL cannot store a NUL in text, so COPY refuses the
    // batch. The bad row is made below the API, which no longer lets a NUL through.
    let batch: Vec<StepRecord> = ["a", "b", "c", "bad\u{0}", "d", "e", "f"]
        .into_iter()
        .map(step)
        .collect();
    let outcome = calllog::write_batch(&pool, &batch).await;
    assert_eq!(outcome.dropped, 1, "{outcome:?}");
    assert!(!outcome.database_failed);
    assert_eq!(logged_call_ids(&pool).await, ["a", "b", "c", "d", "e", "f"]);
    assert!((dropped_total() - dropped_before - 1.0).abs() < f64::EPSILON);

    // The same through the running writer, from decisions as the handler records them.
    sqlx::query("TRUNCATE calls.call_steps")
        .execute(&pool)
        .await
        .expect("truncate");
    let (log, _writer) = CallLog::spawn(pool.clone(), 100);
    for call_id in ["g", "h", "i\u{0}", "j", "k", "l", "m"] {
        record_start(&log, call_id);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while dropped_total() - dropped_before < 2.0 {
        assert!(Instant::now() < deadline, "the bad row was never counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(logged_call_ids(&pool).await, ["g", "h", "j", "k", "l", "m"]);
    assert!((dropped_total() - dropped_before - 2.0).abs() < f64::EPSILON);
}

#[tokio::test]
async fn a_database_failure_drops_the_batch_without_retrying_each_row() {
    let db = TestDb::new().await;
    let pool = db.service_pool(&calls::SERVICE).await;
    // Not a row's fault: every row would fail the same way.
    sqlx::query("ALTER TABLE calls.call_steps RENAME TO call_steps_elsewhere")
        .execute(&pool)
        .await
        .expect("rename");
    let batch: Vec<StepRecord> = ["a", "b", "c"].into_iter().map(step).collect();
    let outcome = calllog::write_batch(&pool, &batch).await;
    assert_eq!(outcome.dropped, 3);
    assert!(outcome.database_failed, "{outcome:?}");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn the_snapshot_file_is_private() {
    let db = TestDb::new().await;
    let pool = db.service_pool(&calls::SERVICE).await;
    let root = std::env::temp_dir().join(format!("calls-snapshot-{}", uuid::Uuid::new_v4()));
    let dir = root.join("state/calls");
    let file = dir.join("snapshot.json");

    // Directories that do not exist yet are created private.
    let snapshots = Snapshots::new(Duration::from_secs(6), Some(file.clone()));
    assert!(snapshots.refresh(&pool).await.expect("refresh"));
    assert_eq!(mode(&root.join("state")), 0o700);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&file), 0o600);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert_eq!(names, ["snapshot.json"], "no temporary file left behind");

    // A world-readable file from an earlier version is replaced, not rewritten in place.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::write(&file, b"stale").expect("write");
    let version: i64 = sqlx::query_scalar("SELECT version FROM calls.config_version")
        .fetch_one(&pool)
        .await
        .expect("version");
    let fresh = Snapshots::new(Duration::from_secs(6), Some(file.clone()));
    assert!(fresh.refresh(&pool).await.expect("refresh"));
    assert_eq!(mode(&file), 0o600);
    let written: Value =
        serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("json");
    assert_eq!(written["routing"]["version"], version);

    // And the file serves a cold start.
    let cold = Snapshots::new(Duration::from_secs(6), Some(file.clone()));
    let down = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(200))
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .expect("lazy pool");
    cold.load_initial(&down, Duration::from_secs(1)).await;
    assert_eq!(
        cold.current().map(|l| (l.origin, l.routing.version)),
        Some((calls::snapshot::Origin::File, version))
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// The production binary, as deployed (its own issuer configuration, secrets, default body
/// limit), takes each request that once crashed or poisoned a replica, answers it with a 4xx,
/// and is still serving afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_binary_survives_each_hostile_request() {
    let db = TestDb::new().await;
    // What the migration Job did before the replica starts (replicas only check the schema).
    db.service_pool(&calls::SERVICE).await;
    use calls::{api::SCOPE_ADMIN, webhook};
    use kit::testing::bearer;
    use std::process::{Command, Stdio};
    let jwks = kit::testing::JwksServer::start(&kit::testing::issuer().jwks()).await;
    let port = kit::testing::free_port();
    let state = std::env::temp_dir().join(format!("calls-bin-{}", uuid::Uuid::new_v4()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_calls"))
        .env_remove("MERIDIAN_DEV")
        .envs(jwks.env(kit::testing::issuer()))
        .env("DATABASE_URL", db.url())
        .env("CALLS_TOKEN_KEY", "a-production-like-token-key-0123456789")
        .env("CALLS_WEBHOOK_SECRETS", webhook::testing::env())
        .env("XDG_STATE_HOME", &state)
        .env("PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn calls");
    let base = format!("http://127.0.0.1:{port}");
    let http = Client::new();
    let admin = bearer("ops", &[SCOPE_ADMIN]);
    let ready = kit::testing::wait_ready(&base, Duration::from_secs(15)).await;
    let put = |body: String| {
        http.put(format!("{base}/calls/v1/pbx/{PBX}"))
            .header("authorization", &admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let decide = |body: Vec<u8>| {
        http.post(format!("{base}/calls/v1/decisions"))
            .header("content-type", "application/json")
            .header(
                webhook::SIGNATURE_HEADER.as_str(),
                webhook::testing::signature(&body),
            )
            .body(body)
            .send()
    };
    let status =
        |r: Result<reqwest::Response, reqwest::Error>| r.map_or(0, |r| r.status().as_u16());
    let call = |call_id: &str, node: Option<&str>| {
        let mut v = json!({ "request_id": "r", "call_id": call_id, "call_type": "pbx",
            "direction": "inbound", "from": "+46700000001", "to": PBX, "event": "call_started" });
        if let Some(n) = node {
            v["node"] = json!(n);
        }
        serde_json::to_vec(&v).expect("body")
    };

    // 10,000 nodes (720 KB, under the body limit) overflowed the stack of the recursive check.
    let chain = status(put(chain_body(10_000)).await);
    let nul_prompt = status(
        put(
            r#"{"fallback_target":"+46101110000","flow":{"entry":"a","timezone":"Europe/Stockholm",
            "nodes":{"a":{"type":"announcement","prompt":{"say":"x\u0000y"},"next":"b"},
            "b":{"type":"hangup","reason":"normal"}}}}"#
                .to_owned(),
        )
        .await,
    );
    let nul_call = status(decide(call("bad\u{0}call", None)).await);
    let huge_node = status(decide(call("c1", Some(&"n".repeat(1_900_000)))).await);
    let healthz = status(http.get(format!("{base}/healthz")).send().await);
    let good = status(decide(call("c2", None)).await);
    let alive = child.try_wait().ok().flatten().is_none();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&state);

    assert!(ready, "calls did not become ready");
    assert_eq!(chain, 400, "10,000-node chain");
    assert_eq!(nul_prompt, 400, "NUL in a prompt");
    assert_eq!(nul_call, 400, "NUL in call_id");
    assert_eq!(
        huge_node, 413,
        "1.9 MB node: over the webhook's body limit, never read whole"
    );
    assert!(alive, "the process died");
    assert_eq!((healthz, good), (200, 200), "still serving afterwards");
}

/// Shutdown writes what is queued: once the last `CallLog` (the handlers' state) is gone, the
/// writer — a flush task of the service's parts — writes the queued steps and ends, and
/// `kit::service::stop` waits for it after a completed drain.
#[tokio::test]
async fn queued_steps_are_written_at_shutdown() {
    let db = TestDb::new().await;
    let pool = db.service_pool(&calls::SERVICE).await;
    let (log, writer) = CallLog::spawn(pool.clone(), 100);
    for call_id in ["s1", "s2", "s3"] {
        record_start(&log, call_id);
    }
    // The routes are gone (the HTTP server dropped the app after its drain).
    drop(log);
    let tasks = kit::service::Tasks {
        background: Vec::new(),
        flush: vec![writer],
    };
    let started = Instant::now();
    kit::service::stop(vec![tasks], true).await;
    assert!(started.elapsed() < kit::service::FLUSH_BUDGET);
    assert_eq!(logged_call_ids(&pool).await, ["s1", "s2", "s3"]);
}
