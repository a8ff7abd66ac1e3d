//! HTTP layer: request/response types (documented in OpenAPI through schemars), validation,
//! who may call what, and the mapping of domain refusals to status codes.
//!
//! Callers (docs/security.md):
//! - a learner: a token whose `sub` is the `{user_id}` of the path, on their own playlists,
//!   sessions and share links only (or a token with `playlists:user-<user_id>`: one user's
//!   rights for a service client, the SLO probe's `playlists:user-slo-probe`);
//! - `playlists:admin`: any user's routes (support tooling);
//! - `playlists:analytics`: the analytics routes (the data team's dashboards);
//! - public: the catalogue (content, no user data) and a shared playlist's read-only view
//!   (public by design: whoever holds the link; it carries no user id).

use std::{marker::PhantomData, sync::Arc};

use aide::{
    OperationInput, OperationOutput,
    axum::{
        ApiRouter,
        routing::{delete_with, get_with, post_with, put_with},
    },
    generate::GenContext,
    openapi::{Operation, Response as DocResponse, StatusCode as DocStatus},
};
use axum::{
    extract::{FromRequestParts, State},
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use kit::{
    ApiError, ApiResult, Caller, IdempotencyKey, Json, Path, Query, Validator,
    auth::{public, requires},
    clock::Clock,
    pagination::{Page, PageQuery},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::{
    Settings,
    domain::{self, Channel, Event, Playlist, Reason, Refusal, rotation},
    generate::hex,
    store::{self, Lesson},
};

/// Any user's routes (support tooling).
pub const SCOPE_ADMIN: &str = "playlists:admin";
/// The analytics routes.
pub const SCOPE_ANALYTICS: &str = "playlists:analytics";
/// `playlists:user-<user id>`: acts as that one user (the SLO probe's `playlists:user-slo-probe`:
/// a client-credentials token's `sub` is the client's id, not a user id).
pub const USER_SCOPE_PREFIX: &str = "playlists:user-";

const OWNER: Option<&str> =
    Some("the user in the path (sub = user_id, or scope playlists:user-<user_id>)");
const ADMIN: &[&str] = &[SCOPE_ADMIN];
const ANALYTICS: &[&str] = &[SCOPE_ANALYTICS, SCOPE_ADMIN];

/// Longest share token accepted in a path (ours are 43 characters).
const MAX_TOKEN_LEN: usize = 128;
/// The widest analytics date range.
const MAX_RANGE_DAYS: i64 = 731;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
}

// ---- request and response types -------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
pub struct UserPath {
    /// 1..=64 of letters, digits and `- _ . :`.
    pub user_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct PlaylistPath {
    pub user_id: String,
    pub playlist_id: Uuid,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ItemPath {
    pub user_id: String,
    pub playlist_id: Uuid,
    pub lesson_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SharePath {
    pub user_id: String,
    pub playlist_id: Uuid,
    pub share_id: Uuid,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TokenPath {
    pub token: String,
}

/// Body of a playlist creation.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// 1..=100 characters.
    pub name: String,
    /// Make it the default playlist (the user's first playlist is the default anyway).
    pub default: Option<bool>,
}

/// Body of a rename.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameBody {
    /// 1..=100 characters.
    pub name: String,
}

/// Body of an add.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddBody {
    /// A lesson of the catalogue.
    pub lesson_id: String,
    /// 0-based; the end by default.
    pub position: Option<u32>,
}

/// Body of a reorder.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    /// The lesson's new 0-based position.
    pub position: u32,
}

/// Parameters of a removal: the reason is required.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveQuery {
    /// mastered, too_hard, too_easy, bored, not_my_style or other.
    pub reason: Option<String>,
    /// Free text, 1..=500 characters; required when the reason is `other`.
    pub note: Option<String>,
}

/// Body of a share link creation.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareBody {
    /// Where the link will be posted (recorded on the share event, like a utm_source).
    pub channel: Channel,
    /// RFC 3339 (years 1970..=9999); no expiry by default. In the future, within
    /// PLAYLISTS_SHARE_MAX_DAYS.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Body of a practice session.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionBody {
    pub lesson_id: String,
    /// 0..=1.
    pub accuracy: f32,
    /// 1..=86400.
    pub duration_secs: u32,
    /// RFC 3339 (years 1970..=9999), when it was played; now by default. At most 5 minutes
    /// ahead, 30 days back.
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LessonQuery {
    pub instrument: Option<String>,
    pub genre: Option<String>,
    /// Page size, 1..=100 (default 20).
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// A date range of the analytics, inclusive (UTC days).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    /// `YYYY-MM-DD` (years 1970..=9999); 90 days before `to` by default.
    pub from: Option<NaiveDate>,
    /// `YYYY-MM-DD` (years 1970..=9999); today by default.
    pub to: Option<NaiveDate>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemovalQuery {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    /// Lessons per page, 1..=100 (default 20).
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// One lesson of a playlist.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ItemView {
    pub position: u32,
    pub lesson_id: String,
    pub title: String,
    pub instrument: String,
    pub genre: String,
    pub difficulty: i32,
    pub duration_secs: i32,
    pub added_at: DateTime<Utc>,
}

/// A playlist (its `version` is also the ETag; send it as If-Match).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PlaylistView {
    pub id: Uuid,
    pub name: String,
    pub is_default: bool,
    pub version: i64,
    pub lessons: Vec<ItemView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new share link: the token is shown once (only its hash is stored).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ShareCreated {
    pub id: Uuid,
    /// The link's token; `null` in a replay (an Idempotency-Key retry): the token is shown
    /// once and never stored, so a lost answer means revoking the link and creating another.
    pub token: Option<String>,
    /// The public view: `GET` it without a token (`null` in a replay, like the token).
    pub path: Option<String>,
    pub channel: Channel,
    pub expires_at: Option<DateTime<Utc>>,
    /// Present in a replay only: why the token is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What a replay of a share creation says instead of the token.
pub const TOKEN_SHOWN_ONCE: &str = "the token is shown once (only its SHA-256 is stored): \
     revoke this share and create another to get a new link";

/// A share link, without its token.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ShareView {
    pub id: Uuid,
    pub channel: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub opens: i64,
}

/// One lesson of a shared playlist.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct SharedLesson {
    pub lesson_id: String,
    pub title: String,
    pub instrument: String,
    pub genre: String,
    pub difficulty: i32,
    pub duration_secs: i32,
}

