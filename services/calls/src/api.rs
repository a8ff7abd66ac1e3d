//! HTTP layer of call control: the decision webhook (hot path, never touches PostgreSQL) and the
//! admin API that validates and stores configuration.

use std::{sync::Arc, time::Instant};

use aide::axum::{
    ApiRouter,
    routing::{get_with, post_with, put_with},
};
use axum::extract::State;
use chrono::{DateTime, Utc};
use kit::{
    ApiError, ApiResult, Caller, Json, NoContent, Path, Query, Validator,
    auth::{public, requires},
    pagination::{Page, PageQuery},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::{
    calllog::CallLog,
    domain::{
        engine::{self, Ctx, Decision, DecisionRequest, Event, Routing, Source},
        model::{PbxConfig, SubscriberConfig},
        validate,
    },
    settings::Settings,
    snapshot::{Origin, Snapshots},
    store::{self, Actor},
    webhook::Signed,
};

/// Configuration of switchboards and subscribers, its audit log and the snapshot view.
pub const SCOPE_ADMIN: &str = "calls:admin";

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    pub snapshots: Arc<Snapshots>,
    pub clock: Arc<dyn kit::clock::Clock>,
    pub log: CallLog,
}

/// Runs `decide` inline on the request's task and answers `fallback()` if it panics: a call must
/// get *an* answer well inside the platform's 3 s, whatever the configuration does to the engine.
///
/// The time budget is enforced by the engine itself (`Ctx::deadline`, checked between nodes).
/// An earlier version ran each decision on the blocking pool under `tokio::time::timeout`; the
/// thread hand-off cost more than the decision (about half the service's throughput) and bought
/// nothing a bounded engine needs: its work between two budget checks is one node.
pub fn guarded<F, G>(decide: F, fallback: G) -> Decision
where
    F: FnOnce() -> Decision,
    G: FnOnce(&str) -> Decision,
{
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decide)).unwrap_or_else(|_| {
        tracing::error!("decision panicked; static fallback");
        fallback("decision failed")
    })
}

/// Bounds every client string of a decision request (they reach the log line, the step log and
/// the state token): lengths, and no control characters (kit `text`).
fn check_request(req: &DecisionRequest) -> ApiResult<()> {
    /// A state token this service signs is under 1,300 characters (call id, number and node at
    /// their caps, base64); anything longer is not one of ours.
    const MAX_STATE_LEN: usize = 2048;
    let mut v = Validator::new();
    v.text(&req.call_id, "call_id", 128);
    v.text(&req.request_id, "request_id", 128);
    v.text(&req.from, "from", 64);
    v.text(&req.to, "to", 64);
    // Empty means absent; an unknown or garbled value restarts the flow, as before.
    if let Some(node) = req.node.as_deref().filter(|n| !n.is_empty()) {
        v.text(node, "node", validate::MAX_ID_LEN);
    }
    if let Some(state) = req.state.as_deref().filter(|s| !s.is_empty()) {
        v.text(state, "state", MAX_STATE_LEN);
    }
    if let Some(d) = &req.digits {
        v.check(
            d.len() <= 32
                && d.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#'),
            "digits",
            "must be at most 32 of 0-9 * #",
        );
    }
    v.check(
        req.event != Event::Digits || req.digits.is_some(),
        "digits",
        "required for a digits event",
    );
    v.finish()
}

static NO_ROUTING: std::sync::LazyLock<Routing> = std::sync::LazyLock::new(Routing::default);

/// The decision budget (`CALLS_DECISION_BUDGET_MS`) as the engine sees it: spent at a monotonic
/// instant. The clock is read here, not in the pure engine.
struct Deadline(Instant);

impl engine::Budget for Deadline {
    fn spent(&self) -> bool {
        Instant::now() >= self.0
    }
}

