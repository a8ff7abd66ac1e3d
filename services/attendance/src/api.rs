//! HTTP layer: request/response types (documented in OpenAPI through schemars), validation,
//! who may call what, and the mapping of store outcomes to status codes.
//!
//! Callers:
//! - staff of a site: a token carrying `attendance:site-<site id>` for each site it names;
//! - `attendance:admin`: every site, site registration, visits;
//! - `attendance:ingest`: the visits producer (a service credential), writes only;
//! - `attendance:read`: visit reads (dashboards, the delivery gate's probe).
//! - the stream: a short-lived stream ticket from `POST .../stream-tickets` (an EventSource
//!   cannot send Authorization); the live page itself is public (it holds no data).

use std::sync::Arc;

use aide::{
    OperationInput, OperationOutput,
    axum::{
        ApiRouter,
        routing::{get_with, patch_with, post_with, put_with},
    },
    generate::GenContext,
    openapi::{MediaType, Operation, Response as DocResponse, StatusCode as DocStatus},
};
use axum::{
    extract::{FromRequestParts, State},
    http::{StatusCode, request::Parts},
    response::{
        Html, IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, NaiveDate, Utc};
use kit::{
    ApiError, ApiResult, Caller, Created, IdempotencyKey, Json, NoContent, Path, Query, Validator,
    auth::{public, requires},
    clock::Clock,
    pagination::{Page, PageQuery},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    Settings,
    domain::{self, MAX_BATCH},
    feed::{Hub, StreamSlot},
    store::{self, Attendance},
};

/// Every site, site registration, visits.
pub const SCOPE_ADMIN: &str = "attendance:admin";
/// The visits producer: ingestion only.
pub const SCOPE_INGEST: &str = "attendance:ingest";
/// Visit reads (dashboards, the delivery gate's probe).
pub const SCOPE_READ: &str = "attendance:read";
/// Staff of one site: `attendance:site-<site id>`.
pub const SITE_SCOPE_PREFIX: &str = "attendance:site-";

/// The largest snapshot the stream sends first (a site's day; larger days are truncated).
const SNAPSHOT_CAP: i64 = 2000;
const MAX_TICKET_LEN: usize = 128;

const SITE_STAFF: Option<&str> =
    Some("staff of the site in the path (scope attendance:site-<site_id>)");

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
    pub hub: Hub,
}

/// 403 unless the caller is staff of `site` or an admin.
pub fn require_site(caller: &Caller, site: &str) -> ApiResult<()> {
    if caller.has_scope(SCOPE_ADMIN) || caller.has_scope(&format!("{SITE_SCOPE_PREFIX}{site}")) {
        Ok(())
    } else {
        Err(kit::auth::forbidden())
    }
}

fn require_any(caller: &Caller, scopes: &[&str]) -> ApiResult<()> {
    if scopes.iter().any(|s| caller.has_scope(s)) {
        Ok(())
    } else {
        Err(kit::auth::forbidden())
    }
}

fn check_site(site_id: &str) -> ApiResult<()> {
    let mut v = Validator::new();
    domain::check_id(&mut v, site_id, "site_id");
    v.finish()
}

/// A cursor is opaque but not signed: its time must pass the same year bounds as any input.
fn check_cursor(v: &mut Validator, after: Option<&(DateTime<Utc>, Uuid)>) {
    if let Some((t, _)) = after
        && !(domain::MIN_YEAR..=domain::MAX_YEAR).contains(&chrono::Datelike::year(t))
    {
        v.push("cursor", "is not a cursor returned by this endpoint");
    }
}

fn site_missing(site: &str) -> ApiError {
    ApiError::not_found(format!("no site {site}"))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SitePath {
    /// 1..=64 of letters, digits and `- _ . :`.
    pub site_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct AttendancePath {
    pub site_id: String,
    pub attendance_id: Uuid,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct VisitorPath {
    pub visitor_id: Uuid,
}

/// Body of a site registration.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSite {
    /// 1..=200 characters.
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct SiteView {
    pub id: String,
    pub name: String,
}

/// Body of a sign-in.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInBody {
    /// Chosen by the client (a UUID), so a retried sign-in is recognised: same id, same child
    /// and site → 200 with the first attempt's attendance. Without it the id comes from the
    /// `Idempotency-Key` header (the same key at the same site is the same attendance), and
    /// without either a new id is made (such a sign-in is not safe to retry).
    pub id: Option<Uuid>,
    /// The child: 1..=64 of letters, digits and `- _ . :`.
    pub entity_id: String,
    /// `kiosk`, `app`, `staff`, ...: 1..=32 of a-z 0-9 - _.
    pub source: String,
    /// RFC 3339; defaults to now. At most 5 minutes in the future.
    pub sign_in_time: Option<DateTime<Utc>>,
}

/// Body of a sign-out.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignOutBody {
    /// RFC 3339; defaults to now. Never before the sign-in. Without it, a sign-out of an
    /// attendance signed out already answers 200 with the stored row (a retry); with another
    /// time than the stored one it is 409 (a correction is a PATCH).
    pub sign_out_time: Option<DateTime<Utc>>,
}

/// Body of a correction: the times to set (at least one).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorrectBody {
    pub sign_in_time: Option<DateTime<Utc>>,
    pub sign_out_time: Option<DateTime<Utc>>,
}

