//! HTTP layer of the learning service: request/response types (documented in OpenAPI through
//! schemars, with examples) and handlers under `/learning/v1`.
//!
//! Who may call what (docs/learning.md, "API"):
//! - `GET /health`: public (no learner data; the brief's health route);
//! - a user's profile and activity: the learner themself (token `sub` = their Firebase uid), or
//!   `learning:read` (support tooling, the SLO probe) or `learning:admin`;
//! - `PATCH` of a profile: the learner themself or `learning:admin` (never `learning:read`);
//! - lessons, papers and items: any verified caller. The curriculum and the assessments are the
//!   same for every learner and hold no personal data; the token is still required, so only
//!   clients of the platform's issuer and audience read them.

use std::sync::Arc;

use aide::{
    OperationInput,
    axum::{ApiRouter, routing::get_with},
    generate::GenContext,
    openapi::{MediaType, Operation, ReferenceOr},
    transform::TransformOperation,
};
use axum::{
    extract::{FromRequest, Request, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use kit::{
    ApiError, ApiResult, Caller, Json, Path, Query,
    auth::requires,
    clock::Clock,
    pagination::{Page, PageQuery},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::{
    Settings,
    domain::{
        keys::valid_id,
        profile::{self, Member},
    },
    store::read as store,
};

/// Read any learner's profile and activity (support tooling, the SLO probe); no writes.
pub const SCOPE_READ: &str = "learning:read";
/// Administer learning records: read and patch any learner's profile.
pub const SCOPE_ADMIN: &str = "learning:admin";

const PATH_USER: Option<&str> = Some("the user in the path (token sub = Firebase uid)");
const ANY_CALLER: Option<&str> =
    Some("any verified caller (the curriculum holds no personal data)");
/// Who may read a user: the user, a reader, an admin.
const READ_USER: &[&str] = &[SCOPE_READ, SCOPE_ADMIN];
/// Who may patch a user: the user, an admin.
const WRITE_USER: &[&str] = &[SCOPE_ADMIN];

/// Longest sub-list one response carries (a lesson's items, a paper's parts, an item's
/// appearances). The sources have tens per entity at any scale (the generator's copies re-key,
/// they do not grow a lesson); the cap only bounds a response if a source ever does, and
/// `truncated` says so.
pub const MAX_LISTED: usize = 500;
/// Longest cursor accepted (ours are under 60 characters).
const MAX_CURSOR_CHARS: usize = 256;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
}

/// 400 naming `field` unless `id` is an id of the sources: 1..=128 of `A-Z a-z 0-9 _ - . : @`.
fn check_id(field: &str, id: &str) -> ApiResult<()> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::field(
            field,
            "must be 1..=128 characters of A-Z a-z 0-9 _ - . : @",
        ))
    }
}

