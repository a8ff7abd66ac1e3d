//! The importer against a real PostgreSQL: the real files, idempotency, a changed file, and the
//! edge cases (each test its own database).

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use kit::testing::TestDb;
use learning::import::{self, Options, Progress, Report};
use sqlx::PgPool;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 12, minute, 0)
        .single()
        .expect("valid time")
}

fn opts(minute: u32) -> Options {
    Options {
        progress: Progress::Quiet,
        run_at: Some(at(minute)),
        ..Options::default()
    }
}

async fn db() -> (TestDb, PgPool) {
    let db = TestDb::new().await;
    let pool = db.service_pool(&learning::SERVICE).await;
    (db, pool)
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A copy of the real data in a temporary directory, to change.
fn real_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in [
        "aqaGCSEBio_course.json",
        "aqaGCSEBio_exams.json",
        "user_data.json",
    ] {
        std::fs::copy(data_dir().join(name), dir.path().join(name)).expect("copy");
    }
    dir
}

/// Every row's (table, ctid, xmin, xmax): an update changes its ctid and xmin, a row lock its
/// xmax (`ON CONFLICT DO UPDATE … WHERE false` locks every conflicting row).
async fn tuple_versions(pool: &PgPool) -> Vec<(String, String, String, String)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'learning' \
          AND tablename NOT IN ('_sqlx_migrations', 'import_files', 'import_runs') ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("tables");
    assert!(tables.len() >= 10, "{tables:?}");
    let mut all = Vec::new();
    for t in tables {
        let rows: Vec<(String, String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT ctid::text, xmin::text, xmax::text FROM learning.{t} ORDER BY ctid"
        )))
        .fetch_all(pool)
        .await
        .expect("tuples");
        all.extend(rows.into_iter().map(|(c, n, x)| (t.clone(), c, n, x)));
    }
    all
}

fn assert_nothing_written(r: &Report) {
    for (entity, c) in &r.totals {
        assert_eq!((c.inserted, c.updated), (0, 0), "{entity}: {c:?}");
    }
}

#[tokio::test]
async fn the_real_files_import_with_the_counts_of_the_files_and_a_second_run_writes_nothing() {
    let (_db, pool) = db().await;
    let r = import::run(&pool, &data_dir(), &opts(0))
        .await
        .expect("import");
    println!("{}", r.render());
    for (entity, n) in [
        ("units", 8),
        ("topics", 25),
        ("lessons", 279),
        ("papers", 2),
        ("exam_questions", 17),
        ("items", 64),
        ("exam_parts", 64),
        ("users", 36),
        ("attempts", 1061),
    ] {
        let c = r.total(entity);
        assert_eq!(
            (c.staged, c.inserted, c.skipped),
            (n, n, 0),
            "{entity}: {c:?}"
        );
    }
    assert_eq!(r.total("item_lessons").inserted, 230);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM learning.attempts").await,
        1061
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(DISTINCT user_id) FROM learning.attempts"
        )
        .await,
        36
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM learning.lessons").await,
        279
    );
    // Every attempt of the real file resolves to an item and a paper; every lessonID to a lesson.
    assert_eq!(r.unresolved.orphan_attempts.count, 0);
    assert_eq!(r.unresolved.attempts_without_paper.count, 0);
    assert_eq!(r.unresolved.unknown_item_lessons.count, 0);
    // The data README's edge cases, each counted.
    let attempts = r
        .files
        .iter()
        .find(|f| f.file == "user_data.json")
        .expect("attempts file");
    let exams = r
        .files
        .iter()
        .find(|f| f.file == "aqaGCSEBio_exams.json")
        .expect("exams");
    let edge = |f: &import::FileReport, name: &str| f.edge_cases.get(name).map_or(0, |s| s.count);
    assert_eq!(edge(attempts, "timestamp_ending_z"), 963);
    assert_eq!(edge(attempts, "timestamp_with_offset"), 98 + 48);
    assert_eq!(edge(attempts, "updated_at_missing"), 1061 - 48);
    assert_eq!(edge(attempts, "user_mark_while_not_marked"), 1);
    assert_eq!(edge(attempts, "user_answer_missing"), 1061 - 119);
    assert_eq!(edge(attempts, "annotated_answer_missing"), 1061 - 87);
    assert_eq!(edge(attempts, "marking_table_missing"), 1061 - 87);
    assert_eq!(edge(attempts, "user_id_missing_in_body"), 1061);
    assert_eq!(edge(exams, "difficulty_missing"), 8);
    assert_eq!(edge(exams, "options_on_non_mcq_item"), 2);
    assert_eq!(edge(exams, "stem_diagram_object"), 6);
    assert!(r.missing_kinds.contains(&import::Kind::Practices));
    assert!(
        r.ignored_files
            .iter()
            .any(|f| f == "aqaGCSEBio_practices_schema.json")
    );
    // The stored timestamps: `+00:00` and `Z` are the same instants.
    let created: DateTime<Utc> = sqlx::query_scalar(
        "SELECT created_at FROM learning.attempts WHERE source_key LIKE 'users/05IsdAyoSnekvovtyr2fC5cNOnF3/%aqaGCSEBio_1_1_1_EBc0BgD11T'",
    )
    .fetch_one(&pool)
    .await
    .expect("attempt");
    assert_eq!(created.to_rfc3339(), "2025-09-15T07:53:09.441+00:00");

    let before = tuple_versions(&pool).await;
    let again = import::run(&pool, &data_dir(), &opts(5))
        .await
        .expect("second import");
    assert_nothing_written(&again);
    // Not one row version written or locked, in any table (the report's zeros are the
    // statements' own counts; this is what PostgreSQL stored).
    assert!(
        before == tuple_versions(&pool).await,
        "a no-op import rewrote or locked rows"
    );
    assert_eq!(again.total("attempts").unchanged, 1061);
    assert_eq!(again.total("lessons").unchanged, 279);
    // Unchanged rows keep the first run's last_seen; the file's own record moves.
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM learning.attempts WHERE last_seen <> first_seen"
        )
        .await,
        0
    );
    let file_seen: DateTime<Utc> = sqlx::query_scalar(
        "SELECT last_seen FROM learning.import_files WHERE source_file = 'user_data.json'",
    )
    .fetch_one(&pool)
    .await
    .expect("import_files");
    assert_eq!(file_seen, at(5));
}

