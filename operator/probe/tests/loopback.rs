//! The probe for real, against axum servers on loopback: a normal route passes, an injected slow
//! route breaches p99, a route answering 500 breaches the error rate; and `slo-gate`'s exit codes.

use std::process::Command;
use std::time::Duration;

use axum::{Router, http::StatusCode, routing::get};
use probe::{Breach, ProbeConfig, Thresholds};

/// A stand-in service with one healthy, one slow and one failing route.
async fn spawn_server() -> String {
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
        );
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
    }
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

fn slo_gate(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_slo-gate"))
        .args(args)
        .output()
        .expect("run slo-gate");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).unwrap(),
    )
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
