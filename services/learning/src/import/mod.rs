//! The importer: the four JSON sources into schema `learning`, streaming, in bulk, idempotent.
//!
//! For each source file, in dependency order (course, exams, practices, then user_data), in one
//! transaction:
//!
//! 1. a parsing thread streams the file's top-level records ([`json`]: one record in memory at
//!    a time, capped), turns each into rows or skip reasons ([`crate::domain::records`]) and
//!    encodes the rows in COPY text format with their content hash ([`copy`]), in chunks of
//!    `batch_rows` that go through a bounded channel (two chunks in flight at most);
//! 2. the async side COPYs each chunk into temporary staging tables;
//! 3. set-based upserts move the staged rows into the real tables, writing only rows whose
//!    content hash changed ([`crate::store::import`]); references the file resolves are filled;
//! 4. the file's report is stored in import_files and the transaction commits.
//!
//! Anything that goes wrong in a file (broken JSON, a record over the cap, a database error)
//! rolls that file's transaction back: the database keeps exactly its previous state for that
//! file, and the run stops with an error naming the file (and the byte offset for JSON).

pub mod copy;
pub mod json;
mod report;

use std::{
    io::{BufReader, Read},
    path::{Path, PathBuf},
    time::Instant,
};

use chrono::{DateTime, Utc};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio::sync::mpsc;

pub use report::{Counts, FileReport, Report};

use self::copy::{Row, StageId};
use crate::{
    domain::{
        Tally,
        records::{self, Bounds, entity},
        time,
    },
    settings::ImportLimits,
    store::import as sql,
};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    #[default]
    Auto,
    Bar,
    Lines,
    Quiet,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub limits: ImportLimits,
    pub progress: Progress,
    /// The run's timestamp (first_seen/last_seen); now when unset. Tests pin it.
    pub run_at: Option<DateTime<Utc>>,
}

/// The kind of a source file, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Course,
    Exams,
    Practices,
    Attempts,
}

impl Kind {
    /// `*_course.json`, `*_exams.json`, `*_practices.json`, `user_data.json` (or
    /// `*_user_data.json`); anything else (the `*_schema.json` files) is not an input.
    pub fn of(name: &str) -> Option<Self> {
        if name.ends_with("_schema.json") {
            None
        } else if name.ends_with("_course.json") {
            Some(Self::Course)
        } else if name.ends_with("_exams.json") {
            Some(Self::Exams)
        } else if name.ends_with("_practices.json") {
            Some(Self::Practices)
        } else if name == "user_data.json" || name.ends_with("_user_data.json") {
            Some(Self::Attempts)
        } else {
            None
        }
    }

    fn stages(self) -> &'static [StageId] {
        use StageId as S;
        match self {
            Self::Course => &[S::Subjects, S::Units, S::Topics, S::Lessons],
            Self::Exams => &[
                S::Subjects,
                S::PaperSets,
                S::Papers,
                S::Questions,
                S::Items,
                S::Parts,
                S::ItemLessons,
            ],
            Self::Practices => &[S::Banks, S::Questions, S::Items, S::Parts],
            Self::Attempts => &[S::Attempts],
        }
    }

    /// The upserts, parents first, with the stage each one reads.
    fn upserts(self) -> &'static [(&'static sql::Upsert, StageId)] {
        use StageId as S;
        match self {
            Self::Course => &[
                (&sql::ENSURE_SUBJECTS, S::Subjects),
                (&sql::UNITS, S::Units),
                (&sql::TOPICS, S::Topics),
                (&sql::LESSONS, S::Lessons),
            ],
            Self::Exams => &[
                (&sql::SUBJECTS, S::Subjects),
                (&sql::PAPER_SETS, S::PaperSets),
                (&sql::PAPERS, S::Papers),
                (&sql::EXAM_QUESTIONS, S::Questions),
                (&sql::ITEMS, S::Items),
                (&sql::EXAM_PARTS, S::Parts),
                (&sql::ITEM_LESSONS, S::ItemLessons),
            ],
            Self::Practices => &[
                (&sql::PRACTICE_BANKS, S::Banks),
                (&sql::PRACTICE_QUESTIONS, S::Questions),
                (&sql::ITEMS, S::Items),
                (&sql::PRACTICE_PARTS, S::Parts),
            ],
            // Users first (custom: they come from the attempts' keys), then attempts.
            Self::Attempts => &[(&sql::ATTEMPTS, S::Attempts)],
        }
    }
}