/// `GET .../attendance` parameters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DayQuery {
    /// The UTC day, `YYYY-MM-DD` (years 1970..=9999); defaults to today.
    pub day: Option<NaiveDate>,
    /// Page size, 1..=100 (default 20).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A stream ticket: opens the site's stream for its lifetime.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct TicketView {
    pub ticket: String,
    pub site_id: String,
    /// New streams can be opened with it until then; an open stream runs on, for at most
    /// `ATTENDANCE_STREAM_MAX_SECS` (then it ends, and EventSource's reconnect needs a valid
    /// ticket).
    pub expires_at: DateTime<Utc>,
    /// `GET` this path (with `?ticket=`) as an EventSource.
    pub stream_path: String,
}

/// `GET .../attendance/stream` parameters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// A ticket from `POST .../stream-tickets` for this site.
    pub ticket: String,
    /// Resume after this event id (as the `Last-Event-ID` header; the header wins). For a
    /// client that opens a new EventSource itself after a ticket expired.
    pub last_event_id: Option<i64>,
}

/// One visit to ingest.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VisitIn {
    /// The producer's id for the visit: a retried visit with the same id is stored once.
    pub id: Uuid,
    /// RFC 3339, within the retention window, at most 5 minutes in the future.
    pub visited_at: DateTime<Utc>,
    pub visitor_id: Uuid,
    /// Starts with `/`, at most 512 characters.
    pub page_path: String,
}

/// A batch of visits (1..=1000).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VisitBatch {
    pub visits: Vec<VisitIn>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct IngestView {
    /// Visits in the request.
    pub received: u64,
    /// Visits stored now; the rest were stored before (retries, by id).
    pub inserted: u64,
}

/// `GET /visits` parameters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VisitsQuery {
    /// Only this visitor's visits.
    pub visitor_id: Option<Uuid>,
    /// Visits at or after this instant (RFC 3339, years 1970..=9999).
    pub from: Option<DateTime<Utc>>,
    /// Visits before this instant (RFC 3339, years 1970..=9999).
    pub to: Option<DateTime<Utc>>,
    /// Page size, 1..=100 (default 20).
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// `GET /visitors/{id}` parameters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VisitorQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct VisitorView {
    pub id: Uuid,
    pub first_visit_at: DateTime<Utc>,
    pub last_visit_at: DateTime<Utc>,
    /// Visits ingested for this visitor (including those retention removed since).
    pub visits: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct VisitView {
    pub id: Uuid,
    pub visited_at: DateTime<Utc>,
    pub visitor_id: Uuid,
    pub page_path: String,
    /// The visitor (absent only when retention removed it).
    pub visitor: Option<VisitorView>,
}

impl From<store::VisitRow> for VisitView {
    fn from(r: store::VisitRow) -> Self {
        let visitor = match (r.first_visit_at, r.last_visit_at, r.visits) {
            (Some(first), Some(last), Some(n)) => Some(VisitorView {
                id: r.visitor_id,
                first_visit_at: first,
                last_visit_at: last,
                visits: n,
            }),
            _ => None,
        };
        Self {
            id: r.id,
            visited_at: r.visited_at,
            visitor_id: r.visitor_id,
            page_path: r.page_path,
            visitor,
        }
    }
}

/// A visitor with a page of their visits, newest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct VisitorPage {
    pub visitor: VisitorView,
    pub visits: Page<VisitView>,
}

/// 201 for a new row, 200 for the replay of a retried write.
pub enum Written<T> {
    Created(T),
    Replayed(T),
}