/// The 200 response's example in the operation itself. (The types carry schemars examples too,
/// but /openapi.json does not list component schemas yet: kit's `extract_schemas(true)` runs
/// after the services' routes are built, so only operation-level examples reach the document.)
fn with_example<T>(op: TransformOperation<'_>, example: Value) -> TransformOperation<'_>
where
    T: DeserializeOwned + Serialize + JsonSchema,
{
    op.response_with::<200, Json<T>, _>(|r| match serde_json::from_value::<T>(example) {
        Ok(e) => r.example(e),
        Err(_) => r,
    })
}

fn fetch_listed() -> i64 {
    i64::try_from(MAX_LISTED).unwrap_or(i64::MAX) + 1
}

/// Cuts `rows` to [`MAX_LISTED`]; whether anything was cut.
fn cap<T>(rows: &mut Vec<T>) -> bool {
    let cut = rows.len() > MAX_LISTED;
    rows.truncate(MAX_LISTED);
    cut
}

// ---------------------------------------------------------------- paths

#[derive(Debug, Deserialize, JsonSchema)]
pub struct UserPath {
    /// The learner's Firebase uid.
    #[schemars(example = &"05IsdAyoSnekvovtyr2fC5cNOnF3")]
    pub user_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct LessonPath {
    /// A lessonID of the course.
    #[schemars(example = &"aqaGCSEBio2.0.12")]
    pub lesson_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct PaperPath {
    /// A paper_id of the exams.
    #[schemars(example = &"medlymockaqaGCSEBio_Sept_Mock1Higher")]
    pub paper_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ItemPath {
    /// The item's questionID (shared by exams, practices and attempts).
    #[schemars(example = &"aqaGCSEBio_1_1_1_EBc0BgD11T")]
    pub question_id: String,
}

// ---------------------------------------------------------------- users

/// A learner's profile: the fields the API writes and a summary of their activity.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(example = example_user())]
pub struct UserView {
    /// The Firebase uid.
    pub user_id: String,
    pub name: Option<String>,
    /// Free-form, bounded object (PATCH with JSON Merge Patch).
    pub metadata: Value,
    /// The last PATCH that changed the profile (null: never patched).
    pub updated_at: Option<DateTime<Utc>>,
    /// When the import first saw this learner.
    pub first_seen: DateTime<Utc>,
    pub attempt_count: i64,
    /// The newest attempt's updatedAt (createdAt when it has none).
    pub last_activity_at: Option<DateTime<Utc>>,
}

fn example_user() -> Value {
    json!({
        "user_id": "05IsdAyoSnekvovtyr2fC5cNOnF3",
        "name": "Ada",
        "metadata": { "school": "Ösby", "year": 10 },
        "updated_at": "2026-12-02T12:00:00Z",
        "first_seen": "2026-12-01T08:00:00Z",
        "attempt_count": 35,
        "last_activity_at": "2025-09-15T08:41:12.120000Z"
    })
}

impl From<store::UserRow> for UserView {
    fn from(r: store::UserRow) -> Self {
        Self {
            user_id: r.firebase_uid,
            name: r.name,
            metadata: r.metadata,
            updated_at: r.updated_at,
            first_seen: r.first_seen,
            attempt_count: r.attempts,
            last_activity_at: r.last_activity_at,
        }
    }
}

fn no_user(user_id: &str) -> ApiError {
    ApiError::not_found(format!("no user {user_id}"))
}

async fn get_user(
    State(st): State<AppState>,
    caller: Caller,
    Path(UserPath { user_id }): Path<UserPath>,
) -> ApiResult<Json<UserView>> {
    caller.require_user(&user_id, READ_USER)?;
    check_id("user_id", &user_id)?;
    let row = store::user(&st.pool, &user_id)
        .await?
        .ok_or_else(|| no_user(&user_id))?;
    Ok(Json(row.into()))
}

/// `GET /users/{id}/activity`: a page, and the filters (each an exact key of the sources).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivityQuery {
    /// Page size, 1..=100 (default 20).
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page; omit for the first page.
    pub cursor: Option<String>,
    /// Only attempts in this subject (e.g. `aqaGCSEBio`).
    pub subject: Option<String>,
    /// Only attempts in this paper (a paper_id).
    pub paper: Option<String>,
    /// Only attempts at items linked to this lessonID (an exam item's lessonIDs, or the
    /// lesson's practice bank).
    pub lesson: Option<String>,
}

/// One attempt: a learner's interaction with one item in one paper context.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(example = example_attempt())]
pub struct AttemptView {
    pub question_id: String,
    pub subject_id: String,
    pub paper_id: String,
    pub created_at: DateTime<Utc>,
    /// updatedAt, or createdAt when the source has none: the feed's order (newest first).
    pub updated_at: DateTime<Utc>,
    pub is_marked: bool,
    pub user_mark: Option<i32>,
    /// The item's markmax (null for an orphan).
    pub markmax: Option<i32>,
    pub user_answer: Option<String>,
    /// The questionID matches no item (kept by the import, resolved when the item arrives).
    pub orphan: bool,
}

fn example_attempt() -> Value {
    json!({
        "question_id": "aqaGCSEBio_1_1_1_EBc0BgD11T",
        "subject_id": "aqaGCSEBio",
        "paper_id": "medlymockaqaGCSEBio_Sept_Mock1Higher",
        "created_at": "2025-09-15T07:53:09.441Z",
        "updated_at": "2025-09-15T07:58:40.120Z",
        "is_marked": true,
        "user_mark": 1,
        "markmax": 1,
        "user_answer": "it did not work against the virus",
        "orphan": false
    })
}

fn example_activity() -> Option<Page<AttemptView>> {
    let attempt = serde_json::from_value(example_attempt()).ok()?;
    Some(Page {
        items: vec![attempt],
        next_cursor: Some("WyIyMDI1LTA5LTE1VDA3OjU4OjQwLjEyWiIsNDJd".to_owned()),
    })
}

impl From<store::AttemptRow> for AttemptView {
    fn from(r: store::AttemptRow) -> Self {
        Self {
            question_id: r.question_id,
            subject_id: r.subject_key,
            paper_id: r.paper_key,
            created_at: r.created_at,
            updated_at: r.updated_at,
            is_marked: r.is_marked,
            user_mark: r.user_mark,
            markmax: r.markmax,
            user_answer: r.user_answer,
            orphan: r.orphan,
        }
    }
}

async fn get_activity(
    State(st): State<AppState>,
    caller: Caller,
    Path(UserPath { user_id }): Path<UserPath>,
    Query(q): Query<ActivityQuery>,
) -> ApiResult<Json<Page<AttemptView>>> {
    caller.require_user(&user_id, READ_USER)?;
    let mut v = kit::Validator::new();
    v.check(
        valid_id(&user_id),
        "user_id",
        "must be 1..=128 characters of A-Z a-z 0-9 _ - . : @",
    );
    for (field, value) in [
        ("subject", &q.subject),
        ("paper", &q.paper),
        ("lesson", &q.lesson),
    ] {
        if let Some(value) = value {
            v.check(
                valid_id(value),
                field,
                "must be 1..=128 characters of A-Z a-z 0-9 _ - . : @",
            );
        }
    }
    v.check(
        q.cursor
            .as_ref()
            .is_none_or(|c| c.len() <= MAX_CURSOR_CHARS),
        "cursor",
        "is not a cursor returned by this endpoint",
    );
    v.finish()?;
    let req = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .resolve::<(DateTime<Utc>, i64)>()?;
    let id = store::user_id(&st.pool, &user_id)
        .await?
        .ok_or_else(|| no_user(&user_id))?;
    let filter = store::ActivityFilter {
        subject: q.subject.as_deref(),
        paper: q.paper.as_deref(),
        lesson: q.lesson.as_deref(),
    };
    let rows = store::activity(&st.pool, id, filter, req.after, req.fetch_limit()).await?;
    let page = Page::from_rows(rows, req.limit, |r: &store::AttemptRow| {
        (r.updated_at, r.id)
    });
    Ok(Json(Page {
        items: page.items.into_iter().map(AttemptView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A JSON Merge Patch (RFC 7386) of a profile, as `application/merge-patch+json` or
/// `application/json`: a member left out stays as it is, `null` removes it, a value sets it;
/// `metadata` merges key by key (`null` removes a key, nested objects merge the same way).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = json!({ "name": "Ada", "metadata": { "year": 11, "old_key": null } }))]
pub struct UserPatch {
    /// 1..=200 characters without control characters; null removes the name.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub name: Member<String>,
    /// An object merged into the metadata (keys 1..=64 characters, strings up to 2,000, 8
    /// levels, 64 members per object or array, 1,000 values, 16 KiB once merged); null empties it.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    pub metadata: Member<Value>,
}

/// The PATCH body: [`kit::Json`] (content type, size, errors naming the field), refusing
/// anything but a JSON object first, because serde reads a struct from an array by position
/// (`["Ada"]` would set the name) and RFC 7386 makes a non-object patch replace the whole
/// resource, which a profile does not allow.
pub struct PatchBody(pub UserPatch);

impl<S: Send + Sync> FromRequest<S> for PatchBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(raw) = Json::<Value>::from_request(req, state).await?;
        if !raw.is_object() {
            return Err(ApiError::field(
                "body",
                "must be a JSON object (a merge patch of the profile)",
            ));
        }
        // Decoded again from bytes so that a bad member is named by kit's decoder.
        let bytes = serde_json::to_vec(&raw).map_err(|e| ApiError::internal(&e))?;
        kit::extract::decode_json::<UserPatch>(&bytes).map(PatchBody)
    }
}

impl OperationInput for PatchBody {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        Json::<UserPatch>::operation_input(ctx, operation);
    }
}

/// The PATCH body as documented: the same schema under `application/merge-patch+json` and
/// `application/json`, with an example.
fn document_patch_body(mut op: TransformOperation<'_>) -> TransformOperation<'_> {
    if let Some(ReferenceOr::Item(body)) = op.inner_mut().request_body.as_mut() {
        let schema = body
            .content
            .get("application/json")
            .and_then(|m| m.schema.clone());
        let media = MediaType {
            schema,
            example: Some(json!({ "name": "Ada", "metadata": { "year": 11, "old_key": null } })),
            ..Default::default()
        };
        body.content
            .insert("application/merge-patch+json".to_owned(), media.clone());
        body.content.insert("application/json".to_owned(), media);
    }
    op
}

fn problem_of(p: profile::Problem) -> ApiError {
    ApiError::field(p.field, p.message)
}

async fn patch_user(
    State(st): State<AppState>,
    caller: Caller,
    Path(UserPath { user_id }): Path<UserPath>,
    PatchBody(patch): PatchBody,
) -> ApiResult<Json<UserView>> {
    caller.require_user(&user_id, WRITE_USER)?;
    // Everything the patch alone decides is checked before the row is locked.
    let mut v = kit::Validator::new();
    v.check(
        valid_id(&user_id),
        "user_id",
        "must be 1..=128 characters of A-Z a-z 0-9 _ - . : @",
    );
    if let Member::Set(name) = &patch.name {
        v.text(name, "name", profile::MAX_NAME_CHARS);
    }
    if let Member::Set(m) = &patch.metadata
        && let Err(p) = profile::check_metadata(m)
    {
        v.push(&p.field, p.message);
    }
    v.finish()?;
    let now = st.clock.now();
    let UserPatch { name, metadata } = patch;
    let outcome = store::patch_user(&st.pool, &user_id, now, |cur_name, cur_meta| {
        let next = profile::patched_metadata(&cur_meta, &metadata)?;
        let name = match name {
            Member::Absent => cur_name,
            Member::Null => None,
            Member::Set(n) => Some(n),
        };
        Ok::<_, profile::Problem>((name, next))
    })
    .await?
    .map_err(problem_of)?;
    let changed = match outcome {
        store::Patched::NotFound => return Err(no_user(&user_id)),
        store::Patched::Unchanged => false,
        store::Patched::Changed => true,
    };
    // user_id is validated (bounded); the caller's sub is bounded by the kit (256 bytes).
    tracing::info!(user_id = %user_id, by = %caller.sub, changed, "learning profile patched");
    let row = store::user(&st.pool, &user_id)
        .await?
        .ok_or_else(|| no_user(&user_id))?;
    Ok(Json(row.into()))
}

// ---------------------------------------------------------------- curriculum and assessments

/// An item as lists show it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ItemSummary {
    pub question_id: String,
    pub question_type: String,
    pub question_text: String,
    pub markmax: i32,
    pub difficulty: Option<i32>,
}

impl From<store::ItemSummaryRow> for ItemSummary {
    fn from(r: store::ItemSummaryRow) -> Self {
        Self {
            question_id: r.question_id,
            question_type: r.question_type,
            question_text: r.question_text,
            markmax: r.markmax,
            difficulty: r.difficulty,
        }
    }
}

/// A lesson's place in the course.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LessonPlace {
    pub subject_id: String,
    pub unit_index: i32,
    pub unit_title: String,
    pub topic_index: i32,
    pub topic_title: String,
    pub lesson_index: i32,
    pub title: String,
}

/// A practice item of the lesson's bank.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PracticeItem {
    pub question_number: i32,
    pub question_part: i32,
    #[serde(flatten)]
    pub item: ItemSummary,
}

/// An exam item linked to the lesson, at its place in a paper (null when in none).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LinkedExamItem {
    pub paper_id: Option<String>,
    pub question_number: Option<i32>,
    pub question_part: Option<i32>,
    #[serde(flatten)]
    pub item: ItemSummary,
}

/// A lesson: its place in the course and the items that practise or examine it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(example = example_lesson())]
pub struct LessonView {
    pub lesson_id: String,
    /// Null when the course does not have the lessonID although a practice bank or an exam item
    /// names it (kept as an unresolved link by the import).
    pub course: Option<LessonPlace>,
    /// The lesson's practice bank, in question and part order.
    pub practice_items: Vec<PracticeItem>,
    /// Exam items whose lessonIDs name this lesson, in paper, question and part order.
    pub exam_items: Vec<LinkedExamItem>,
    /// A list was cut at 500 entries.
    pub truncated: bool,
}

fn example_lesson() -> Value {
    json!({
        "lesson_id": "aqaGCSEBio2.0.12",
        "course": {
            "subject_id": "aqaGCSEBio", "unit_index": 2, "unit_title": "Organisation",
            "topic_index": 0, "topic_title": "Principles of organisation",
            "lesson_index": 12, "title": "Drug development"
        },
        "practice_items": [],
        "exam_items": [{
            "paper_id": "medlymockaqaGCSEBio_Sept_Mock1Higher", "question_number": 1,
            "question_part": 1, "question_id": "aqaGCSEBio_1_1_1_EBc0BgD11T",
            "question_type": "long_answer",
            "question_text": "What is the main reason that compounds failed during the Phase 2 clinical trials?",
            "markmax": 1, "difficulty": 3
        }],
        "truncated": false
    })
}

async fn get_lesson(
    State(st): State<AppState>,
    _caller: Caller,
    Path(LessonPath { lesson_id }): Path<LessonPath>,
) -> ApiResult<Json<LessonView>> {
    check_id("lesson_id", &lesson_id)?;
    let course = store::lesson(&st.pool, &lesson_id).await?;
    if course.is_none() && !store::lesson_is_referenced(&st.pool, &lesson_id).await? {
        return Err(ApiError::not_found(format!("no lesson {lesson_id}")));
    }
    let mut practice = store::lesson_practice_items(&st.pool, &lesson_id, fetch_listed()).await?;
    let mut exam = store::lesson_exam_items(&st.pool, &lesson_id, fetch_listed()).await?;
    let truncated = cap(&mut practice) | cap(&mut exam);
    Ok(Json(LessonView {
        lesson_id,
        course: course.map(|l| LessonPlace {
            subject_id: l.subject_key,
            unit_index: l.unit_index,
            unit_title: l.unit_title,
            topic_index: l.topic_index,
            topic_title: l.topic_title,
            lesson_index: l.lesson_index,
            title: l.title,
        }),
        practice_items: practice
            .into_iter()
            .map(|r| PracticeItem {
                question_number: r.question_number,
                question_part: r.question_part,
                item: r.item.into(),
            })
            .collect(),
        exam_items: exam
            .into_iter()
            .map(|r| LinkedExamItem {
                paper_id: r.paper_key,
                question_number: r.question_number,
                question_part: r.question_part,
                item: r.item.into(),
            })
            .collect(),
        truncated,
    }))
}

/// One part of a paper's question.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PaperItem {
    pub question_part: i32,
    #[serde(flatten)]
    pub item: ItemSummary,
}

/// A question of a paper with its parts in part order.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PaperQuestion {
    pub question_number: i32,
    pub stem: String,
    /// Null, a markdown string or a diagram object, as the source has it.
    pub stem_diagram: Option<Value>,
    pub items: Vec<PaperItem>,
}

