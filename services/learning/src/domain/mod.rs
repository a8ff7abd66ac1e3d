//! The sources' rules, pure (no SQL, HTTP, environment or clock reads): what a Firebase target
//! key means ([`keys`]), which timestamps are accepted ([`time`]), and the row each source record
//! becomes, or why it is skipped ([`records`]), with every edge case counted ([`Tally`]).

pub mod keys;
pub mod profile;
pub mod records;
pub mod time;

use std::collections::BTreeMap;

use serde::Serialize;

/// How many times one thing happened, and the first few places it did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Seen {
    pub count: u64,
    pub examples: Vec<String>,
}

/// Examples kept per counter: enough to find the rows, bounded whatever the input.
pub const EXAMPLES: usize = 3;
/// An example is cut to this many characters (source keys are bounded, but reasons may quote).
const EXAMPLE_CHARS: usize = 200;

impl Seen {
    pub fn add(&mut self, example: &str) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples
                .push(example.chars().take(EXAMPLE_CHARS).collect());
        }
    }

    pub fn merge(&mut self, other: &Seen) {
        self.count += other.count;
        for e in &other.examples {
            if self.examples.len() < EXAMPLES {
                self.examples.push(e.clone());
            }
        }
    }
}

/// What interpreting a file's records found: rows skipped per entity and reason, and the edge
/// cases that were handled (kept) per name.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Tally {
    /// entity → reason → count and examples.
    pub skipped: BTreeMap<&'static str, BTreeMap<String, Seen>>,
    /// edge case → count and examples (rows kept).
    pub edge_cases: BTreeMap<&'static str, Seen>,
}

impl Tally {
    pub fn skip(&mut self, entity: &'static str, reason: impl Into<String>, example: &str) {
        self.skipped
            .entry(entity)
            .or_default()
            .entry(reason.into())
            .or_default()
            .add(example);
    }

    pub fn edge(&mut self, name: &'static str, example: &str) {
        self.edge_cases.entry(name).or_default().add(example);
    }

    pub fn skipped_count(&self, entity: &str) -> u64 {
        self.skipped
            .get(entity)
            .map_or(0, |r| r.values().map(|s| s.count).sum())
    }
}
