//! Prometheus metrics: the process-wide recorder, the `/metrics` endpoint, and the HTTP middleware
//! that records the two SLO series every service exposes:
//!
//! - `http_requests_total{service,route,method,status}` (counter)
//! - `http_request_duration_seconds{service,route,method}` (histogram)
//!
//! `route` is the matched route *template* (`/streams/v1/users/{user_id}/sessions`), never the raw
//! path, so series stay bounded no matter how many users exist.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

/// Buckets for request latency: fine-grained below 50 ms where our SLOs live.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.3, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder once per process and returns its handle.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("http_request_duration_seconds".into()),
                LATENCY_BUCKETS,
            )
            .expect("static bucket list is non-empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); ours still renders what
        // is recorded through it, and in binaries this is the only one.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed");
        }
        spawn_upkeep(handle.clone());
        handle
    })
}

/// Histograms are buffered until upkeep drains them; without an HTTP listener thread we run it.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawn = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(5));
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawn {
        tracing::warn!(error = %e, "could not start metrics upkeep thread");
    }
}

/// `GET /metrics` in the Prometheus text format.
pub async fn render() -> Response {
    let body = install().render();
    let mut res = body.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

/// Records the SLO series and writes one access-log line per request, inside a span that carries
/// the request id so every log line a handler writes can be correlated.
pub async fn observe(service: &'static str, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let request_id = req
        .headers()
        .get(crate::app::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let span = tracing::info_span!("request", %request_id, service, %route);
    let res = next.run(req).instrument(span.clone()).await;
    let elapsed = start.elapsed();
    let status = res.status().as_u16();
    let labels = [
        ("service", service.to_owned()),
        ("route", route),
        ("method", method.as_str().to_owned()),
    ];
    metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
    let [service_l, route_l, method_l] = labels;
    metrics::counter!(
        "http_requests_total",
        &[
            service_l,
            route_l.clone(),
            method_l.clone(),
            ("status", status.to_string())
        ]
    )
    .increment(1);
    span.in_scope(|| {
        tracing::info!(
            method = %method_l.1,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    });
    res
}
