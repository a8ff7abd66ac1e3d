//! The probe for real, against axum servers on loopback: a normal route passes, an injected slow
//! route breaches p99, a route answering 500 breaches the error rate, a route behind a bearer
//! token passes only with the token; and `slo-gate`'s exit codes, token options and silence
//! about the token.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header::AUTHORIZATION},
    routing::get,
};
use probe::{BearerToken, Breach, ProbeConfig, Thresholds};

/// The token the stand-in's private routes accept (JWT-shaped, as real tokens are).
const TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJzbG8tcHJvYmUifQ.c2lnbmF0dXJl";

/// Requests that reached a private route with the right token.
#[derive(Clone, Default)]
struct Seen(Arc<AtomicU32>);

/// 401 without the exact `Bearer TOKEN`, as the services' verifier answers.
fn authorized(headers: &HeaderMap, seen: &Seen) -> bool {
    let ok = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}"));
    if ok {
        seen.0.fetch_add(1, Ordering::Relaxed);
    }
    ok
}

/// A stand-in service with one healthy, one slow and one failing route, one route that needs
/// the token (`/private`) and one that answers 403 even with it (`/admin`: valid token, no
/// scope).
async fn spawn_server() -> String {
    spawn_server_counting(Seen::default()).await
}

async fn spawn_server_counting(seen: Seen) -> String {
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(120)).await;
                "slow"
            }),
        )
        .route(
            "/flaky",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/private",
            get(|State(seen): State<Seen>, headers: HeaderMap| async move {
                if authorized(&headers, &seen) {
                    (StatusCode::OK, "private")
                } else {
                    (StatusCode::UNAUTHORIZED, "no")
                }
            }),
        )
        .route(
            "/admin",
            get(|State(seen): State<Seen>, headers: HeaderMap| async move {
                if authorized(&headers, &seen) {
                    (StatusCode::FORBIDDEN, "no scope")
                } else {
                    (StatusCode::UNAUTHORIZED, "no")
                }
            }),
        )
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

const SLO: Thresholds = Thresholds {
    p99_ms: 80.0,
    max_error_rate: 0.01,
};

fn config(url: String, requests: u32) -> ProbeConfig {
    ProbeConfig {
        url,
        requests,
        concurrency: 4,
        timeout: Duration::from_secs(5),
        bearer_token: None,
    }
}

