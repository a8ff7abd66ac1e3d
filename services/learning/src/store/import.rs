//! The importer's SQL: staging tables (filled by COPY), then one set-based upsert per entity,
//! all inside the file's transaction (crate::import).
//!
//! Every upsert has the same shape: deduplicate the staged rows on the entity's key (the last
//! record of the file wins, by its sequence number), join the parents by their external keys, then
//! drop the rows whose stored content hash is already the same (a read: an anti-join on the key),
//! then `INSERT … ON CONFLICT (key) DO UPDATE … WHERE content_hash IS DISTINCT FROM
//! EXCLUDED.content_hash` for the rest: a row whose content did not change is not written at all
//! (no dead tuple, no row lock, no WAL, `last_seen` unchanged), a changed one is updated in place
//! and its `last_seen` moves. The filter comes first because `ON CONFLICT DO UPDATE … WHERE false`
//! still locks every conflicting row, which writes each of their pages: that made a no-op
//! re-import slower than the first import. The `WHERE` stays as the guard for a row changed
//! between the filter and the insert. `xmax = 0` in `RETURNING` tells an inserted row from an
//! updated one.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use crate::domain::Seen;

/// What one upsert did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Upserted {
    /// Distinct keys among the staged rows.
    pub distinct: u64,
    /// Of those, rows whose parent exists (the rest are skipped: their parent was skipped).
    pub joined: u64,
    /// Rows left alone because another source file owns them (items only).
    pub owned_elsewhere: u64,
    pub inserted: u64,
    pub updated: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Insert or update on changed content.
    Upsert,
    /// Update only rows this file owns (an item another file brought first stays as it is).
    UpsertOwned,
    /// Insert a row that does not exist yet; never update (a subject a course file names only
    /// by key must not overwrite the details an exams file gave it).
    Ensure,
}

/// One entity's upsert from its staging table.
pub struct Upsert {
    pub entity: &'static str,
    stage: &'static str,
    /// The staged key columns (DISTINCT ON).
    key: &'static str,
    /// Joins after `FROM src`.
    joins: &'static str,
    target: &'static str,
    /// `(column, expression over src and the joins)`.
    columns: &'static [(&'static str, &'static str)],
    conflict: &'static str,
    mode: Mode,
}

impl Upsert {
    fn sql(&self) -> String {
        let cols: Vec<&str> = self.columns.iter().map(|c| c.0).collect();
        let exprs: Vec<String> = self
            .columns
            .iter()
            .map(|(c, e)| format!("{e} AS {c}"))
            .collect();
        let conflict_cols: Vec<&str> = self.conflict.split(',').map(str::trim).collect();
        let sets: Vec<String> = cols
            .iter()
            .filter(|c| !conflict_cols.contains(c))
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .chain(
                ["source_file", "source_key", "last_seen", "content_hash"]
                    .iter()
                    .map(|c| format!("{c} = EXCLUDED.{c}")),
            )
            .collect();
        let on_conflict = match self.mode {
            Mode::Ensure => "DO NOTHING".to_owned(),
            Mode::Upsert => format!(
                "DO UPDATE SET {} WHERE t.content_hash IS DISTINCT FROM EXCLUDED.content_hash",
                sets.join(", ")
            ),
            Mode::UpsertOwned => format!(
                "DO UPDATE SET {} WHERE t.content_hash IS DISTINCT FROM EXCLUDED.content_hash \
                 AND t.source_file = EXCLUDED.source_file",
                sets.join(", ")
            ),
        };
        let owned_elsewhere = if self.mode == Mode::UpsertOwned {
            // The snapshot of every CTE is the statement's start: this counts the rows another
            // file owned before this statement, which are exactly the ones it leaves alone.
            let conflict = self.conflict;
            format!(
                "(SELECT count(*) FROM j JOIN {target} x USING ({conflict}) \
                  WHERE x.source_file <> $1)",
                target = self.target
            )
        } else {
            "0::bigint".to_owned()
        };
        // What may be written: new keys, and (unless the mode never updates) rows whose content
        // changed, of this file where it must own them. `x.content_hash` is NOT NULL in every
        // table, so a NULL one means no row with this key exists.
        let write_filter = match self.mode {
            Mode::Ensure => "x.content_hash IS NULL",
            Mode::Upsert => "x.content_hash IS DISTINCT FROM j.content_hash",
            Mode::UpsertOwned => {
                "x.content_hash IS NULL OR (x.content_hash <> j.content_hash AND x.source_file = $1)"
            }
        };
        // Deduplication keeps the last record per key. It groups the narrow (key, seq) pairs by
        // hash instead of sorting whole staged rows (DISTINCT ON): at 100x the staged items are
        // hundreds of MB, the keys a fraction of that.
        format!(
            "WITH keep AS MATERIALIZED ( \
               SELECT max(seq) AS seq FROM {stage} GROUP BY {key}), \
             j AS MATERIALIZED ( \
               SELECT {exprs}, src.source_key, src.content_hash \
                 FROM {stage} src JOIN keep USING (seq) {joins}), \
             w AS ( \
               SELECT j.* FROM j LEFT JOIN {target} x USING ({conflict}) \
                WHERE {write_filter}), \
             up AS ( \
               INSERT INTO {target} AS t ({cols}, source_file, source_key, first_seen, last_seen, content_hash) \
               SELECT {cols}, $1, source_key, $2, $2, content_hash FROM w \
               ON CONFLICT ({conflict}) {on_conflict} \
               RETURNING (t.xmax = 0) AS inserted) \
             SELECT (SELECT count(*) FROM keep) AS distinct_rows, \
                    (SELECT count(*) FROM j) AS joined, \
                    {owned_elsewhere} AS owned_elsewhere, \
                    count(*) FILTER (WHERE inserted) AS inserted, \
                    count(*) FILTER (WHERE NOT inserted) AS updated \
               FROM up",
            key = self.key,
            stage = self.stage,
            exprs = exprs.join(", "),
            joins = self.joins,
            target = self.target,
            cols = cols.join(", "),
            conflict = self.conflict,
            write_filter = write_filter,
        )
    }