/// A paper: its set's metadata and its questions in question order.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(example = example_paper())]
pub struct PaperView {
    pub paper_id: String,
    pub subject_id: String,
    pub board: String,
    pub qualification: String,
    pub subject_title: String,
    pub set_type: String,
    pub series: String,
    pub tier: String,
    pub paper_number: String,
    pub questions: Vec<PaperQuestion>,
    /// The parts were cut at 500.
    pub truncated: bool,
}

fn example_paper() -> Value {
    json!({
        "paper_id": "medlymockaqaGCSEBio_Sept_Mock1Higher", "subject_id": "aqaGCSEBio",
        "board": "aqa", "qualification": "GCSE", "subject_title": "Biology",
        "set_type": "Medly", "series": "Sept_Mock", "tier": "Higher", "paper_number": "1",
        "questions": [{
            "question_number": 1,
            "stem": "A pharmaceutical company is developing a new antiviral drug...",
            "stem_diagram": null,
            "items": [{
                "question_part": 1, "question_id": "aqaGCSEBio_1_1_1_EBc0BgD11T",
                "question_type": "long_answer",
                "question_text": "What is the main reason that compounds failed during the Phase 2 clinical trials?",
                "markmax": 1, "difficulty": 3
            }]
        }],
        "truncated": false
    })
}

