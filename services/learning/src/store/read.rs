//! The API's reads (and the profile patch, the one write): one function per statement or
//! transaction. Every lookup goes through a unique external key (firebase_uid, lesson_key,
//! paper_key, question_id) and every list through an index named in migrations/learning, so a
//! request's cost does not grow with the tables (docs/learning.md, "API").

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgPool};

/// A user's profile with their activity summary.
#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub firebase_uid: String,
    pub name: Option<String>,
    pub metadata: Value,
    pub updated_at: Option<DateTime<Utc>>,
    pub first_seen: DateTime<Utc>,
    pub attempts: i64,
    pub last_activity_at: Option<DateTime<Utc>>,
}

/// The profile: the count and the newest activity come from attempts_user_activity (an
/// index-only range of this user's rows).
pub async fn user(pool: &PgPool, uid: &str) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as::<_, UserRow>(
        "SELECT u.firebase_uid, u.name, u.metadata, u.updated_at, u.first_seen, \
                (SELECT count(*) FROM learning.attempts a WHERE a.user_id = u.id) AS attempts, \
                (SELECT max(a.updated_at) FROM learning.attempts a WHERE a.user_id = u.id) \
                  AS last_activity_at \
           FROM learning.users u WHERE u.firebase_uid = $1",
    )
    .bind(uid)
    .fetch_optional(pool)
    .await
}

/// The internal id of a user (the activity query's key), if the user exists.
pub async fn user_id(pool: &PgPool, uid: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM learning.users WHERE firebase_uid = $1")
        .bind(uid)
        .fetch_optional(pool)
        .await
}

/// One attempt of a user's activity feed.
#[derive(Debug, Clone, FromRow)]
pub struct AttemptRow {
    pub id: i64,
    pub question_id: String,
    pub subject_key: String,
    pub paper_key: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub is_marked: bool,
    pub user_mark: Option<i32>,
    pub markmax: Option<i32>,
    pub user_answer: Option<String>,
    pub orphan: bool,
}

/// The activity filters, each an exact external key.
#[derive(Debug, Clone, Copy, Default)]
pub struct ActivityFilter<'a> {
    pub subject: Option<&'a str>,
    pub paper: Option<&'a str>,
    /// Attempts at items linked to this lessonID (an exam item's lessonIDs, or the item's
    /// place in the lesson's practice bank).
    pub lesson: Option<&'a str>,
}

/// The activity query, with `$tail` after its filters: [`activity`] adds the keyset condition
/// only when there is a cursor, so that `(updated_at, id) < cursor` is an index condition (a
/// range of attempts_user_activity starting at the cursor), not a filter over every row before
/// it (one statement with `$6 IS NULL OR ...` plans as the latter).
macro_rules! activity_sql {
    ($tail:literal) => {
        concat!(
            "SELECT a.id, a.question_id, a.subject_key, a.paper_key, a.created_at, a.updated_at, \
                    a.is_marked, a.user_mark, i.markmax, a.user_answer, a.item_id IS NULL AS orphan \
               FROM learning.attempts a \
               LEFT JOIN learning.items i ON i.id = a.item_id \
              WHERE a.user_id = $1 \
                AND ($2::text IS NULL OR a.subject_key = $2) \
                AND ($3::text IS NULL OR a.paper_key = $3) \
                AND ($4::text IS NULL \
                     OR EXISTS (SELECT 1 FROM learning.item_lessons il \
                                 WHERE il.item_id = a.item_id AND il.lesson_key = $4) \
                     OR EXISTS (SELECT 1 FROM learning.practice_parts pp \
                                  JOIN learning.practice_questions pq ON pq.id = pp.practice_question_id \
                                  JOIN learning.practice_banks pb ON pb.id = pq.bank_id \
                                 WHERE pp.item_id = a.item_id AND pb.lesson_key = $4)) ",
            $tail
        )
    };
}
const ACTIVITY_FIRST: &str = activity_sql!("ORDER BY a.updated_at DESC, a.id DESC LIMIT $5");
const ACTIVITY_AFTER: &str = activity_sql!(
    "AND (a.updated_at, a.id) < ($6, $7) ORDER BY a.updated_at DESC, a.id DESC LIMIT $5"
);