    /// The table it writes (`learning.<entity>`).
    pub fn target(&self) -> &'static str {
        self.target
    }

    pub async fn run(
        &self,
        conn: &mut PgConnection,
        source_file: &str,
        run_at: DateTime<Utc>,
    ) -> Result<Upserted, sqlx::Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(self.sql()))
            .bind(source_file)
            .bind(run_at)
            .fetch_one(&mut *conn)
            .await?;
        let n =
            |c: &str| -> Result<u64, sqlx::Error> { Ok(row.try_get::<i64, _>(c)?.unsigned_abs()) };
        Ok(Upserted {
            distinct: n("distinct_rows")?,
            joined: n("joined")?,
            owned_elsewhere: n("owned_elsewhere")?,
            inserted: n("inserted")?,
            updated: n("updated")?,
        })
    }
}

// One positional constructor keeps the table of upserts below readable as a table.
#[allow(clippy::too_many_arguments)]
const fn up(
    entity: &'static str,
    stage: &'static str,
    key: &'static str,
    joins: &'static str,
    target: &'static str,
    columns: &'static [(&'static str, &'static str)],
    conflict: &'static str,
    mode: Mode,
) -> Upsert {
    Upsert {
        entity,
        stage,
        key,
        joins,
        target,
        columns,
        conflict,
        mode,
    }
}

const SUBJECT_COLUMNS: &[(&str, &str)] = &[
    ("subject_key", "src.subject_key"),
    ("title", "src.title"),
    ("board", "src.board"),
    ("qualification", "src.qualification"),
];

/// Subjects a file names only by key (course, by its file name).
pub const ENSURE_SUBJECTS: Upsert = up(
    "subjects",
    "stage_subjects",
    "subject_key",
    "",
    "learning.subjects",
    SUBJECT_COLUMNS,
    "subject_key",
    Mode::Ensure,
);

/// Subjects with their details (exams).
pub const SUBJECTS: Upsert = up(
    "subjects",
    "stage_subjects",
    "subject_key",
    "",
    "learning.subjects",
    SUBJECT_COLUMNS,
    "subject_key",
    Mode::Upsert,
);

pub const UNITS: Upsert = up(
    "units",
    "stage_units",
    "subject_key, unit_index",
    "JOIN learning.subjects s ON s.subject_key = src.subject_key",
    "learning.units",
    &[
        ("subject_id", "s.id"),
        ("unit_index", "src.unit_index"),
        ("title", "src.title"),
    ],
    "subject_id, unit_index",
    Mode::Upsert,
);

pub const TOPICS: Upsert = up(
    "topics",
    "stage_topics",
    "subject_key, unit_index, topic_index",
    "JOIN learning.subjects s ON s.subject_key = src.subject_key \
     JOIN learning.units u ON u.subject_id = s.id AND u.unit_index = src.unit_index",
    "learning.topics",
    &[
        ("unit_id", "u.id"),
        ("topic_index", "src.topic_index"),
        ("title", "src.title"),
    ],
    "unit_id, topic_index",
    Mode::Upsert,
);