/// The public view of a shared playlist: no user id, no dates of practice, no scores.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct SharedView {
    pub name: String,
    pub lessons: Vec<SharedLesson>,
}

/// What to practise next.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NextView {
    /// Absent when nothing is left (an empty or fully mastered playlist).
    pub lesson: Option<ItemView>,
    pub reason: rotation::Why,
    pub explanation: String,
    /// The lessons set aside, and why.
    pub skipped: Vec<SkippedView>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SkippedView {
    pub lesson_id: String,
    pub why: rotation::Skip,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ReasonCount {
    pub reason: Reason,
    pub count: i64,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct LessonRemovals {
    pub lesson_id: String,
    /// Absent when the lesson left the catalogue.
    pub title: Option<String>,
    pub total: i64,
    pub reasons: Vec<ReasonCount>,
}

/// Why lessons were removed over a date range.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RemovalsView {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub total: i64,
    /// Every reason, with zeroes.
    pub overall: Vec<ReasonCount>,
    /// Lessons with at least one removal, by id (keyset).
    pub lessons: Page<LessonRemovals>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ChannelCount {
    pub channel: Channel,
    pub shares: i64,
    /// Opens of links shared on this channel, counted on the day of the open.
    pub opens: i64,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct SharesView {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub shares: i64,
    pub opens: i64,
    /// Every channel, with zeroes.
    pub channels: Vec<ChannelCount>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema)]
pub struct Group {
    pub users: i64,
    pub retained: i64,
    /// retained / users; absent for an empty group.
    pub rate: Option<f64>,
}

impl Group {
    fn new(users: i64, retained: i64) -> Self {
        Self {
            users,
            retained,
            rate: (users > 0).then(|| retained as f64 / users as f64),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct CohortView {
    /// The Monday of the cohort week (UTC).
    pub week: NaiveDate,
    /// Whether weeks N+1..N+4 are over (an incomplete cohort's retention can still rise).
    pub complete: bool,
    /// Users who used playlists in their first week.
    pub playlist_users: Group,
    pub other_users: Group,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct RetentionView {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub cohorts: Vec<CohortView>,
    /// The complete cohorts together.
    pub playlist_users: Group,
    pub other_users: Group,
    /// playlist_users.rate - other_users.rate over the complete cohorts.
    pub difference: Option<f64>,
    /// Approximate 95% interval of that difference (normal approximation; absent below 30
    /// users a group).
    pub difference_ci95: Option<[f64; 2]>,
    pub note: String,
}

// ---- answers, If-Match, idempotency ----------------------------------------------------------

/// A command's answer: status and JSON body (the playlist's version as ETag), replayed
/// verbatim for a retry with the same Idempotency-Key.
pub struct Answer<T, const S: u16> {
    status: StatusCode,
    body: Value,
    replayed: bool,
    _t: PhantomData<fn() -> T>,
}

impl<T, const S: u16> IntoResponse for Answer<T, S> {
    fn into_response(self) -> Response {
        let mut res = if self.status == StatusCode::NO_CONTENT {
            self.status.into_response()
        } else {
            (self.status, axum::Json(&self.body)).into_response()
        };
        if let Some(v) = self.body.get("version").and_then(Value::as_i64)
            && let Ok(h) = HeaderValue::from_str(&format!("\"{v}\""))
        {
            res.headers_mut().insert(header::ETAG, h);
        }
        if self.replayed {
            res.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        res
    }
}

impl<T: JsonSchema, const S: u16> OperationOutput for Answer<T, S> {
    type Inner = T;
    fn operation_response(ctx: &mut GenContext, op: &mut Operation) -> Option<DocResponse> {
        if S == 204 {
            return Some(DocResponse {
                description: "No content".into(),
                ..Default::default()
            });
        }
        axum::Json::<T>::operation_response(ctx, op)
    }
    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        Self::operation_response(ctx, op)
            .map(|r| vec![(Some(DocStatus::Code(S)), r)])
            .unwrap_or_default()
    }
}

/// A read with the playlist's version as ETag.
pub struct Tagged<T>(T, i64);

impl<T: Serialize> IntoResponse for Tagged<T> {
    fn into_response(self) -> Response {
        let mut res = axum::Json(self.0).into_response();
        if let Ok(h) = HeaderValue::from_str(&format!("\"{}\"", self.1)) {
            res.headers_mut().insert(header::ETAG, h);
        }
        res
    }
}

impl<T: JsonSchema> OperationOutput for Tagged<T> {
    type Inner = T;
    fn operation_response(ctx: &mut GenContext, op: &mut Operation) -> Option<DocResponse> {
        axum::Json::<T>::operation_response(ctx, op)
    }
    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        axum::Json::<T>::inferred_responses(ctx, op)
    }
}

/// The `If-Match` request header: the playlist version the client last saw (`"3"`, `W/"3"`
/// or `3`).
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(v) = parts.headers.get(header::IF_MATCH) else {
            return Ok(Self(None));
        };
        v.to_str()
            .ok()
            .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|n| *n > 0)
            .map(|n| Self(Some(n)))
            .ok_or_else(|| ApiError::field("If-Match", "must be the playlist's ETag, e.g. \"3\""))
    }
}

impl OperationInput for IfMatch {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        use aide::openapi::{
            HeaderStyle, Parameter, ParameterData, ParameterSchemaOrContent, SchemaObject,
        };
        let schema = ctx.schema.subschema_for::<String>();
        aide::operation::add_parameters(
            ctx,
            operation,
            [Parameter::Header {
                parameter_data: ParameterData {
                    name: "If-Match".into(),
                    description: Some(
                        "The playlist's ETag (its version): a stale one is refused with 412."
                            .into(),
                    ),
                    required: false,
                    format: ParameterSchemaOrContent::Schema(SchemaObject {
                        json_schema: schema,
                        example: None,
                        external_docs: None,
                    }),
                    extensions: Default::default(),
                    deprecated: None,
                    example: None,
                    examples: Default::default(),
                    explode: None,
                },
                style: HeaderStyle::Simple,
            }],
        );
    }
}

/// A command in progress: its transaction (the user's lock held) and its Idempotency-Key.
struct Command {
    tx: Transaction<'static, Postgres>,
    user: String,
    key: Option<(String, Vec<u8>)>,
    now: DateTime<Utc>,
    /// The types of the events recorded, counted in `playlists_events_total` once committed.
    recorded: Vec<&'static str>,
}

enum Begun {
    Fresh(Command),
    Replay(u16, Value),
}

impl Command {
    /// Opens the command's transaction; a key seen before answers what it answered then.
    async fn begin(
        st: &AppState,
        user: &str,
        key: Option<String>,
        request: &Value,
    ) -> ApiResult<Begun> {
        let mut tx = store::begin_user(&st.pool, user).await?;
        let key = key.map(|k| (k, Sha256::digest(request.to_string().as_bytes()).to_vec()));
        if let Some((k, fp)) = &key
            && let Some(r) = store::remembered(&mut tx, user, k).await?
        {
            if &r.fingerprint != fp {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency-key-reused",
                    "This Idempotency-Key was used for another request",
                )
                .with_detail("use a new key for a new request"));
            }
            return Ok(Begun::Replay(r.status, r.body));
        }
        Ok(Begun::Fresh(Self {
            tx,
            user: user.to_owned(),
            key,
            now: st.clock.now(),
            recorded: Vec::new(),
        }))
    }

    async fn record(&mut self, event: Event) -> ApiResult<()> {
        let kind = event.kind();
        store::record(&mut self.tx, &self.user, self.now, event).await?;
        self.recorded.push(kind);
        Ok(())
    }

    /// The user's playlist `id` (404 for another user's, or none).
    async fn playlist(&mut self, id: Uuid, if_match: Option<i64>) -> ApiResult<Playlist> {
        let p = store::playlist(&mut self.tx, id)
            .await?
            .filter(|p| p.user_id == self.user)
            .ok_or_else(|| playlist_missing(id))?;
        domain::check_version(&p, if_match).map_err(refused)?;
        Ok(p)
    }

    /// Remembers the answer under the key and commits.
    async fn finish<T: Serialize, const S: u16>(self, body: &T) -> ApiResult<Answer<T, S>> {
        self.finish_remembering(body, body).await
    }

    /// Commits answering `body`, remembering `remembered` under the key instead (an answer
    /// with a secret in it, e.g. a share token, is remembered without it).
    async fn finish_remembering<T: Serialize, R: Serialize, const S: u16>(
        mut self,
        body: &T,
        remembered: &R,
    ) -> ApiResult<Answer<T, S>> {
        let body = serde_json::to_value(body).map_err(|e| ApiError::internal(&e))?;
        if let Some((k, fp)) = self.key.take() {
            let r = store::Remembered {
                fingerprint: fp,
                status: S,
                body: serde_json::to_value(remembered).map_err(|e| ApiError::internal(&e))?,
            };
            store::remember(&mut self.tx, &self.user, &k, &r, self.now).await?;
        }
        self.tx.commit().await?;
        // Counted only once they are in the log (a rolled-back command appended nothing).
        for kind in self.recorded {
            metrics::counter!("playlists_events_total", "type" => kind).increment(1);
        }
        Ok(Answer {
            status: StatusCode::from_u16(S).unwrap_or(StatusCode::OK),
            body,
            replayed: false,
            _t: PhantomData,
        })
    }
}