/// A page of a user's attempts, newest first, after the keyset `(updated_at, id)` of the last
/// row of the previous page: a range scan of attempts_user_activity from the cursor, whatever
/// the page's depth. The filters only narrow that one user's rows (a learner has tens to
/// hundreds of attempts).
pub async fn activity(
    pool: &PgPool,
    user_id: i64,
    filter: ActivityFilter<'_>,
    after: Option<(DateTime<Utc>, i64)>,
    fetch: i64,
) -> Result<Vec<AttemptRow>, sqlx::Error> {
    let q = sqlx::query_as::<_, AttemptRow>(match after {
        None => ACTIVITY_FIRST,
        Some(_) => ACTIVITY_AFTER,
    })
    .bind(user_id)
    .bind(filter.subject)
    .bind(filter.paper)
    .bind(filter.lesson)
    .bind(fetch);
    match after {
        Some((at, id)) => q.bind(at).bind(id),
        None => q,
    }
    .fetch_all(pool)
    .await
}

/// The outcome of a profile patch.
pub enum Patched {
    NotFound,
    /// The patch changed nothing (a retry, or values already set): nothing was written.
    Unchanged,
    Changed,
}

/// Applies `apply` to the user's `(name, metadata)` under a row lock, and writes the result only
/// when it differs (so a retried patch writes nothing and keeps `updated_at`). `apply` returns
/// the new pair or a validation error, in which case nothing is written.
pub async fn patch_user<E>(
    pool: &PgPool,
    uid: &str,
    now: DateTime<Utc>,
    apply: impl FnOnce(Option<String>, Value) -> Result<(Option<String>, Value), E>,
) -> Result<Result<Patched, E>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let current: Option<(i64, Option<String>, Value)> = sqlx::query_as(
        "SELECT id, name, metadata FROM learning.users WHERE firebase_uid = $1 FOR UPDATE",
    )
    .bind(uid)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, name, metadata)) = current else {
        return Ok(Ok(Patched::NotFound));
    };
    let (new_name, new_metadata) = match apply(name.clone(), metadata.clone()) {
        Ok(next) => next,
        // Dropping the transaction rolls it back: nothing stored.
        Err(e) => return Ok(Err(e)),
    };
    if new_name == name && new_metadata == metadata {
        tx.commit().await?;
        return Ok(Ok(Patched::Unchanged));
    }
    sqlx::query(
        "UPDATE learning.users SET name = $2, metadata = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(new_name)
    .bind(new_metadata)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(Patched::Changed))
}

/// An item as a list shows it (a paper's or a lesson's).
#[derive(Debug, Clone, FromRow)]
pub struct ItemSummaryRow {
    pub question_id: String,
    pub question_type: String,
    pub question_text: String,
    pub markmax: i32,
    pub difficulty: Option<i32>,
}

/// A lesson's place in the course.
#[derive(Debug, Clone, FromRow)]
pub struct LessonRow {
    pub lesson_key: String,
    pub title: String,
    pub lesson_index: i32,
    pub topic_index: i32,
    pub topic_title: String,
    pub unit_index: i32,
    pub unit_title: String,
    pub subject_key: String,
}

/// The course's lesson by lessonID (lessons.lesson_key is unique).
pub async fn lesson(pool: &PgPool, key: &str) -> Result<Option<LessonRow>, sqlx::Error> {
    sqlx::query_as::<_, LessonRow>(
        "SELECT l.lesson_key, l.title, l.lesson_index, t.topic_index, t.title AS topic_title, \
                un.unit_index, un.title AS unit_title, s.subject_key \
           FROM learning.lessons l \
           JOIN learning.topics t ON t.id = l.topic_id \
           JOIN learning.units un ON un.id = t.unit_id \
           JOIN learning.subjects s ON s.id = un.subject_id \
          WHERE l.lesson_key = $1",
    )
    .bind(key)
    .fetch_optional(pool)
    .await
}

/// An exam item linked to a lesson, at one of its places in a paper (none when the item is in
/// no paper any more).
#[derive(Debug, Clone, FromRow)]
pub struct LessonExamRow {
    #[sqlx(flatten)]
    pub item: ItemSummaryRow,
    pub paper_key: Option<String>,
    pub question_number: Option<i32>,
    pub question_part: Option<i32>,
}