impl<T: Serialize> IntoResponse for Written<T> {
    fn into_response(self) -> Response {
        match self {
            Self::Created(v) => (StatusCode::CREATED, axum::Json(v)).into_response(),
            Self::Replayed(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        }
    }
}

impl<T: JsonSchema> OperationOutput for Written<T> {
    type Inner = T;
    fn operation_response(ctx: &mut GenContext, op: &mut Operation) -> Option<DocResponse> {
        axum::Json::<T>::operation_response(ctx, op)
    }
    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        let Some(res) = Self::operation_response(ctx, op) else {
            return Vec::new();
        };
        let mut replay = res.clone();
        replay.description = "a retried write: what the first attempt stored".into();
        vec![
            (Some(DocStatus::Code(201)), res),
            (Some(DocStatus::Code(200)), replay),
        ]
    }
}

/// The `Last-Event-ID` request header (EventSource sends it when it reconnects).
pub struct LastEventId(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for LastEventId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get("last-event-id") {
            None => Ok(Self(None)),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .map(|n| Self(Some(n)))
                .ok_or_else(|| {
                    ApiError::field("Last-Event-ID", "must be an event id of this stream")
                }),
        }
    }
}

impl OperationInput for LastEventId {}

/// A Server-Sent Events answer.
pub struct EventStream(Response);

impl IntoResponse for EventStream {
    fn into_response(self) -> Response {
        self.0
    }
}

impl OperationOutput for EventStream {
    type Inner = String;
    fn operation_response(_ctx: &mut GenContext, _op: &mut Operation) -> Option<DocResponse> {
        Some(DocResponse {
            description: "Server-Sent Events: `snapshot` (the day so far, first on a fresh \
                          connection, and on a resume from an event older than the feed's \
                          retention), then `created`, `updated`, `destroyed`, each with `id:` \
                          (its outbox id) and the attendance as JSON; `: heartbeat` comments."
                .into(),
            content: [("text/event-stream".to_owned(), MediaType::default())]
                .into_iter()
                .collect(),
            ..Default::default()
        })
    }
    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        Self::operation_response(ctx, op)
            .map(|r| vec![(Some(DocStatus::Code(200)), r)])
            .unwrap_or_default()
    }
}

// ---- sites and attendance -------------------------------------------------------------------

async fn put_site(
    State(st): State<AppState>,
    caller: Caller,
    Path(SitePath { site_id }): Path<SitePath>,
    Json(body): Json<PutSite>,
) -> ApiResult<Json<SiteView>> {
    caller.require_scope(SCOPE_ADMIN)?;
    let mut v = Validator::new();
    domain::check_id(&mut v, &site_id, "site_id");
    v.text(&body.name, "name", domain::MAX_NAME_LEN);
    v.finish()?;
    store::upsert_site(&st.pool, &site_id, &body.name).await?;
    Ok(Json(SiteView {
        id: site_id,
        name: body.name,
    }))
}

