//! Call steps are recorded asynchronously: the handler puts a record on a bounded queue and
//! returns; a writer inserts batches. When the queue is full (database slow or down) records are
//! dropped and counted (`calls_log_queue_dropped_total`) — a call is never made to wait for its
//! own log line. When PostgreSQL refuses a batch because of what one row holds, the batch is
//! written again row by row, so one bad row costs only itself ([`write_batch`]).
//!
//! Steps older than the retention period are deleted in batches ([`spawn_retention`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::mpsc;

use crate::{
    domain::engine::{Decision, DecisionRequest},
    store::{self, StepRecord},
};

#[derive(Clone)]
pub struct CallLog {
    tx: mpsc::Sender<StepRecord>,
}

impl CallLog {
    /// Starts the writer; `capacity` bounds memory while the database is away. The writer
    /// (the returned task) writes what is queued and ends once every `CallLog` is dropped.
    pub fn spawn(pool: PgPool, capacity: usize) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let writer = tokio::spawn(writer(pool, rx));
        (Self { tx }, writer)
    }

    /// Queues one decision for the step log, or counts it dropped if the queue is full. The
    /// record is only built once a slot is reserved: under an outage it costs nothing.
    pub fn record(&self, req: &DecisionRequest, d: &Decision, at: DateTime<Utc>) {
        let Ok(permit) = self.tx.try_reserve() else {
            crate::metrics::log_dropped(1);
            return;
        };
        permit.send(StepRecord {
            call_id: req.call_id.clone(),
            request_id: req.request_id.clone(),
            number: req.to.clone(),
            event: req.event.as_str(),
            node: req.node.clone(),
            source: d.source.as_str(),
            actions: serde_json::to_string(&d.actions).unwrap_or_default(),
            decided_at: at,
        });
    }
}

const BATCH: usize = 1000;
/// How long a batch may gather after its first record. While the writer sleeps, queuing a record
/// wakes nobody: at thousands of decisions a second that saves a task wake-up per decision and
/// turns many small INSERTs into few large ones. Step logs are for audit, not for the call.
const LINGER: Duration = Duration::from_millis(50);

async fn writer(pool: PgPool, mut rx: mpsc::Receiver<StepRecord>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        tokio::time::sleep(LINGER).await;
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(step) => batch.push(step),
                Err(_) => break,
            }
        }
        if write_batch(&pool, &batch).await.database_failed {
            // Back off so a down database is not hammered while records queue (and drop).
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        batch.clear();
    }
}

/// What became of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Rows not stored (already counted in `calls_log_queue_dropped_total`).
    pub dropped: usize,
    /// The database failed as a whole (down, unreachable, misconfigured), as opposed to refusing
    /// particular rows: the writer backs off.
    pub database_failed: bool,
}

/// Writes `batch` with one COPY. If PostgreSQL refuses it because of a row's data, every row is
/// written again on its own and only the refused rows are dropped: one call's bad record must not
/// erase the other calls' audit trail. Any other failure drops the rest of the batch at once —
/// retrying a thousand rows against a database that is down would only delay the next batch.
pub async fn write_batch(pool: &PgPool, batch: &[StepRecord]) -> BatchOutcome {
    let err = match store::insert_steps(pool, batch).await {
        Ok(()) => {
            return BatchOutcome {
                dropped: 0,
                database_failed: false,
            };
        }
        Err(e) => e,
    };
    if batch.len() == 1 || !refused_for_its_data(&err) {
        crate::metrics::log_dropped(batch.len() as u64);
        tracing::warn!(error = %err, dropped = batch.len(), "call log batch not written");
        return BatchOutcome {
            dropped: batch.len(),
            database_failed: !refused_for_its_data(&err),
        };
    }
    tracing::warn!(error = %err, rows = batch.len(), "call log batch refused; writing it row by row");
    let mut dropped = 0;
    for (i, step) in batch.iter().enumerate() {
        match store::insert_steps(pool, std::slice::from_ref(step)).await {
            Ok(()) => {}
            Err(e) if refused_for_its_data(&e) => {
                dropped += 1;
                // Without the row's content: it is what PostgreSQL could not take.
                tracing::warn!(error = %e, row = i, "call log row refused; dropped");
            }
            Err(e) => {
                let rest = batch.len() - i;
                crate::metrics::log_dropped((dropped + rest) as u64);
                tracing::warn!(error = %e, dropped = dropped + rest, "call log batch not written");
                return BatchOutcome {
                    dropped: dropped + rest,
                    database_failed: true,
                };
            }
        }
    }
    crate::metrics::log_dropped(dropped as u64);
    BatchOutcome {
        dropped,
        database_failed: false,
    }
}

/// Whether PostgreSQL refused the statement for what a row holds, so that the same rows written
/// separately would succeed except for the culprit: SQLSTATE class 22 (data exception: bad
/// encoding such as a NUL byte, value out of range, malformed COPY data), 23 (integrity
/// constraint violation) or 54 (program limit exceeded: a value too large to store or index).
fn refused_for_its_data(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("22") || c.starts_with("23") || c.starts_with("54")),
        _ => false,
    }
}

/// Deletes steps decided before `cutoff`, `batch` rows at a time until a batch comes back short.
/// `SKIP LOCKED`: every replica runs this, and they share the work instead of queueing.
pub async fn purge_before(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    // The pause gives the decisions' own step writes room between full batches.
    kit::db::in_batches(batch, Duration::from_millis(20), |n| async move {
        Ok(sqlx::query(
            "DELETE FROM calls.call_steps WHERE id IN ( \
               SELECT id FROM calls.call_steps WHERE decided_at < $1 \
                LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(cutoff)
        .bind(n)
        .execute(pool)
        .await?
        .rows_affected())
    })
    .await
}

/// Every `interval`, deletes steps older than `retention` (never when `retention` is `None`:
/// the task then ends at once).
pub fn spawn_retention(
    pool: PgPool,
    retention: Option<chrono::Duration>,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(retention) = retention else {
            return;
        };
        // First run one interval after start: a starting replica has better things to do.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                return;
            }
            match purge_before(&pool, Utc::now() - retention, 5_000).await {
                Ok(0) => {}
                Ok(n) => {
                    metrics::counter!("calls_steps_purged_total").increment(n);
                    tracing::info!(deleted = n, "call steps past retention deleted");
                }
                // Routine while the database is away; the next tick retries.
                Err(e) => tracing::warn!(error = %e, "step-log retention failed"),
            }
        }
    })
}
