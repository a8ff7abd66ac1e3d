//! The migration report: per file and entity, what was inserted, updated, left unchanged,
//! deduplicated or skipped (with reasons and first examples), the edge cases handled, what is
//! still unresolved, elapsed time and rows/s. Printed by the CLI and written as JSON.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Kind;
use crate::{
    domain::{Seen, Tally},
    store::import::{Unresolved, Upserted},
};

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// Rows the file produced for this entity (after record-level skips).
    pub staged: u64,
    pub inserted: u64,
    /// Rows whose content hash changed (their last_seen moved).
    pub updated: u64,
    /// Rows already present with the same content: not written.
    pub unchanged: u64,
    /// Staged rows that repeated a key already staged from the same file (the last one wins).
    pub deduped: u64,
    /// Rows another source file owns (items in both exams and practices): kept as they are; the
    /// appearance in this file is still recorded.
    pub owned_elsewhere: u64,
    /// Rows not imported, with the reasons.
    pub skipped: u64,
    pub skipped_reasons: BTreeMap<String, Seen>,
    /// Time of this entity's set-based upsert (the COPY of its staged rows is in the file's).
    pub upsert_ms: u64,
}

impl Counts {
    pub(super) fn from_upsert(staged: u64, up: Upserted, tally: &Tally, entity: &str) -> Self {
        let mut skipped_reasons = tally.skipped.get(entity).cloned().unwrap_or_default();
        let orphaned = up.distinct.saturating_sub(up.joined);
        if orphaned > 0 {
            skipped_reasons
                .entry("its parent was skipped".into())
                .or_default()
                .count += orphaned;
        }
        Self {
            staged,
            inserted: up.inserted,
            updated: up.updated,
            unchanged: up
                .joined
                .saturating_sub(up.owned_elsewhere + up.inserted + up.updated),
            deduped: staged.saturating_sub(up.distinct),
            owned_elsewhere: up.owned_elsewhere,
            skipped: skipped_reasons.values().map(|s| s.count).sum(),
            skipped_reasons,
            upsert_ms: 0,
        }
    }

