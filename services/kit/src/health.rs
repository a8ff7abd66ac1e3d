//! `/healthz` (the process is alive; never touches the database) and `/readyz` (every dependency
//! this process needs to serve traffic is there). Kubernetes probes and the ALB use them.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use sqlx::{PgPool, migrate::Migrator};

pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, String>> + Send + 'a>>;

/// One readiness condition. `Ok` carries details shown in the `/readyz` body.
pub trait ReadinessCheck: Send + Sync {
    fn name(&self) -> &str;
    fn check(&self) -> CheckFuture<'_>;
}

/// Ready when the database answers and every migration this binary ships is applied.
pub struct DbReady {
    pub schema: &'static str,
    pub pool: PgPool,
    pub expected_version: i64,
}

impl DbReady {
    pub fn new(schema: &'static str, pool: PgPool, migrator: &Migrator) -> Self {
        Self {
            schema,
            pool,
            expected_version: crate::db::latest_version(migrator),
        }
    }

    /// The usual readiness of a database-backed service, ready to hand to [`Health::new`].
    pub fn for_service(svc: &crate::Service, pool: PgPool) -> Arc<dyn ReadinessCheck> {
        Arc::new(Self::new(svc.schema, pool, svc.migrator))
    }
}

impl ReadinessCheck for DbReady {
    fn name(&self) -> &str {
        self.schema
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let applied = crate::db::applied_version(&self.pool, self.schema)
                .await
                .map_err(|e| {
                    crate::db::note_error(&e);
                    format!("database unreachable: {e}")
                })?;
            match applied {
                Some(v) if v >= self.expected_version => Ok(json!({ "migration": v })),
                Some(v) => Err(format!(
                    "schema at migration {v}, this binary needs {}",
                    self.expected_version
                )),
                None => Err("migrations not applied".to_owned()),
            }
        })
    }
}

/// Shared by the health handlers; `draining` flips on SIGTERM so load balancers stop sending
/// new requests while in-flight ones finish.
#[derive(Clone, Default)]
pub struct Health {
    checks: Arc<Vec<Arc<dyn ReadinessCheck>>>,
    draining: Arc<AtomicBool>,
}

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

impl Health {
    pub fn new(checks: Vec<Arc<dyn ReadinessCheck>>) -> Self {
        Self {
            checks: Arc::new(checks),
            draining: Arc::default(),
        }
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Runs every check concurrently; `Err` lists the failures.
    pub async fn ready(&self) -> (bool, Value) {
        let results = futures_util::future::join_all(self.checks.iter().map(|c| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, c.check()).await {
                Ok(r) => r,
                Err(_) => Err(format!("timed out after {CHECK_TIMEOUT:?}")),
            };
            (c.name().to_owned(), outcome)
        }))
        .await;
        let mut ok = !self.draining.load(Ordering::SeqCst);
        let mut body = serde_json::Map::new();
        for (name, outcome) in results {
            let v = match outcome {
                Ok(details) => json!({ "status": "ok", "details": details }),
                Err(reason) => {
                    ok = false;
                    json!({ "status": "failing", "reason": reason })
                }
            };
            body.insert(name, v);
        }
        (
            ok,
            json!({ "status": if ok { "ready" } else { "not_ready" }, "draining": self.draining.load(Ordering::SeqCst), "checks": body }),
        )
    }
}

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

pub async fn readyz(State(health): State<Health>) -> Response {
    let (ok, body) = health.ready().await;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
