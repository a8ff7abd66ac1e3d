//! The operator's own HTTP endpoints on `$PORT` (default 8080), as docker/operator.Dockerfile
//! promises: `/healthz` (process alive), `/readyz` (controllers started) and `/metrics`
//! (Prometheus text: reconcile outcomes per controller), so the operator is probed and scraped
//! like every service.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::{Router, extract::State, http::StatusCode, routing::get};

/// Counters the controllers bump; read by `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub ready: AtomicBool,
    pub release_ok: AtomicU64,
    pub release_error: AtomicU64,
    pub rollout_ok: AtomicU64,
    pub rollout_error: AtomicU64,
}

impl Metrics {
    /// Counts one reconcile outcome of `controller` (`release` or `rollout`).
    pub fn record(&self, controller: &str, ok: bool) {
        let counter = match (controller, ok) {
            ("release", true) => &self.release_ok,
            ("release", false) => &self.release_error,
            ("rollout", true) => &self.rollout_ok,
            _ => &self.rollout_error,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self) -> String {
        let mut out = String::from(
            "# HELP meridian_operator_reconciles_total Reconciles by controller and result.\n\
             # TYPE meridian_operator_reconciles_total counter\n",
        );
        for (controller, result, counter) in [
            ("release", "ok", &self.release_ok),
            ("release", "error", &self.release_error),
            ("rollout", "ok", &self.rollout_ok),
            ("rollout", "error", &self.rollout_error),
        ] {
            let n = counter.load(Ordering::Relaxed);
            out = format!(
                "{out}meridian_operator_reconciles_total{{controller=\"{controller}\",result=\"{result}\"}} {n}\n"
            );
        }
        out
    }
}

/// The router serving the three endpoints.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(m): State<Arc<Metrics>>| async move {
                if m.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move { m.render() }),
        )
        .with_state(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_text(app: Router, path: &str) -> (StatusCode, String) {
        let res = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let body = to_bytes(res.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn health_readiness_and_metrics() {
        let metrics = Arc::new(Metrics::default());
        let app = router(Arc::clone(&metrics));
        assert_eq!(get_text(app.clone(), "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get_text(app.clone(), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        metrics.ready.store(true, Ordering::Relaxed);
        metrics.record("release", true);
        metrics.record("release", false);
        metrics.record("release", true);
        assert_eq!(get_text(app.clone(), "/readyz").await.0, StatusCode::OK);
        let (_, text) = get_text(app, "/metrics").await;
        assert!(text.contains(
            "meridian_operator_reconciles_total{controller=\"release\",result=\"ok\"} 2\n"
        ));
        assert!(text.contains(
            "meridian_operator_reconciles_total{controller=\"release\",result=\"error\"} 1\n"
        ));
    }
}
