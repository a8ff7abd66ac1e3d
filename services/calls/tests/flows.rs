//! Call flows through HTTP against a real PostgreSQL: the hospital switchboard end to end, time
//! routing across a DST change and a holiday with a pinned clock, mobile rules, invalid flows
//! rejected with the node named (and nothing stored), tampered tokens.

use std::sync::Arc;

use calls::Settings;
use chrono::{DateTime, TimeZone, Utc};
use kit::clock::PinnedClock;
use kit::testing::{TestDb, spawn_app};
use reqwest::Client;
use serde_json::{Value, json};

const HOSPITAL: &str = include_str!("../samples/hospital.json");
const PBX: &str = "+46101110099";

/// An operator with `calls:admin`: what these behaviour tests need (tests/auth.rs covers who
/// may call what).
fn admin_client() -> Client {
    Client::builder()
        .default_headers(kit::testing::auth_headers(
            "ops",
            &[calls::api::SCOPE_ADMIN],
        ))
        .build()
        .expect("http client")
}

/// A decision request as the telephony provider sends it: the exact body, signed.
fn signed(req: reqwest::RequestBuilder, body: &Value) -> reqwest::RequestBuilder {
    let bytes = serde_json::to_vec(body).expect("body");
    req.header("content-type", "application/json")
        .header(
            calls::webhook::SIGNATURE_HEADER.as_str(),
            calls::webhook::testing::signature(&bytes),
        )
        .body(bytes)
}

struct H {
    _db: TestDb,
    pool: sqlx::PgPool,
    base: String,
    http: Client,
    clock: Arc<PinnedClock>,
    snapshots: Arc<calls::Snapshots>,
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("valid time")
}

async fn harness() -> H {
    harness_with(Settings::default()).await
}

async fn harness_with(settings: Settings) -> H {
    let db = TestDb::new().await;
    let pool = db.service_pool(&calls::SERVICE).await;
    let clock = Arc::new(PinnedClock::new(utc(2026, 11, 24, 9, 0)));
    let dir = std::env::temp_dir().join(format!("calls-test-{}", uuid::Uuid::new_v4()));
    let settings = Settings {
        snapshot_path: Some(dir.join("snapshot.json")),
        webhook_keys: calls::webhook::testing::keys(),
        ..settings
    };
    let ctx = kit::Ctx::new(pool.clone(), true).with_clock(clock.clone());
    let c = calls::start_with(ctx, settings).await;
    let snapshots = c.snapshots;
    let app = kit::testing::app_for(&calls::SERVICE, c.parts);
    let base = spawn_app(app).await;
    H {
        _db: db,
        pool,
        base,
        http: admin_client(),
        clock,
        snapshots,
    }
}

impl H {
    async fn put_pbx(&self, body: &Value) -> reqwest::Response {
        self.http
            .put(format!("{}/calls/v1/pbx/{PBX}", self.base))
            .json(body)
            .send()
            .await
            .expect("put")
    }

