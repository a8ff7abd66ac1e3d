//! HTTP layer of the learning service: request/response types (documented in OpenAPI through
//! schemars) and handlers under `/learning/v1`.
//!
//! Only `GET /learning/v1/health` exists so far; the read and write routes of issue 14 build on
//! the schema in migrations/learning and the queries in [`crate::store`].

use std::sync::Arc;

use aide::axum::{ApiRouter, routing::get_with};
use axum::{extract::State, http::StatusCode};
use kit::clock::Clock;
use schemars::JsonSchema;
use serde::Serialize;
use sqlx::PgPool;

use crate::Settings;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
}

/// The service's health: the process answers, and whether its database does.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HealthView {
    /// `ok` when the database answered, `degraded` otherwise.
    pub status: &'static str,
    /// `ok` or `unavailable`.
    pub database: &'static str,
    /// The newest applied migration of schema `learning` (null when unknown).
    pub schema_version: Option<i64>,
}

/// 200 when the database answers, 503 (same body) when it does not, so a load balancer can use
/// it as well as a human.
async fn health(State(st): State<AppState>) -> (StatusCode, axum::Json<HealthView>) {
    match kit::db::applied_version(&st.pool, crate::SERVICE.schema).await {
        Ok(version) => (
            StatusCode::OK,
            axum::Json(HealthView {
                status: "ok",
                database: "ok",
                schema_version: version,
            }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "learning health: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(HealthView {
                    status: "degraded",
                    database: "unavailable",
                    schema_version: None,
                }),
            )
        }
    }
}

pub fn routes(state: AppState) -> ApiRouter {
    ApiRouter::new()
        .api_route(
            "/learning/v1/health",
            get_with(health, |op| {
                kit::auth::public(
                    op.summary("Service and database status"),
                    "health carries no learner data (the brief's GET /health)",
                )
            }),
        )
        .with_state(state)
}