async fn get_paper(
    State(st): State<AppState>,
    _caller: Caller,
    Path(PaperPath { paper_id }): Path<PaperPath>,
) -> ApiResult<Json<PaperView>> {
    check_id("paper_id", &paper_id)?;
    let paper = store::paper(&st.pool, &paper_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no paper {paper_id}")))?;
    let mut parts = store::paper_parts(&st.pool, paper.id, fetch_listed()).await?;
    let truncated = cap(&mut parts);
    // Rows arrive ordered by (question_number, question_part): group consecutive ones.
    let mut questions: Vec<PaperQuestion> = Vec::new();
    for r in parts {
        let item = PaperItem {
            question_part: r.question_part,
            item: r.item.into(),
        };
        match questions.last_mut() {
            Some(q) if q.question_number == r.question_number => q.items.push(item),
            _ => questions.push(PaperQuestion {
                question_number: r.question_number,
                stem: r.stem,
                stem_diagram: r.stem_diagram,
                items: vec![item],
            }),
        }
    }
    Ok(Json(PaperView {
        paper_id: paper.paper_key,
        subject_id: paper.subject_key,
        board: paper.board,
        qualification: paper.qualification,
        subject_title: paper.subject_title,
        set_type: paper.set_type,
        series: paper.series,
        tier: paper.tier,
        paper_number: paper.paper_number,
        questions,
        truncated,
    }))
}

/// One place an item appears.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Appearance {
    /// `exam` (a paper's question) or `practice` (a lesson's practice bank).
    pub source: String,
    /// The paper, for `exam`.
    pub paper_id: Option<String>,
    /// The bank's lessonID, for `practice`.
    pub lesson_id: Option<String>,
    pub question_number: i32,
    pub question_part: i32,
}