/// One input: a file on disk or bytes compiled into the binary (the sample data).
pub struct Source {
    pub name: String,
    data: Data,
}

enum Data {
    File(PathBuf),
    Bytes(&'static [u8]),
}

impl Source {
    pub fn file(path: &Path) -> Self {
        Self {
            name: path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            data: Data::File(path.to_owned()),
        }
    }

    pub fn bytes(name: &str, bytes: &'static [u8]) -> Self {
        Self {
            name: name.to_owned(),
            data: Data::Bytes(bytes),
        }
    }

    fn len(&self) -> Result<u64, ImportError> {
        match &self.data {
            Data::File(p) => std::fs::metadata(p)
                .map(|m| m.len())
                .map_err(|e| ImportError::Io {
                    file: self.name.clone(),
                    source: e,
                }),
            Data::Bytes(b) => Ok(b.len() as u64),
        }
    }

    fn open(&self) -> Result<Box<dyn Read + Send>, ImportError> {
        Ok(match &self.data {
            Data::File(p) => Box::new(BufReader::with_capacity(
                256 << 10,
                std::fs::File::open(p).map_err(|e| ImportError::Io {
                    file: self.name.clone(),
                    source: e,
                })?,
            )),
            Data::Bytes(b) => Box::new(*b),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read directory {dir}: {source}")]
    Dir { dir: String, source: std::io::Error },
    #[error(
        "{dir}: no input files (expected *_course.json, *_exams.json, *_practices.json or user_data.json)"
    )]
    NoInputs { dir: String },
    #[error("{file}: {size} bytes is over the import limit of {max} bytes (--max-file-bytes)")]
    TooLarge { file: String, size: u64, max: u64 },
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error(
        "{file}: invalid JSON at byte {offset} (line {line}, column {column}): {message}; \
         nothing from this file was imported"
    )]
    Json {
        file: String,
        offset: u64,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: database error: {source}; nothing from this file was imported")]
    Db { file: String, source: sqlx::Error },
    #[error("{file}: {message}; nothing from this file was imported")]
    Stopped { file: String, message: String },
}

/// Imports every input file of `dir` (see [`Kind::of`]). A directory that cannot be read or
/// holds no input file is a failed run too (recorded like any other).
pub async fn run(pool: &PgPool, dir: &Path, opts: &Options) -> Result<Report, ImportError> {
    let (sources, mut ignored) = match inputs_of(dir) {
        Ok(found) => found,
        Err(e) => {
            let run_at = opts.run_at.unwrap_or_else(Utc::now);
            record_outcome(pool, run_at, Instant::now(), 0, Some(&e)).await;
            return Err(e);
        }
    };
    let mut report = run_sources(pool, sources, opts).await?;
    ignored.sort();
    report.ignored_files = ignored;
    Ok(report)
}

/// The input files of `dir`, and the names of the other files (reported as ignored).
fn inputs_of(dir: &Path) -> Result<(Vec<Source>, Vec<String>), ImportError> {
    let dir_err = |e| ImportError::Dir {
        dir: dir.display().to_string(),
        source: e,
    };
    let mut sources = Vec::new();
    let mut ignored = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(dir_err)? {
        let path = entry.map_err(dir_err)?.path();
        if !path.is_file() {
            continue;
        }
        let source = Source::file(&path);
        if Kind::of(&source.name).is_some() {
            sources.push(source);
        } else {
            ignored.push(source.name);
        }
    }
    if sources.is_empty() {
        return Err(ImportError::NoInputs {
            dir: dir.display().to_string(),
        });
    }
    Ok((sources, ignored))
}

/// Imports `sources` (their kinds from their names), parents first, and records the run's
/// outcome in import_runs (the gauges and the LearningImportFailed alert read it).
pub async fn run_sources(
    pool: &PgPool,
    sources: Vec<Source>,
    opts: &Options,
) -> Result<Report, ImportError> {
    let started = Instant::now();
    let run_at = opts.run_at.unwrap_or_else(Utc::now);
    let mut committed = 0;
    let result = import_sources(pool, sources, opts, started, run_at, &mut committed).await;
    record_outcome(pool, run_at, started, committed, result.as_ref().err()).await;
    result
}

/// The longest error text import_runs keeps (its CHECK): a JSON parser's message quotes input.
const MAX_RECORDED_ERROR_CHARS: usize = 1000;

/// Writes the run's row. Best effort: the import's own outcome is what the caller gets; a
/// failure to record it (the database went away) is logged, and the gauges then show the last
/// run they could see.
async fn record_outcome(
    pool: &PgPool,
    run_at: DateTime<Utc>,
    started: Instant,
    committed: i32,
    error: Option<&ImportError>,
) {
    let finished_at = run_at
        + chrono::Duration::from_std(started.elapsed())
            .unwrap_or_else(|_| chrono::Duration::zero());
    let error: Option<String> = error.map(|e| {
        e.to_string()
            .chars()
            .take(MAX_RECORDED_ERROR_CHARS)
            .collect()
    });
    if let Err(e) = sql::record_run(pool, run_at, finished_at, committed, error.as_deref()).await {
        tracing::warn!(error = %e, "the import run could not be recorded in import_runs");
    }
}

async fn import_sources(
    pool: &PgPool,
    sources: Vec<Source>,
    opts: &Options,
    started: Instant,
    run_at: DateTime<Utc>,
    committed: &mut i32,
) -> Result<Report, ImportError> {
    let mut inputs: Vec<(Kind, Source)> = sources
        .into_iter()
        .filter_map(|s| Kind::of(&s.name).map(|k| (k, s)))
        .collect();
    inputs.sort_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
    // Sizes first: a file over the cap stops the run before anything is written.
    for (_, s) in &inputs {
        let size = s.len()?;
        if size > opts.limits.max_file_bytes {
            return Err(ImportError::TooLarge {
                file: s.name.clone(),
                size,
                max: opts.limits.max_file_bytes,
            });
        }
    }
    let mut report = Report::new(run_at);
    for kind in [Kind::Course, Kind::Exams, Kind::Practices, Kind::Attempts] {
        if !inputs.iter().any(|(k, _)| *k == kind) {
            report.missing_kinds.push(kind);
        }
    }
    let progress = resolve_progress(opts.progress);
    for (kind, source) in inputs {
        let file = import_file(pool, source, kind, opts, run_at, progress).await?;
        *committed += 1;
        if progress == Progress::Lines {
            eprintln!("{}", file.summary_line());
        }
        report.files.push(file);
    }
    let mut conn = pool.acquire().await.map_err(|e| ImportError::Db {
        file: "(report)".into(),
        source: e,
    })?;
    report.unresolved = sql::unresolved(&mut conn)
        .await
        .map_err(|e| ImportError::Db {
            file: "(report)".into(),
            source: e,
        })?;
    report.finish(started.elapsed());
    Ok(report)
}

fn resolve_progress(p: Progress) -> Progress {
    use std::io::IsTerminal;
    match p {
        Progress::Auto if std::io::stderr().is_terminal() => Progress::Bar,
        Progress::Auto => Progress::Lines,
        other => other,
    }
}

/// A chunk of COPY rows for one staging table.
struct Chunk {
    stage: StageId,
    data: Vec<u8>,
}

/// What the parsing thread hands back.
struct Parsed {
    tally: Tally,
    staged: [u64; copy::STAGES.len()],
    records: u64,
    sha256: [u8; 32],
    bytes: u64,
}

async fn import_file(
    pool: &PgPool,
    source: Source,
    kind: Kind,
    opts: &Options,
    run_at: DateTime<Utc>,
    progress: Progress,
) -> Result<FileReport, ImportError> {
    let started = Instant::now();
    let name = source.name.clone();
    let db = |e| ImportError::Db {
        file: name.clone(),
        source: e,
    };
    let size = source.len()?;
    let bar = (progress == Progress::Bar).then(|| {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(name.clone());
        bar
    });

    // A connection of its own (the pool's settings: schema, TLS), so that temp_buffers can
    // still be set: PostgreSQL allows it only before a session's first temporary table, and a
    // pooled session may have had one. The default 8 MB would push every staging table of a
    // large file out to temporary files.
    let mut conn = PgConnection::connect_with(&pool.connect_options())
        .await
        .map_err(db)?;
    conn.execute("SET temp_buffers = '256MB'")
        .await
        .map_err(db)?;
    let mut tx = conn.begin().await.map_err(db)?;
    // Grouping and joining a 100x staging table in memory rather than in temporary files; and
    // the commit need not wait for the WAL flush: a crash right after it loses at most this
    // file's import, which the next (idempotent) run redoes.
    tx.execute("SET LOCAL work_mem = '256MB'")
        .await
        .map_err(db)?;
    tx.execute("SET LOCAL synchronous_commit = off")
        .await
        .map_err(db)?;
    for stage in kind.stages() {
        tx.execute(sqlx::AssertSqlSafe(stage.stage().ddl()))
            .await
            .map_err(db)?;
    }

    let (chunks, mut incoming) = mpsc::channel::<Chunk>(2);
    let limits = opts.limits;
    let thread_name = name.clone();
    let thread_bar = bar.clone();
    let parser = tokio::task::spawn_blocking(move || {
        parse_file(&source, kind, limits, thread_bar, progress, size, chunks)
    });
    let mut copy_error = None;
    while let Some(chunk) = incoming.recv().await {
        if let Err(e) = copy_chunk(&mut tx, &chunk).await {
            copy_error = Some(e);
            break;
        }
    }
    // Dropping the receiver stops a parser that is still sending (after a COPY error).
    drop(incoming);
    let parsed = parser.await.map_err(|e| ImportError::Stopped {
        file: thread_name.clone(),
        message: format!("the parsing thread failed: {e}"),
    });
    if let Some(e) = copy_error {
        return Err(db(e));
    }
    let parsed = parsed??;
    let staged_ms = started.elapsed().as_millis() as u64;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }

