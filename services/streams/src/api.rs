//! HTTP layer of the stream guard: request/response types (documented in OpenAPI through
//! schemars), validation, and the mapping of domain outcomes to status codes.

use std::sync::Arc;

use aide::{
    OperationOutput,
    axum::{
        ApiRouter,
        routing::{get_with, post_with},
    },
    generate::GenContext,
    openapi::{Operation, Response as DocResponse, StatusCode as DocStatus},
};
use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use kit::{
    ApiError, ApiResult, Caller, IdempotencyKey, Json, NoContent, Path, Query, Validator,
    auth::requires,
    pagination::{Page, PageQuery},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    Settings,
    domain::{self, Admission, Session},
    store,
};

/// A service acting for users: the playback service asks the guard before it starts a stream
/// (the viewer never calls this API directly in production).
pub const SCOPE_SESSIONS: &str = "streams:sessions";
/// Support staff and plan management: per-user limits.
pub const SCOPE_ADMIN: &str = "streams:admin";

/// The owner rules, as the OpenAPI document states them.
const PATH_USER: Option<&str> = Some("the user in the path");
const SESSION_OWNER: Option<&str> = Some("the session's user");

/// Who may act on a user's sessions: the user, or a service acting for users.
const FOR_USERS: &[&str] = &[SCOPE_SESSIONS];
/// Who may read a user's limit: the user, a service acting for users, or an admin.
const READ_LIMIT: &[&str] = &[SCOPE_SESSIONS, SCOPE_ADMIN];

/// 403 unless `caller` may act on a session owned by `owner` (`None`: no such session, which
/// the handler then reports as it always has).
fn may_act_on(caller: &Caller, owner: Option<&str>) -> ApiResult<()> {
    match owner {
        Some(owner) => caller.require_user(owner, FOR_USERS),
        None => Ok(()),
    }
}

/// The owner of `session_id`, looked up only when the caller is not a service acting for users
/// (the production path costs no extra query).
async fn check_owner(st: &AppState, caller: &Caller, session_id: Uuid) -> ApiResult<()> {
    if caller.has_scope(SCOPE_SESSIONS) {
        return Ok(());
    }
    let owner = store::owner(&st.pool, session_id).await?;
    may_act_on(caller, owner.as_deref())
}

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct UserPath {
    /// Opaque user id: 1..=128 of letters, digits and `- _ . : @`.
    pub user_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SessionPath {
    pub session_id: Uuid,
}

/// Body of a stream start.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartSession {
    /// The device that will play the stream.
    pub device_id: String,
    /// What will be played.
    pub content_id: String,
}

/// A live stream session (a lease on one of the user's slots).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SessionView {
    pub session_id: Uuid,
    pub user_id: String,
    pub device_id: String,
    pub content_id: String,
    pub started_at: DateTime<Utc>,
    /// The slot frees itself at this instant unless a heartbeat extends it.
    pub lease_expires_at: DateTime<Utc>,
    /// Send a heartbeat at least this often.
    pub heartbeat_interval_secs: u64,
    pub lease_ttl_secs: u64,
}

impl SessionView {
    fn new(s: Session, settings: &Settings) -> Self {
        Self {
            session_id: s.session_id,
            user_id: s.user_id,
            device_id: s.device_id,
            content_id: s.content_id,
            started_at: s.started_at,
            lease_expires_at: s.expires_at,
            heartbeat_interval_secs: settings.heartbeat_interval.as_secs(),
            lease_ttl_secs: settings.lease_ttl.as_secs(),
        }
    }
}

/// A user's concurrent-stream limit.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct LimitView {
    pub user_id: String,
    pub max_streams: i32,
    /// `default` (service-wide) or `override` (set for this user, e.g. a family plan).
    pub source: String,
}

/// Body of a limit change.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLimit {
    /// 1..=20.
    pub max_streams: i32,
}

/// The outcome of a successful start: a new session (201) or the replay of a retried one (200).
pub enum Started {
    Created(SessionView),
    Replayed(SessionView),
}

impl IntoResponse for Started {
    fn into_response(self) -> Response {
        match self {
            Self::Created(v) => (StatusCode::CREATED, axum::Json(v)).into_response(),
            Self::Replayed(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        }
    }
}

impl OperationOutput for Started {
    type Inner = SessionView;
    fn operation_response(ctx: &mut GenContext, op: &mut Operation) -> Option<DocResponse> {
        axum::Json::<SessionView>::operation_response(ctx, op)
    }
    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        let Some(res) = Self::operation_response(ctx, op) else {
            return Vec::new();
        };
        let mut replay = res.clone();
        replay.description = "a retried start: the session created by the first attempt".into();
        vec![
            (Some(DocStatus::Code(201)), res),
            (Some(DocStatus::Code(200)), replay),
        ]
    }
}