fn replay<T, const S: u16>(status: u16, body: Value) -> Answer<T, S> {
    Answer {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        body,
        replayed: true,
        _t: PhantomData,
    }
}

/// Starts a command, or returns the replayed answer.
macro_rules! begin {
    ($st:expr, $user:expr, $key:expr, $req:expr) => {
        match Command::begin($st, $user, $key, &$req).await? {
            Begun::Fresh(c) => c,
            Begun::Replay(s, b) => return Ok(replay(s, b)),
        }
    };
}

fn playlist_missing(id: Uuid) -> ApiError {
    ApiError::not_found(format!("no playlist {id}"))
}

fn refused(r: Refusal) -> ApiError {
    match r {
        Refusal::Stale { current } => ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "stale-version",
            "The playlist changed since you read it",
        )
        .with_detail(format!(
            "If-Match is not the current version {current}; read the playlist again"
        ))
        .with_extension("current_version", current),
        Refusal::Duplicate => ApiError::conflict(
            "already-in-playlist",
            "The lesson is in the playlist already",
        ),
        Refusal::Full { max } => ApiError::conflict("playlist-full", "The playlist is full")
            .with_detail(format!("a playlist holds at most {max} lessons")),
        Refusal::NotInPlaylist => ApiError::not_found("the lesson is not in this playlist"),
        Refusal::Invalid { field, message } => ApiError::field(field, message),
        Refusal::TooManyPlaylists { max } => {
            ApiError::conflict("too-many-playlists", "Too many playlists")
                .with_detail(format!("a user has at most {max} playlists"))
        }
    }
}

/// A cursor is opaque but not signed: its time must pass the same year bounds as any input
/// (a forged extreme time reached PostgreSQL and answered 500).
fn check_cursor_time(after: Option<&(DateTime<Utc>, Uuid)>) -> ApiResult<()> {
    match after {
        Some((t, _)) if !domain::time_in_years(*t) => Err(ApiError::field(
            "cursor",
            format!("its time {}", domain::years_message()),
        )),
        _ => Ok(()),
    }
}

fn check_user(caller: &Caller, user: &str) -> ApiResult<()> {
    if !caller.has_scope(&format!("{USER_SCOPE_PREFIX}{user}")) {
        caller.require_user(user, ADMIN)?;
    }
    let mut v = Validator::new();
    check_id(&mut v, user, "user_id");
    v.finish()
}

fn check_id(v: &mut Validator, value: &str, field: &str) {
    v.check(
        domain::valid_id(value),
        field,
        "must be 1..=64 of letters, digits and - _ . :",
    );
}