    fn add(&mut self, o: &Counts) {
        self.staged += o.staged;
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.deduped += o.deduped;
        self.owned_elsewhere += o.owned_elsewhere;
        self.skipped += o.skipped;
        self.upsert_ms += o.upsert_ms;
        for (reason, seen) in &o.skipped_reasons {
            self.skipped_reasons
                .entry(reason.clone())
                .or_default()
                .merge(seen);
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub file: String,
    pub kind: Kind,
    pub bytes: u64,
    pub sha256: String,
    /// Top-level records read (units, paper sets, banks, Firebase targets).
    pub records: u64,
    pub entities: BTreeMap<&'static str, Counts>,
    /// Edge cases handled (rows kept), with counts and first examples.
    pub edge_cases: BTreeMap<&'static str, Seen>,
    pub elapsed_ms: u64,
    /// Of which: streaming the file into the staging tables (parse, hash, COPY).
    pub parse_and_copy_ms: u64,
    /// Staged rows per second, the whole file (parse, COPY, upserts, commit).
    pub rows_per_sec: u64,
}

impl FileReport {
    pub(super) fn new(file: &str, kind: Kind, bytes: u64, records: u64, sha256: &[u8]) -> Self {
        let mut hex = String::with_capacity(64);
        for b in sha256 {
            let _ = write!(hex, "{b:02x}");
        }
        Self {
            file: file.to_owned(),
            kind,
            bytes,
            sha256: hex,
            records,
            entities: BTreeMap::new(),
            edge_cases: BTreeMap::new(),
            elapsed_ms: 0,
            parse_and_copy_ms: 0,
            rows_per_sec: 0,
        }
    }

    pub(super) fn finish(&mut self, elapsed: Duration) {
        self.elapsed_ms = elapsed.as_millis() as u64;
        self.rows_per_sec = rate(self.rows(), elapsed);
    }

    pub fn rows(&self) -> u64 {
        self.entities.values().map(|c| c.staged).sum()
    }

    pub fn summary_line(&self) -> String {
        let (ins, upd): (u64, u64) = self
            .entities
            .values()
            .fold((0, 0), |a, c| (a.0 + c.inserted, a.1 + c.updated));
        format!(
            "{}: {} rows, {} inserted, {} updated in {} ms ({} rows/s)",
            self.file,
            self.rows(),
            ins,
            upd,
            self.elapsed_ms,
            self.rows_per_sec
        )
    }
}

fn rate(rows: u64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        (rows as f64 / secs) as u64
    } else {
        0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run_at: DateTime<Utc>,
    pub files: Vec<FileReport>,
    /// Files in the directory that are not inputs (the JSON schemas).
    pub ignored_files: Vec<String>,
    /// Kinds of input the directory lacks (the real data has no practices file).
    pub missing_kinds: Vec<Kind>,
    /// Per entity, over all files.
    pub totals: BTreeMap<&'static str, Counts>,
    /// What the schema still cannot resolve after this run (all files, not only this run's).
    pub unresolved: Unresolved,
    pub elapsed_ms: u64,
    pub rows_per_sec: u64,
}

impl Report {
    pub(super) fn new(run_at: DateTime<Utc>) -> Self {
        Self {
            run_at,
            files: Vec::new(),
            ignored_files: Vec::new(),
            missing_kinds: Vec::new(),
            totals: BTreeMap::new(),
            unresolved: Unresolved::default(),
            elapsed_ms: 0,
            rows_per_sec: 0,
        }
    }

    pub(super) fn finish(&mut self, elapsed: Duration) {
        self.totals.clear();
        for f in &self.files {
            for (entity, c) in &f.entities {
                self.totals.entry(entity).or_default().add(c);
            }
        }
        self.elapsed_ms = elapsed.as_millis() as u64;
        self.rows_per_sec = rate(self.files.iter().map(FileReport::rows).sum(), elapsed);
    }

    pub fn total(&self, entity: &str) -> Counts {
        self.totals.get(entity).cloned().unwrap_or_default()
    }

    pub fn total_inserted(&self) -> u64 {
        self.totals.values().map(|c| c.inserted).sum()
    }

    pub fn total_updated(&self) -> u64 {
        self.totals.values().map(|c| c.updated).sum()
    }

    /// The report as a human reads it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "learning import, run at {}", self.run_at.to_rfc3339());
        for f in &self.files {
            let _ = writeln!(
                out,
                "\n{} ({:?}, {} bytes, {} records, sha256 {}…): {} ms ({} ms parse + COPY), {} rows/s",
                f.file,
                f.kind,
                f.bytes,
                f.records,
                &f.sha256[..12.min(f.sha256.len())],
                f.elapsed_ms,
                f.parse_and_copy_ms,
                f.rows_per_sec
            );
            let _ = writeln!(
                out,
                "  {:<20} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8}",
                "entity",
                "staged",
                "inserted",
                "updated",
                "unchanged",
                "deduped",
                "other",
                "skipped"
            );
            for (e, c) in &f.entities {
                let _ = writeln!(
                    out,
                    "  {:<20} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}",
                    e,
                    c.staged,
                    c.inserted,
                    c.updated,
                    c.unchanged,
                    c.deduped,
                    c.owned_elsewhere,
                    c.skipped,
                    c.upsert_ms
                );
                for (reason, seen) in &c.skipped_reasons {
                    let _ = writeln!(
                        out,
                        "      skipped {}: {} (e.g. {})",
                        reason,
                        seen.count,
                        seen.examples.join(", ")
                    );
                }
            }
            if !f.edge_cases.is_empty() {
                let _ = writeln!(out, "  edge cases handled:");
                for (name, seen) in &f.edge_cases {
                    let _ = writeln!(
                        out,
                        "    {:<36} {:>8}  e.g. {}",
                        name,
                        seen.count,
                        seen.examples.first().map_or("", String::as_str)
                    );
                }
            }
        }
        if !self.missing_kinds.is_empty() {
            let _ = writeln!(out, "\nno input of kind: {:?}", self.missing_kinds);
        }
        if !self.ignored_files.is_empty() {
            let _ = writeln!(
                out,
                "not inputs (ignored): {}",
                self.ignored_files.join(", ")
            );
        }
        let u = &self.unresolved;
        let _ = writeln!(out, "\nunresolved after this run (whole schema):");
        for (name, seen) in [
            (
                "attempts whose questionID matches no item (kept, item_id NULL)",
                &u.orphan_attempts,
            ),
            (
                "attempts whose paper matches no paper",
                &u.attempts_without_paper,
            ),
            (
                "exam lessonIDs the course does not have",
                &u.unknown_item_lessons,
            ),
            (
                "practice banks whose lessonID the course does not have",
                &u.unknown_bank_lessons,
            ),
        ] {
            let _ = writeln!(
                out,
                "  {name}: {}{}",
                seen.count,
                if seen.examples.is_empty() {
                    String::new()
                } else {
                    format!(" (e.g. {})", seen.examples.join(", "))
                }
            );
        }
        let rows: u64 = self.files.iter().map(FileReport::rows).sum();
        let _ = writeln!(
            out,
            "\ntotal: {rows} rows, {} inserted, {} updated, in {} ms ({} rows/s)",
            self.total_inserted(),
            self.total_updated(),
            self.elapsed_ms,
            self.rows_per_sec
        );
        out
    }
}
