//! The importer's edge cases, each on a small file of its own against a real PostgreSQL: what is
//! skipped (with the reason and an example), what is kept and counted, and that a broken file
//! leaves the database exactly as it was.

use std::path::Path;

use kit::testing::TestDb;
use learning::{
    import::{self, ImportError, Options, Progress},
    settings::ImportLimits,
};
use serde_json::{Value, json};
use sqlx::PgPool;

async fn db() -> (TestDb, PgPool) {
    let db = TestDb::new().await;
    let pool = db.service_pool(&learning::SERVICE).await;
    (db, pool)
}

fn quiet() -> Options {
    Options {
        progress: Progress::Quiet,
        ..Options::default()
    }
}

fn write(dir: &Path, name: &str, v: &Value) {
    std::fs::write(dir.join(name), serde_json::to_vec_pretty(v).expect("json")).expect("write");
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn course() -> Value {
    json!([{"unitIndex": 0, "unitTitle": "Cells", "topics": [
        {"topicIndex": 0, "topicTitle": "Structure", "lessons": [
            {"lessonIndex": 0, "lessonID": "subj0.0.0", "lessonTitle": "One"},
            {"lessonIndex": 1, "lessonID": "subj0.0.1", "lessonTitle": "Two"}]},
        {"topicIndex": 1, "topicTitle": "Empty topic", "lessons": []}]},
        {"unitIndex": 1, "unitTitle": "Empty unit", "topics": []}])
}

fn item(qid: Option<&str>, lessons: &[&str]) -> Value {
    let mut v = json!({"question_part": 1, "question_type": "long_answer",
        "question_text": "Why?", "markmax": 1, "markscheme": "because", "difficulty": 2,
        "lessonIDs": lessons});
    if let Some(q) = qid {
        v["questionID"] = json!(q);
    }
    v
}

fn exams(items: &[Value]) -> Value {
    json!([{"board_title": "aqa", "qualification": "GCSE", "subject_title": "Biology",
        "subject_id": "subj", "type": "Medly", "series": "Mock", "papers": [
        {"paper_id": "paper1", "tier": "Higher", "paper": "1", "questions": [
            {"question_number": 1, "question_stem": "Stem", "question_stem_diagram": null,
             "items": items, "validation_comment": "", "validation_reason": "",
             "question_id": "g1"},
            {"question_number": 2, "question_stem": "No parts", "question_stem_diagram": "| a |",
             "items": [], "validation_comment": "", "validation_reason": "",
             "question_id": "g2"}]}]}])
}

fn attempt(created: &str) -> Value {
    json!({"createdAt": created, "questionID": "q1", "isMarked": false,
           "canvas": {"maths": [], "paths": [], "textboxes": []}})
}

fn key(uid: &str, qid: &str) -> String {
    format!("users/{uid}/subjectsWeb/subj/mocks/paper1/questions/{qid}")
}

#[tokio::test]
async fn missing_question_ids_unknown_lessons_and_empty_arrays_are_counted_not_fatal() {
    let (_db, pool) = db().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "subj_course.json", &course());
    write(
        dir.path(),
        "subj_exams.json",
        &exams(&[
            item(Some("q1"), &["subj0.0.0", "nosuch0.0.9"]),
            item(None, &["subj0.0.1"]),
            item(Some("q3"), &[]),
        ]),
    );
    let r = import::run(&pool, dir.path(), &quiet())
        .await
        .expect("import");
    let exams = &r.files[1];
    assert_eq!(exams.file, "subj_exams.json");
    // The item without questionID is skipped alone, with the reason and where it was.
    let items = r.total("items");
    assert_eq!((items.inserted, items.skipped), (2, 1));
    let reason = &exams.entities["items"].skipped_reasons["missing questionID"];
    assert_eq!(reason.count, 1);
    assert_eq!(
        reason.examples,
        vec!["paper1/questions[0]/items[1]".to_owned()]
    );
    // The unknown lessonID is recorded, unresolved, not dropped.
    assert_eq!(r.total("item_lessons").inserted, 2);
    assert_eq!(r.unresolved.unknown_item_lessons.count, 1);
    assert_eq!(
        r.unresolved.unknown_item_lessons.examples,
        vec!["paper1/g1/q1/nosuch0.0.9".to_owned()]
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM learning.item_lessons WHERE lesson_id IS NULL AND lesson_key = 'nosuch0.0.9'").await,
        1
    );
    // Empty arrays: kept and counted.
    let course = &r.files[0];
    assert_eq!(course.edge_cases["unit_without_topics"].count, 1);
    assert_eq!(course.edge_cases["topic_without_lessons"].count, 1);
    assert_eq!(exams.edge_cases["question_without_items"].count, 1);
    assert_eq!(exams.edge_cases["item_without_lesson_ids"].count, 1);
    assert_eq!(r.total("units").inserted, 2);
    assert_eq!(r.total("topics").inserted, 2);
    assert_eq!(r.total("exam_questions").inserted, 2);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM learning.exam_parts").await,
        2
    );
}

