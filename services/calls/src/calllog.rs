//! Call steps are recorded asynchronously: the handler puts a record on a bounded queue and
//! returns; a writer inserts batches. When the queue is full (database slow or down) records are
//! dropped and counted (`calls_log_queue_dropped_total`) — a call is never made to wait for its
//! own log line.

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
    /// Starts the writer; `capacity` bounds memory while the database is away.
    pub fn spawn(pool: PgPool, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(writer(pool, rx));
        Self { tx }
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
        if let Err(e) = store::insert_steps(&pool, &batch).await {
            crate::metrics::log_dropped(batch.len() as u64);
            tracing::warn!(error = %e, dropped = batch.len(), "call log batch not written");
            // Back off so a down database is not hammered while records queue (and drop).
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        batch.clear();
    }
}