    let mut file = FileReport::new(&name, kind, parsed.bytes, parsed.records, &parsed.sha256);
    file.parse_and_copy_ms = staged_ms;
    for stage in kind.stages() {
        tx.execute(sqlx::AssertSqlSafe(format!(
            "ANALYZE {}",
            stage.stage().name
        )))
        .await
        .map_err(db)?;
    }
    if kind == Kind::Attempts {
        let (distinct, inserted) = sql::ensure_users(&mut tx, &name, run_at)
            .await
            .map_err(db)?;
        if inserted > 1000 {
            tx.execute("ANALYZE learning.users").await.map_err(db)?;
        }
        file.entities.insert(
            entity::USERS,
            Counts {
                staged: distinct,
                inserted,
                unchanged: distinct - inserted,
                ..Counts::default()
            },
        );
    }
    for (upsert, stage) in kind.upserts() {
        let upsert_started = Instant::now();
        let done = upsert.run(&mut tx, &name, run_at).await.map_err(db)?;
        let staged = parsed.staged[*stage as usize];
        let mut counts = Counts::from_upsert(staged, done, &parsed.tally, upsert.entity);
        // Fresh statistics for the tables the next statements join: a table this transaction
        // just filled still looks empty to the planner, which then picks nested loops over it.
        if done.inserted + done.updated > 1000 {
            tx.execute(sqlx::AssertSqlSafe(format!("ANALYZE {}", upsert.target())))
                .await
                .map_err(db)?;
        }
        counts.upsert_ms = upsert_started.elapsed().as_millis() as u64;
        file.entities.insert(upsert.entity, counts);
    }
    let mut tally = parsed.tally;
    if kind == Kind::Exams || kind == Kind::Practices {
        for q in shared_items(&mut tx, &name).await.map_err(db)? {
            tally.edge("item_also_in_another_file", &q);
        }
        // The examples come from the staged rows; the count is the upsert's.
        if let (Some(counts), Some(seen)) = (
            file.entities.get(entity::ITEMS),
            tally.edge_cases.get_mut("item_also_in_another_file"),
        ) {
            seen.count = counts.owned_elsewhere;
        }
    }
    sql::resolve_links(&mut tx).await.map_err(db)?;
    file.edge_cases = tally.edge_cases;
    file.finish(started.elapsed());
    let json = serde_json::to_value(&file).unwrap_or_default();
    sql::record_file(&mut tx, &name, &parsed.sha256, run_at, &json)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    let _ = conn.close().await;
    Ok(file)
}

/// Examples of staged items another file owns (the report's "same item in two files").
async fn shared_items(conn: &mut PgConnection, file: &str) -> Result<Vec<String>, sqlx::Error> {
    // Driven from the staged keys, one index probe each. The plain join let the planner walk
    // the whole items index in question_id order (for ORDER BY … LIMIT) against every staged row:
    // 576 M comparisons and 17 s for the exams file of a re-import at 30x, once the practices had
    // filled the table; most of a no-op re-import's time at 100x.
    sqlx::query_scalar(
        "WITH s AS MATERIALIZED (SELECT DISTINCT question_id FROM stage_items) \
         SELECT s.question_id FROM s CROSS JOIN LATERAL ( \
           SELECT 1 FROM learning.items i \
            WHERE i.question_id = s.question_id AND i.source_file <> $1 LIMIT 1) other \
          ORDER BY 1 LIMIT 3",
    )
    .bind(file)
    .fetch_all(&mut *conn)
    .await
}

async fn copy_chunk(conn: &mut PgConnection, chunk: &Chunk) -> Result<(), sqlx::Error> {
    let mut copy = conn
        .copy_in_raw(&chunk.stage.stage().copy_statement())
        .await?;
    if let Err(e) = copy.send(chunk.data.as_slice()).await {
        let _ = copy.abort("send failed").await;
        return Err(e);
    }
    copy.finish().await?;
    Ok(())
}

/// The parsing thread: streams `source`, stages its rows, returns the tally.
fn parse_file(
    source: &Source,
    kind: Kind,
    limits: ImportLimits,
    bar: Option<indicatif::ProgressBar>,
    progress: Progress,
    size: u64,
    chunks: mpsc::Sender<Chunk>,
) -> Result<Parsed, ImportError> {
    let name = source.name.clone();
    let reader = source.open()?;
    let mut next_line = 10u64;
    let line_name = name.clone();
    let on_progress: Box<dyn FnMut(u64)> = Box::new(move |at| {
        if let Some(bar) = &bar {
            bar.set_position(at);
        } else if progress == Progress::Lines && size > 8 << 20 {
            // Plain lines for a large file only: every 10 %.
            let pct = at.saturating_mul(100) / size.max(1);
            if pct >= next_line {
                eprintln!("{line_name}: {pct}% ({at} of {size} bytes)");
                next_line = (pct / 10 + 1) * 10;
            }
        }
    });
    let mut counting = json::Counting::new(reader, limits.max_record_bytes, on_progress);
    let pos = counting.position();
    let mut de = serde_json::Deserializer::from_reader(&mut counting);
    let mut sink = Sink {
        kind,
        subject: if kind == Kind::Course {
            records::course_subject(&name).map(str::to_owned)
        } else {
            None
        },
        bounds: Bounds {
            max_text_bytes: limits.max_text_bytes,
        },
        tally: Tally::default(),
        stager: Stager::new(limits.batch_rows, chunks),
        records: 0,
    };
    if kind == Kind::Course && sink.subject.is_none() {
        return Err(ImportError::Stopped {
            file: name,
            message: "a course file's name must be <subject id>_course.json".into(),
        });
    }
    if let Some(subject) = sink.subject.clone() {
        sink.stager.subject(&subject, None);
    }
    let result = match kind {
        Kind::Attempts => json::targets(&mut de, &pos, &mut sink),
        _ => json::array(&mut de, &pos, &mut sink),
    };
    if let Err(e) = result {
        if let Some(message) = sink.stager.stopped.take() {
            return Err(ImportError::Stopped {
                file: name,
                message,
            });
        }
        return Err(ImportError::Json {
            file: name,
            offset: pos.offset(),
            line: e.line(),
            column: e.column(),
            message: json_message(&e),
        });
    }
    sink.stager.flush_all();
    if let Some(message) = sink.stager.stopped.take() {
        return Err(ImportError::Stopped {
            file: name,
            message,
        });
    }
    drop(de);
    let (sha256, bytes) = counting.finish().map_err(|e| ImportError::Io {
        file: name.clone(),
        source: e,
    })?;
    Ok(Parsed {
        tally: sink.tally,
        staged: sink.stager.staged,
        records: sink.records,
        sha256,
        bytes,
    })
}

/// serde_json's message without its own " at line L column C" (the error says it once).
fn json_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// Rows in COPY format per staging table, sent in chunks.
struct Stager {
    bufs: Vec<(Vec<u8>, usize)>,
    staged: [u64; copy::STAGES.len()],
    seq: u64,
    batch_rows: usize,
    chunks: mpsc::Sender<Chunk>,
    /// Why staging stopped (the database side went away), reported instead of serde's error.
    stopped: Option<String>,
}

/// A chunk is also sent once it holds this many bytes, whatever its row count.
const CHUNK_BYTES: usize = 8 << 20;

impl Stager {
    fn new(batch_rows: usize, chunks: mpsc::Sender<Chunk>) -> Self {
        Self {
            bufs: (0..copy::STAGES.len()).map(|_| (Vec::new(), 0)).collect(),
            staged: [0; copy::STAGES.len()],
            seq: 0,
            batch_rows,
            chunks,
            stopped: None,
        }
    }