#[tokio::test]
async fn attempts_bad_keys_bad_timestamps_missing_question_ids_and_orphans() {
    let (_db, pool) = db().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut no_qid = attempt("2025-09-15T07:53:09.441000+00:00");
    no_qid.as_object_mut().expect("object").remove("questionID");
    let mut bad_updated = attempt("2025-09-15T07:53:09Z");
    bad_updated["updatedAt"] = json!("2025-02-30T00:00:00Z");
    let targets = json!({
        key("u1", "q1"): attempt("2025-09-16T21:58:05.744000Z"),
        key("u1", "q9"): no_qid,
        key("u2", "q1"): bad_updated,
        key("u2", "q2"): attempt("16/09/2025 21:58"),
        "users/u3/subjectsWeb/subj/mocks/paper1/q1": attempt("2025-09-16T21:58:05Z"),
        "users/u 4/subjectsWeb/subj/mocks/paper1/questions/q1": attempt("2025-09-16T21:58:05Z"),
    });
    write(dir.path(), "user_data.json", &json!({ "targets": targets }));
    let r = import::run(&pool, dir.path(), &quiet())
        .await
        .expect("import");
    let f = &r.files[0];
    let a = &f.entities["attempts"];
    assert_eq!((a.staged, a.inserted, a.skipped), (3, 3, 3), "{a:?}");
    assert_eq!(
        a.skipped_reasons["malformed createdAt"].examples,
        vec![key("u2", "q2")]
    );
    let shape = "unparseable key: key is not users/<uid>/subjectsWeb/<subject>/mocks/<paper>/questions/<questionID>";
    assert_eq!(
        a.skipped_reasons[shape].examples,
        vec!["users/u3/subjectsWeb/subj/mocks/paper1/q1".to_owned()]
    );
    assert_eq!(a.skipped_reasons.len(), 3, "{:?}", a.skipped_reasons.keys());
    // Missing questionID in the body: the key's is used. A malformed updatedAt: ignored.
    assert_eq!(f.edge_cases["question_id_missing_in_body"].count, 1);
    assert_eq!(f.edge_cases["updated_at_malformed_ignored"].count, 1);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM learning.attempts WHERE question_id = 'q9'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM learning.attempts WHERE updated_at = created_at AND NOT source_updated").await,
        3
    );
    assert_eq!(r.total("users").inserted, 2);
    // No item exists yet: every attempt is an orphan, kept with item_id NULL...
    assert_eq!(r.unresolved.orphan_attempts.count, 3);
    // ...until the exams bring the items (q1): those attempts resolve, q9 stays an orphan.
    write(
        dir.path(),
        "subj_exams.json",
        &exams(&[item(Some("q1"), &[])]),
    );
    let r = import::run(&pool, dir.path(), &quiet())
        .await
        .expect("exams");
    assert_eq!(r.unresolved.orphan_attempts.count, 1);
    assert_eq!(r.unresolved.attempts_without_paper.count, 0);
    assert_eq!(
        r.total("attempts").inserted + r.total("attempts").updated,
        0
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM learning.attempts a JOIN learning.items i ON i.id = a.item_id WHERE i.question_id = 'q1'").await,
        2
    );
}