pub const LESSONS: Upsert = up(
    "lessons",
    "stage_lessons",
    "lesson_key",
    "JOIN learning.subjects s ON s.subject_key = src.subject_key \
     JOIN learning.units u ON u.subject_id = s.id AND u.unit_index = src.unit_index \
     JOIN learning.topics tp ON tp.unit_id = u.id AND tp.topic_index = src.topic_index",
    "learning.lessons",
    &[
        ("topic_id", "tp.id"),
        ("lesson_index", "src.lesson_index"),
        ("lesson_key", "src.lesson_key"),
        ("title", "src.title"),
    ],
    "lesson_key",
    Mode::Upsert,
);

pub const PAPER_SETS: Upsert = up(
    "paper_sets",
    "stage_paper_sets",
    "set_key",
    "JOIN learning.subjects s ON s.subject_key = src.subject_key",
    "learning.paper_sets",
    &[
        ("set_key", "src.set_key"),
        ("subject_id", "s.id"),
        ("board", "src.board"),
        ("qualification", "src.qualification"),
        ("subject_title", "src.subject_title"),
        ("set_type", "src.set_type"),
        ("series", "src.series"),
    ],
    "set_key",
    Mode::Upsert,
);

pub const PAPERS: Upsert = up(
    "papers",
    "stage_papers",
    "paper_key",
    "JOIN learning.paper_sets ps ON ps.set_key = src.set_key",
    "learning.papers",
    &[
        ("paper_key", "src.paper_key"),
        ("paper_set_id", "ps.id"),
        ("tier", "src.tier"),
        ("paper_number", "src.paper_number"),
    ],
    "paper_key",
    Mode::Upsert,
);

pub const EXAM_QUESTIONS: Upsert = up(
    "exam_questions",
    "stage_questions",
    "question_key",
    "JOIN learning.papers p ON p.paper_key = src.parent_key",
    "learning.exam_questions",
    &[
        ("question_key", "src.question_key"),
        ("paper_id", "p.id"),
        ("question_number", "src.question_number"),
        ("stem", "src.stem"),
        ("stem_diagram", "src.stem_diagram"),
        ("validation_comment", "src.validation_comment"),
        ("validation_reason", "src.validation_reason"),
    ],
    "question_key",
    Mode::Upsert,
);

/// Items: the first file that brings a questionID owns its content; the same questionID in
/// another file adds an appearance (a part) but never rewrites the item, so two files that
/// disagree cannot make re-imports flip it back and forth.
pub const ITEMS: Upsert = up(
    "items",
    "stage_items",
    "question_id",
    "",
    "learning.items",
    &[
        ("question_id", "src.question_id"),
        ("question_type", "src.question_type"),
        ("question_text", "src.question_text"),
        ("markmax", "src.markmax"),
        ("markscheme", "src.markscheme"),
        ("difficulty", "src.difficulty"),
        ("options", "src.options"),
        ("correct_answer", "src.correct_answer"),
        ("specification_point", "src.specification_point"),
        ("diagram", "src.diagram"),
    ],
    "question_id",
    Mode::UpsertOwned,
);

pub const EXAM_PARTS: Upsert = up(
    "exam_parts",
    "stage_parts",
    "question_key, question_id",
    "JOIN learning.exam_questions q ON q.question_key = src.question_key \
     JOIN learning.items i ON i.question_id = src.question_id",
    "learning.exam_parts",
    &[
        ("exam_question_id", "q.id"),
        ("item_id", "i.id"),
        ("question_part", "src.question_part"),
    ],
    "exam_question_id, item_id",
    Mode::Upsert,
);

pub const ITEM_LESSONS: Upsert = up(
    "item_lessons",
    "stage_item_lessons",
    "question_id, lesson_key",
    "JOIN learning.items i ON i.question_id = src.question_id \
     LEFT JOIN learning.lessons l ON l.lesson_key = src.lesson_key",
    "learning.item_lessons",
    &[
        ("item_id", "i.id"),
        ("lesson_key", "src.lesson_key"),
        ("lesson_id", "l.id"),
    ],
    "item_id, lesson_key",
    Mode::Upsert,
);