/// The view of a playlist, with its lessons' catalogue data.
async fn view(conn: &mut sqlx::PgConnection, p: &Playlist) -> ApiResult<PlaylistView> {
    let ids: Vec<String> = p.items.iter().map(|i| i.lesson_id.clone()).collect();
    let lessons = store::lessons_by_id(conn, &ids).await?;
    let lessons = p
        .items
        .iter()
        .enumerate()
        .filter_map(|(n, i)| {
            let l = lessons.iter().find(|l| l.id == i.lesson_id)?;
            Some(ItemView {
                position: n as u32,
                lesson_id: l.id.clone(),
                title: l.title.clone(),
                instrument: l.instrument.clone(),
                genre: l.genre.clone(),
                difficulty: l.difficulty,
                duration_secs: l.duration_secs,
                added_at: i.added_at,
            })
        })
        .collect();
    Ok(PlaylistView {
        id: p.id,
        name: p.name.clone(),
        is_default: p.is_default,
        version: p.version,
        lessons,
        created_at: p.created_at,
        updated_at: p.updated_at,
    })
}

async fn view_after(c: &mut Command, id: Uuid) -> ApiResult<PlaylistView> {
    let p = store::playlist(&mut c.tx, id)
        .await?
        .ok_or_else(|| playlist_missing(id))?;
    view(&mut c.tx, &p).await
}

// ---- catalogue --------------------------------------------------------------------------------

async fn list_lessons(
    State(st): State<AppState>,
    Query(q): Query<LessonQuery>,
) -> ApiResult<Json<Page<Lesson>>> {
    let req = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .resolve::<String>()?;
    let mut v = Validator::new();
    for (f, val) in [("instrument", &q.instrument), ("genre", &q.genre)] {
        if let Some(s) = val {
            check_id(&mut v, s, f);
        }
    }
    v.finish()?;
    let filter = store::LessonFilter {
        instrument: q.instrument,
        genre: q.genre,
    };
    let rows = store::lessons(&st.pool, &filter, req.after.as_ref(), req.fetch_limit()).await?;
    Ok(Json(Page::from_rows(rows, req.limit, |l: &Lesson| {
        l.id.clone()
    })))
}

// ---- playlists ----------------------------------------------------------------------------------

async fn create(
    State(st): State<AppState>,
    caller: Caller,
    Path(UserPath { user_id }): Path<UserPath>,
    IdempotencyKey(key): IdempotencyKey,
    Json(body): Json<CreateBody>,
) -> ApiResult<Answer<PlaylistView, 201>> {
    check_user(&caller, &user_id)?;
    let mut v = Validator::new();
    v.text(&body.name, "name", domain::MAX_NAME_LEN);
    v.finish()?;
    let req = json!({"op": "create", "user": user_id, "body": body});
    let mut c = begin!(&st, &user_id, key, req);
    let existing = store::playlist_ids(&mut c.tx, &user_id).await?;
    if existing.len() >= st.settings.max_per_user {
        return Err(refused(Refusal::TooManyPlaylists {
            max: st.settings.max_per_user,
        }));
    }
    let id = Uuid::now_v7();
    c.record(Event::PlaylistCreated {
        playlist_id: id,
        name: body.name.trim().to_owned(),
        default: existing.is_empty() || body.default.unwrap_or(false),
    })
    .await?;
    let view = view_after(&mut c, id).await?;
    c.finish(&view).await
}

async fn list_playlists(
    State(st): State<AppState>,
    caller: Caller,
    Path(UserPath { user_id }): Path<UserPath>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<store::PlaylistSummary>>> {
    check_user(&caller, &user_id)?;
    let req = q.resolve::<(DateTime<Utc>, Uuid)>()?;
    check_cursor_time(req.after.as_ref())?;
    let rows =
        store::list_playlists(&st.pool, &user_id, req.after.as_ref(), req.fetch_limit()).await?;
    Ok(Json(Page::from_rows(
        rows,
        req.limit,
        |p: &store::PlaylistSummary| (p.created_at, p.id),
    )))
}

/// The user's playlist, read outside a command (no lock: a plain read).
async fn read_playlist(st: &AppState, user: &str, id: Uuid) -> ApiResult<(Playlist, PlaylistView)> {
    let mut conn = st.pool.acquire().await?;
    let p = store::playlist_unlocked(&mut conn, id)
        .await?
        .filter(|p| p.user_id == user)
        .ok_or_else(|| playlist_missing(id))?;
    let v = view(&mut conn, &p).await?;
    Ok((p, v))
}

async fn get_playlist(
    State(st): State<AppState>,
    caller: Caller,
    Path(PlaylistPath {
        user_id,
        playlist_id,
    }): Path<PlaylistPath>,
) -> ApiResult<Tagged<PlaylistView>> {
    check_user(&caller, &user_id)?;
    let (p, v) = read_playlist(&st, &user_id, playlist_id).await?;
    Ok(Tagged(v, p.version))
}

async fn rename(
    State(st): State<AppState>,
    caller: Caller,
    Path(PlaylistPath {
        user_id,
        playlist_id,
    }): Path<PlaylistPath>,
    IfMatch(if_match): IfMatch,
    IdempotencyKey(key): IdempotencyKey,
    Json(body): Json<RenameBody>,
) -> ApiResult<Answer<PlaylistView, 200>> {
    check_user(&caller, &user_id)?;
    let mut v = Validator::new();
    v.text(&body.name, "name", domain::MAX_NAME_LEN);
    v.finish()?;
    let req = json!({"op": "rename", "user": user_id, "playlist": playlist_id, "body": body});
    let mut c = begin!(&st, &user_id, key, req);
    c.playlist(playlist_id, if_match).await?;
    c.record(Event::PlaylistRenamed {
        playlist_id,
        name: body.name.trim().to_owned(),
    })
    .await?;
    let view = view_after(&mut c, playlist_id).await?;
    c.finish(&view).await
}

async fn delete_playlist(
    State(st): State<AppState>,
    caller: Caller,
    Path(PlaylistPath {
        user_id,
        playlist_id,
    }): Path<PlaylistPath>,
    IfMatch(if_match): IfMatch,
    IdempotencyKey(key): IdempotencyKey,
) -> ApiResult<Answer<(), 204>> {
    check_user(&caller, &user_id)?;
    let req = json!({"op": "delete", "user": user_id, "playlist": playlist_id});
    let mut c = begin!(&st, &user_id, key, req);
    let p = c.playlist(playlist_id, if_match).await?;
    let others = store::playlist_ids(&mut c.tx, &user_id).await?;
    c.record(domain::decide_delete(&p, &others)).await?;
    c.finish(&()).await
}

async fn add_lesson(
    State(st): State<AppState>,
    caller: Caller,
    Path(PlaylistPath {
        user_id,
        playlist_id,
    }): Path<PlaylistPath>,
    IfMatch(if_match): IfMatch,
    IdempotencyKey(key): IdempotencyKey,
    Json(body): Json<AddBody>,
) -> ApiResult<Answer<PlaylistView, 201>> {
    check_user(&caller, &user_id)?;
    let mut v = Validator::new();
    check_id(&mut v, &body.lesson_id, "lesson_id");
    v.finish()?;
    let req = json!({"op": "add", "user": user_id, "playlist": playlist_id, "body": body});
    let mut c = begin!(&st, &user_id, key, req);
    let p = c.playlist(playlist_id, if_match).await?;
    if !store::lesson_exists(&mut c.tx, &body.lesson_id).await? {
        return Err(ApiError::field(
            "lesson_id",
            "is not a lesson of the catalogue",
        ));
    }
    let e = domain::decide_add(&p, &body.lesson_id, body.position, st.settings.max_size)
        .map_err(refused)?;
    c.record(e).await?;
    let view = view_after(&mut c, playlist_id).await?;
    c.finish(&view).await
}

async fn move_lesson(
    State(st): State<AppState>,
    caller: Caller,
    Path(ItemPath {
        user_id,
        playlist_id,
        lesson_id,
    }): Path<ItemPath>,
    IfMatch(if_match): IfMatch,
    IdempotencyKey(key): IdempotencyKey,
    Json(body): Json<MoveBody>,
) -> ApiResult<Answer<PlaylistView, 200>> {
    check_user(&caller, &user_id)?;
    let mut v = Validator::new();
    check_id(&mut v, &lesson_id, "lesson_id");
    v.finish()?;
    let Some(if_match) = if_match else {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "if-match-required",
            "A reorder needs If-Match",
        )
        .with_detail("send the playlist's ETag (its version) as If-Match"));
    };
    let req = json!({"op": "move", "user": user_id, "playlist": playlist_id,
                     "lesson": lesson_id, "version": if_match, "body": body});
    let mut c = begin!(&st, &user_id, key, req);
    let p = c.playlist(playlist_id, Some(if_match)).await?;
    let e = domain::decide_move(&p, &lesson_id, body.position).map_err(refused)?;
    c.record(e).await?;
    let view = view_after(&mut c, playlist_id).await?;
    c.finish(&view).await
}

