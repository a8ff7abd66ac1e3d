//! The service's own metrics. Decision counters are registered once and kept as handles: the
//! `counter!` macro with labels hashes and looks up its series on every call, which on the
//! decision path cost more than the counting.

use std::sync::OnceLock;

use metrics::Counter;

use crate::domain::engine::Source;

/// What the first action of an answer does (the `outcome` label).
pub const OUTCOMES: [&str; 8] = [
    "announce",
    "menu",
    "connect",
    "enqueue",
    "voicemail",
    "continue",
    "hangup",
    "wait",
];

struct Handles {
    decisions: Vec<Counter>,
    dropped: Counter,
}

fn handles() -> &'static Handles {
    static H: OnceLock<Handles> = OnceLock::new();
    H.get_or_init(|| Handles {
        decisions: Source::ALL
            .iter()
            .flat_map(|s| {
                OUTCOMES.iter().map(move |o| {
                    metrics::counter!("calls_decisions_total", "source" => s.as_str(), "outcome" => *o)
                })
            })
            .collect(),
        dropped: metrics::counter!("calls_log_queue_dropped_total"),
    })
}

/// Counts one decision (`calls_decisions_total{source,outcome}`).
pub fn decision(source: Source, outcome: &'static str) {
    let s = Source::ALL.iter().position(|x| *x == source).unwrap_or(0);
    let o = OUTCOMES.iter().position(|x| *x == outcome).unwrap_or(0);
    if let Some(c) = handles().decisions.get(s * OUTCOMES.len() + o) {
        c.increment(1);
    }
}

/// Counts call-log records dropped because the queue was full or the database refused a batch.
pub fn log_dropped(n: u64) {
    handles().dropped.increment(n);
}

/// Registers every series at zero, so dashboards and alerts see them before the first call.
pub fn register() {
    let _ = handles();
}