async fn decide(
    State(st): State<AppState>,
    Signed { body: req }: Signed<DecisionRequest>,
) -> ApiResult<Json<Decision>> {
    check_request(&req)?;
    let deadline = Deadline(Instant::now() + st.settings.decision_budget);
    let now = st.clock.now();
    let snap = st.snapshots.current();
    // Freshness is about the real database, not the (injectable) routing clock.
    let fresh = st.snapshots.is_fresh(Utc::now());
    let ctx = Ctx {
        routing: snap.as_ref().map_or(&*NO_ROUTING, |l| &l.routing),
        now,
        key: &st.settings.token_key,
        token_max_age_secs: st.settings.token_max_age_secs,
        emergency_target: st.settings.emergency_target.as_deref(),
        budget: Some(&deadline),
    };
    let mut decision = guarded(
        || {
            if snap.is_none() {
                engine::static_fallback(&ctx, &req, "no routing snapshot loaded")
            } else {
                engine::decide(&ctx, &req)
            }
        },
        |why| engine::static_fallback(&ctx, &req, why),
    );
    if decision.source == Source::Live && !fresh {
        decision.source = Source::Snapshot;
    }
    let source = decision.source;
    let outcome = crate::metrics::decision(&decision);
    if decision.notes.iter().any(|n| n == engine::OVER_BUDGET) {
        tracing::error!(budget = ?st.settings.decision_budget, "decision over budget; static fallback");
    }
    // Every client string here was bounded (and stripped of control characters) by check_request.
    tracing::info!(call_id = %req.call_id, event = req.event.as_str(), node = req.node.as_deref().unwrap_or_default(), source = source.as_str(), outcome, "decision");
    st.log.record(&req, &decision, now);
    Ok(Json(decision))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct NumberPath {
    /// E.164, e.g. `+46101234567`.
    pub number: String,
}

fn check_number(number: &str) -> ApiResult<()> {
    let mut v = Validator::new();
    v.check(
        validate::is_e164(number),
        "number",
        "must be an E.164 number like +46101234567",
    );
    v.finish()
}

fn invalid(errors: Vec<kit::FieldError>) -> ApiResult<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

async fn put_subscriber(
    State(st): State<AppState>,
    caller: Caller,
    Path(NumberPath { number }): Path<NumberPath>,
    Json(cfg): Json<SubscriberConfig>,
) -> ApiResult<Json<SubscriberConfig>> {
    caller.require_scope(SCOPE_ADMIN)?;
    check_number(&number)?;
    invalid(validate::subscriber(&cfg))?;
    store::put_subscriber(&st.pool, Actor(&caller.sub), &number, &cfg).await?;
    tracing::info!(%number, by = %caller.sub, "subscriber configured");
    st.snapshots.wake();
    Ok(Json(cfg))
}

async fn get_subscriber(
    State(st): State<AppState>,
    caller: Caller,
    Path(NumberPath { number }): Path<NumberPath>,
) -> ApiResult<Json<SubscriberConfig>> {
    caller.require_scope(SCOPE_ADMIN)?;
    check_number(&number)?;
    store::get_subscriber(&st.pool, &number)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no subscriber {number}")))
}

async fn delete_subscriber(
    State(st): State<AppState>,
    caller: Caller,
    Path(NumberPath { number }): Path<NumberPath>,
) -> ApiResult<NoContent> {
    caller.require_scope(SCOPE_ADMIN)?;
    check_number(&number)?;
    store::delete_subscriber(&st.pool, Actor(&caller.sub), &number).await?;
    tracing::info!(%number, by = %caller.sub, "subscriber removed");
    st.snapshots.wake();
    Ok(NoContent)
}

async fn put_pbx(
    State(st): State<AppState>,
    caller: Caller,
    Path(NumberPath { number }): Path<NumberPath>,
    Json(cfg): Json<PbxConfig>,
) -> ApiResult<Json<PbxConfig>> {
    caller.require_scope(SCOPE_ADMIN)?;
    check_number(&number)?;
    invalid(validate::pbx(&cfg))?;
    store::put_pbx(&st.pool, Actor(&caller.sub), &number, &cfg).await?;
    tracing::info!(%number, by = %caller.sub, "PBX flow configured");
    st.snapshots.wake();
    Ok(Json(cfg))
}

async fn get_pbx(
    State(st): State<AppState>,
    caller: Caller,
    Path(NumberPath { number }): Path<NumberPath>,
) -> ApiResult<Json<PbxConfig>> {
    caller.require_scope(SCOPE_ADMIN)?;
    check_number(&number)?;
    store::get_pbx(&st.pool, &number)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no PBX flow for {number}")))
}

async fn delete_pbx(
    State(st): State<AppState>,
    caller: Caller,
    Path(NumberPath { number }): Path<NumberPath>,
) -> ApiResult<NoContent> {
    caller.require_scope(SCOPE_ADMIN)?;
    check_number(&number)?;
    store::delete_pbx(&st.pool, Actor(&caller.sub), &number).await?;
    tracing::info!(%number, by = %caller.sub, "PBX flow removed");
    st.snapshots.wake();
    Ok(NoContent)
}

/// The routing snapshot this replica answers from.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotInfo {
    pub loaded: bool,
    pub version: Option<i64>,
    /// `database` or `file`.
    pub origin: Option<String>,
    pub loaded_at: Option<DateTime<Utc>>,
    /// Seconds since the database last confirmed the snapshot.
    pub age_secs: Option<f64>,
    /// Whether answers are currently `live` (else `snapshot`).
    pub fresh: bool,
    pub pbxes: usize,
    pub subscribers: usize,
}