async fn remove_lesson(
    State(st): State<AppState>,
    caller: Caller,
    Path(ItemPath {
        user_id,
        playlist_id,
        lesson_id,
    }): Path<ItemPath>,
    IfMatch(if_match): IfMatch,
    IdempotencyKey(key): IdempotencyKey,
    Query(query): Query<RemoveQuery>,
) -> ApiResult<Answer<PlaylistView, 200>> {
    check_user(&caller, &user_id)?;
    let mut v = Validator::new();
    check_id(&mut v, &lesson_id, "lesson_id");
    let allowed = "mastered, too_hard, too_easy, bored, not_my_style or other";
    let reason = match query.reason.as_deref() {
        None | Some("") => {
            v.push("reason", format!("is required: one of {allowed}"));
            None
        }
        Some(r) => {
            let parsed = Reason::parse(r);
            v.check(
                parsed.is_some(),
                "reason",
                format!("must be one of {allowed}"),
            );
            parsed
        }
    };
    if let Some(n) = &query.note {
        v.text(n, "note", domain::MAX_NOTE_LEN);
    }
    v.finish()?;
    let Some(reason) = reason else {
        return Err(ApiError::field("reason", "is required"));
    };
    let req = json!({"op": "remove", "user": user_id, "playlist": playlist_id,
                     "lesson": lesson_id, "query": query});
    let mut cmd = begin!(&st, &user_id, key, req);
    let p = cmd.playlist(playlist_id, if_match).await?;
    let e =
        domain::decide_remove(&p, &lesson_id, reason, query.note.as_deref()).map_err(refused)?;
    cmd.record(e).await?;
    let view = view_after(&mut cmd, playlist_id).await?;
    cmd.finish(&view).await
}

async fn next(
    State(st): State<AppState>,
    caller: Caller,
    Path(PlaylistPath {
        user_id,
        playlist_id,
    }): Path<PlaylistPath>,
) -> ApiResult<Json<NextView>> {
    check_user(&caller, &user_id)?;
    let (p, view) = read_playlist(&st, &user_id, playlist_id).await?;
    let now = st.clock.now();
    let lessons: Vec<String> = view.lessons.iter().map(|l| l.lesson_id.clone()).collect();
    let rule = st.settings.rule();
    let mut conn = st.pool.acquire().await?;
    let (history, today) = store::rotation_history(
        &mut conn,
        &user_id,
        &lessons,
        i64::try_from(rule.window + 1).unwrap_or(4),
        domain::day_bounds(now.date_naive()).0,
        now,
    )
    .await?;
    drop(p);
    let choice = rotation::next(&lessons, &history, Some(&today), now, rule);
    Ok(Json(NextView {
        lesson: choice.index.map(|i| view.lessons[i].clone()),
        reason: choice.why,
        explanation: choice.explanation,
        skipped: choice
            .skipped
            .iter()
            .map(|(i, why)| SkippedView {
                lesson_id: lessons[*i].clone(),
                why: *why,
            })
            .collect(),
    }))
}

// ---- practice sessions ----------------------------------------------------------------------