/// The attendance id of a sign-in that names none: derived from the site and the
/// Idempotency-Key, so a retry with the key finds the first attempt.
fn id_from_key(site: &str, key: &str) -> Uuid {
    let d = Sha256::digest(format!("attendance-sign-in\0{site}\0{key}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

async fn sign_in(
    State(st): State<AppState>,
    caller: Caller,
    Path(SitePath { site_id }): Path<SitePath>,
    IdempotencyKey(key): IdempotencyKey,
    Json(body): Json<SignInBody>,
) -> ApiResult<Written<Attendance>> {
    require_site(&caller, &site_id)?;
    let id = match (body.id, key.as_deref()) {
        (Some(id), _) => id,
        (None, Some(key)) => id_from_key(&site_id, key),
        (None, None) => Uuid::now_v7(),
    };
    let now = st.clock.now();
    let at = body.sign_in_time.unwrap_or(now);
    let mut v = Validator::new();
    domain::check_id(&mut v, &site_id, "site_id");
    domain::check_id(&mut v, &body.entity_id, "entity_id");
    domain::check_source(&mut v, &body.source);
    if domain::check_time(&mut v, at, "sign_in_time") {
        domain::check_not_future(&mut v, at, now, "sign_in_time");
    }
    v.finish()?;
    let outcome = store::sign_in(
        &st.pool,
        &store::NewSignIn {
            id,
            site_id: &site_id,
            entity_id: &body.entity_id,
            source: &body.source,
            at,
        },
        now,
    )
    .await?;
    match outcome {
        store::SignIn::Created(a) => {
            metrics::counter!("attendance_writes_total", "kind" => "sign_in").increment(1);
            Ok(Written::Created(a))
        }
        store::SignIn::Replayed(a) => Ok(Written::Replayed(a)),
        store::SignIn::SiteMissing => Err(site_missing(&site_id)),
        store::SignIn::IdTaken => Err(ApiError::conflict(
            "attendance-id-taken",
            "This id belongs to another attendance",
        )
        .with_detail(format!(
            "attendance {id} is another child's or site's; use a new id"
        ))),
        store::SignIn::AlreadyIn(open) => Err(ApiError::conflict(
            "already-signed-in",
            "The child is signed in already",
        )
        .with_detail(format!(
            "{} is signed in at {site_id} (attendance {open}); sign them out first",
            body.entity_id
        ))
        .with_extension("open_attendance_id", open)),
    }
}

async fn sign_out(
    State(st): State<AppState>,
    caller: Caller,
    Path(AttendancePath {
        site_id,
        attendance_id,
    }): Path<AttendancePath>,
    Json(body): Json<SignOutBody>,
) -> ApiResult<Json<Attendance>> {
    require_site(&caller, &site_id)?;
    check_site(&site_id)?;
    let now = st.clock.now();
    let at = body.sign_out_time.unwrap_or(now);
    let mut v = Validator::new();
    if domain::check_time(&mut v, at, "sign_out_time") {
        domain::check_not_future(&mut v, at, now, "sign_out_time");
    }
    v.finish()?;
    match store::sign_out(&st.pool, &site_id, attendance_id, body.sign_out_time, now).await? {
        store::SignOut::Done(a) => {
            metrics::counter!("attendance_writes_total", "kind" => "sign_out").increment(1);
            Ok(Json(a))
        }
        store::SignOut::Replayed(a) => Ok(Json(a)),
        store::SignOut::AlreadyOut(a) => Err(ApiError::conflict(
            "already-signed-out",
            "The attendance is signed out already",
        )
        .with_detail(format!(
            "signed out at {}; a different time is a correction (PATCH)",
            a.sign_out_time.map(|t| t.to_rfc3339()).unwrap_or_default()
        ))),
        store::SignOut::BeforeSignIn(a) => Err(ApiError::field(
            "sign_out_time",
            format!("is before the sign-in at {}", a.sign_in_time.to_rfc3339()),
        )),
        store::SignOut::NotFound => Err(ApiError::not_found(format!(
            "no attendance {attendance_id} at {site_id}"
        ))),
    }
}

async fn correct(
    State(st): State<AppState>,
    caller: Caller,
    Path(AttendancePath {
        site_id,
        attendance_id,
    }): Path<AttendancePath>,
    Json(body): Json<CorrectBody>,
) -> ApiResult<Json<Attendance>> {
    require_site(&caller, &site_id)?;
    check_site(&site_id)?;
    let now = st.clock.now();
    let mut v = Validator::new();
    v.check(
        body.sign_in_time.is_some() || body.sign_out_time.is_some(),
        "sign_in_time",
        "give sign_in_time, sign_out_time or both",
    );
    if let Some(t) = body.sign_in_time
        && domain::check_time(&mut v, t, "sign_in_time")
    {
        domain::check_not_future(&mut v, t, now, "sign_in_time");
    }
    if let Some(t) = body.sign_out_time
        && domain::check_time(&mut v, t, "sign_out_time")
    {
        domain::check_not_future(&mut v, t, now, "sign_out_time");
    }
    if let Some(t) = body.sign_in_time {
        domain::check_order(&mut v, t, body.sign_out_time);
    }
    v.finish()?;
    match store::correct(
        &st.pool,
        &site_id,
        attendance_id,
        body.sign_in_time,
        body.sign_out_time,
        now,
    )
    .await?
    {
        store::Correct::Done(a) => {
            metrics::counter!("attendance_writes_total", "kind" => "correct").increment(1);
            Ok(Json(a))
        }
        store::Correct::Unchanged(a) => Ok(Json(a)),
        store::Correct::OutOfOrder => Err(ApiError::field(
            "sign_out_time",
            "would be before sign_in_time",
        )),
        store::Correct::NotFound => Err(ApiError::not_found(format!(
            "no attendance {attendance_id} at {site_id}"
        ))),
    }
}

async fn delete_attendance(
    State(st): State<AppState>,
    caller: Caller,
    Path(AttendancePath {
        site_id,
        attendance_id,
    }): Path<AttendancePath>,
) -> ApiResult<NoContent> {
    require_site(&caller, &site_id)?;
    check_site(&site_id)?;
    if store::delete(&st.pool, &site_id, attendance_id, st.clock.now()).await? {
        metrics::counter!("attendance_writes_total", "kind" => "delete").increment(1);
    }
    Ok(NoContent)
}

async fn list_day(
    State(st): State<AppState>,
    caller: Caller,
    Path(SitePath { site_id }): Path<SitePath>,
    Query(q): Query<DayQuery>,
) -> ApiResult<Json<Page<Attendance>>> {
    require_site(&caller, &site_id)?;
    check_site(&site_id)?;
    let req = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .resolve::<(DateTime<Utc>, Uuid)>()?;
    let day = q.day.unwrap_or_else(|| st.clock.now().date_naive());
    let mut v = Validator::new();
    domain::check_day(&mut v, day, "day");
    check_cursor(&mut v, req.after.as_ref());
    v.finish()?;
    let (start, end) =
        domain::day_bounds(day).ok_or_else(|| ApiError::field("day", "has no end"))?;
    let mut conn = st.pool.acquire().await?;
    if !store::site_exists(&mut conn, &site_id).await? {
        return Err(site_missing(&site_id));
    }
    let rows = store::list_day(
        &mut conn,
        &site_id,
        start,
        end,
        req.after.as_ref(),
        req.fetch_limit(),
    )
    .await?;
    Ok(Json(Page::from_rows(rows, req.limit, |a: &Attendance| {
        (a.sign_in_time, a.id)
    })))
}

// ---- the stream -----------------------------------------------------------------------------

fn ticket_hash(ticket: &str) -> Vec<u8> {
    Sha256::digest(ticket.as_bytes()).to_vec()
}

async fn create_ticket(
    State(st): State<AppState>,
    caller: Caller,
    Path(SitePath { site_id }): Path<SitePath>,
) -> ApiResult<Created<TicketView>> {
    require_site(&caller, &site_id)?;
    check_site(&site_id)?;
    let mut conn = st.pool.acquire().await?;
    if !store::site_exists(&mut conn, &site_id).await? {
        return Err(site_missing(&site_id));
    }
    drop(conn);
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| ApiError::internal(&e))?;
    let ticket = URL_SAFE_NO_PAD.encode(raw);
    let ttl = chrono::Duration::from_std(st.settings.ticket_ttl).unwrap_or_default();
    let expires_at = st.clock.now() + ttl;
    store::insert_ticket(
        &st.pool,
        &ticket_hash(&ticket),
        &site_id,
        &caller.sub,
        expires_at,
    )
    .await?;
    Ok(Created(TicketView {
        stream_path: format!("/attendance/v1/sites/{site_id}/attendance/stream"),
        ticket,
        site_id,
        expires_at,
    }))
}

fn sse_event(e: &store::Event) -> SseEvent {
    SseEvent::default()
        .id(e.id.to_string())
        .event(e.kind.clone())
        .data(e.payload.to_string())
}

/// What the stream does next.
enum Phase {
    /// Sending outbox rows after `after` from the database (a resume), page by page.
    Backlog,
    /// Following the hub, skipping what the backlog or snapshot already sent.
    Live,
}

struct StreamState {
    pool: PgPool,
    site: String,
    /// The newest event id sent on this connection.
    last: i64,
    phase: Phase,
    pending: std::collections::VecDeque<store::Event>,
    live: tokio::sync::mpsc::Receiver<Arc<store::Event>>,
    /// This stream's slot among the replica's `ATTENDANCE_MAX_SUBSCRIBERS`, freed on drop.
    _slot: StreamSlot,
}

/// The live events after `st.last`: the backlog from the outbox first, then the hub's queue.
/// Ends when the hub dropped this subscriber (it did not read fast enough), or after `max_life`
/// (`ATTENDANCE_STREAM_MAX_SECS`): a ticket, stolen or not, opens streams for its TTL only, and
/// each of them then runs at most this long.
fn event_stream(
    st: StreamState,
    first: Option<SseEvent>,
    max_life: std::time::Duration,
) -> impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>> {
    let head = futures_util::stream::iter(first.map(Ok));
    let tail = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.pending.pop_front() {
                st.last = e.id;
                return Some((Ok(sse_event(&e)), st));
            }
            match st.phase {
                Phase::Backlog => {
                    let page = 500;
                    match store::events_after(&st.pool, &st.site, st.last, page).await {
                        Ok(rows) => {
                            if (rows.len() as i64) < page {
                                st.phase = Phase::Live;
                            }
                            st.pending.extend(rows);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "attendance stream: backlog read failed");
                            return None; // the client reconnects with its Last-Event-ID
                        }
                    }
                }
                Phase::Live => {
                    let e = st.live.recv().await?;
                    if e.id > st.last {
                        st.last = e.id;
                        return Some((Ok(sse_event(&e)), st));
                    }
                }
            }
        }
    });
    futures_util::StreamExt::take_until(
        futures_util::StreamExt::chain(head, tail),
        tokio::time::sleep(max_life),
    )
}