#[tokio::test]
async fn the_same_item_in_two_files_is_one_item_with_two_appearances() {
    let (_db, pool) = db().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "subj_course.json", &course());
    write(
        dir.path(),
        "subj_exams.json",
        &exams(&[item(Some("q1"), &["subj0.0.0"])]),
    );
    let mut shared = item(Some("q1"), &[]);
    shared["question_text"] = json!("A different wording in the practice bank");
    let bank = json!([{"exam_board": "AQA", "qualification": "GCSE", "subject": "Biology",
        "unit_index": 0, "unit_title": "Cells", "topic_index": 0, "topic_title": "Structure",
        "lesson_index": 0, "lessonID": "subj0.0.0", "lesson_title": "One",
        "chunks_used": [], "original_lessonID": "subj0.0.0", "items": [
            {"question_number": 1, "question_stem": "s", "question_stem_diagram": {"required": false, "items": []},
             "items": [shared, item(Some("p2"), &[])],
             "validation_comment": "", "validation_reason": "", "question_id": "pq1"},
            {"question_number": 2, "question_stem": "s", "question_stem_diagram": null,
             "items": [item(Some("p2"), &[])],
             "validation_comment": "", "validation_reason": "", "question_id": "pq2"}]},
        {"lessonID": "unknown9.9.9", "items": []}]);
    write(dir.path(), "subj_practices.json", &bank);
    let r = import::run(&pool, dir.path(), &quiet())
        .await
        .expect("import");
    let practices = r
        .files
        .iter()
        .find(|f| f.file == "subj_practices.json")
        .expect("practices");
    let items = &practices.entities["items"];
    // q1 already came from the exams: it is not rewritten; p2 twice in one file: deduped.
    assert_eq!(
        (
            items.staged,
            items.inserted,
            items.owned_elsewhere,
            items.deduped
        ),
        (3, 1, 1, 1)
    );
    assert_eq!(
        practices.edge_cases["item_also_in_another_file"].examples,
        vec!["q1".to_owned()]
    );
    let text: String =
        sqlx::query_scalar("SELECT question_text FROM learning.items WHERE question_id = 'q1'")
            .fetch_one(&pool)
            .await
            .expect("item");
    assert_eq!(text, "Why?");
    // One item, an exam appearance and a practice appearance.
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM learning.items WHERE question_id = 'q1'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&pool, "SELECT (SELECT count(*) FROM learning.exam_parts ep JOIN learning.items i ON i.id = ep.item_id WHERE i.question_id = 'q1') \
                           + (SELECT count(*) FROM learning.practice_parts pp JOIN learning.items i ON i.id = pp.item_id WHERE i.question_id = 'q1')").await,
        2
    );
    assert_eq!(practices.entities["practice_parts"].inserted, 3);
    // The bank of an unknown lesson is kept, unresolved.
    assert_eq!(
        r.unresolved.unknown_bank_lessons.examples,
        vec!["unknown9.9.9".to_owned()]
    );
    assert_eq!(practices.edge_cases["bank_without_questions"].count, 1);
    // Re-importing both files changes nothing: the two wordings do not flip the item.
    let again = import::run(&pool, dir.path(), &quiet())
        .await
        .expect("again");
    for (entity, c) in &again.totals {
        assert_eq!((c.inserted, c.updated), (0, 0), "{entity}");
    }
}

