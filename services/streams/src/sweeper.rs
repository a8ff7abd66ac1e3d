//! Background work: deletes expired leases in bounded batches and samples the gauges (the
//! fleet-wide one from a single replica, [`GaugeSampler`]).
//!
//! Expired leases already stop counting the moment they expire (every query filters on
//! `expires_at`); the sweeper only keeps the table small. It runs in every replica; batches use
//! `SKIP LOCKED`, so replicas share the work instead of queueing behind each other.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};

use crate::{Settings, store};

/// Runs one sweep: batches until a batch comes back short. Returns rows deleted.
pub async fn sweep_once(pool: &PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    kit::db::in_batches(batch, Duration::from_millis(10), |n| {
        store::sweep_batch(pool, n)
    })
    .await
}

/// Advisory-lock key of the gauge sampler ("streams gauge"): one replica at a time holds it.
const GAUGE_LOCK: i64 = 0x5354_5247_4155_4745;

/// Fleet-wide gauges (`streams_active_sessions`) come from one replica only: a `count(*)` over a
/// million leases on every replica every sweep would load the writer for a number Prometheus then
/// has to de-duplicate. The sampler is whichever replica holds a session advisory lock on a
/// connection kept for that purpose; when that replica dies its connection closes, the lock goes,
/// and another replica takes over at its next tick.
#[derive(Default)]
pub struct GaugeSampler {
    /// Detached from the pool: a lock-holding connection must never be handed to a request, and
    /// dropping it must close it (which releases the lock), not return it to the pool.
    conn: Option<PgConnection>,
    leader: bool,
}

impl GaugeSampler {
    /// Counts live sessions if this replica is (or now becomes) the sampler; `None` otherwise.
    pub async fn sample(&mut self, pool: &PgPool) -> Result<Option<i64>, sqlx::Error> {
        let result = self.try_sample(pool).await;
        if result.is_err() {
            // A broken connection may have lost the lock with it: start over next tick.
            *self = Self::default();
        }
        result
    }

    /// Whether this replica currently samples the gauges.
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    async fn try_sample(&mut self, pool: &PgPool) -> Result<Option<i64>, sqlx::Error> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(pool.acquire().await?.detach()),
        };
        if !self.leader {
            self.leader = try_lock(conn).await?;
            if !self.leader {
                return Ok(None);
            }
        }
        store::count_live(conn).await.map(Some)
    }
}

async fn try_lock(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(GAUGE_LOCK)
        .fetch_one(conn)
        .await
}

/// Spawns the sweeper loop; it runs until aborted (at shutdown) or the pool closes.
pub fn spawn(pool: PgPool, settings: Settings) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(settings.sweep_interval);
        let mut gauges = GaugeSampler::default();
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
            match gauges.sample(&pool).await {
                Ok(Some(live)) => metrics::gauge!("streams_active_sessions").set(live as f64),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "active-sessions gauge not sampled"),
            }
            // A replica that lost the lock keeps exporting its last sample; this says whose is
            // current.
            metrics::gauge!("streams_gauge_sampler").set(f64::from(u8::from(gauges.is_leader())));
        }
    })
}
