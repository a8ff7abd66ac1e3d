//! `bench-learning`: the learning importer at scale, next to the two baselines for the same rows
//! in the same run: a naive row-by-row INSERT and a raw COPY into the same tables.
//!
//!     cargo run --release -p meridian-tests --bin bench-learning [-- --scale 100 --naive-scale 5]
//!
//! For each scale (`--naive-scale`, then `--scale`): generate the four files
//! (`learning::generate`, seeded), import them into a fresh database with the importer (rows/s =
//! rows now in the schema's tables / the whole run, parsing included), import them again (the
//! idempotent no-op), dump every table (COPY TO, into temporary files), then load exactly those
//! rows into another fresh database with raw COPY (no parsing, no staging, no dedup: the floor),
//! and, at the naive scale only, with one prepared INSERT per row in one transaction (what an
//! ORM's save-per-row does; far too slow for 100x on two cores, so it is timed on the smaller
//! scale and compared as rows/s). Peak memory is the process's VmHWM, reset before each import
//! (/proc/self/clear_refs), so the two scales show whether it grows with the input.
//!
//! Uses DATABASE_URL when set, else a throwaway PostgreSQL; always fresh databases.

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    time::Instant,
};

use anyhow::Context;
use clap::Parser;
use futures_util::StreamExt;
use kit::testing::TestDb;
use sqlx::{Connection, PgConnection, PgPool};

#[derive(Parser)]
struct Args {
    /// The importer and raw-COPY scale (100 = ≥ 1M practice parts + attempts).
    #[arg(long, default_value_t = 100)]
    scale: u32,
    /// The scale the naive INSERT also runs at (the importer and COPY run here too).
    #[arg(long, default_value_t = 5)]
    naive_scale: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Rows of the commit-per-row naive load (what an ORM in autocommit mode does).
    #[arg(long, default_value_t = 10_000)]
    autocommit_rows: u64,
}

/// The schema's tables, parents first.
const TABLES: &[&str] = &[
    "subjects",
    "units",
    "topics",
    "lessons",
    "paper_sets",
    "papers",
    "exam_questions",
    "items",
    "exam_parts",
    "item_lessons",
    "practice_banks",
    "practice_questions",
    "practice_parts",
    "users",
    "attempts",
];

struct Measured {
    scale: u32,
    rows: u64,
    parts_and_attempts: u64,
    import_secs: f64,
    import_hwm_kb: u64,
    again_secs: f64,
    again_written: u64,
    copy_secs: f64,
    naive_secs: Option<f64>,
    /// (seconds, rows) of the commit-per-row naive load on a prefix.
    autocommit: Option<(f64, u64)>,
}

fn rate(rows: u64, secs: f64) -> f64 {
    rows as f64 / secs.max(1e-9)
}

/// VmHWM (peak resident set) of this process, in kB.
fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux: "5" into clear_refs), so the next reading is the
/// peak of what follows.
fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

async fn migrated(db: &TestDb) -> anyhow::Result<PgPool> {
    let settings = kit::db::PoolSettings {
        max_connections: 4,
        ..kit::db::PoolSettings::default()
    };
    let pool = db.pool_with(learning::SERVICE.schema, &settings);
    kit::db::migrate(&pool, learning::SERVICE.schema, learning::SERVICE.migrator).await?;
    Ok(pool)
}

async fn table_rows(pool: &PgPool) -> anyhow::Result<(u64, u64)> {
    let mut total = 0;
    let mut parts_attempts = 0;
    for t in TABLES {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM learning.{t}"
        )))
        .fetch_one(pool)
        .await?;
        total += n.unsigned_abs();
        if *t == "practice_parts" || *t == "attempts" {
            parts_attempts += n.unsigned_abs();
        }
    }
    Ok((total, parts_attempts))
}

async fn dump(pool: &PgPool, dir: &Path) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    for t in TABLES {
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{t}.copy")))?);
        let mut stream = conn
            .copy_out_raw(&format!("COPY learning.{t} TO STDOUT"))
            .await?;
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk?)?;
        }
        out.flush()?;
    }
    Ok(())
}