/// The exam items that declare `lesson` among their lessonIDs (item_lessons_lesson), in paper
/// order; at most `fetch` rows.
pub async fn lesson_exam_items(
    pool: &PgPool,
    lesson: &str,
    fetch: i64,
) -> Result<Vec<LessonExamRow>, sqlx::Error> {
    sqlx::query_as::<_, LessonExamRow>(
        "SELECT i.question_id, i.question_type, i.question_text, i.markmax, i.difficulty, \
                p.paper_key, eq.question_number, ep.question_part \
           FROM learning.item_lessons il \
           JOIN learning.items i ON i.id = il.item_id \
           LEFT JOIN learning.exam_parts ep ON ep.item_id = i.id \
           LEFT JOIN learning.exam_questions eq ON eq.id = ep.exam_question_id \
           LEFT JOIN learning.papers p ON p.id = eq.paper_id \
          WHERE il.lesson_key = $1 \
          ORDER BY p.paper_key, eq.question_number, ep.question_part, i.question_id \
          LIMIT $2",
    )
    .bind(lesson)
    .bind(fetch)
    .fetch_all(pool)
    .await
}

/// A practice item of a lesson's bank.
#[derive(Debug, Clone, FromRow)]
pub struct LessonPracticeRow {
    #[sqlx(flatten)]
    pub item: ItemSummaryRow,
    pub question_number: i32,
    pub question_part: i32,
}

/// The items of the lesson's practice bank (practice_banks.lesson_key is unique), in question
/// and part order (practice_questions_bank); at most `fetch` rows.
pub async fn lesson_practice_items(
    pool: &PgPool,
    lesson: &str,
    fetch: i64,
) -> Result<Vec<LessonPracticeRow>, sqlx::Error> {
    sqlx::query_as::<_, LessonPracticeRow>(
        "SELECT i.question_id, i.question_type, i.question_text, i.markmax, i.difficulty, \
                pq.question_number, pp.question_part \
           FROM learning.practice_banks pb \
           JOIN learning.practice_questions pq ON pq.bank_id = pb.id \
           JOIN learning.practice_parts pp ON pp.practice_question_id = pq.id \
           JOIN learning.items i ON i.id = pp.item_id \
          WHERE pb.lesson_key = $1 \
          ORDER BY pq.question_number, pp.question_part, i.question_id \
          LIMIT $2",
    )
    .bind(lesson)
    .bind(fetch)
    .fetch_all(pool)
    .await
}

/// A paper with its set.
#[derive(Debug, Clone, FromRow)]
pub struct PaperRow {
    pub id: i64,
    pub paper_key: String,
    pub tier: String,
    pub paper_number: String,
    pub board: String,
    pub qualification: String,
    pub subject_title: String,
    pub set_type: String,
    pub series: String,
    pub subject_key: String,
}

pub async fn paper(pool: &PgPool, key: &str) -> Result<Option<PaperRow>, sqlx::Error> {
    sqlx::query_as::<_, PaperRow>(
        "SELECT p.id, p.paper_key, p.tier, p.paper_number, ps.board, ps.qualification, \
                ps.subject_title, ps.set_type, ps.series, s.subject_key \
           FROM learning.papers p \
           JOIN learning.paper_sets ps ON ps.id = p.paper_set_id \
           JOIN learning.subjects s ON s.id = ps.subject_id \
          WHERE p.paper_key = $1",
    )
    .bind(key)
    .fetch_optional(pool)
    .await
}

/// One part of a paper's question.
#[derive(Debug, Clone, FromRow)]
pub struct PaperPartRow {
    pub question_number: i32,
    pub stem: String,
    pub stem_diagram: Option<Value>,
    pub question_part: i32,
    #[sqlx(flatten)]
    pub item: ItemSummaryRow,
}