pub const PRACTICE_BANKS: Upsert = up(
    "practice_banks",
    "stage_banks",
    "lesson_key",
    "LEFT JOIN learning.lessons l ON l.lesson_key = src.lesson_key",
    "learning.practice_banks",
    &[
        ("lesson_key", "src.lesson_key"),
        ("lesson_id", "l.id"),
        ("original_lesson_key", "src.original_lesson_key"),
        ("exam_board", "src.exam_board"),
        ("qualification", "src.qualification"),
        ("subject_title", "src.subject_title"),
        ("unit_index", "src.unit_index"),
        ("unit_title", "src.unit_title"),
        ("topic_index", "src.topic_index"),
        ("topic_title", "src.topic_title"),
        ("lesson_index", "src.lesson_index"),
        ("lesson_title", "src.lesson_title"),
        ("chunks_used", "src.chunks_used"),
    ],
    "lesson_key",
    Mode::Upsert,
);

pub const PRACTICE_QUESTIONS: Upsert = up(
    "practice_questions",
    "stage_questions",
    "question_key",
    "JOIN learning.practice_banks b ON b.lesson_key = src.parent_key",
    "learning.practice_questions",
    &[
        ("question_key", "src.question_key"),
        ("bank_id", "b.id"),
        ("question_number", "src.question_number"),
        ("stem", "src.stem"),
        ("stem_diagram", "src.stem_diagram"),
        ("validation_comment", "src.validation_comment"),
        ("validation_reason", "src.validation_reason"),
    ],
    "question_key",
    Mode::Upsert,
);

pub const PRACTICE_PARTS: Upsert = up(
    "practice_parts",
    "stage_parts",
    "question_key, question_id",
    "JOIN learning.practice_questions q ON q.question_key = src.question_key \
     JOIN learning.items i ON i.question_id = src.question_id",
    "learning.practice_parts",
    &[
        ("practice_question_id", "q.id"),
        ("item_id", "i.id"),
        ("question_part", "src.question_part"),
    ],
    "practice_question_id, item_id",
    Mode::Upsert,
);

pub const ATTEMPTS: Upsert = up(
    "attempts",
    "stage_attempts",
    "uid, subject_key, paper_key, question_id",
    "JOIN learning.users u ON u.firebase_uid = src.uid \
     LEFT JOIN learning.papers p ON p.paper_key = src.paper_key \
     LEFT JOIN learning.items i ON i.question_id = src.question_id",
    "learning.attempts",
    &[
        ("user_id", "u.id"),
        ("subject_key", "src.subject_key"),
        ("paper_key", "src.paper_key"),
        ("question_id", "src.question_id"),
        ("paper_id", "p.id"),
        ("item_id", "i.id"),
        ("created_at", "src.created_at"),
        ("updated_at", "src.updated_at"),
        ("source_updated", "src.source_updated"),
        ("is_marked", "src.is_marked"),
        ("user_mark", "src.user_mark"),
        ("user_answer", "src.user_answer"),
        ("annotated_answer", "src.annotated_answer"),
        ("marking_table", "src.marking_table"),
        ("options", "src.options"),
        ("canvas", "src.canvas"),
    ],
    "user_id, subject_key, paper_key, question_id",
    Mode::Upsert,
);

/// The users the staged attempts name (by Firebase uid). Inserted once, never updated by an
/// import: their profile (name, metadata) belongs to the API. Returns (distinct, inserted).
pub async fn ensure_users(
    conn: &mut PgConnection,
    source_file: &str,
    run_at: DateTime<Utc>,
) -> Result<(u64, u64), sqlx::Error> {
    let row = sqlx::query(
        "WITH src AS MATERIALIZED (SELECT DISTINCT uid FROM stage_attempts), \
         ins AS ( \
           INSERT INTO learning.users (firebase_uid, source_file, source_key, first_seen, last_seen, content_hash) \
           SELECT uid, $1, 'users/' || uid, $2, $2, sha256(convert_to(uid, 'UTF8')) FROM src \
           ON CONFLICT (firebase_uid) DO NOTHING RETURNING 1) \
         SELECT (SELECT count(*) FROM src), (SELECT count(*) FROM ins)",
    )
    .bind(source_file)
    .bind(run_at)
    .fetch_one(&mut *conn)
    .await?;
    Ok((
        row.try_get::<i64, _>(0)?.unsigned_abs(),
        row.try_get::<i64, _>(1)?.unsigned_abs(),
    ))
}