async fn stream(
    State(st): State<AppState>,
    Path(SitePath { site_id }): Path<SitePath>,
    LastEventId(header_id): LastEventId,
    Query(q): Query<StreamQuery>,
) -> ApiResult<EventStream> {
    check_site(&site_id)?;
    if q.ticket.is_empty() || q.ticket.len() > MAX_TICKET_LEN {
        return Err(ApiError::field(
            "ticket",
            format!("must be 1..={MAX_TICKET_LEN} characters"),
        ));
    }
    let now = st.clock.now();
    match store::ticket_site(&st.pool, &ticket_hash(&q.ticket), now).await? {
        Some(site) if site == site_id => {}
        Some(_) => return Err(kit::auth::forbidden()),
        None => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid-ticket",
                "Unknown or expired stream ticket",
            )
            .with_detail("get a new ticket: POST .../stream-tickets"));
        }
    }
    // The slot is taken atomically here and held by the stream until it ends (or released at
    // once if anything below fails), so concurrent opens never exceed the maximum.
    let Some(slot) = st.hub.reserve(st.settings.max_subscribers) else {
        metrics::counter!("attendance_stream_refused_total").increment(1);
        return Err(ApiError::unavailable(
            "this replica serves its maximum of streams; retry",
        ));
    };
    let resume = header_id.or(q.last_event_id);
    // A resume from before what the sweeper deleted could skip events without a trace: such a
    // stream starts over with a snapshot, as a new one does.
    let resume = match resume {
        Some(after) if after < store::swept_through(&st.pool).await? => {
            metrics::counter!("attendance_stream_resume_too_old_total").increment(1);
            None
        }
        r => r,
    };
    let (first, last, phase) = match resume {
        // A resume: everything after the client's last event, from the outbox; the hub
        // subscription taken after the backlog is read (below) covers what commits later.
        Some(after) => (None, after, Phase::Backlog),
        None => (None, 0, Phase::Live),
    };
    // Subscribe first, then read the database: an event committed in between is in both, and
    // the stream skips ids it has sent.
    let live = st
        .hub
        .subscribe(&site_id)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let (first, last) = if resume.is_none() {
        let (start, end) = domain::day_bounds(now.date_naive())
            .ok_or_else(|| ApiError::unavailable("the server's clock is out of range"))?;
        let (last, rows) = store::snapshot(&st.pool, &site_id, start, end, SNAPSHOT_CAP).await?;
        let data = serde_json::json!({
            "day": now.date_naive(),
            "attendances": rows,
            "truncated": rows.len() as i64 >= SNAPSHOT_CAP,
        });
        let ev = SseEvent::default()
            .id(last.to_string())
            .event("snapshot")
            .data(data.to_string());
        (Some(ev), last)
    } else {
        (first, last)
    };
    let state = StreamState {
        pool: st.pool.clone(),
        site: site_id,
        last,
        phase,
        pending: std::collections::VecDeque::new(),
        live,
        _slot: slot,
    };
    let sse = Sse::new(event_stream(state, first, st.settings.stream_max)).keep_alive(
        KeepAlive::new()
            .interval(st.settings.heartbeat)
            .text("heartbeat"),
    );
    let mut res = sse.into_response();
    // Proxies must not buffer the stream.
    res.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    Ok(EventStream(res))
}

