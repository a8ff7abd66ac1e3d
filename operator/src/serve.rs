//! The operator's own HTTP endpoints on `$PORT` (default 8080), as docker/operator.Dockerfile
//! promises: `/healthz` (process alive), `/readyz` (controllers started) and `/metrics`
//! (Prometheus text of [`crate::metrics`]), so the operator is probed and scraped like every
//! service.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Router, extract::State, routing::get};
use metrics_exporter_prometheus::PrometheusHandle;

/// Set once the controllers have started; `/readyz` answers 503 until then.
pub type Ready = Arc<AtomicBool>;

#[derive(Clone)]
struct Endpoints {
    ready: Ready,
    metrics: PrometheusHandle,
}

/// The router serving the three endpoints; `/metrics` renders `metrics`.
pub fn router(ready: Ready, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(e): State<Endpoints>| async move {
                if e.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(e): State<Endpoints>| async move { render(&e.metrics) }),
        )
        .with_state(Endpoints { ready, metrics })
}

/// `GET /metrics`: the Prometheus text format, with the content type kit's `/metrics` sends.
fn render(handle: &PrometheusHandle) -> Response {
    let mut res = handle.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

/// Histogram samples wait in the recorder until a render or an upkeep drains them; this keeps
/// them bounded when nothing scrapes for a while.
pub async fn upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Controller, ErrorKind};
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use std::time::Duration;
    use tower::ServiceExt;

    async fn get_text(app: Router, path: &str) -> (StatusCode, String, String) {
        let res = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let content_type = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = to_bytes(res.into_body(), 1 << 20).await.unwrap();
        (
            status,
            String::from_utf8(body.to_vec()).unwrap(),
            content_type,
        )
    }

    #[tokio::test]
    async fn health_readiness_and_metrics() {
        let recorder = crate::metrics::recorder();
        let ready = Ready::default();
        let app = router(Arc::clone(&ready), recorder.handle());
        assert_eq!(get_text(app.clone(), "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get_text(app.clone(), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        ready.store(true, Ordering::Relaxed);
        metrics::with_local_recorder(&recorder, || {
            let ms = Duration::from_millis(40);
            crate::metrics::reconciled(Controller::Release, Ok(()), ms);
            crate::metrics::reconciled(Controller::Release, Err(ErrorKind::KubeApi), ms);
            crate::metrics::reconciled(Controller::Release, Ok(()), ms);
        });
        assert_eq!(get_text(app.clone(), "/readyz").await.0, StatusCode::OK);
        let (status, text, content_type) = get_text(app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        for line in [
            "meridian_operator_reconciles_total{controller=\"release\",result=\"ok\"} 2\n",
            "meridian_operator_reconciles_total{controller=\"release\",result=\"error\"} 1\n",
            "meridian_operator_reconcile_errors_total{controller=\"release\",kind=\"kube_api\"} 1\n",
            "meridian_operator_reconcile_duration_seconds_bucket{controller=\"release\",le=\"0.025\"} 0\n",
            "meridian_operator_reconcile_duration_seconds_bucket{controller=\"release\",le=\"0.05\"} 3\n",
            "meridian_operator_reconcile_duration_seconds_count{controller=\"release\"} 3\n",
            "# TYPE meridian_operator_reconcile_duration_seconds histogram\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(
            !text.contains("rollout"),
            "nothing recorded for rollouts:\n{text}"
        );
    }
}