/// Fills the references that were unknown when their rows were written, now that this file may
/// have brought what they point at: attempts → items and papers, lesson links → lessons. Each
/// statement reads only the unresolved rows (partial indexes in the migration). These are not
/// content changes: content_hash and last_seen stay.
pub async fn resolve_links(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    for sql in [
        "UPDATE learning.attempts a SET item_id = i.id FROM learning.items i \
          WHERE a.item_id IS NULL AND i.question_id = a.question_id",
        "UPDATE learning.attempts a SET paper_id = p.id FROM learning.papers p \
          WHERE a.paper_id IS NULL AND p.paper_key = a.paper_key",
        "UPDATE learning.item_lessons x SET lesson_id = l.id FROM learning.lessons l \
          WHERE x.lesson_id IS NULL AND l.lesson_key = x.lesson_key",
        "UPDATE learning.practice_banks b SET lesson_id = l.id FROM learning.lessons l \
          WHERE b.lesson_id IS NULL AND l.lesson_key = b.lesson_key",
    ] {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    Ok(())
}

/// What is still unresolved in the whole schema after an import (the report's closing state).
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq)]
pub struct Unresolved {
    /// Attempts whose questionID matches no item (kept as orphans, item_id NULL).
    pub orphan_attempts: Seen,
    /// Attempts whose paper matches no paper (paper_id NULL).
    pub attempts_without_paper: Seen,
    /// Exam items' lessonIDs the course does not have (lesson_id NULL).
    pub unknown_item_lessons: Seen,
    /// Practice banks whose lessonID the course does not have.
    pub unknown_bank_lessons: Seen,
}

pub async fn unresolved(conn: &mut PgConnection) -> Result<Unresolved, sqlx::Error> {
    async fn seen(
        conn: &mut PgConnection,
        count: &str,
        examples: &str,
    ) -> Result<Seen, sqlx::Error> {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count))
            .fetch_one(&mut *conn)
            .await?;
        let examples: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(examples))
            .fetch_all(&mut *conn)
            .await?;
        Ok(Seen {
            count: n.unsigned_abs(),
            examples,
        })
    }
    Ok(Unresolved {
        orphan_attempts: seen(
            conn,
            "SELECT count(*) FROM learning.attempts WHERE item_id IS NULL",
            "SELECT source_key FROM learning.attempts WHERE item_id IS NULL ORDER BY question_id LIMIT 3",
        )
        .await?,
        attempts_without_paper: seen(
            conn,
            "SELECT count(*) FROM learning.attempts WHERE paper_id IS NULL",
            "SELECT source_key FROM learning.attempts WHERE paper_id IS NULL ORDER BY paper_key LIMIT 3",
        )
        .await?,
        unknown_item_lessons: seen(
            conn,
            "SELECT count(*) FROM learning.item_lessons WHERE lesson_id IS NULL",
            "SELECT source_key FROM learning.item_lessons WHERE lesson_id IS NULL ORDER BY lesson_key LIMIT 3",
        )
        .await?,
        unknown_bank_lessons: seen(
            conn,
            "SELECT count(*) FROM learning.practice_banks WHERE lesson_id IS NULL",
            "SELECT lesson_key FROM learning.practice_banks WHERE lesson_id IS NULL ORDER BY lesson_key LIMIT 3",
        )
        .await?,
    })
}

/// Records that a file was read (every run, changed or not).
pub async fn record_file(
    conn: &mut PgConnection,
    source_file: &str,
    sha256: &[u8],
    run_at: DateTime<Utc>,
    report: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO learning.import_files (source_file, sha256, first_seen, last_seen, last_report) \
         VALUES ($1, $2, $3, $3, $4) \
         ON CONFLICT (source_file) DO UPDATE SET sha256 = EXCLUDED.sha256, \
           last_seen = EXCLUDED.last_seen, last_report = EXCLUDED.last_report",
    )
    .bind(source_file)
    .bind(sha256)
    .bind(run_at)
    .bind(report)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records one importer run and forgets runs older than 90 days (the table stays small: one row
/// per run).
pub async fn record_run(
    pool: &sqlx::PgPool,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    files: i32,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH pruned AS (DELETE FROM learning.import_runs \
                          WHERE finished_at < $2 - interval '90 days') \
         INSERT INTO learning.import_runs (started_at, finished_at, ok, files, error) \
         VALUES ($1, $2, $4 IS NULL, $3, $4)",
    )
    .bind(started_at)
    .bind(finished_at)
    .bind(files)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// When the newest successful and the newest failed run finished (import_runs_outcome).
pub async fn last_runs(
    pool: &sqlx::PgPool,
) -> Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>), sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT max(finished_at) FROM learning.import_runs WHERE ok), \
                (SELECT max(finished_at) FROM learning.import_runs WHERE NOT ok)",
    )
    .fetch_one(pool)
    .await
}