/// The live page: static HTML; its data comes through the stream, with the ticket in the
/// URL's fragment (never sent to a server, never in an access log).
async fn live_page(Path(SitePath { site_id }): Path<SitePath>) -> ApiResult<Html<&'static str>> {
    check_site(&site_id)?;
    Ok(Html(include_str!("live.html")))
}

// ---- visits ---------------------------------------------------------------------------------

fn check_visit(v: &mut Validator, visit: &VisitIn, now: DateTime<Utc>, st: &Settings, at: &str) {
    domain::check_visit_time(
        v,
        visit.visited_at,
        now,
        st.retention(),
        &format!("{at}visited_at"),
    );
    domain::check_page_path(v, &visit.page_path, &format!("{at}page_path"));
}

fn to_new(v: VisitIn) -> store::NewVisit {
    store::NewVisit {
        id: v.id,
        visited_at: v.visited_at,
        visitor_id: v.visitor_id,
        page_path: v.page_path,
    }
}

async fn ingest_one(
    State(st): State<AppState>,
    caller: Caller,
    Json(body): Json<VisitIn>,
) -> ApiResult<Json<IngestView>> {
    require_any(&caller, &[SCOPE_INGEST, SCOPE_ADMIN])?;
    let mut v = Validator::new();
    check_visit(&mut v, &body, st.clock.now(), &st.settings, "");
    v.finish()?;
    let inserted = store::ingest(&st.pool, &[to_new(body)]).await?;
    metrics::counter!("attendance_visits_ingested_total").increment(inserted);
    Ok(Json(IngestView {
        received: 1,
        inserted,
    }))
}

