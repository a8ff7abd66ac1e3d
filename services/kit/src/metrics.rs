//! Prometheus metrics: the process-wide recorder, the `/metrics` endpoint, and the HTTP middleware
//! that records the two SLO series every service exposes:
//!
//! - `http_requests_total{service,route,method,status}` (counter)
//! - `http_request_duration_seconds{service,route,method}` (histogram)
//!
//! `route` is the matched route *template* (`/streams/v1/users/{user_id}/sessions`), never the raw
//! path, so series stay bounded no matter how many users exist.

use std::{
    collections::HashMap,
    sync::{LazyLock, OnceLock, PoisonError, RwLock},
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderValue, Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use metrics::{Counter, Histogram};
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

/// The two SLO series of one (service, route, method), with a counter per status seen so far.
struct RouteSeries {
    duration: Histogram,
    statuses: Vec<(u16, Counter)>,
}

type SeriesKey = (&'static str, Method);
type ByRoute = HashMap<String, Vec<(SeriesKey, RouteSeries)>>;

/// Handles of every series recorded so far, by route template. Building a series from labels
/// allocates its label strings and hashes them in the recorder's registry; a read lock and a
/// short scan here cost a fraction of that, on every request of every service.
static SERIES: LazyLock<RwLock<ByRoute>> = LazyLock::new(Default::default);

fn record(service: &'static str, route: &str, method: &Method, status: u16, secs: f64) {
    let hit = |by_route: &ByRoute| {
        let series = by_route
            .get(route)?
            .iter()
            .find(|((s, m), _)| *s == service && m == method)
            .map(|(_, series)| series)?;
        let counter = series.statuses.iter().find(|(s, _)| *s == status)?;
        series.duration.record(secs);
        counter.1.increment(1);
        Some(())
    };
    if hit(&SERIES.read().unwrap_or_else(PoisonError::into_inner)).is_some() {
        return;
    }
    // First request of this route, method or status: register the series, then record.
    let mut by_route = SERIES.write().unwrap_or_else(PoisonError::into_inner);
    let labels = [
        ("service", service.to_owned()),
        ("route", route.to_owned()),
        ("method", method.as_str().to_owned()),
    ];
    let entries = by_route.entry(route.to_owned()).or_default();
    let idx = match entries
        .iter()
        .position(|((s, m), _)| *s == service && m == method)
    {
        Some(i) => i,
        None => {
            entries.push((
                (service, method.clone()),
                RouteSeries {
                    duration: metrics::histogram!("http_request_duration_seconds", &labels),
                    statuses: Vec::new(),
                },
            ));
            entries.len() - 1
        }
    };
    let series = &mut entries[idx].1;
    if !series.statuses.iter().any(|(s, _)| *s == status) {
        let [service_l, route_l, method_l] = labels;
        let counter = metrics::counter!(
            "http_requests_total",
            &[service_l, route_l, method_l, ("status", status.to_string())]
        );
        series.statuses.push((status, counter));
    }
    hit(&by_route);
}

/// Records the SLO series and writes one access-log line per request, inside a span that carries
/// the request id so every log line a handler writes can be correlated.
pub async fn observe(service: &'static str, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let request_id = req
        .headers()
        .get(crate::app::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let span = tracing::info_span!("request", %request_id, service, route);
    let res = next.run(req).instrument(span.clone()).await;
    let elapsed = start.elapsed();
    let status = res.status().as_u16();
    record(service, route, &method, status, elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            method = %method,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    });
    res
}
