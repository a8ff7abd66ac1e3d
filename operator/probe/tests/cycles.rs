//! Cycles of steps for real, against an axum stand-in on loopback: methods, headers and bodies
//! arrive as written; `${seq}`, `${worker}`, `${run}` and an earlier answer's field are filled
//! in per request; each step is timed and counted apart and the run's p99 is over every request;
//! a step answered with another status than it expects fails and skips the rest of its cycle; an
//! answer without the expected JSON fails; a signed step carries the calls webhook's signature
//! (checked by the calls service's own verifier) and no bearer token; and `slo-gate
//! --slo-file` gates a service from an SLO file, lists services, prints the Release analysis,
//! and never prints the token or the webhook secret.

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header::AUTHORIZATION},
    response::IntoResponse,
    routing::{delete, post},
};
use probe::plan::{Plan, StepSpec, run_plan};
use probe::signing::WebhookSecret;
use probe::{BearerToken, Thresholds, WARMUP_ROUNDS};

const TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJzbG8tcHJvYmUifQ.c2lnbmF0dXJl";
const SECRET: &str = "5f3c0d9e1a2b4c6d8e0f1a2b3c4d5e6f-slo-probe-loopback";
const PROVIDER: &str = "slo-probe";

/// What the stand-in saw.
#[derive(Default)]
struct Log {
    /// (user, x-seq header, content-type, body, had the token)
    starts: Vec<(String, String, String, String, bool)>,
    /// session ids handed out
    issued: HashSet<String>,
    /// session ids stopped
    stopped: Vec<String>,
    /// signed decisions: (had a bearer token, signature verified)
    decisions: Vec<(bool, bool)>,
}

#[derive(Clone)]
struct App {
    log: Arc<Mutex<Log>>,
    /// Status the start route answers (201 normally).
    start_status: StatusCode,
    /// Delay of the stop route.
    stop_delay: Duration,
    keys: calls::webhook::WebhookKeys,
}

async fn start(
    State(app): State<App>,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut log = app.log.lock().unwrap();
    let id = format!("s-{}", log.issued.len());
    log.issued.insert(id.clone());
    log.starts.push((
        user.clone(),
        header("x-seq"),
        header("content-type"),
        String::from_utf8_lossy(&body).into_owned(),
        header("authorization") == format!("Bearer {TOKEN}"),
    ));
    (
        app.start_status,
        axum::Json(serde_json::json!({ "session_id": id, "user_id": user })),
    )
}

async fn stop(State(app): State<App>, Path(id): Path<String>) -> StatusCode {
    tokio::time::sleep(app.stop_delay).await;
    app.log.lock().unwrap().stopped.push(id);
    StatusCode::NO_CONTENT
}

async fn decide(State(app): State<App>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let signature = headers
        .get("meridian-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // The calls service's own verifier: what the probe signs is what the webhook accepts.
    let verified = app.keys.verify(signature, &body, now).is_ok();
    app.log
        .lock()
        .unwrap()
        .decisions
        .push((headers.contains_key(AUTHORIZATION), verified));
    if verified {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "source": "live", "actions": [] })),
        )
    } else {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({ "title": "Unauthorized" })),
        )
    }
}

async fn spawn(start_status: StatusCode, stop_delay: Duration) -> (String, Arc<Mutex<Log>>) {
    let log = Arc::new(Mutex::new(Log::default()));
    let app = App {
        log: Arc::clone(&log),
        start_status,
        stop_delay,
        keys: calls::webhook::WebhookKeys::new([(PROVIDER, SECRET.as_bytes())]).unwrap(),
    };
    let router = Router::new()
        .route("/users/{user}/sessions", post(start))
        .route("/sessions/{id}", delete(stop))
        .route("/decisions", post(decide))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{addr}"), log)
}

