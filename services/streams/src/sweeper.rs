//! Background work: deletes expired leases in bounded batches and samples the gauges.
//!
//! Expired leases already stop counting the moment they expire (every query filters on
//! `expires_at`); the sweeper only keeps the table small. It runs in every replica; batches use
//! `SKIP LOCKED`, so replicas share the work instead of queueing behind each other.

use std::time::Duration;

use sqlx::PgPool;

use crate::{domain::Settings, store};

/// Runs one sweep: batches until a batch comes back short. Returns rows deleted.
pub async fn sweep_once(pool: &PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let n = store::sweep_batch(pool, batch).await?;
        total += n;
        if n < batch.unsigned_abs() {
            return Ok(total);
        }
        // Yield between full batches so a large backlog cannot monopolise the pool.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Spawns the sweeper loop; it lives as long as the runtime.
pub fn spawn(pool: PgPool, settings: Settings) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(settings.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                return;
            }
            match sweep_once(&pool, settings.sweep_batch).await {
                Ok(n) => {
                    metrics::counter!("streams_sweeper_deleted_total").increment(n);
                    if n > 0 {
                        tracing::info!(deleted = n, "expired leases swept");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "sweep failed; retrying next tick"),
            }
            if let Ok(lag) = store::sweeper_lag_seconds(&pool).await {
                metrics::gauge!("streams_sweeper_lag_seconds").set(lag);
            }
            if let Ok(live) = store::count_live(&pool).await {
                metrics::gauge!("streams_active_sessions").set(live as f64);
            }
        }
    });
}