/// A lessonID the item declares.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ItemLesson {
    pub lesson_id: String,
    /// Whether the course has the lesson (false: an unresolved link, kept).
    pub in_course: bool,
}

/// The canonical item by questionID, wherever it appears.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(example = example_item())]
pub struct ItemView {
    pub question_id: String,
    pub question_type: String,
    pub question_text: String,
    pub markmax: i32,
    pub markscheme: String,
    pub difficulty: Option<i32>,
    pub options: Option<Vec<String>>,
    /// correct_answer_index: an integer or a list of them (some MCQs only).
    pub correct_answer: Option<Value>,
    pub specification_point: Option<String>,
    pub diagram: Option<Value>,
    /// Every place in papers and practice banks, exams first.
    pub appearances: Vec<Appearance>,
    pub lessons: Vec<ItemLesson>,
    /// Attempts at this item, by every learner.
    pub attempt_count: i64,
    /// A list was cut at 500 entries.
    pub truncated: bool,
}

fn example_item() -> Value {
    json!({
        "question_id": "aqaGCSEBio_1_1_1_EBc0BgD11T", "question_type": "long_answer",
        "question_text": "What is the main reason that compounds failed during the Phase 2 clinical trials?",
        "markmax": 1, "markscheme": "drug was not effective (at treating the virus)\nallow it did not work",
        "difficulty": 3, "options": null, "correct_answer": null, "specification_point": null,
        "diagram": null,
        "appearances": [{ "source": "exam", "paper_id": "medlymockaqaGCSEBio_Sept_Mock1Higher",
                          "lesson_id": null, "question_number": 1, "question_part": 1 }],
        "lessons": [{ "lesson_id": "aqaGCSEBio2.0.12", "in_course": true }],
        "attempt_count": 17,
        "truncated": false
    })
}