fn start_stop(start_expects: u16) -> Vec<StepSpec> {
    vec![
        StepSpec {
            name: "start".into(),
            method: "POST".into(),
            path: "/users/probe-${worker}/sessions".into(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-seq".into(), "${seq}".into()),
            ],
            body: Some(r#"{"run":"${run}","seq":${seq}}"#.into()),
            expect_status: Some(start_expects),
            expect_json: Vec::new(),
            sign_as: None,
        },
        StepSpec {
            name: "stop".into(),
            method: "DELETE".into(),
            path: "/sessions/${start.session_id}".into(),
            headers: Vec::new(),
            body: None,
            expect_status: Some(204),
            expect_json: Vec::new(),
            sign_as: None,
        },
    ]
}

fn decide_step(expect_source: &str) -> Vec<StepSpec> {
    vec![StepSpec {
        name: "decide".into(),
        method: "POST".into(),
        path: "/decisions".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Some(r#"{"request_id":"${run}-${seq}"}"#.into()),
        expect_status: Some(200),
        expect_json: vec![("source".into(), serde_json::json!(expect_source))],
        sign_as: Some(PROVIDER.into()),
    }]
}

const LENIENT: Thresholds = Thresholds {
    p99_ms: 1000.0,
    max_error_rate: 0.0,
};

fn plan(base: &str, steps: &[StepSpec], requests: u32) -> Plan {
    let mut p = Plan::new(base, steps, requests, 4, Duration::from_secs(5)).unwrap();
    p.bearer_token = Some(BearerToken::new(TOKEN).unwrap());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_stop_cycle_sends_what_is_written_and_uses_the_earlier_answer() {
    let (base, log) = spawn(StatusCode::CREATED, Duration::ZERO).await;
    let p = plan(&base, &start_stop(201), 80);
    let v = run_plan(&p, LENIENT).await.unwrap();
    assert!(v.verdict.passed, "{}", v.summary());
    assert_eq!(v.cycles, 40);
    assert_eq!(
        v.verdict.measurement.requests, 80,
        "every step is a timed request"
    );
    let names: Vec<(&str, u32, u32)> = v
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.requests, s.errors))
        .collect();
    assert_eq!(names, vec![("start", 40, 0), ("stop", 40, 0)]);
    assert_eq!(v.steps[0].statuses.get(&201), Some(&40));
    assert_eq!(v.steps[1].statuses.get(&204), Some(&40));

    let log = log.lock().unwrap();
    let warm_ups = 4 * WARMUP_ROUNDS as usize;
    assert_eq!(log.starts.len(), 40 + warm_ups, "warm-ups are whole cycles");
    assert_eq!(log.stopped.len(), 40 + warm_ups);
    // Each stop named a session a start answered with (the earlier step's field).
    assert!(log.stopped.iter().all(|id| log.issued.contains(id)));
    assert_eq!(
        log.stopped.iter().collect::<HashSet<_>>().len(),
        log.stopped.len()
    );
    // ${seq} numbers every cycle of the run once; ${worker} is 0..concurrency; ${run} is one
    // value per run; headers and bodies arrive as written.
    let seqs: HashSet<u64> = log.starts.iter().map(|s| s.1.parse().unwrap()).collect();
    assert_eq!(seqs, (0..(40 + warm_ups) as u64).collect());
    let users: HashSet<&str> = log.starts.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        users,
        ["probe-0", "probe-1", "probe-2", "probe-3"]
            .into_iter()
            .collect()
    );
    for (_, seq, content_type, body, had_token) in &log.starts {
        assert_eq!(content_type, "application/json");
        assert_eq!(body, &format!(r#"{{"run":"{}","seq":{seq}}}"#, p.run_id));
        assert!(had_token, "unsigned steps carry the bearer token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_answered_with_another_status_fails_and_skips_the_rest_of_its_cycle() {
    // The stand-in answers 200 where the cycle expects 201.
    let (base, log) = spawn(StatusCode::OK, Duration::ZERO).await;
    let lenient = Thresholds {
        p99_ms: 10_000.0,
        max_error_rate: 0.99,
    };
    let v = run_plan(&plan(&base, &start_stop(201), 40), lenient)
        .await
        .unwrap();
    assert!(!v.verdict.passed, "{}", v.summary());
    let start = &v.steps[0];
    assert_eq!(
        (start.requests, start.errors, start.http_errors),
        (20, 20, 20)
    );
    assert_eq!(start.auth_errors, 0);
    assert_eq!(v.steps[1].requests, 0, "never sent");
    assert_eq!(v.steps[1].skipped, 20);
    assert_eq!(v.verdict.measurement.requests, 20);
    assert!((v.verdict.measurement.error_rate - 1.0).abs() < f64::EPSILON);
    let summary = v.summary();
    assert!(
        summary.contains("step start (POST /users/probe-${worker}/sessions): 20 of 20 failed"),
        "{summary}"
    );
    assert!(
        summary.contains("answered 200 ×20 (expected 201)"),
        "{summary}"
    );
    assert!(summary.contains("step stop"), "{summary}");
    assert!(log.lock().unwrap().stopped.is_empty());
    // The same cycle expecting what the stand-in answers passes.
    let v = run_plan(&plan(&base, &start_stop(200), 40), LENIENT)
        .await
        .unwrap();
    assert!(v.verdict.passed, "{}", v.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_timed_per_step_and_a_slow_step_breaches_the_run() {
    let (base, _) = spawn(StatusCode::CREATED, Duration::from_millis(120)).await;
    let slo = Thresholds {
        p99_ms: 80.0,
        max_error_rate: 0.01,
    };
    let v = run_plan(&plan(&base, &start_stop(201), 32), slo)
        .await
        .unwrap();
    assert!(!v.verdict.passed);
    assert_eq!(v.verdict.measurement.errors, 0);
    assert!(matches!(
        v.verdict.breaches.as_slice(),
        [probe::Breach::P99 { .. }]
    ));
    let (start, stop) = (&v.steps[0], &v.steps[1]);
    assert!(stop.p50_ms >= 120.0, "{stop:?}");
    assert!(start.p99_ms < 80.0, "the fast step stays fast: {start:?}");
    // Half the requests are slow: the run's p99 is the slow step's.
    assert!(v.verdict.measurement.p99_ms >= 120.0);
    assert!(v.summary().contains("stop p50"), "{}", v.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_step_carries_the_webhook_signature_and_no_token() {
    let (base, log) = spawn(StatusCode::CREATED, Duration::ZERO).await;
    let mut p = plan(&base, &decide_step("live"), 30);
    p.webhook_secret = Some(WebhookSecret::new(SECRET).unwrap());
    let v = run_plan(&p, LENIENT).await.unwrap();
    assert!(v.verdict.passed, "{}", v.summary());
    assert!(v.steps[0].signed);
    {
        let log = log.lock().unwrap();
        assert_eq!(log.decisions.len(), 30 + 4 * WARMUP_ROUNDS as usize);
        assert!(
            log.decisions.iter().all(|&(token, ok)| ok && !token),
            "verified by the calls verifier, without the bearer token"
        );
    }

    // The wrong secret: every decision is a 401, and the summary says it is the signature.
    p.webhook_secret = Some(WebhookSecret::new(&SECRET.replace('5', "6")).unwrap());
    let lenient = Thresholds {
        p99_ms: 10_000.0,
        max_error_rate: 0.99,
    };
    let v = run_plan(&p, lenient).await.unwrap();
    assert!(!v.verdict.passed);
    assert_eq!(v.steps[0].auth_errors, 30);
    assert!(
        v.summary()
            .contains("30 answered 401/403 to a signed request: the webhook secret"),
        "{}",
        v.summary()
    );

    // No secret at all: the plan cannot run.
    p.webhook_secret = None;
    let err = run_plan(&p, LENIENT).await.unwrap_err().to_string();
    assert!(err.contains("step decide signs its body"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_without_the_expected_json_fails() {
    let (base, _) = spawn(StatusCode::CREATED, Duration::ZERO).await;
    let mut p = plan(&base, &decide_step("static_fallback"), 10);
    p.webhook_secret = Some(WebhookSecret::new(SECRET).unwrap());
    let lenient = Thresholds {
        p99_ms: 10_000.0,
        max_error_rate: 0.99,
    };
    let v = run_plan(&p, lenient).await.unwrap();
    assert!(!v.verdict.passed);
    assert_eq!(v.steps[0].bad_answers, 10);
    assert_eq!(v.steps[0].statuses.get(&200), Some(&10));
    assert!(
        v.summary().contains("10 answers without the expected JSON"),
        "{}",
        v.summary()
    );
}

/// An SLO file gating the stand-in: `stand-in` with a start/stop cycle and `webhook` with a
/// signed decision.
fn slo_file(dir: &std::path::Path, start_expects: u16, p99_ms: u32) -> String {
    let text = format!(
        r#"version: 2
defaults:
  requests: 40
  max_error_rate: 0
  concurrency: 2
  timeout_ms: 5000
services:
  stand-in:
    p99_ms: {p99_ms}
    analysis_path: /healthz
    steps:
      - name: start
        method: POST
        path: /users/probe-${{worker}}/sessions
        body: '{{}}'
        expect_status: {start_expects}
      - name: stop
        method: DELETE
        path: /sessions/${{start.session_id}}
        expect_status: 204
  webhook:
    p99_ms: 1000
    max_error_rate: 0.001
    analysis_path: /readyz
    steps:
      - name: decide
        method: POST
        path: /decisions
        body: '{{"seq":${{seq}}}}'
        signature:
          provider: {PROVIDER}
        expect_status: 200
        expect_json:
          source: live
"#
    );
    let path = dir.join(format!("slo-{start_expects}-{p99_ms}.yaml"));
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn slo_gate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_slo-gate"))
        .args(args)
        .env_remove("PROBE_BEARER_TOKEN")
        .output()
        .expect("run slo-gate");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slo_gate_gates_a_service_from_the_slo_file() {
    let (base, _) = spawn(StatusCode::CREATED, Duration::ZERO).await;
    let dir = std::env::temp_dir().join(format!("slo-gate-cycles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let wrong = dir.join("wrong");
    std::fs::write(&wrong, format!("{}\n", SECRET.replace('5', "6"))).unwrap();
    let good = slo_file(&dir, 201, 1000);
    let wrong_status = slo_file(&dir, 200, 1000);
    let zero_p99 = slo_file(&dir, 201, 0);
    let (token, secret, wrong) = (
        token.to_str().unwrap().to_owned(),
        secret.to_str().unwrap().to_owned(),
        wrong.to_str().unwrap().to_owned(),
    );

    let runs = tokio::task::spawn_blocking(move || {
        let gate = |file: &str, service: &str, secret: Option<&str>| {
            let mut args = vec![
                "--slo-file",
                file,
                "--service",
                service,
                "--base-url",
                &base,
                "--bearer-token-file",
                &token,
            ];
            if let Some(s) = secret {
                args.extend(["--webhook-secret-file", s]);
            }
            slo_gate(&args)
        };
        vec![
            ("stand-in", gate(&good, "stand-in", None)),
            ("webhook", gate(&good, "webhook", Some(&secret))),
            ("wrong status", gate(&wrong_status, "stand-in", None)),
            ("wrong secret", gate(&good, "webhook", Some(&wrong))),
            ("no secret", gate(&good, "webhook", None)),
            ("zero p99", gate(&zero_p99, "stand-in", None)),
            ("unknown service", gate(&good, "learning", None)),
            ("list", slo_gate(&["--slo-file", &good, "--list-services"])),
            (
                "analysis",
                slo_gate(&["--slo-file", &good, "--print-analysis", "webhook"]),
            ),
            (
                "url and file",
                slo_gate(&["--slo-file", &good, "--url", "http://x/", "--list-services"]),
            ),
        ]
    })
    .await
    .unwrap();

    let codes: Vec<(&str, i32)> = runs.iter().map(|(name, r)| (*name, r.0)).collect();
    assert_eq!(
        codes,
        vec![
            ("stand-in", 0),
            ("webhook", 0),
            ("wrong status", 1),
            ("wrong secret", 1),
            ("no secret", 2),
            ("zero p99", 2),
            ("unknown service", 2),
            ("list", 0),
            ("analysis", 0),
            ("url and file", 2),
        ]
    );
    for (name, (_, stdout, stderr)) in &runs {
        for secret in [TOKEN, SECRET, &SECRET.replace('5', "6")] {
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "{name}: a secret leaked:\n{stdout}\n{stderr}"
            );
        }
    }
    let json: serde_json::Value = serde_json::from_str(runs[0].1.1.trim()).unwrap();
    assert_eq!(json["service"], "stand-in");
    assert_eq!(json["passed"], true);
    assert_eq!(json["requests"], 40);
    assert_eq!(json["cycles"], 20);
    assert_eq!(json["steps"][0]["name"], "start");
    assert_eq!(json["steps"][1]["statuses"]["204"], 20);
    assert_eq!(json["sent_bearer_token"], true);
    let json: serde_json::Value = serde_json::from_str(runs[1].1.1.trim()).unwrap();
    assert_eq!(json["steps"][0]["signed"], true);
    assert!(
        runs[2].1.2.contains("slo-gate: stand-in: ") && runs[2].1.2.contains("(expected 200)"),
        "{}",
        runs[2].1.2
    );
    assert!(
        runs[3].1.2.contains("to a signed request"),
        "{}",
        runs[3].1.2
    );
    assert!(
        runs[4].1.2.contains("--webhook-secret-file"),
        "{}",
        runs[4].1.2
    );
    assert!(
        runs[5]
            .1
            .2
            .contains("service stand-in: p99_ms: 0 is not a positive"),
        "{}",
        runs[5].1.2
    );
    assert!(
        runs[6].1.2.contains("service learning is not in")
            && runs[6].1.2.contains("stand-in, webhook"),
        "{}",
        runs[6].1.2
    );
    assert_eq!(runs[7].1.1, "stand-in\nwebhook\n");
    assert_eq!(
        runs[8].1.1,
        "path: /readyz\nrequests: 40\nconcurrency: 2\ntimeoutMs: 5000\np99Ms: 1000\nmaxErrorRate: 0.001\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