fn with_token(mut c: ProbeConfig, token: &str) -> ProbeConfig {
    c.bearer_token = Some(BearerToken::new(token).unwrap());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_route_passes() {
    let base = spawn_server().await;
    let v = probe::run(&config(format!("{base}/ok"), 200), SLO)
        .await
        .unwrap();
    assert!(v.passed, "{}", v.summary());
    assert_eq!(v.measurement.requests, 200);
    assert_eq!(v.measurement.errors, 0);
    assert!(v.measurement.p99_ms < SLO.p99_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_route_breaches_p99_only() {
    let base = spawn_server().await;
    let v = probe::run(&config(format!("{base}/slow"), 16), SLO)
        .await
        .unwrap();
    assert!(!v.passed);
    assert!(v.measurement.p50_ms >= 120.0, "{}", v.summary());
    assert_eq!(v.measurement.errors, 0);
    assert!(matches!(v.breaches.as_slice(), [Breach::P99 { .. }]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_breach_error_rate() {
    let base = spawn_server().await;
    let v = probe::run(&config(format!("{base}/flaky"), 50), SLO)
        .await
        .unwrap();
    assert!(!v.passed);
    assert_eq!(v.measurement.http_errors, 50);
    assert!((v.measurement.error_rate - 1.0).abs() < f64::EPSILON);
    assert!(
        v.breaches
            .iter()
            .any(|b| matches!(b, Breach::ErrorRate { .. }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_count_as_errors_and_latency() {
    let base = spawn_server().await;
    let mut c = config(format!("{base}/slow"), 4);
    c.timeout = Duration::from_millis(30);
    let m = probe::measure(&c).await.unwrap();
    assert_eq!(m.transport_errors, 4);
    assert!(m.p99_ms >= 30.0, "a timeout records the time waited: {m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_route_passes_only_with_the_token_sent_on_every_request() {
    let seen = Seen::default();
    let base = spawn_server_counting(seen.clone()).await;
    let url = format!("{base}/private");

    let v = probe::run(&config(url.clone(), 40), SLO).await.unwrap();
    assert!(!v.passed, "no token: {}", v.summary());
    assert_eq!(v.measurement.http_errors, 40);
    assert_eq!(v.measurement.auth_errors, 40);
    assert!(
        v.summary().contains("40 answered 401/403"),
        "{}",
        v.summary()
    );
    assert_eq!(seen.0.load(Ordering::Relaxed), 0);

    let c = with_token(config(url.clone(), 40), TOKEN);
    // Each worker's untimed warm-up requests count on the server too.
    let warm_ups = c.concurrency.min(40) * probe::WARMUP_ROUNDS;
    let v = probe::run(&c, SLO).await.unwrap();
    assert!(v.passed, "with the token: {}", v.summary());
    assert_eq!(v.measurement.errors, 0);
    assert_eq!(v.measurement.auth_errors, 0);
    assert_eq!(v.measurement.requests, 40);
    assert_eq!(
        seen.0.load(Ordering::Relaxed),
        40 + warm_ups,
        "every request, warm-ups included, carried it"
    );

    let v = probe::run(&with_token(config(url, 10), "some.other.token"), SLO)
        .await
        .unwrap();
    assert!(!v.passed, "wrong token: {}", v.summary());
    assert_eq!(v.measurement.auth_errors, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_counts_as_a_failure_never_a_pass() {
    let base = spawn_server().await;
    // Even a threshold that tolerates every error rate short of 100 % fails on all-403.
    let lenient = Thresholds {
        p99_ms: 10_000.0,
        max_error_rate: 0.99,
    };
    let v = probe::run(
        &with_token(config(format!("{base}/admin"), 20), TOKEN),
        lenient,
    )
    .await
    .unwrap();
    assert!(!v.passed, "{}", v.summary());
    assert_eq!(v.measurement.auth_errors, 20);
    assert_eq!(v.measurement.http_errors, 20);
    assert!((v.measurement.error_rate - 1.0).abs() < f64::EPSILON);
}

fn slo_gate(args: &[&str]) -> (i32, String) {
    let (code, stdout, _) = slo_gate_env(args, None);
    (code, stdout)
}

/// Runs `slo-gate` with `PROBE_BEARER_TOKEN` set to `env_token` (or unset): exit code, stdout,
/// stderr.
fn slo_gate_env(args: &[&str], env_token: Option<&str>) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slo-gate"));
    cmd.args(args).env_remove("PROBE_BEARER_TOKEN");
    if let Some(token) = env_token {
        cmd.env("PROBE_BEARER_TOKEN", token);
    }
    let out = cmd.output().expect("run slo-gate");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slo_gate_sends_the_token_from_a_file_or_the_environment_and_never_prints_it() {
    let base = spawn_server().await;
    let url = format!("{base}/private");
    let dir = std::env::temp_dir().join(format!("slo-gate-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let bad_file = dir.join("bad");
    std::fs::write(&bad_file, "Bearer with spaces").unwrap();
    let file = file.to_str().unwrap().to_owned();
    let bad_file = bad_file.to_str().unwrap().to_owned();

    let runs = tokio::task::spawn_blocking(move || {
        let gate = |extra: &[&str], env_token: Option<&str>| {
            let mut args = vec![
                "--url".to_owned(),
                url.clone(),
                "--requests".to_owned(),
                "10".to_owned(),
                "--p99-ms".to_owned(),
                "1000".to_owned(),
                "--max-error-rate".to_owned(),
                "0".to_owned(),
            ];
            args.extend(extra.iter().map(|a| (*a).to_owned()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            slo_gate_env(&args, env_token)
        };
        vec![
            ("file", gate(&["--bearer-token-file", &file], None)),
            ("env", gate(&[], Some(TOKEN))),
            ("none", gate(&[], None)),
            ("both", gate(&["--bearer-token-file", &file], Some(TOKEN))),
            ("bad file", gate(&["--bearer-token-file", &bad_file], None)),
            (
                "missing file",
                gate(&["--bearer-token-file", "/nonexistent/t"], None),
            ),
            ("bad env", gate(&[], Some("two words"))),
        ]
    })
    .await
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    let codes: Vec<(&str, i32)> = runs.iter().map(|(name, r)| (*name, r.0)).collect();
    assert_eq!(
        codes,
        vec![
            ("file", 0),
            ("env", 0),
            ("none", 1),
            ("both", 2),
            ("bad file", 2),
            ("missing file", 2),
            ("bad env", 2),
        ]
    );
    for (name, (_, stdout, stderr)) in &runs {
        assert!(
            !stdout.contains(TOKEN) && !stderr.contains(TOKEN),
            "{name}: the token leaked:\n{stdout}\n{stderr}"
        );
        assert!(!stderr.contains("with spaces"), "{name}: {stderr}");
    }
    let json: serde_json::Value = serde_json::from_str(runs[0].1.1.trim()).unwrap();
    assert_eq!(json["sent_bearer_token"], true);
    assert_eq!(json["auth_errors"], 0);
    let json: serde_json::Value = serde_json::from_str(runs[2].1.1.trim()).unwrap();
    assert_eq!(json["sent_bearer_token"], false);
    assert_eq!(json["auth_errors"], 10);
    assert!(runs[2].1.2.contains("401/403"), "{}", runs[2].1.2);
    assert!(runs[3].1.2.contains("both set"), "{}", runs[3].1.2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slo_gate_exit_codes_and_json_line() {
    let base = spawn_server().await;
    let ok = format!("{base}/ok");
    let slow = format!("{base}/slow");
    let gate = |url: String| {
        tokio::task::spawn_blocking(move || {
            slo_gate(&[
                "--url",
                &url,
                "--requests",
                "20",
                "--p99-ms",
                "80",
                "--max-error-rate",
                "0.01",
                "--concurrency",
                "2",
            ])
        })
    };
    let (code, stdout) = gate(ok.clone()).await.unwrap();
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(stdout.lines().count(), 1);
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(json["passed"], true);
    assert_eq!(json["url"], ok.as_str());
    assert_eq!(json["requests"], 20);

    let (code, stdout) = gate(slow).await.unwrap();
    assert_eq!(code, 1, "{stdout}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(json["breaches"][0]["kind"], "p99");

    let usage = tokio::task::spawn_blocking(|| {
        (
            slo_gate(&[
                "--url",
                "http://x/",
                "--requests",
                "0",
                "--p99-ms",
                "1",
                "--max-error-rate",
                "0",
            ])
            .0,
            slo_gate(&["--url", "http://x/", "--requests", "1"]).0,
            slo_gate(&[
                "--url",
                "http://x/",
                "--requests",
                "1",
                "--p99-ms",
                "1",
                "--max-error-rate",
                "2",
            ])
            .0,
            slo_gate(&[
                "--url",
                "not a url",
                "--requests",
                "1",
                "--p99-ms",
                "1",
                "--max-error-rate",
                "0",
            ])
            .0,
        )
    })
    .await
    .unwrap();
    assert_eq!(usage, (2, 2, 2, 2));
}