#[tokio::test]
async fn a_truncated_file_names_the_file_and_byte_and_leaves_the_database_unchanged() {
    let (_db, pool) = db().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "subj_course.json", &course());
    import::run(&pool, dir.path(), &quiet())
        .await
        .expect("course");
    let before = count(&pool, "SELECT count(*) FROM learning.lessons").await;

    // Many attempts with a tiny chunk size, so several COPY chunks reach the database before
    // the parser meets the end of the truncated file: all of them must be rolled back.
    let targets: serde_json::Map<String, Value> = (0..200)
        .map(|i| (key(&format!("u{i}"), "q1"), attempt("2025-09-16T21:58:05Z")))
        .collect();
    let full = serde_json::to_vec(&json!({ "targets": targets })).expect("json");
    let cut = full.len() * 3 / 4;
    std::fs::write(dir.path().join("user_data.json"), &full[..cut]).expect("write");
    let opts = Options {
        limits: ImportLimits {
            batch_rows: 10,
            ..ImportLimits::default()
        },
        ..quiet()
    };
    let err = import::run(&pool, dir.path(), &opts)
        .await
        .expect_err("truncated");
    let ImportError::Json { file, offset, .. } = &err else {
        panic!("not a JSON error: {err}");
    };
    assert_eq!(file, "user_data.json");
    assert_eq!(*offset, cut as u64);
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("user_data.json: invalid JSON at byte {cut} ")),
        "{message}"
    );
    assert!(
        message.contains("nothing from this file was imported"),
        "{message}"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM learning.attempts").await,
        0
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM learning.users").await, 0);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM learning.import_files WHERE source_file = 'user_data.json'"
        )
        .await,
        0
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM learning.lessons").await,
        before
    );
}

#[tokio::test]
async fn a_record_over_the_cap_and_a_file_over_the_cap_are_refused_before_anything_is_written() {
    let (_db, pool) = db().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut big = attempt("2025-09-16T21:58:05Z");
    big["userAnswer"] = json!("x".repeat(5000));
    write(
        dir.path(),
        "user_data.json",
        &json!({"targets": {key("u1", "q1"): big}}),
    );
    let opts = Options {
        limits: ImportLimits {
            max_record_bytes: 2048,
            ..ImportLimits::default()
        },
        ..quiet()
    };
    let err = import::run(&pool, dir.path(), &opts)
        .await
        .expect_err("record cap");
    assert!(
        err.to_string()
            .contains("a record is larger than 2048 bytes"),
        "{err}"
    );
    let opts = Options {
        limits: ImportLimits {
            max_file_bytes: 100,
            ..ImportLimits::default()
        },
        ..quiet()
    };
    let err = import::run(&pool, dir.path(), &opts)
        .await
        .expect_err("file cap");
    assert!(matches!(err, ImportError::TooLarge { .. }), "{err}");
    // A text field over the text cap skips its row only.
    let opts = Options {
        limits: ImportLimits {
            max_text_bytes: 1000,
            ..ImportLimits::default()
        },
        ..quiet()
    };
    let r = import::run(&pool, dir.path(), &opts)
        .await
        .expect("text cap");
    assert_eq!(
        r.total("attempts").skipped_reasons["userAnswer longer than 1000 bytes"].count,
        1
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM learning.attempts").await,
        0
    );
}

#[tokio::test]
async fn an_empty_targets_object_and_an_empty_practices_array_import_nothing() {
    let (_db, pool) = db().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "user_data.json", &json!({"targets": {}}));
    write(dir.path(), "subj_practices.json", &json!([]));
    let r = import::run(&pool, dir.path(), &quiet())
        .await
        .expect("import");
    assert_eq!(r.files.len(), 2);
    assert_eq!(r.total("attempts").staged, 0);
    assert_eq!(r.total("practice_banks").staged, 0);
    // Not the shape of user_data.json at all: a clear error.
    write(dir.path(), "user_data.json", &json!({"other": 1}));
    let err = import::run(&pool, dir.path(), &quiet())
        .await
        .expect_err("no targets");
    assert!(err.to_string().contains("missing field `targets`"), "{err}");
}