async fn ingest_batch(
    State(st): State<AppState>,
    caller: Caller,
    Json(body): Json<VisitBatch>,
) -> ApiResult<Json<IngestView>> {
    require_any(&caller, &[SCOPE_INGEST, SCOPE_ADMIN])?;
    let mut v = Validator::new();
    v.check(
        (1..=MAX_BATCH).contains(&body.visits.len()),
        "visits",
        format!("must hold 1..={MAX_BATCH} visits"),
    );
    let now = st.clock.now();
    for (i, visit) in body.visits.iter().enumerate().take(MAX_BATCH) {
        check_visit(&mut v, visit, now, &st.settings, &format!("visits[{i}]."));
    }
    v.finish()?;
    let received = body.visits.len() as u64;
    let visits: Vec<store::NewVisit> = body.visits.into_iter().map(to_new).collect();
    let inserted = store::ingest(&st.pool, &visits).await?;
    metrics::counter!("attendance_visits_ingested_total").increment(inserted);
    Ok(Json(IngestView { received, inserted }))
}

async fn list_visits(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<VisitsQuery>,
) -> ApiResult<Json<Page<VisitView>>> {
    require_any(&caller, &[SCOPE_READ, SCOPE_ADMIN])?;
    let req = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .resolve::<(DateTime<Utc>, Uuid)>()?;
    let mut v = Validator::new();
    let from_ok = q.from.is_none_or(|t| domain::check_time(&mut v, t, "from"));
    let to_ok = q.to.is_none_or(|t| domain::check_time(&mut v, t, "to"));
    if let (Some(from), Some(to)) = (q.from, q.to)
        && from_ok
        && to_ok
    {
        v.check(from <= to, "from", "is after to");
    }
    check_cursor(&mut v, req.after.as_ref());
    v.finish()?;
    let filter = store::VisitFilter {
        visitor_id: q.visitor_id,
        from: q.from,
        to: q.to,
    };
    let rows = store::visits(&st.pool, &filter, req.after.as_ref(), req.fetch_limit()).await?;
    let views = rows.into_iter().map(VisitView::from).collect();
    Ok(Json(Page::from_rows(views, req.limit, |v: &VisitView| {
        (v.visited_at, v.id)
    })))
}