pub fn snapshot_info(snapshots: &Snapshots, now: DateTime<Utc>) -> SnapshotInfo {
    let cur = snapshots.current();
    SnapshotInfo {
        loaded: cur.is_some(),
        version: cur.as_ref().map(|l| l.routing.version),
        origin: cur.as_ref().map(|l| match l.origin {
            Origin::Database => "database".to_owned(),
            Origin::File => "file".to_owned(),
        }),
        loaded_at: cur.as_ref().map(|l| l.loaded_at),
        age_secs: snapshots.age_secs(now),
        fresh: snapshots.is_fresh(now),
        pbxes: cur.as_ref().map_or(0, |l| l.routing.pbxes.len()),
        subscribers: cur.as_ref().map_or(0, |l| l.routing.subscribers.len()),
    }
}

async fn get_snapshot(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<SnapshotInfo>> {
    caller.require_scope(SCOPE_ADMIN)?;
    Ok(Json(snapshot_info(&st.snapshots, Utc::now())))
}

/// One configuration change.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct AuditView {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The `sub` of the verified token that made the change.
    pub actor: String,
    /// `put` or `delete`.
    pub action: String,
    /// `pbx` or `subscriber`.
    pub kind: String,
    pub number: String,
    /// The configuration version before and after the change.
    pub version_before: i64,
    pub version_after: i64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this number's changes (E.164).
    pub number: Option<String>,
    /// Page size, 1..=100 (default 20).
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page; omit for the first page.
    pub cursor: Option<String>,
}

async fn get_audit(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Page<AuditView>>> {
    caller.require_scope(SCOPE_ADMIN)?;
    if let Some(n) = &q.number {
        check_number(n)?;
    }
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let req = page.resolve::<i64>()?;
    let rows = store::audit(&st.pool, q.number.as_deref(), req.after, req.fetch_limit()).await?;
    let views = rows
        .into_iter()
        .map(|e| AuditView {
            id: e.id,
            at: e.at,
            actor: e.actor,
            action: e.action,
            kind: e.kind,
            number: e.number,
            version_before: e.version_before,
            version_after: e.version_after,
        })
        .collect();
    Ok(Json(Page::from_rows(views, req.limit, |v: &AuditView| {
        v.id
    })))
}

fn admin(op: aide::transform::TransformOperation<'_>) -> aide::transform::TransformOperation<'_> {
    requires(op, None, &[SCOPE_ADMIN])
}

pub fn routes(state: AppState) -> ApiRouter {
    ApiRouter::new()
        .api_route(
            "/calls/v1/decisions",
            post_with(decide, |op| {
                let op = op.summary("Decide the next step of a call").description(
                    "Webhook of the telephony platform. Answers from the in-memory snapshot \
                         (never waits on the database); `source` says whether the snapshot is \
                         live, a stale snapshot, or the static fallback.",
                );
                let mut op = public(
                    op,
                    "no bearer token; the telephony provider signs the body (Meridian-Signature, \
                     HMAC-SHA256, 5-minute window)",
                );
                op.inner_mut().security = vec![
                    [(crate::webhook::SCHEME.to_owned(), Vec::new())]
                        .into_iter()
                        .collect(),
                ];
                op
            }),
        )
        .api_route(
            "/calls/v1/subscribers/{number}",
            put_with(put_subscriber, |op| {
                admin(op.summary("Create or replace a mobile subscriber's rules"))
            })
            .get_with(get_subscriber, |op| {
                admin(op.summary("Read a subscriber's rules"))
            })
            .delete_with(delete_subscriber, |op| {
                admin(op.summary("Remove a subscriber (idempotent)"))
            }),
        )
        .api_route(
            "/calls/v1/pbx/{number}",
            put_with(put_pbx, |op| {
                admin(
                    op.summary("Create or replace a PBX flow")
                        .description("The whole graph is validated before anything is stored."),
                )
            })
            .get_with(get_pbx, |op| admin(op.summary("Read a PBX flow")))
            .delete_with(delete_pbx, |op| {
                admin(op.summary("Remove a PBX flow (idempotent)"))
            }),
        )
        .api_route(
            "/calls/v1/snapshot",
            get_with(get_snapshot, |op| {
                admin(op.summary("The routing snapshot this replica serves"))
            }),
        )
        .api_route(
            "/calls/v1/audit",
            get_with(get_audit, |op| {
                admin(op.summary("Configuration changes: who, when, which number, versions"))
            }),
        )
        .with_state(state)
}