fn check_user(user_id: &str) -> ApiResult<()> {
    let mut v = Validator::new();
    domain::check_id(&mut v, user_id, "user_id");
    v.finish()
}

async fn start_session(
    State(st): State<AppState>,
    caller: Caller,
    Path(UserPath { user_id }): Path<UserPath>,
    IdempotencyKey(key): IdempotencyKey,
    Json(body): Json<StartSession>,
) -> ApiResult<Started> {
    caller.require_user(&user_id, FOR_USERS)?;
    let mut v = Validator::new();
    domain::check_id(&mut v, &user_id, "user_id");
    domain::check_id(&mut v, &body.device_id, "device_id");
    domain::check_id(&mut v, &body.content_id, "content_id");
    v.finish()?;

    let rows = store::admit(
        &st.pool,
        &store::StartRequest {
            session_id: Uuid::now_v7(),
            user_id: &user_id,
            device_id: &body.device_id,
            content_id: &body.content_id,
            idempotency_key: key.as_deref(),
            default_limit: st.settings.default_limit,
            lease_ttl_ms: st.settings.lease_ttl_ms(),
        },
    )
    .await?;
    let admission = domain::interpret(rows).map_err(|e| ApiError::internal(&e))?;
    let outcome = admission.outcome();
    metrics::counter!("streams_admissions_total", "outcome" => outcome).increment(1);
    tracing::info!(user_id = %user_id, outcome, "admission");
    match admission {
        Admission::Admitted(s) => Ok(Started::Created(SessionView::new(s, &st.settings))),
        Admission::Replayed(s) => Ok(Started::Replayed(SessionView::new(s, &st.settings))),
        Admission::KeyReused(existing) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "Idempotency-Key reused for a different stream",
        )
        .with_detail(format!(
            "this key already started session {} on device {} for content {}; use a new key for a new stream",
            existing.session_id, existing.device_id, existing.content_id
        ))),
        Admission::Rejected { limit, active } => {
            let active: Vec<SessionView> = active
                .into_iter()
                .map(|s| SessionView::new(s, &st.settings))
                .collect();
            Err(ApiError::conflict("stream-limit", "Concurrent stream limit reached")
                .with_detail(format!(
                    "user {user_id} is already watching {} of {limit} allowed streams; stop one to start another",
                    active.len()
                ))
                .with_extension("limit", limit)
                .with_extension("active_sessions", active))
        }
    }
}