async fn record_session(
    State(st): State<AppState>,
    caller: Caller,
    Path(UserPath { user_id }): Path<UserPath>,
    IdempotencyKey(key): IdempotencyKey,
    Json(body): Json<SessionBody>,
) -> ApiResult<Answer<store::Session, 201>> {
    check_user(&caller, &user_id)?;
    let now = st.clock.now();
    let at = body.at.unwrap_or(now);
    if !domain::time_in_years(at) {
        return Err(ApiError::field("at", domain::years_message()));
    }
    let mut v = Validator::new();
    check_id(&mut v, &body.lesson_id, "lesson_id");
    v.check(
        (0.0..=1.0).contains(&body.accuracy),
        "accuracy",
        "must be between 0 and 1",
    );
    v.range(body.duration_secs, "duration_secs", 1..=86_400);
    v.check(
        at <= now + Duration::minutes(5) && at >= now - Duration::days(30),
        "at",
        "must be within the last 30 days (and at most 5 minutes ahead)",
    );
    v.finish()?;
    let req = json!({"op": "session", "user": user_id, "body": body});
    let mut c = begin!(&st, &user_id, key, req);
    if !store::lesson_exists(&mut c.tx, &body.lesson_id).await? {
        return Err(ApiError::field(
            "lesson_id",
            "is not a lesson of the catalogue",
        ));
    }
    let id = Uuid::now_v7();
    c.record(Event::PracticeRecorded {
        session_id: id,
        lesson_id: body.lesson_id.clone(),
        accuracy: body.accuracy,
        duration_secs: body.duration_secs,
        at,
    })
    .await?;
    let s = store::Session {
        id,
        lesson_id: body.lesson_id,
        accuracy: body.accuracy,
        duration_secs: i32::try_from(body.duration_secs).unwrap_or(i32::MAX),
        at,
    };
    c.finish(&s).await
}

async fn list_sessions(
    State(st): State<AppState>,
    caller: Caller,
    Path(UserPath { user_id }): Path<UserPath>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<store::Session>>> {
    check_user(&caller, &user_id)?;
    let req = q.resolve::<(DateTime<Utc>, Uuid)>()?;
    check_cursor_time(req.after.as_ref())?;
    let rows = store::sessions(&st.pool, &user_id, req.after.as_ref(), req.fetch_limit()).await?;
    Ok(Json(Page::from_rows(
        rows,
        req.limit,
        |s: &store::Session| (s.at, s.id),
    )))
}

// ---- sharing --------------------------------------------------------------------------------

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

async fn create_share(
    State(st): State<AppState>,
    caller: Caller,
    Path(PlaylistPath {
        user_id,
        playlist_id,
    }): Path<PlaylistPath>,
    IdempotencyKey(key): IdempotencyKey,
    Json(body): Json<ShareBody>,
) -> ApiResult<Answer<ShareCreated, 201>> {
    check_user(&caller, &user_id)?;
    let now = st.clock.now();
    if let Some(e) = body.expires_at {
        if !domain::time_in_years(e) {
            return Err(ApiError::field("expires_at", domain::years_message()));
        }
        let max = now + Duration::days(st.settings.share_max_days);
        if e <= now || e > max {
            return Err(ApiError::field(
                "expires_at",
                format!(
                    "must be in the future and within {} days",
                    st.settings.share_max_days
                ),
            ));
        }
    }
    let req = json!({"op": "share", "user": user_id, "playlist": playlist_id, "body": body});
    let mut c = begin!(&st, &user_id, key, req);
    c.playlist(playlist_id, None).await?;
    // 256 random bits: unguessable; only the hash is stored (in the event and the read model).
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| ApiError::internal(&e))?;
    let token = URL_SAFE_NO_PAD.encode(raw);
    let share_id = Uuid::now_v7();
    c.record(Event::ShareCreated {
        playlist_id,
        share_id,
        token_sha256: hex(&token_hash(&token)),
        channel: body.channel,
        expires_at: body.expires_at,
    })
    .await?;
    let out = ShareCreated {
        id: share_id,
        path: Some(format!(
            "/playlists/v1/shared/{token}?utm_source={}",
            body.channel.as_str()
        )),
        token: Some(token),
        channel: body.channel,
        expires_at: body.expires_at,
        detail: None,
    };
    // The token is not remembered for a replay (it would sit in plain text in
    // playlists.idempotency): a retry gets the share's id without it.
    let remembered = ShareCreated {
        id: share_id,
        token: None,
        path: None,
        channel: body.channel,
        expires_at: body.expires_at,
        detail: Some(TOKEN_SHOWN_ONCE.to_owned()),
    };
    c.finish_remembering(&out, &remembered).await
}

async fn list_shares(
    State(st): State<AppState>,
    caller: Caller,
    Path(PlaylistPath {
        user_id,
        playlist_id,
    }): Path<PlaylistPath>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<ShareView>>> {
    check_user(&caller, &user_id)?;
    let req = q.resolve::<(DateTime<Utc>, Uuid)>()?;
    check_cursor_time(req.after.as_ref())?;
    read_playlist(&st, &user_id, playlist_id).await?;
    let rows =
        store::shares_of(&st.pool, playlist_id, req.after.as_ref(), req.fetch_limit()).await?;
    let views = rows
        .into_iter()
        .map(|r| ShareView {
            id: r.id,
            channel: r.channel,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            opens: r.opens,
        })
        .collect();
    Ok(Json(Page::from_rows(views, req.limit, |s: &ShareView| {
        (s.created_at, s.id)
    })))
}

async fn revoke_share(
    State(st): State<AppState>,
    caller: Caller,
    Path(SharePath {
        user_id,
        playlist_id,
        share_id,
    }): Path<SharePath>,
    IdempotencyKey(key): IdempotencyKey,
) -> ApiResult<Answer<(), 204>> {
    check_user(&caller, &user_id)?;
    let req = json!({"op": "revoke", "user": user_id, "playlist": playlist_id, "share": share_id});
    let mut c = begin!(&st, &user_id, key, req);
    let share = store::share(&mut c.tx, share_id)
        .await?
        .filter(|s| s.user_id == user_id && s.playlist_id == playlist_id)
        .ok_or_else(|| ApiError::not_found(format!("no share {share_id}")))?;
    // Revoking twice is a no-op (no second event).
    if share.revoked_at.is_none() {
        c.record(Event::ShareRevoked {
            playlist_id,
            share_id,
        })
        .await?;
    }
    c.finish(&()).await
}

async fn open_shared(
    State(st): State<AppState>,
    Path(TokenPath { token }): Path<TokenPath>,
) -> ApiResult<Json<SharedView>> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(ApiError::field(
            "token",
            format!("must be 1..={MAX_TOKEN_LEN} characters"),
        ));
    }
    let gone = || ApiError::not_found("no such shared playlist");
    let mut conn = st.pool.acquire().await?;
    let share = store::share_by_hash(&mut conn, &token_hash(&token))
        .await?
        .ok_or_else(gone)?;
    drop(conn);
    if share.revoked_at.is_some() {
        return Err(gone());
    }
    let now = st.clock.now();
    if share.expires_at.is_some_and(|e| e <= now) {
        return Err(ApiError::gone("this share link has expired"));
    }
    let channel = Channel::parse(&share.channel).unwrap_or(Channel::CopyLink);
    // An anonymous open takes no lock of the owner's (a public link must not queue behind,
    // nor block, the owner's commands): a plain read of the view, then one short transaction
    // of single-statement writes (the event, the share's opens, the day's counter).
    let mut conn = st.pool.acquire().await?;
    let p = store::playlist_unlocked(&mut conn, share.playlist_id)
        .await?
        .ok_or_else(gone)?;
    let v = view(&mut conn, &p).await?;
    drop(conn);
    let mut tx = store::begin_writer(&st.pool).await?;
    store::record(
        &mut tx,
        &share.user_id,
        now,
        Event::ShareOpened {
            playlist_id: share.playlist_id,
            share_id: share.id,
            channel,
        },
    )
    .await?;
    tx.commit().await?;
    metrics::counter!("playlists_events_total", "type" => "share_opened").increment(1);
    Ok(Json(SharedView {
        name: v.name,
        lessons: v
            .lessons
            .into_iter()
            .map(|l| SharedLesson {
                lesson_id: l.lesson_id,
                title: l.title,
                instrument: l.instrument,
                genre: l.genre,
                difficulty: l.difficulty,
                duration_secs: l.duration_secs,
            })
            .collect(),
    }))
}

