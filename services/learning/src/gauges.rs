//! Background work: samples the importer's outcome into gauges.
//!
//! The importer runs as a command, not in this process, so it cannot export metrics a scrape
//! would see; its runs leave a row in import_runs instead, and every replica turns the newest
//! success and failure into two gauges. LearningImportFailed fires while the newest failure is
//! newer than the newest success (runbooks/pages/learning-import-failed.md).

use std::time::Duration;

use sqlx::PgPool;

use crate::store::import as sql;

/// How often the gauges are refreshed: an index probe on a small table.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(30);

/// Seconds since the epoch of the newest successful run (0 before the first).
pub const LAST_SUCCESS: &str = "learning_import_last_success_timestamp_seconds";
/// Seconds since the epoch of the newest failed run (0 when none failed).
pub const LAST_FAILURE: &str = "learning_import_last_failure_timestamp_seconds";

/// Spawns the sampling loop; it runs until aborted (at shutdown) or the pool closes.
pub fn spawn(pool: PgPool, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                return;
            }
            match sql::last_runs(&pool).await {
                Ok((success, failure)) => {
                    let secs = |t: Option<chrono::DateTime<chrono::Utc>>| {
                        t.map_or(0.0, |t| t.timestamp_millis() as f64 / 1000.0)
                    };
                    metrics::gauge!(LAST_SUCCESS).set(secs(success));
                    metrics::gauge!(LAST_FAILURE).set(secs(failure));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "import gauges not sampled; retrying next tick");
                }
            }
        }
    })
}