    fn push(&mut self, stage: StageId, source_key: &str, fill: impl FnOnce(&mut Row<'_>)) {
        let i = stage as usize;
        let (buf, rows) = &mut self.bufs[i];
        let mut row = Row::new(buf);
        fill(&mut row);
        row.finish(source_key, self.seq);
        self.seq += 1;
        *rows += 1;
        self.staged[i] += 1;
        if *rows >= self.batch_rows || buf.len() >= CHUNK_BYTES {
            self.flush(stage);
        }
    }

    fn flush(&mut self, stage: StageId) {
        let (buf, rows) = &mut self.bufs[stage as usize];
        if *rows == 0 || self.stopped.is_some() {
            return;
        }
        let data = std::mem::take(buf);
        *rows = 0;
        if self.chunks.blocking_send(Chunk { stage, data }).is_err() {
            self.stopped = Some("the database side stopped receiving rows".into());
        }
    }

    fn flush_all(&mut self) {
        for stage in [
            StageId::Subjects,
            StageId::Units,
            StageId::Topics,
            StageId::Lessons,
            StageId::PaperSets,
            StageId::Papers,
            StageId::Questions,
            StageId::Items,
            StageId::Parts,
            StageId::ItemLessons,
            StageId::Banks,
            StageId::Attempts,
        ] {
            self.flush(stage);
        }
    }

    fn subject(&mut self, key: &str, details: Option<&records::SubjectRow>) {
        self.push(StageId::Subjects, key, |r| {
            r.str(key)
                .text(details.and_then(|d| d.title.as_deref()))
                .text(details.and_then(|d| d.board.as_deref()))
                .text(details.and_then(|d| d.qualification.as_deref()));
        });
    }

    fn question(&mut self, q: &records::QuestionRow) {
        self.push(StageId::Questions, &q.source_key, |r| {
            r.str(&q.question_key)
                .str(&q.parent_key)
                .int(Some(q.question_number))
                .str(&q.stem)
                .json(q.stem_diagram.as_ref())
                .text(q.validation_comment.as_deref())
                .text(q.validation_reason.as_deref());
        });
    }

    fn item(&mut self, i: &records::ItemRow) {
        self.push(StageId::Items, &i.source_key, |r| {
            r.str(&i.question_id)
                .str(&i.question_type)
                .str(&i.question_text)
                .int(Some(i.markmax))
                .str(&i.markscheme)
                .int(i.difficulty)
                .text_array(i.options.as_deref())
                .json(i.correct_answer.as_ref())
                .text(i.specification_point.as_deref())
                .json(i.diagram.as_ref());
        });
    }

    fn part(&mut self, p: &records::PartRow) {
        self.push(StageId::Parts, &p.source_key, |r| {
            r.str(&p.question_key)
                .str(&p.question_id)
                .int(Some(p.question_part));
        });
    }
}

/// The parser's [`json::Records`]: each record through the domain, its rows into the stager.
struct Sink {
    kind: Kind,
    subject: Option<String>,
    bounds: Bounds,
    tally: Tally,
    stager: Stager,
    records: u64,
}

impl json::Records for Sink {
    fn record(
        &mut self,
        index: u64,
        key: Option<&str>,
        value: serde_json::Value,
    ) -> Result<(), json::Stop> {
        self.records += 1;
        let (b, t, st) = (self.bounds, &mut self.tally, &mut self.stager);
        match self.kind {
            Kind::Course => {
                let subject = self.subject.as_deref().unwrap_or_default();
                let rows = records::course_unit(subject, index, &value, b, t);
                for u in &rows.units {
                    st.push(StageId::Units, &u.source_key, |r| {
                        r.str(&u.subject_key).int(Some(u.unit_index)).str(&u.title);
                    });
                }
                for x in &rows.topics {
                    st.push(StageId::Topics, &x.source_key, |r| {
                        r.str(&x.subject_key)
                            .int(Some(x.unit_index))
                            .int(Some(x.topic_index))
                            .str(&x.title);
                    });
                }
                for l in &rows.lessons {
                    st.push(StageId::Lessons, &l.lesson_key, |r| {
                        r.str(&l.subject_key)
                            .int(Some(l.unit_index))
                            .int(Some(l.topic_index))
                            .int(Some(l.lesson_index))
                            .str(&l.lesson_key)
                            .str(&l.title);
                    });
                }
            }
            Kind::Exams => {
                let rows = records::exam_set(index, &value, b, t);
                if let Some(s) = &rows.subject {
                    st.subject(&s.subject_key, Some(s));
                }
                if let Some(ps) = &rows.paper_set {
                    st.push(StageId::PaperSets, &ps.set_key, |r| {
                        r.str(&ps.set_key)
                            .str(&ps.subject_key)
                            .str(&ps.board)
                            .str(&ps.qualification)
                            .str(&ps.subject_title)
                            .str(&ps.set_type)
                            .str(&ps.series);
                    });
                }
                for p in &rows.papers {
                    st.push(StageId::Papers, &p.paper_key, |r| {
                        r.str(&p.paper_key)
                            .str(&p.set_key)
                            .str(&p.tier)
                            .str(&p.paper_number);
                    });
                }
                rows.questions.iter().for_each(|q| st.question(q));
                rows.items.iter().for_each(|i| st.item(i));
                rows.parts.iter().for_each(|p| st.part(p));
                for l in &rows.item_lessons {
                    st.push(StageId::ItemLessons, &l.source_key, |r| {
                        r.str(&l.question_id).str(&l.lesson_key);
                    });
                }
            }
            Kind::Practices => {
                let rows = records::practice_bank(index, &value, b, t);
                if let Some(bk) = &rows.bank {
                    st.push(StageId::Banks, &bk.lesson_key, |r| {
                        r.str(&bk.lesson_key)
                            .text(bk.original_lesson_key.as_deref())
                            .text(bk.exam_board.as_deref())
                            .text(bk.qualification.as_deref())
                            .text(bk.subject_title.as_deref())
                            .int(bk.unit_index)
                            .text(bk.unit_title.as_deref())
                            .int(bk.topic_index)
                            .text(bk.topic_title.as_deref())
                            .int(bk.lesson_index)
                            .text(bk.lesson_title.as_deref())
                            .json(bk.chunks_used.as_ref());
                    });
                }
                rows.questions.iter().for_each(|q| st.question(q));
                rows.items.iter().for_each(|i| st.item(i));
                rows.parts.iter().for_each(|p| st.part(p));
            }
            Kind::Attempts => {
                let key = key.unwrap_or_default();
                if let Some(a) = records::attempt(key, &value, b, t) {
                    st.push(StageId::Attempts, &a.source_key, |r| {
                        r.str(&a.uid)
                            .str(&a.subject_key)
                            .str(&a.paper_key)
                            .str(&a.question_id)
                            .str(&time::format(&a.created_at))
                            .str(&time::format(&a.updated_at))
                            .boolean(a.source_updated)
                            .boolean(a.is_marked)
                            .int(a.user_mark)
                            .text(a.user_answer.as_deref())
                            .text(a.annotated_answer.as_deref())
                            .json(a.marking_table.as_ref())
                            .text_array(a.options.as_deref())
                            .json(Some(&a.canvas));
                    });
                }
            }
        }
        if st.stopped.is_some() {
            Err(json::Stop)
        } else {
            Ok(())
        }
    }
}