async fn list_sessions(
    State(st): State<AppState>,
    caller: Caller,
    Path(UserPath { user_id }): Path<UserPath>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<SessionView>>> {
    caller.require_user(&user_id, FOR_USERS)?;
    check_user(&user_id)?;
    let req = page.resolve::<(DateTime<Utc>, Uuid)>()?;
    let rows = store::list_live(&st.pool, &user_id, req.after.as_ref(), req.fetch_limit()).await?;
    let views = rows
        .into_iter()
        .map(|s| SessionView::new(s, &st.settings))
        .collect();
    Ok(Json(Page::from_rows(
        views,
        req.limit,
        |v: &SessionView| (v.started_at, v.session_id),
    )))
}

async fn get_session(
    State(st): State<AppState>,
    caller: Caller,
    Path(SessionPath { session_id }): Path<SessionPath>,
) -> ApiResult<Json<SessionView>> {
    let s = store::get(&st.pool, session_id).await?;
    // An expired row is invisible to `get`; its owner check still applies.
    match &s {
        Some(s) => may_act_on(&caller, Some(&s.user_id))?,
        None => check_owner(&st, &caller, session_id).await?,
    }
    let s = s.ok_or_else(|| ApiError::not_found(format!("no live session {session_id}")))?;
    Ok(Json(SessionView::new(s, &st.settings)))
}

async fn heartbeat(
    State(st): State<AppState>,
    caller: Caller,
    Path(SessionPath { session_id }): Path<SessionPath>,
) -> ApiResult<Json<SessionView>> {
    check_owner(&st, &caller, session_id).await?;
    match store::heartbeat(&st.pool, session_id, st.settings.lease_ttl_ms()).await? {
        store::Heartbeat::Extended(s) => Ok(Json(SessionView::new(s, &st.settings))),
        store::Heartbeat::Expired => Err(ApiError::gone(format!(
            "session {session_id} expired before this heartbeat; start a new session"
        ))),
        store::Heartbeat::NotFound => Err(ApiError::not_found(format!(
            "no session {session_id} (stopped or swept)"
        ))),
    }
}

async fn stop_session(
    State(st): State<AppState>,
    caller: Caller,
    Path(SessionPath { session_id }): Path<SessionPath>,
) -> ApiResult<NoContent> {
    check_owner(&st, &caller, session_id).await?;
    let deleted = store::stop(&st.pool, session_id).await?;
    tracing::info!(%session_id, deleted, "stop");
    Ok(NoContent)
}

async fn get_limit(
    State(st): State<AppState>,
    caller: Caller,
    Path(UserPath { user_id }): Path<UserPath>,
) -> ApiResult<Json<LimitView>> {
    caller.require_user(&user_id, READ_LIMIT)?;
    check_user(&user_id)?;
    let view = match store::limit_override(&st.pool, &user_id).await? {
        Some(max) => LimitView {
            user_id,
            max_streams: max,
            source: "override".into(),
        },
        None => LimitView {
            user_id,
            max_streams: st.settings.default_limit,
            source: "default".into(),
        },
    };
    Ok(Json(view))
}

async fn put_limit(
    State(st): State<AppState>,
    caller: Caller,
    Path(UserPath { user_id }): Path<UserPath>,
    Json(body): Json<SetLimit>,
) -> ApiResult<Json<LimitView>> {
    caller.require_scope(SCOPE_ADMIN)?;
    let mut v = Validator::new();
    domain::check_id(&mut v, &user_id, "user_id");
    v.range(body.max_streams, "max_streams", domain::LIMIT_RANGE);
    v.finish()?;
    store::set_limit(&st.pool, &user_id, body.max_streams).await?;
    tracing::info!(user_id = %user_id, max_streams = body.max_streams, by = %caller.sub, "limit set");
    Ok(Json(LimitView {
        user_id,
        max_streams: body.max_streams,
        source: "override".into(),
    }))
}

async fn delete_limit(
    State(st): State<AppState>,
    caller: Caller,
    Path(UserPath { user_id }): Path<UserPath>,
) -> ApiResult<NoContent> {
    caller.require_scope(SCOPE_ADMIN)?;
    check_user(&user_id)?;
    store::clear_limit(&st.pool, &user_id).await?;
    Ok(NoContent)
}

/// All routes, under `/streams/v1`.
pub fn routes(state: AppState) -> ApiRouter {
    ApiRouter::new()
        .api_route(
            "/streams/v1/users/{user_id}/sessions",
            post_with(start_session, |op| {
                let op = op.summary("Start a stream session").description(
                    "Admits the stream when the user is below their limit (201), replays a \
                         retried start (200, by Idempotency-Key or same device and content), or \
                         answers 409 listing the sessions that hold the slots.",
                );
                requires(op, PATH_USER, FOR_USERS)
            })
            .get_with(list_sessions, |op| {
                requires(
                    op.summary("List a user's live sessions"),
                    PATH_USER,
                    FOR_USERS,
                )
            }),
        )
        .api_route(
            "/streams/v1/users/{user_id}/limit",
            get_with(get_limit, |op| {
                requires(
                    op.summary("Read a user's stream limit"),
                    PATH_USER,
                    READ_LIMIT,
                )
            })
            .put_with(put_limit, |op| {
                requires(
                    op.summary("Set a user's stream limit (1..=20)"),
                    None,
                    &[SCOPE_ADMIN],
                )
            })
            .delete_with(delete_limit, |op| {
                requires(
                    op.summary("Remove a user's override (back to the default)"),
                    None,
                    &[SCOPE_ADMIN],
                )
            }),
        )
        .api_route(
            "/streams/v1/sessions/{session_id}",
            get_with(get_session, |op| {
                requires(op.summary("Read a live session"), SESSION_OWNER, FOR_USERS)
            })
            .delete_with(stop_session, |op| {
                requires(
                    op.summary("Stop a session (idempotent)"),
                    SESSION_OWNER,
                    FOR_USERS,
                )
            }),
        )
        .api_route(
            "/streams/v1/sessions/{session_id}/heartbeat",
            post_with(heartbeat, |op| {
                let op = op.summary("Extend a session's lease").description(
                    "404 when unknown or stopped, 410 when the lease already ran out.",
                );
                requires(op, SESSION_OWNER, FOR_USERS)
            }),
        )
        .with_state(state)
}
