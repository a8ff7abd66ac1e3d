//! The service's own metrics. Decision counters are registered once and kept as handles: the
//! `counter!` macro with labels hashes and looks up its series on every call, which on the
//! decision path cost more than the counting.

use std::sync::OnceLock;

use metrics::Counter;

use crate::domain::engine::{Action, Decision, Source};

/// What the first action of an answer does (the `outcome` label); the index into `OUTCOMES`
/// is the counter's place among the pre-registered handles.
const OUTCOMES: [&str; 8] = [
    "announce",
    "menu",
    "connect",
    "enqueue",
    "voicemail",
    "continue",
    "hangup",
    "wait",
];

fn outcome_index(d: &Decision) -> usize {
    match d.actions.first() {
        Some(Action::Play { .. } | Action::Say { .. }) => 0,
        Some(Action::Menu { .. }) => 1,
        Some(Action::Connect { .. }) => 2,
        Some(Action::Enqueue { .. }) => 3,
        Some(Action::Voicemail { .. }) => 4,
        Some(Action::Continue) => 5,
        Some(Action::Hangup { .. }) => 6,
        None => 7,
    }
}

struct Handles {
    decisions: Vec<Counter>,
    dropped: Counter,
}

fn handles() -> &'static Handles {
    static H: OnceLock<Handles> = OnceLock::new();
    H.get_or_init(|| {
        // A handle belongs to the recorder installed when it is created: install the kit's now,
        // or these would count into the no-op recorder (services start before the app is built).
        kit::metrics::install();
        Handles {
        decisions: Source::ALL
            .iter()
            .flat_map(|s| {
                OUTCOMES.iter().map(move |o| {
                    metrics::counter!("calls_decisions_total", "source" => s.as_str(), "outcome" => *o)
                })
            })
            .collect(),
        dropped: metrics::counter!("calls_log_queue_dropped_total"),
    }
    })
}

/// Counts one decision (`calls_decisions_total{source,outcome}`) and returns its outcome label.
pub fn decision(d: &Decision) -> &'static str {
    let s = Source::ALL.iter().position(|x| *x == d.source).unwrap_or(0);
    let o = outcome_index(d);
    if let Some(c) = handles().decisions.get(s * OUTCOMES.len() + o) {
        c.increment(1);
    }
    OUTCOMES[o]
}

/// Counts call-log records dropped because the queue was full or the database refused a batch.
pub fn log_dropped(n: u64) {
    handles().dropped.increment(n);
}

/// Registers every series at zero, so dashboards and alerts see them before the first call.
pub fn register() {
    let _ = handles();
}