async fn get_visitor(
    State(st): State<AppState>,
    caller: Caller,
    Path(VisitorPath { visitor_id }): Path<VisitorPath>,
    Query(q): Query<VisitorQuery>,
) -> ApiResult<Json<VisitorPage>> {
    require_any(&caller, &[SCOPE_READ, SCOPE_ADMIN])?;
    let req = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .resolve::<(DateTime<Utc>, Uuid)>()?;
    let mut v = Validator::new();
    check_cursor(&mut v, req.after.as_ref());
    v.finish()?;
    let visitor = store::visitor(&st.pool, visitor_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no visitor {visitor_id}")))?;
    let filter = store::VisitFilter {
        visitor_id: Some(visitor_id),
        ..Default::default()
    };
    let rows = store::visits(&st.pool, &filter, req.after.as_ref(), req.fetch_limit()).await?;
    let views = rows.into_iter().map(VisitView::from).collect();
    Ok(Json(VisitorPage {
        visitor: VisitorView {
            id: visitor.id,
            first_visit_at: visitor.first_visit_at,
            last_visit_at: visitor.last_visit_at,
            visits: visitor.visits,
        },
        visits: Page::from_rows(views, req.limit, |v: &VisitView| (v.visited_at, v.id)),
    }))
}

/// All routes, under `/attendance/v1`.
pub fn routes(state: AppState) -> ApiRouter {
    let staff: &[&str] = &[SCOPE_ADMIN];
    ApiRouter::new()
        .api_route(
            "/attendance/v1/sites/{site_id}",
            put_with(put_site, |op| {
                requires(
                    op.summary("Register or rename a site (idempotent)"),
                    None,
                    &[SCOPE_ADMIN],
                )
            }),
        )
        .api_route(
            "/attendance/v1/sites/{site_id}/attendance",
            post_with(sign_in, |op| {
                let op = op.summary("Sign a child in").description(
                    "201 with the new attendance; 200 for a retry (same id, child and site); \
                     409 when the child is signed in already; 404 for an unknown site.",
                );
                requires(op, SITE_STAFF, staff)
            })
            .get_with(list_day, |op| {
                requires(
                    op.summary("A site's attendance of one day"),
                    SITE_STAFF,
                    staff,
                )
            }),
        )
        .api_route(
            "/attendance/v1/sites/{site_id}/attendance/{attendance_id}/sign-out",
            post_with(sign_out, |op| {
                let op = op.summary("Sign a child out").description(
                    "A retry with the same time, or without a time, answers 200 with the \
                     stored attendance; another time is 409 (a correction is a PATCH); a time \
                     before the sign-in is 400 naming sign_out_time.",
                );
                requires(op, SITE_STAFF, staff)
            }),
        )
        .api_route(
            "/attendance/v1/sites/{site_id}/attendance/{attendance_id}",
            patch_with(correct, |op| {
                let op = op.summary("Correct an attendance's times").description(
                    "Sets sign_in_time and/or sign_out_time; the sign-out never precedes the \
                     sign-in. A retry changes nothing more.",
                );
                requires(op, SITE_STAFF, staff)
            })
            .delete_with(delete_attendance, |op| {
                requires(
                    op.summary("Delete an attendance (idempotent)"),
                    SITE_STAFF,
                    staff,
                )
            }),
        )
        .api_route(
            "/attendance/v1/sites/{site_id}/stream-tickets",
            post_with(create_ticket, |op| {
                let op = op
                    .summary("A short-lived ticket for the site's stream")
                    .description(
                        "An EventSource cannot send Authorization: the page asks for a ticket with \
                     its bearer token and opens the stream with ?ticket=.",
                    );
                requires(op, SITE_STAFF, staff)
            }),
        )
        .api_route(
            "/attendance/v1/sites/{site_id}/attendance/stream",
            get_with(stream, |op| {
                public(
                    op.summary("The site's live attendance feed (Server-Sent Events)")
                        .description(
                            "401 for an unknown or expired ticket, 403 for another site's; \
                             503 while this replica serves ATTENDANCE_MAX_SUBSCRIBERS streams. \
                             The server ends the stream ATTENDANCE_STREAM_MAX_SECS after it \
                             opened; reconnecting needs a ticket that is still valid.",
                        ),
                    "authorised by a stream ticket (?ticket=) of this site, which only staff of \
                     the site or an admin can get",
                )
            }),
        )
        .api_route(
            "/attendance/v1/sites/{site_id}/live",
            get_with(live_page, |op| {
                public(
                    op.summary("The live attendance page (HTML)"),
                    "a static page without data; it reads the stream with a ticket",
                )
            }),
        )
        .api_route(
            "/attendance/v1/visits",
            post_with(ingest_one, |op| {
                requires(
                    op.summary("Ingest one visit (idempotent by id)"),
                    None,
                    &[SCOPE_INGEST, SCOPE_ADMIN],
                )
            })
            .get_with(list_visits, |op| {
                requires(
                    op.summary("Recent visits with their visitor, newest first (keyset)"),
                    None,
                    &[SCOPE_READ, SCOPE_ADMIN],
                )
            }),
        )
        .api_route(
            "/attendance/v1/visits/batch",
            post_with(ingest_batch, |op| {
                requires(
                    op.summary("Ingest up to 1,000 visits (idempotent by id)"),
                    None,
                    &[SCOPE_INGEST, SCOPE_ADMIN],
                )
            }),
        )
        .api_route(
            "/attendance/v1/visitors/{visitor_id}",
            get_with(get_visitor, |op| {
                requires(
                    op.summary("A visitor and their visits, newest first (keyset)"),
                    None,
                    &[SCOPE_READ, SCOPE_ADMIN],
                )
            }),
        )
        .with_state(state)
}
