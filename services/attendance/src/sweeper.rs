//! Visits retention: deletes visits older than the retention window in bounded batches, oldest
//! first through the `visits_recent` index, so no statement holds locks or builds WAL for long
//! (docs/attendance.md has the measurement and why not monthly partitions). Also removes
//! visitors not seen within the window, expired stream tickets, and feed events (the outbox)
//! older than their own, shorter window: a resume only reaches back a stream's life.

use std::{sync::Arc, time::Duration};

use kit::clock::Clock;
use sqlx::PgPool;
use tokio::task::JoinHandle;

use crate::{Settings, store};

/// Batches per sweep at most, so one sweep is bounded too (the next one continues).
const MAX_BATCHES: usize = 200;

pub fn spawn(pool: PgPool, settings: Settings, clock: Arc<dyn Clock>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(settings.sweep_interval);
        loop {
            tick.tick().await;
            match sweep_once(&pool, &settings, clock.as_ref()).await {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "attendance retention sweep"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "attendance retention sweep failed"),
            }
        }
    })
}

/// One sweep: visits, then feed events, each in batches until a short batch (or
/// [`MAX_BATCHES`]), then the rest.
pub async fn sweep_once(
    pool: &PgPool,
    settings: &Settings,
    clock: &dyn Clock,
) -> Result<u64, sqlx::Error> {
    let now = clock.now();
    let cutoff = now - settings.retention();
    let batch = settings.sweep_batch;
    let mut total = 0;
    for _ in 0..MAX_BATCHES {
        let n = store::sweep_visits(pool, cutoff, batch).await?;
        total += n;
        metrics::counter!("attendance_visits_swept_total").increment(n);
        if n < batch as u64 {
            break;
        }
        // Let other work in between batches.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let outbox_cutoff = now - settings.outbox_retention();
    for _ in 0..MAX_BATCHES {
        let n = store::sweep_outbox(pool, outbox_cutoff, batch).await?;
        total += n;
        if n < batch as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    total += store::sweep_rest(pool, cutoff, now, batch).await?;
    Ok(total)
}