async fn raw_copy(url: &str, dir: &Path) -> anyhow::Result<f64> {
    let mut conn = PgConnection::connect(url).await?;
    let started = Instant::now();
    let mut tx = conn.begin().await?;
    for t in TABLES {
        let mut copy = tx
            .copy_in_raw(&format!("COPY learning.{t} FROM STDIN"))
            .await?;
        let mut file = std::fs::File::open(dir.join(format!("{t}.copy")))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            copy.send(&buf[..n]).await?;
        }
        copy.finish().await?;
    }
    tx.commit().await?;
    Ok(started.elapsed().as_secs_f64())
}

/// One field of COPY's text format: `None` for `\N`, escapes undone.
fn unescape(field: &str) -> Option<String> {
    if field == "\\N" {
        return None;
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Some(out)
}

/// One prepared INSERT per row: in one transaction, or (`autocommit`) each its own, for the
/// first `limit` rows in table order (a prefix in parent-first order keeps every foreign key).
/// Returns (seconds, rows).
async fn naive(url: &str, dir: &Path, autocommit: bool, limit: u64) -> anyhow::Result<(f64, u64)> {
    let mut conn = PgConnection::connect(url).await?;
    let mut statements = Vec::new();
    for t in TABLES {
        let cols: Vec<(String, String)> = sqlx::query_as(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
              WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        )
        .bind(format!("learning.{t}"))
        .fetch_all(&mut conn)
        .await?;
        let names: Vec<&str> = cols.iter().map(|c| c.0.as_str()).collect();
        let values: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| format!("${}::text::{}", i + 1, c.1))
            .collect();
        statements.push(format!(
            "INSERT INTO learning.{t} ({}) OVERRIDING SYSTEM VALUE VALUES ({})",
            names.join(", "),
            values.join(", ")
        ));
    }
    let started = Instant::now();
    let mut rows = 0;
    if !autocommit {
        sqlx::query("BEGIN").execute(&mut conn).await?;
    }
    'tables: for (t, sql) in TABLES.iter().zip(&statements) {
        let file = BufReader::new(std::fs::File::open(dir.join(format!("{t}.copy")))?);
        for line in file.lines() {
            if rows >= limit {
                break 'tables;
            }
            let line = line?;
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for field in line.split('\t') {
                q = q.bind(unescape(field));
            }
            q.execute(&mut conn).await?;
            rows += 1;
        }
    }
    if !autocommit {
        sqlx::query("COMMIT").execute(&mut conn).await?;
    }
    Ok((started.elapsed().as_secs_f64(), rows))
}