#[tokio::test]
async fn a_changed_file_updates_exactly_the_changed_rows_and_moves_their_last_seen() {
    let (_db, pool) = db().await;
    let dir = real_copy();
    import::run(&pool, dir.path(), &opts(0))
        .await
        .expect("first");

    // Two attempts change (a mark, an answer) and one lesson title; everything else stays.
    let users = dir.path().join("user_data.json");
    let text = std::fs::read_to_string(&users).expect("read");
    let mut doc: serde_json::Value = serde_json::from_str(&text).expect("json");
    let targets = doc["targets"].as_object_mut().expect("targets");
    let mut keys = targets.keys().cloned().collect::<Vec<_>>();
    keys.sort();
    let (k1, k2) = (keys[0].clone(), keys[1].clone());
    targets[&k1]["isMarked"] = serde_json::json!(true);
    targets[&k2]["userAnswer"] = serde_json::json!("a new answer");
    std::fs::write(&users, serde_json::to_vec_pretty(&doc).expect("write")).expect("write");
    let course = dir.path().join("aqaGCSEBio_course.json");
    let text = std::fs::read_to_string(&course).expect("read").replace(
        "\"Light vs Electron Microscopes\"",
        "\"Light and Electron Microscopes\"",
    );
    std::fs::write(&course, text).expect("write");

    let r = import::run(&pool, dir.path(), &opts(7))
        .await
        .expect("second");
    let attempts = r.total("attempts");
    assert_eq!(
        (attempts.inserted, attempts.updated, attempts.unchanged),
        (0, 2, 1059)
    );
    let lessons = r.total("lessons");
    assert_eq!(
        (lessons.inserted, lessons.updated, lessons.unchanged),
        (0, 1, 278)
    );
    for entity in ["units", "topics", "items", "users", "papers"] {
        let c = r.total(entity);
        assert_eq!((c.inserted, c.updated), (0, 0), "{entity}");
    }
    let moved: Vec<String> = sqlx::query_scalar(
        "SELECT source_key FROM learning.attempts WHERE last_seen = $1 ORDER BY source_key",
    )
    .bind(at(7))
    .fetch_all(&pool)
    .await
    .expect("moved");
    assert_eq!(moved, vec![k1.clone(), k2.clone()]);
    let first_seen: DateTime<Utc> =
        sqlx::query_scalar("SELECT first_seen FROM learning.attempts WHERE source_key = $1")
            .bind(&k1)
            .fetch_one(&pool)
            .await
            .expect("first_seen");
    assert_eq!(first_seen, at(0));
    let answer: Option<String> =
        sqlx::query_scalar("SELECT user_answer FROM learning.attempts WHERE source_key = $1")
            .bind(&k2)
            .fetch_one(&pool)
            .await
            .expect("answer");
    assert_eq!(answer.as_deref(), Some("a new answer"));
    // And once more: nothing.
    assert_nothing_written(
        &import::run(&pool, dir.path(), &opts(9))
            .await
            .expect("third"),
    );
}

/// A failed run leaves a row in import_runs naming the file, and a serving replica exports it as
/// newer than the last success (what LearningImportFailed compares).
#[tokio::test]
async fn a_failed_run_is_recorded_and_exported_as_newer_than_the_last_success() {
    let (_db, pool) = db().await;
    import::run(&pool, &data_dir(), &opts(0))
        .await
        .expect("first import");
    let err = import::run_sources(
        &pool,
        vec![import::Source::bytes(
            "user_data.json",
            b"{\"users\": {\"u1\": [",
        )],
        &opts(5),
    )
    .await
    .expect_err("a truncated file fails");
    let runs: Vec<(bool, i32, Option<String>)> =
        sqlx::query_as("SELECT ok, files, error FROM learning.import_runs ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("runs");
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(
        (runs[0].0, runs[0].1, runs[0].2.as_deref()),
        (true, 3, None)
    );
    assert!(!runs[1].0 && runs[1].1 == 0, "{runs:?}");
    let recorded = runs[1].2.as_deref().expect("the error is kept");
    assert_eq!(recorded, err.to_string());
    assert!(recorded.contains("user_data.json"), "{recorded}");

    let app = kit::testing::app_for(
        &learning::SERVICE,
        learning::start_with(
            kit::Ctx::new(pool.clone(), true),
            learning::Settings::default(),
        ),
    );
    let base = kit::testing::spawn_app(app).await;
    let gauge = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = reqwest::get(format!("{base}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        let success = gauge(&text, learning::gauges::LAST_SUCCESS);
        let failure = gauge(&text, learning::gauges::LAST_FAILURE);
        if let (Some(success), Some(failure)) = (success, failure)
            && success > 0.0
        {
            // The runs finished a few milliseconds after their run_at (12:00 and 12:05).
            assert!(
                (success - at(0).timestamp() as f64).abs() < 60.0,
                "{success}"
            );
            assert!(
                (failure - at(5).timestamp() as f64).abs() < 60.0,
                "{failure}"
            );
            assert!(failure > success);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no gauges after 10 s:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