// ---- analytics ------------------------------------------------------------------------------

fn range(
    st: &AppState,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> ApiResult<(NaiveDate, NaiveDate)> {
    let mut v = Validator::new();
    for (field, d) in [("from", from), ("to", to)] {
        if let Some(d) = d {
            v.check(domain::day_in_years(d), field, domain::years_message());
        }
    }
    v.finish()?;
    let to = to.unwrap_or_else(|| st.clock.now().date_naive());
    let from = match from {
        Some(f) => f,
        None => to
            .checked_sub_signed(Duration::days(90))
            .ok_or_else(|| ApiError::field("to", domain::years_message()))?,
    };
    if from > to {
        return Err(ApiError::field("from", "is after to"));
    }
    if (to - from).num_days() > MAX_RANGE_DAYS {
        return Err(ApiError::field(
            "from",
            format!("the range may span at most {MAX_RANGE_DAYS} days"),
        ));
    }
    Ok((from, to))
}

async fn removals(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<RemovalQuery>,
) -> ApiResult<Json<RemovalsView>> {
    require_any(&caller, ANALYTICS)?;
    let (from, to) = range(&st, q.from, q.to)?;
    let req = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .resolve::<String>()?;
    let found = store::removals(&st.pool, from, to, req.after.as_ref(), req.fetch_limit()).await?;
    let overall_rows = found.overall;
    let overall: Vec<ReasonCount> = Reason::ALL
        .iter()
        .map(|r| ReasonCount {
            reason: *r,
            count: overall_rows
                .iter()
                .find(|(s, _)| s == r.as_str())
                .map_or(0, |(_, n)| *n),
        })
        .collect();
    let mut lessons: Vec<LessonRemovals> = Vec::new();
    for (lesson, title, reason, n) in found.lessons {
        let Some(reason) = Reason::parse(&reason) else {
            continue;
        };
        if lessons.last().is_none_or(|l| l.lesson_id != lesson) {
            lessons.push(LessonRemovals {
                lesson_id: lesson,
                title,
                total: 0,
                reasons: Vec::new(),
            });
        }
        if let Some(l) = lessons.last_mut() {
            l.total += n;
            l.reasons.push(ReasonCount { reason, count: n });
        }
    }
    Ok(Json(RemovalsView {
        from,
        to,
        total: overall.iter().map(|r| r.count).sum(),
        overall,
        lessons: Page::from_rows(lessons, req.limit, |l: &LessonRemovals| l.lesson_id.clone()),
    }))
}

fn require_any(caller: &Caller, scopes: &[&str]) -> ApiResult<()> {
    if scopes.iter().any(|s| caller.has_scope(s)) {
        Ok(())
    } else {
        Err(kit::auth::forbidden())
    }
}

async fn shares(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Json<SharesView>> {
    require_any(&caller, ANALYTICS)?;
    let (from, to) = range(&st, q.from, q.to)?;
    let rows = store::shares_by_channel(&st.pool, from, to).await?;
    let channels: Vec<ChannelCount> = Channel::ALL
        .iter()
        .map(|c| {
            let (s, o) = rows
                .iter()
                .find(|(n, _, _)| n == c.as_str())
                .map_or((0, 0), |(_, s, o)| (*s, *o));
            ChannelCount {
                channel: *c,
                shares: s,
                opens: o,
            }
        })
        .collect();
    Ok(Json(SharesView {
        from,
        to,
        shares: channels.iter().map(|c| c.shares).sum(),
        opens: channels.iter().map(|c| c.opens).sum(),
        channels,
    }))
}

async fn retention(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Json<RetentionView>> {
    require_any(&caller, ANALYTICS)?;
    let (from, to) = range(&st, q.from, q.to)?;
    let rows = store::cohorts(&st.pool, domain::week_of(from), to).await?;
    let this_week = domain::week(st.clock.now());
    let mut cohorts: Vec<CohortView> = Vec::new();
    for (week, engaged, users, retained) in rows {
        if cohorts.last().is_none_or(|c| c.week != week) {
            cohorts.push(CohortView {
                week,
                complete: week + Duration::weeks(domain::cohort::RETENTION_WEEKS) < this_week,
                playlist_users: Group::new(0, 0),
                other_users: Group::new(0, 0),
            });
        }
        if let Some(c) = cohorts.last_mut() {
            let g = Group::new(users, retained);
            if engaged {
                c.playlist_users = g;
            } else {
                c.other_users = g;
            }
        }
    }
    let total = |f: fn(&CohortView) -> Group| {
        let (u, r) = cohorts
            .iter()
            .filter(|c| c.complete)
            .map(f)
            .fold((0, 0), |(u, r), g| (u + g.users, r + g.retained));
        Group::new(u, r)
    };
    let playlist_users = total(|c| c.playlist_users);
    let other_users = total(|c| c.other_users);
    let difference = match (playlist_users.rate, other_users.rate) {
        (Some(a), Some(b)) => Some(a - b),
        _ => None,
    };
    let difference_ci95 = match (playlist_users.rate, other_users.rate, difference) {
        (Some(a), Some(b), Some(d)) if playlist_users.users >= 30 && other_users.users >= 30 => {
            let se = (a * (1.0 - a) / playlist_users.users as f64
                + b * (1.0 - b) / other_users.users as f64)
                .sqrt();
            Some([d - 1.96 * se, d + 1.96 * se])
        }
        _ => None,
    };
    let note = format!(
        "Observational: users choose to use playlists, so a difference is a correlation, not an \
         effect of the feature (motivated learners may both use playlists and stay). Totals \
         count complete cohorts only ({} playlist users, {} others); small groups give wide \
         intervals. An experiment (a holdout without playlists) would measure the effect.",
        playlist_users.users, other_users.users
    );
    Ok(Json(RetentionView {
        from,
        to,
        cohorts,
        playlist_users,
        other_users,
        difference,
        difference_ci95,
        note,
    }))
}

// ---- routes ---------------------------------------------------------------------------------

/// All routes, under `/playlists/v1`.
pub fn routes(state: AppState) -> ApiRouter {
    ApiRouter::new()
        .api_route(
            "/playlists/v1/lessons",
            get_with(list_lessons, |op| {
                public(
                    op.summary("The lesson catalogue (keyset by id)"),
                    "catalogue content, the same for everyone, with no user data",
                )
            }),
        )
        .api_route(
            "/playlists/v1/users/{user_id}/playlists",
            post_with(create, |op| {
                let op = op.summary("Create a playlist").description(
                    "The user's first playlist is the default; `default: true` moves it. \
                     Idempotency-Key: a retry answers the first answer and records nothing.",
                );
                requires(op, OWNER, ADMIN)
            })
            .get_with(list_playlists, |op| {
                requires(op.summary("The user's playlists (keyset)"), OWNER, ADMIN)
            }),
        )
        .api_route(
            "/playlists/v1/users/{user_id}/playlists/{playlist_id}",
            get_with(get_playlist, |op| {
                requires(op.summary("A playlist (ETag: its version)"), OWNER, ADMIN)
            })
            .patch_with(rename, |op| {
                requires(
                    op.summary("Rename a playlist (If-Match checked when sent)"),
                    OWNER,
                    ADMIN,
                )
            })
            .delete_with(delete_playlist, |op| {
                requires(
                    op.summary("Delete a playlist").description(
                        "The oldest remaining playlist becomes the default if this one was.",
                    ),
                    OWNER,
                    ADMIN,
                )
            }),
        )
        .api_route(
            "/playlists/v1/users/{user_id}/playlists/{playlist_id}/lessons",
            post_with(add_lesson, |op| {
                let op = op.summary("Add a lesson").description(
                    "409 when it is in the playlist already or the playlist is full \
                     (PLAYLISTS_MAX_SIZE, default 20).",
                );
                requires(op, OWNER, ADMIN)
            }),
        )
        .api_route(
            "/playlists/v1/users/{user_id}/playlists/{playlist_id}/lessons/{lesson_id}/position",
            put_with(move_lesson, |op| {
                let op = op.summary("Move a lesson").description(
                    "Needs If-Match (428 without): a stale version is 412, so a concurrent \
                     edit is never overwritten.",
                );
                requires(op, OWNER, ADMIN)
            }),
        )
        .api_route(
            "/playlists/v1/users/{user_id}/playlists/{playlist_id}/lessons/{lesson_id}",
            delete_with(remove_lesson, |op| {
                let op = op.summary("Remove a lesson, with a reason").description(
                    "`reason` is required (400 without); `note` is required for `other`.",
                );
                requires(op, OWNER, ADMIN)
            }),
        )
        .api_route(
            "/playlists/v1/users/{user_id}/playlists/{playlist_id}/next",
            get_with(next, |op| {
                let op = op
                    .summary("The lesson to practise next, and why")
                    .description(
                        "Deterministic for a given clock and history: docs/playlists.md, \
                     \"The rotation rule\".",
                    );
                requires(op, OWNER, ADMIN)
            }),
        )
        .api_route(
            "/playlists/v1/users/{user_id}/playlists/{playlist_id}/shares",
            post_with(create_share, |op| {
                requires(
                    op.summary("Create a share link (the token is shown once)"),
                    OWNER,
                    ADMIN,
                )
            })
            .get_with(list_shares, |op| {
                requires(op.summary("The playlist's share links"), OWNER, ADMIN)
            }),
        )
        .api_route(
            "/playlists/v1/users/{user_id}/playlists/{playlist_id}/shares/{share_id}",
            delete_with(revoke_share, |op| {
                requires(op.summary("Revoke a share link (idempotent)"), OWNER, ADMIN)
            }),
        )
        .api_route(
            "/playlists/v1/users/{user_id}/sessions",
            post_with(record_session, |op| {
                requires(op.summary("Record a practice session"), OWNER, ADMIN)
            })
            .get_with(list_sessions, |op| {
                requires(
                    op.summary("The user's practice sessions, newest first (keyset)"),
                    OWNER,
                    ADMIN,
                )
            }),
        )
        .api_route(
            "/playlists/v1/shared/{token}",
            get_with(open_shared, |op| {
                public(
                    op.summary("A shared playlist, read-only (counts an open)")
                        .description("404 for an unknown or revoked link, 410 for an expired one."),
                    "public by design: whoever holds the link; the view has no user id or \
                     practice data",
                )
            }),
        )
        .api_route(
            "/playlists/v1/analytics/removals",
            get_with(removals, |op| {
                requires(
                    op.summary("Removal reasons, overall and by lesson, over a date range"),
                    None,
                    ANALYTICS,
                )
            }),
        )
        .api_route(
            "/playlists/v1/analytics/shares",
            get_with(shares, |op| {
                requires(
                    op.summary("Shares by channel and link opens over a date range"),
                    None,
                    ANALYTICS,
                )
            }),
        )
        .api_route(
            "/playlists/v1/analytics/retention",
            get_with(retention, |op| {
                requires(
                    op.summary("Retention of playlist users vs others, per weekly cohort"),
                    None,
                    ANALYTICS,
                )
            }),
        )
        .with_state(state)
}