    /// Puts config and waits until this replica's snapshot has it.
    async fn configure(&self, body: &Value) {
        let before = self.snapshots.current().map_or(0, |l| l.routing.version);
        assert_eq!(self.put_pbx(body).await.status(), 200);
        for _ in 0..100 {
            if self
                .snapshots
                .current()
                .is_some_and(|l| l.routing.version > before)
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("snapshot did not pick up the change");
    }

    async fn step(&self, body: Value) -> Value {
        let res = self.http.post(format!("{}/calls/v1/decisions", self.base));
        let res = signed(res, &body).send().await.expect("decide");
        assert_eq!(res.status(), 200, "decision failed");
        res.json().await.expect("json")
    }
}

fn start(call: &str) -> Value {
    json!({ "request_id": format!("{call}-0"), "call_id": call, "call_type": "pbx", "direction": "inbound",
            "from": "+46700000001", "to": PBX, "event": "call_started" })
}

fn follow(prev: &Value, call: &str, event: &str, extra: Value) -> Value {
    let mut b = json!({ "request_id": format!("{call}-n"), "call_id": call, "call_type": "pbx", "direction": "inbound",
            "from": "+46700000001", "to": PBX, "event": event,
            "node": prev["next"]["node"], "state": prev["next"]["state"] });
    if let (Some(m), Value::Object(e)) = (b.as_object_mut(), extra) {
        m.extend(e);
    }
    b
}

fn types(d: &Value) -> Vec<&str> {
    d["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter_map(|a| a["type"].as_str())
        .collect()
}

#[tokio::test]
async fn hospital_menu_ring_group_queue_overflow_voicemail() {
    let h = harness().await;
    h.configure(&serde_json::from_str(HOSPITAL).expect("fixture"))
        .await;
    // Tuesday 2026-11-24 10:00 in Stockholm (09:00 UTC): open.
    let d = h.step(start("c1")).await;
    assert_eq!(types(&d), ["say", "menu"], "{d}");
    assert_eq!(d["next"]["node"], "main-menu");
    assert_eq!(d["source"], "live");

    let d = h
        .step(follow(&d, "c1", "digits", json!({ "digits": "1" })))
        .await;
    assert_eq!(types(&d), ["connect"]);
    assert_eq!(d["actions"][0]["strategy"], "simultaneous");
    assert_eq!(d["actions"][0]["targets"].as_array().map(Vec::len), Some(3));

    let d = h
        .step(follow(
            &d,
            "c1",
            "action_result",
            json!({ "result": "busy" }),
        ))
        .await;
    assert_eq!(types(&d), ["enqueue"]);
    assert_eq!(d["next"]["node"], "ward-queue");

    // Still within max wait: keep waiting.
    h.clock.set(utc(2026, 11, 24, 9, 1));
    let d = h.step(follow(&d, "c1", "queue_tick", json!({}))).await;
    assert!(types(&d).is_empty());
    assert_eq!(d["next"]["node"], "ward-queue");

    // Past 120 s: overflow to voicemail, end of flow.
    h.clock
        .set(utc(2026, 11, 24, 9, 2) + chrono::Duration::seconds(30));
    let d = h.step(follow(&d, "c1", "queue_tick", json!({}))).await;
    assert_eq!(types(&d), ["voicemail"], "{d}");
    assert_eq!(d["actions"][0]["mailbox"], "ward");
    assert!(d["next"].is_null());

    // Every step was logged asynchronously, actions included.
    let mut logged = 0;
    for _ in 0..50 {
        logged = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM calls.call_steps WHERE call_id = 'c1' AND jsonb_typeof(actions) = 'array'",
        )
        .fetch_one(&h.pool)
        .await
        .expect("count steps");
        if logged >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(logged, 5, "one call_steps row per decision");

    // Invalid digit replays the menu; no input goes to the switchboard.
    let d = h.step(start("c2")).await;
    let d2 = h
        .step(follow(&d, "c2", "digits", json!({ "digits": "7" })))
        .await;
    assert_eq!(types(&d2), ["menu"]);
    let d3 = h
        .step(follow(
            &d2,
            "c2",
            "action_result",
            json!({ "result": "timeout" }),
        ))
        .await;
    assert_eq!(types(&d3), ["connect"]);
    assert_eq!(d3["actions"][0]["targets"][0], "+46101110000");
}

#[tokio::test]
async fn time_routing_across_dst_and_a_holiday() {
    let h = harness().await;
    h.configure(&serde_json::from_str(HOSPITAL).expect("fixture"))
        .await;
    let opens = |d: &Value| types(d) == ["say", "menu"];
    // Stockholm leaves summer time on Sunday 2026-10-25. 06:30 UTC is 08:30 CEST on Friday
    // 2026-10-23 (open) but 07:30 CET on Monday 2026-10-26 (closed); 07:30 UTC on the Monday is
    // 08:30 CET (open).
    for (t, open) in [
        (utc(2026, 10, 23, 6, 30), true),
        (utc(2026, 10, 26, 6, 30), false),
        (utc(2026, 10, 26, 7, 30), true),
        (utc(2026, 10, 23, 14, 59), true), // 16:59 CEST
        (utc(2026, 10, 26, 15, 59), true), // 16:59 CET
        (utc(2026, 10, 26, 16, 0), false), // 17:00 CET
        (utc(2026, 10, 24, 10, 0), false), // Saturday
        (utc(2026, 12, 25, 10, 0), false), // Christmas Day, a Friday
        (utc(2026, 12, 28, 10, 0), true),  // the Monday after
    ] {
        h.clock.set(t);
        let d = h.step(start("t")).await;
        assert_eq!(opens(&d), open, "at {t}: {d}");
        if !open {
            assert_eq!(types(&d), ["say", "voicemail"], "{d}");
        }
    }
}

#[tokio::test]
async fn mobile_rules_block_forward_and_do_not_disturb() {
    let h = harness().await;
    let sub = "+46701234567";
    let rules = json!({
        "fallback_target": "+46701234500",
        "rules": {
            "block": ["+46709999999", "+4690*"],
            "forward_busy": "+46705550000",
            "forward_no_answer": "+46705550001",
            "mailbox": "mobile-1",
            "do_not_disturb": { "timezone": "Europe/Stockholm", "start": "22:00:00", "end": "07:00:00",
                                "allow": ["+46701111111"], "to_voicemail": true }
        }
    });
    let before = h.snapshots.current().map_or(0, |l| l.routing.version);
    let res = h
        .http
        .put(format!("{}/calls/v1/subscribers/{sub}", h.base))
        .json(&rules)
        .send()
        .await
        .expect("put");
    assert_eq!(res.status(), 200);
    while h.snapshots.current().map_or(0, |l| l.routing.version) == before {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let call = |from: &str| {
        json!({ "request_id": "r", "call_id": format!("m-{from}"), "call_type": "mobile",
        "direction": "inbound", "from": from, "to": sub, "event": "call_started" })
    };

    h.clock.set(utc(2026, 11, 24, 12, 0)); // 13:00 local
    assert_eq!(
        h.step(call("+46709999999")).await["actions"][0]["reason"],
        "reject"
    );
    assert_eq!(
        h.step(call("+46901234")).await["actions"][0]["reason"],
        "reject"
    );
    let d = h.step(call("+46702222222")).await;
    assert_eq!(types(&d), ["continue"]);
    // The network reports busy: forward to the busy target.
    let busy = json!({ "request_id": "r2", "call_id": "m-+46702222222", "call_type": "mobile", "direction": "inbound",
        "from": "+46702222222", "to": sub, "event": "action_result", "result": "busy", "state": d["next"]["state"] });
    let f = h.step(busy).await;
    assert_eq!(f["actions"][0]["targets"][0], "+46705550000");

    h.clock.set(utc(2026, 11, 24, 22, 30)); // 23:30 local: DND
    assert_eq!(types(&h.step(call("+46702222222")).await), ["voicemail"]);
    assert_eq!(
        types(&h.step(call("+46701111111")).await),
        ["continue"],
        "allowed caller rings through"
    );
    // Outbound calls and unknown subscribers are let through.
    let mut out = call("+46702222222");
    out["direction"] = json!("outbound");
    assert_eq!(types(&h.step(out).await), ["continue"]);
}

#[tokio::test]
async fn invalid_flows_are_rejected_naming_the_node_and_nothing_is_stored() {
    let h = harness().await;
    let base: Value = serde_json::from_str(HOSPITAL).expect("fixture");
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM calls.pbx_flows")
            .fetch_one(&h.pool)
            .await
            .expect("count")
    };
    let mut dangling = base.clone();
    dangling["flow"]["nodes"]["ward"]["no_answer"] = json!("nowhere");
    let mut no_default = base.clone();
    if let Some(menu) = no_default["flow"]["nodes"]["main-menu"].as_object_mut() {
        menu.remove("invalid");
    }
    let mut cycle = base.clone();
    cycle["flow"]["nodes"]["ward-queue"]["overflow"] = json!("ward");
    let mut bad_tz = base.clone();
    bad_tz["flow"]["timezone"] = json!("Mars/Olympus");
    for (body, field) in [
        (dangling, "flow.nodes.ward.no_answer"),
        (no_default, "flow.nodes.main-menu.invalid"),
        (cycle, "flow.nodes.ward"),
        (bad_tz, "flow.timezone"),
    ] {
        let res = h.put_pbx(&body).await;
        assert_eq!(res.status(), 400);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let p: Value = res.json().await.expect("problem");
        let fields: Vec<&str> = p["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "expected {field} in {p}");
    }
    let res = h
        .http
        .put(format!("{}/calls/v1/pbx/12345", h.base))
        .json(&base)
        .send()
        .await
        .expect("put");
    assert_eq!(res.status(), 400);
    assert_eq!(count().await, 0, "nothing stored");
    assert_eq!(h.put_pbx(&base).await.status(), 200);
    assert_eq!(count().await, 1);
}

#[tokio::test]
async fn tampered_or_expired_tokens_restart_the_flow_safely() {
    let h = harness().await;
    h.configure(&serde_json::from_str(HOSPITAL).expect("fixture"))
        .await;
    let d = h.step(start("tok")).await;
    let mut forged = follow(&d, "tok", "digits", json!({ "digits": "1" }));
    let state = forged["state"].as_str().unwrap_or_default().to_owned();
    forged["state"] = json!(format!("x{state}"));
    let r = h.step(forged).await;
    assert_eq!(types(&r), ["say", "menu"], "restarted at the entry: {r}");
    assert!(
        r["notes"][0]
            .as_str()
            .unwrap_or_default()
            .contains("restarting"),
        "{r}"
    );

    let mut garbage = follow(&d, "tok", "digits", json!({ "digits": "1" }));
    garbage["state"] = json!("not-a-token");
    assert_eq!(types(&h.step(garbage).await), ["say", "menu"]);

    // Five hours later the token has expired (max age 4 h).
    h.clock.set(utc(2026, 11, 24, 14, 0));
    let r = h
        .step(follow(&d, "tok", "digits", json!({ "digits": "1" })))
        .await;
    assert!(
        r["notes"][0]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{r}"
    );

    // A token from another call is refused too.
    h.clock.set(utc(2026, 11, 24, 9, 0));
    let r = h
        .step(follow(&d, "other-call", "digits", json!({ "digits": "1" })))
        .await;
    assert!(
        r["notes"][0]
            .as_str()
            .unwrap_or_default()
            .contains("another call"),
        "{r}"
    );

    // Bad input is a 400 problem, never a 500.
    let res = signed(
        h.http.post(format!("{}/calls/v1/decisions", h.base)),
        &json!({ "call_id": "x" }),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(res.status(), 400);
    let res = signed(
        h.http.post(format!("{}/calls/v1/decisions", h.base)),
        &json!({ "request_id": "r", "call_id": "x", "call_type": "fax", "direction": "inbound", "from": "a", "to": "b", "event": "call_started" }),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(res.status(), 400);
    let p: Value = res.json().await.expect("problem");
    assert_eq!(p["errors"][0]["field"], "call_type");
}

#[tokio::test]
async fn unknown_pbx_number_gets_the_static_fallback() {
    let h = harness().await;
    let d = h.step(start("unknown")).await;
    assert_eq!(d["source"], "static_fallback");
    assert_eq!(types(&d), ["hangup"]);
}

#[tokio::test]
async fn a_decision_over_its_budget_answers_the_static_fallback() {
    // A zero budget is spent before the engine reaches its first node: the real engine's check,
    // through HTTP, must cut the decision short and answer the PBX's fallback target.
    let h = harness_with(Settings {
        decision_budget: std::time::Duration::ZERO,
        ..Settings::default()
    })
    .await;
    let flow: Value = serde_json::from_str(HOSPITAL).expect("fixture");
    h.configure(&flow).await;
    let d = h.step(start("slow")).await;
    assert_eq!(d["source"], "static_fallback", "{d}");
    assert_eq!(types(&d), ["connect"]);
    assert_eq!(d["actions"][0]["targets"][0], flow["fallback_target"]);
    assert_eq!(d["notes"][0], calls::domain::engine::OVER_BUDGET);

    // The same flow with the default budget answers live.
    let h = harness().await;
    h.configure(&flow).await;
    assert_eq!(h.step(start("fast")).await["source"], "live");
}

#[test]
fn a_panicking_decision_answers_the_static_fallback() {
    use calls::domain::engine::{Decision, Source};
    let answer = |source| Decision {
        actions: vec![],
        next: None,
        source,
        snapshot_version: 1,
        notes: vec![],
    };
    let fallback = |why: &str| Decision {
        notes: vec![why.to_owned()],
        ..answer(Source::StaticFallback)
    };
    let d = calls::api::guarded(|| panic!("engine bug"), fallback);
    assert_eq!(d.source, Source::StaticFallback);
    assert_eq!(d.notes, ["decision failed"]);
    let d = calls::api::guarded(|| answer(Source::Live), fallback);
    assert_eq!(d.source, Source::Live);
}

/// call_id, request_id, node, actions, decided_at
type LoggedStep = (
    String,
    String,
    Option<String>,
    sqlx::types::Json<Value>,
    DateTime<Utc>,
);

#[tokio::test]
async fn step_log_copy_keeps_reserved_characters_exactly() {
    let h = harness().await;
    let actions =
        json!([{ "type": "say", "text": "tab\there \\ back\\slash \"quoted\"\nnew line, år" }]);
    let step = calls::store::StepRecord {
        call_id: "c\t1\\N".into(),
        request_id: "r\r\n1".into(),
        number: PBX.into(),
        event: "digits",
        node: Some("menu\\x".into()),
        source: "live",
        actions: actions.to_string(),
        decided_at: utc(2026, 11, 24, 9, 0),
    };
    let unlogged = calls::store::StepRecord {
        call_id: "c2".into(),
        node: None,
        ..step.clone()
    };
    calls::store::insert_steps(&h.pool, &[step.clone(), unlogged])
        .await
        .expect("copy");
    let rows: Vec<LoggedStep> = sqlx::query_as(
        "SELECT call_id, request_id, node, actions, decided_at FROM calls.call_steps ORDER BY id",
    )
    .fetch_all(&h.pool)
    .await
    .expect("read back");
    assert_eq!(rows.len(), 2);
    let (call_id, request_id, node, logged, at) = &rows[0];
    assert_eq!(call_id, &step.call_id);
    assert_eq!(request_id, &step.request_id);
    assert_eq!(node, &step.node);
    assert_eq!(logged.0, actions);
    assert_eq!(*at, step.decided_at);
    assert_eq!(rows[1].2, None, "no node is NULL, not the text \\N");
}

#[tokio::test]
async fn step_log_retention_deletes_only_steps_past_the_cutoff() {
    // The service's own retention task stays off: this test runs the purge itself.
    let h = harness_with(Settings {
        step_retention: None,
        ..Settings::default()
    })
    .await;
    let step = |call: &str, at| calls::store::StepRecord {
        call_id: call.into(),
        request_id: format!("{call}-0"),
        number: PBX.into(),
        event: "call_started",
        node: None,
        source: "live",
        actions: "[]".into(),
        decided_at: at,
    };
    let old: Vec<_> = (0..7)
        .map(|i| step(&format!("old{i}"), utc(2026, 8, 1, 9, 0)))
        .collect();
    let recent = step("recent", utc(2026, 11, 24, 9, 0));
    calls::store::insert_steps(&h.pool, &old)
        .await
        .expect("old");
    calls::store::insert_steps(&h.pool, &[recent])
        .await
        .expect("recent");
    // Batches of 3: three rounds (3, 3, 1) delete exactly the seven old steps.
    let deleted = calls::calllog::purge_before(&h.pool, utc(2026, 9, 1, 0, 0), 3)
        .await
        .expect("purge");
    assert_eq!(deleted, 7);
    let left: Vec<String> = sqlx::query_scalar("SELECT call_id FROM calls.call_steps")
        .fetch_all(&h.pool)
        .await
        .expect("left");
    assert_eq!(left, ["recent"]);
    let indexed: bool = sqlx::query_scalar(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'calls.call_steps_decided_at'::regclass",
    )
    .fetch_one(&h.pool)
    .await
    .expect("retention index");
    assert!(indexed, "the concurrent index build completed");
    assert_eq!(
        calls::calllog::purge_before(&h.pool, utc(2026, 9, 1, 0, 0), 3)
            .await
            .expect("again"),
        0,
        "idempotent"
    );
}

#[tokio::test]
async fn decisions_are_counted_by_source_and_outcome() {
    let h = harness().await;
    h.configure(&serde_json::from_str(HOSPITAL).expect("fixture"))
        .await;
    h.step(start("m1")).await;
    h.step(start("m2")).await;
    h.step(
        json!({ "request_id": "u-0", "call_id": "u", "call_type": "pbx", "direction": "inbound",
            "from": "+46700000001", "to": "+46109999999", "event": "call_started" }),
    )
    .await;
    let metrics = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    let value = |source: &str, outcome: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("calls_decisions_total{")
                    && l.contains(&format!("source=\"{source}\""))
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("no {source}/{outcome} series in\n{metrics}"))
            .to_owned()
    };
    // The hospital's entry is a greeting then a menu: the first action is the announcement.
    assert_eq!(value("live", "announce"), "2");
    assert_eq!(value("static_fallback", "hangup"), "1", "unknown number");
    // Registered at start, so alerts see the series before the first such answer.
    assert_eq!(value("snapshot", "voicemail"), "0");
}

/// The first snapshot's version is exported as soon as the service has started, before any
/// routing change: it was once set before the metrics recorder existed, and lost.
#[tokio::test]
async fn the_first_snapshot_version_is_exported_at_start() {
    let h = harness().await;
    let metrics = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    let loaded = h
        .snapshots
        .current()
        .map(|l| l.routing.version)
        .expect("a snapshot");
    assert!(
        metrics
            .lines()
            .any(|l| l == format!("calls_snapshot_version {loaded}")),
        "no calls_snapshot_version {loaded} in\n{metrics}"
    );
}