async fn get_item(
    State(st): State<AppState>,
    _caller: Caller,
    Path(ItemPath { question_id }): Path<ItemPath>,
) -> ApiResult<Json<ItemView>> {
    check_id("question_id", &question_id)?;
    let item = store::item(&st.pool, &question_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no item {question_id}")))?;
    let mut places = store::appearances(&st.pool, item.id, fetch_listed()).await?;
    let mut lessons = store::item_lessons(&st.pool, item.id, fetch_listed()).await?;
    let truncated = cap(&mut places) | cap(&mut lessons);
    Ok(Json(ItemView {
        question_id: item.question_id,
        question_type: item.question_type,
        question_text: item.question_text,
        markmax: item.markmax,
        markscheme: item.markscheme,
        difficulty: item.difficulty,
        options: item.options,
        correct_answer: item.correct_answer,
        specification_point: item.specification_point,
        diagram: item.diagram,
        appearances: places
            .into_iter()
            .map(|a| {
                let exam = a.kind == "exam";
                Appearance {
                    paper_id: exam.then(|| a.context.clone()),
                    lesson_id: (!exam).then_some(a.context),
                    source: a.kind,
                    question_number: a.question_number,
                    question_part: a.question_part,
                }
            })
            .collect(),
        lessons: lessons
            .into_iter()
            .map(|(lesson_id, in_course)| ItemLesson {
                lesson_id,
                in_course,
            })
            .collect(),
        attempt_count: item.attempts,
        truncated,
    }))
}

// ---------------------------------------------------------------- health

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

/// All routes, under `/learning/v1`.
pub fn routes(state: AppState) -> ApiRouter {
    ApiRouter::new()
        .api_route(
            "/learning/v1/health",
            get_with(health, |op| {
                let op = op.response_with::<200, Json<HealthView>, _>(|r| {
                    r.example(HealthView {
                        status: "ok",
                        database: "ok",
                        schema_version: Some(20_261_202_000_001),
                    })
                });
                kit::auth::public(
                    op.summary("Service and database status"),
                    "health carries no learner data (the brief's GET /health)",
                )
            }),
        )
        .api_route(
            "/learning/v1/users/{user_id}",
            get_with(get_user, |op| {
                requires(
                    with_example::<UserView>(op, example_user())
                        .summary("A learner's profile")
                        .description("404 when the import has never seen the learner."),
                    PATH_USER,
                    READ_USER,
                )
            })
            .patch_with(patch_user, |op| {
                requires(
                    document_patch_body(with_example::<UserView>(op, example_user()))
                        .summary("Change a learner's name or metadata (JSON Merge Patch)")
                        .description(
                            "RFC 7386 merge patch, as application/merge-patch+json or \
                             application/json: a member left out stays, null removes it; \
                             metadata merges key by key. Idempotent by nature (a retried patch \
                             changes nothing more and keeps updated_at). A bad patch answers 400 \
                             naming the field and stores nothing.",
                        ),
                    PATH_USER,
                    WRITE_USER,
                )
            }),
        )
        .api_route(
            "/learning/v1/users/{user_id}/activity",
            get_with(get_activity, |op| {
                let op =
                    op.response_with::<200, Json<Page<AttemptView>>, _>(
                        |r| match example_activity() {
                            Some(e) => r.example(e),
                            None => r,
                        },
                    );
                requires(
                    op.summary("A learner's recent attempts, newest first")
                        .description(
                            "Keyset pagination (limit 1..=100, default 20; pass next_cursor as \
                         cursor); filters subject, paper and lesson are exact keys.",
                        ),
                    PATH_USER,
                    READ_USER,
                )
            }),
        )
        .api_route(
            "/learning/v1/lessons/{lesson_id}",
            get_with(get_lesson, |op| {
                requires(
                    with_example::<LessonView>(op, example_lesson())
                        .summary("A lesson with its practice and exam items"),
                    ANY_CALLER,
                    &[],
                )
            }),
        )
        .api_route(
            "/learning/v1/papers/{paper_id}",
            get_with(get_paper, |op| {
                requires(
                    with_example::<PaperView>(op, example_paper())
                        .summary("A paper with its items in question and part order"),
                    ANY_CALLER,
                    &[],
                )
            }),
        )
        .api_route(
            "/learning/v1/items/{question_id}",
            get_with(get_item, |op| {
                requires(
                    with_example::<ItemView>(op, example_item()).summary(
                        "The canonical item by questionID, its appearances and attempt count",
                    ),
                    ANY_CALLER,
                    &[],
                )
            }),
        )
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_is_a_valid_value_of_its_type() {
        assert!(
            example_activity().is_some(),
            "{:?}",
            serde_json::from_value::<AttemptView>(example_attempt()).err()
        );
        serde_json::from_value::<UserView>(example_user()).expect("user");
        serde_json::from_value::<LessonView>(example_lesson()).expect("lesson");
        serde_json::from_value::<PaperView>(example_paper()).expect("paper");
        serde_json::from_value::<ItemView>(example_item()).expect("item");
    }
}