/// The paper's parts ordered by question number then part (exam_questions_paper, then
/// exam_parts_question); at most `fetch` rows.
pub async fn paper_parts(
    pool: &PgPool,
    paper_id: i64,
    fetch: i64,
) -> Result<Vec<PaperPartRow>, sqlx::Error> {
    sqlx::query_as::<_, PaperPartRow>(
        "SELECT eq.question_number, eq.stem, eq.stem_diagram, ep.question_part, \
                i.question_id, i.question_type, i.question_text, i.markmax, i.difficulty \
           FROM learning.exam_questions eq \
           JOIN learning.exam_parts ep ON ep.exam_question_id = eq.id \
           JOIN learning.items i ON i.id = ep.item_id \
          WHERE eq.paper_id = $1 \
          ORDER BY eq.question_number, ep.question_part, i.question_id \
          LIMIT $2",
    )
    .bind(paper_id)
    .bind(fetch)
    .fetch_all(pool)
    .await
}

/// The canonical item, with how many attempts reference it (attempts_item).
#[derive(Debug, Clone, FromRow)]
pub struct ItemRow {
    pub id: i64,
    pub question_id: String,
    pub question_type: String,
    pub question_text: String,
    pub markmax: i32,
    pub markscheme: String,
    pub difficulty: Option<i32>,
    pub options: Option<Vec<String>>,
    pub correct_answer: Option<Value>,
    pub specification_point: Option<String>,
    pub diagram: Option<Value>,
    pub attempts: i64,
}

pub async fn item(pool: &PgPool, question_id: &str) -> Result<Option<ItemRow>, sqlx::Error> {
    sqlx::query_as::<_, ItemRow>(
        "SELECT i.id, i.question_id, i.question_type, i.question_text, i.markmax, i.markscheme, \
                i.difficulty, i.options, i.correct_answer, i.specification_point, i.diagram, \
                (SELECT count(*) FROM learning.attempts a WHERE a.item_id = i.id) AS attempts \
           FROM learning.items i WHERE i.question_id = $1",
    )
    .bind(question_id)
    .fetch_optional(pool)
    .await
}

/// Where an item appears: `kind` `exam` (context = paper_id) or `practice` (context = the
/// bank's lessonID), with the question and part numbers there.
#[derive(Debug, Clone, FromRow)]
pub struct AppearanceRow {
    pub kind: String,
    pub context: String,
    pub question_number: i32,
    pub question_part: i32,
}

/// Every appearance of the item in papers (exam_parts_item) and practice banks
/// (practice_parts_item), exams first; at most `fetch` rows.
pub async fn appearances(
    pool: &PgPool,
    item_id: i64,
    fetch: i64,
) -> Result<Vec<AppearanceRow>, sqlx::Error> {
    sqlx::query_as::<_, AppearanceRow>(
        "SELECT * FROM ( \
           SELECT 'exam' AS kind, p.paper_key AS context, eq.question_number, ep.question_part \
             FROM learning.exam_parts ep \
             JOIN learning.exam_questions eq ON eq.id = ep.exam_question_id \
             JOIN learning.papers p ON p.id = eq.paper_id \
            WHERE ep.item_id = $1 \
           UNION ALL \
           SELECT 'practice', pb.lesson_key, pq.question_number, pp.question_part \
             FROM learning.practice_parts pp \
             JOIN learning.practice_questions pq ON pq.id = pp.practice_question_id \
             JOIN learning.practice_banks pb ON pb.id = pq.bank_id \
            WHERE pp.item_id = $1 \
         ) x ORDER BY kind, context, question_number, question_part \
         LIMIT $2",
    )
    .bind(item_id)
    .bind(fetch)
    .fetch_all(pool)
    .await
}

/// The lessonIDs an item declares, with whether the course knows each.
pub async fn item_lessons(
    pool: &PgPool,
    item_id: i64,
    fetch: i64,
) -> Result<Vec<(String, bool)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT lesson_key, lesson_id IS NOT NULL FROM learning.item_lessons \
          WHERE item_id = $1 ORDER BY lesson_key LIMIT $2",
    )
    .bind(item_id)
    .bind(fetch)
    .fetch_all(pool)
    .await
}

/// Whether anything (a practice bank, an exam item's link) names `lesson` although the course
/// does not: such a lesson is answered with its items, not 404.
pub async fn lesson_is_referenced(pool: &PgPool, lesson: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM learning.practice_banks WHERE lesson_key = $1) \
             OR EXISTS (SELECT 1 FROM learning.item_lessons WHERE lesson_key = $1)",
    )
    .bind(lesson)
    .fetch_one(pool)
    .await
}