async fn measure(
    scale: u32,
    seed: u64,
    with_naive: bool,
    autocommit_rows: u64,
) -> anyhow::Result<Measured> {
    let work = tempfile::tempdir()?;
    let input = work.path().join("input");
    let dumps = work.path().join("dump");
    std::fs::create_dir_all(&dumps)?;
    eprintln!("scale {scale}: generating ...");
    let summary = learning::generate::write_all(&input, scale, seed)?;
    eprintln!("  {summary}");

    let db = TestDb::new().await;
    let pool = migrated(&db).await?;
    let opts = learning::import::Options {
        progress: learning::import::Progress::Quiet,
        ..learning::import::Options::default()
    };
    if !reset_hwm() {
        eprintln!("  (cannot reset VmHWM: the peak below includes generation)");
    }
    eprintln!("  importing ...");
    let started = Instant::now();
    let report = learning::import::run(&pool, &input, &opts).await?;
    let import_secs = started.elapsed().as_secs_f64();
    let import_hwm_kb = vm_hwm_kb();
    for f in &report.files {
        eprintln!(
            "    {}: {} ms, of which parse + COPY {} ms; upserts: {}",
            f.file,
            f.elapsed_ms,
            f.parse_and_copy_ms,
            f.entities
                .iter()
                .map(|(e, c)| format!("{e} {} ms", c.upsert_ms))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    eprintln!(
        "  {} rows staged in {import_secs:.1} s",
        report
            .files
            .iter()
            .map(learning::import::FileReport::rows)
            .sum::<u64>()
    );
    eprintln!("  importing again (no changes) ...");
    let started = Instant::now();
    let again = learning::import::run(&pool, &input, &opts).await?;
    let again_secs = started.elapsed().as_secs_f64();
    let (rows, parts_and_attempts) = table_rows(&pool).await?;
    dump(&pool, &dumps).await?;
    pool.close().await;
    drop(db);

    eprintln!("  raw COPY of the same {rows} rows ...");
    let copy_db = TestDb::new().await;
    migrated(&copy_db).await?.close().await;
    let copy_secs = raw_copy(copy_db.url(), &dumps).await?;
    drop(copy_db);

    let (naive_secs, autocommit) = if with_naive {
        eprintln!("  naive row-by-row INSERT of the same {rows} rows, one transaction ...");
        let naive_db = TestDb::new().await;
        migrated(&naive_db).await?.close().await;
        let (secs, _) = naive(naive_db.url(), &dumps, false, u64::MAX).await?;
        drop(naive_db);
        eprintln!("  naive INSERT, a commit per row, the first {autocommit_rows} rows ...");
        let naive_db = TestDb::new().await;
        migrated(&naive_db).await?.close().await;
        let auto = naive(naive_db.url(), &dumps, true, autocommit_rows).await?;
        drop(naive_db);
        (Some(secs), Some(auto))
    } else {
        (None, None)
    };
    Ok(Measured {
        scale,
        rows,
        parts_and_attempts,
        import_secs,
        import_hwm_kb,
        again_secs,
        again_written: again.total_inserted() + again.total_updated(),
        copy_secs,
        naive_secs,
        autocommit,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut results = Vec::new();
    results.push(
        measure(args.naive_scale, args.seed, true, args.autocommit_rows)
            .await
            .context("naive scale")?,
    );
    if args.scale != args.naive_scale {
        results.push(
            measure(args.scale, args.seed, false, 0)
                .await
                .context("scale")?,
        );
    }
    let naive_rate = results
        .iter()
        .find_map(|m| m.naive_secs.map(|s| rate(m.rows, s)));
    println!();
    println!(
        "{:>5} {:>10} {:>12} | {:>12} {:>8} {:>10} | {:>12} | {:>12} | {:>9} {:>9} | {:>10}",
        "scale",
        "rows",
        "parts+att.",
        "importer/s",
        "secs",
        "peak MiB",
        "raw COPY/s",
        "naive/s",
        "vs naive",
        "vs COPY",
        "re-import"
    );
    for m in &results {
        let imp = rate(m.rows, m.import_secs);
        let copy = rate(m.rows, m.copy_secs);
        let naive = m.naive_secs.map(|s| rate(m.rows, s));
        println!(
            "{:>5} {:>10} {:>12} | {:>12.0} {:>8.1} {:>10.1} | {:>12.0} | {:>12} | {:>8.1}x {:>8.2}x | {:>6.1} s, {} written",
            m.scale,
            m.rows,
            m.parts_and_attempts,
            imp,
            m.import_secs,
            m.import_hwm_kb as f64 / 1024.0,
            copy,
            naive.map_or_else(|| "-".to_owned(), |n| format!("{n:.0}")),
            naive_rate.map_or(0.0, |n| imp / n),
            copy / imp,
            m.again_secs,
            m.again_written
        );
    }
    if let Some((secs, rows)) = results.iter().find_map(|m| m.autocommit) {
        let auto = rate(rows, secs);
        let best = results
            .iter()
            .map(|m| rate(m.rows, m.import_secs))
            .fold(0.0, f64::max);
        println!(
            "naive INSERT with a commit per row: {auto:.0} rows/s ({rows} rows at scale {}); the importer's best rate above is {:.0}x that",
            args.naive_scale,
            best / auto
        );
    }
    println!(
        "\nimporter/s and raw COPY/s: rows in the schema's tables after the run / the run's wall time \
         (the importer's includes JSON parsing, hashing, staging and the upserts). naive/s: one \
         prepared INSERT per row, one transaction, measured at scale {} (vs naive compares rates). \
         vs COPY: how many times slower than raw COPY. peak MiB: this process's VmHWM during the import.",
        args.naive_scale
    );
    Ok(())
}
