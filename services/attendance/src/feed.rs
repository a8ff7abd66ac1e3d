//! The live feed: one LISTEN connection per replica fans the outbox out to this replica's
//! Server-Sent Events subscribers.
//!
//! A write appends its outbox row and `pg_notify(CHANNEL, '<id> <site>')` in its transaction,
//! so every replica's listener hears of it at commit, wherever it was written. The hub keeps,
//! per site that has subscribers here, the last outbox id it delivered; on a notification (and
//! on a periodic tick, and after the listen connection was lost) it reads the site's rows after
//! that id, in id order, and `try_send`s each to every subscriber's bounded queue. A full
//! queue means the client does not read: the hub drops that subscriber (its stream ends; the
//! client reconnects with `Last-Event-ID` and catches up from the outbox), so a slow client
//! costs at most its queue, never the server's memory.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::{mpsc, oneshot};

use crate::store::{self, CHANNEL, Event};

/// Rows read per outbox query (the hub repeats until a page comes back short).
const PAGE: i64 = 500;
/// The safety net: tracked sites are re-read this often even without a notification.
const TICK: Duration = Duration::from_secs(5);
/// An event handed to subscribers later than this after its write counts as late.
const LATE: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

struct Subscribe {
    site: String,
    queue: mpsc::Sender<Arc<Event>>,
    registered: oneshot::Sender<()>,
}

/// This replica's hub: the handle the stream route subscribes through.
#[derive(Clone)]
pub struct Hub {
    cmd: mpsc::Sender<Subscribe>,
    subscribers: Arc<AtomicUsize>,
    /// Streams open on this replica (reserved by [`Hub::reserve`], released when the stream
    /// ends): the admission count, exact at every instant, unlike `subscribers`, which the hub's
    /// loop refreshes after the fact.
    streams: Arc<AtomicUsize>,
    buffer: usize,
}

/// One reserved stream slot; dropping it (the stream ended, its connection closed, or the
/// request failed before the stream started) frees the slot.
#[derive(Debug)]
pub struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("the feed is not running on this replica")]
    Stopped,
}

impl Hub {
    /// Starts the hub's task on `pool` (its own LISTEN connection) and returns the handle and
    /// the task.
    pub fn spawn(pool: PgPool, buffer: usize) -> (Self, tokio::task::JoinHandle<()>) {
        let (cmd, rx) = mpsc::channel(1024);
        let subscribers = Arc::new(AtomicUsize::new(0));
        // Every series exists from the start (a dashboard panel or an alert over a series that
        // appears only on the first event would see nothing until then).
        for name in [
            "attendance_feed_events_total",
            "attendance_feed_late_events_total",
            "attendance_stream_dropped_total",
            "attendance_stream_refused_total",
            "attendance_feed_listen_reconnects_total",
        ] {
            metrics::counter!(name).increment(0);
        }
        metrics::gauge!("attendance_stream_subscribers").set(0.0);
        let task = tokio::spawn(run(pool, rx, Arc::clone(&subscribers)));
        (
            Self {
                cmd,
                subscribers,
                streams: Arc::new(AtomicUsize::new(0)),
                buffer,
            },
            task,
        )
    }

    /// A hub that serves no one (routes-only starts: the OpenAPI document).
    pub fn idle(buffer: usize) -> Self {
        let (cmd, _) = mpsc::channel(1);
        Self {
            cmd,
            subscribers: Arc::new(AtomicUsize::new(0)),
            streams: Arc::new(AtomicUsize::new(0)),
            buffer,
        }
    }

    /// Reserves one of `max` stream slots, or `None` when all are taken. Atomic: of any number
    /// of concurrent openers, at most `max` get a slot.
    pub fn reserve(&self, max: usize) -> Option<StreamSlot> {
        let before = self.streams.fetch_add(1, Ordering::AcqRel);
        let slot = StreamSlot(Arc::clone(&self.streams));
        (before < max).then_some(slot)
    }

    /// Stream slots taken now.
    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::Acquire)
    }

    /// Subscribers on this replica now.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }

    /// Registers a subscriber to `site`; every event committed after this returns reaches the
    /// queue (unless the subscriber is dropped for not reading).
    pub async fn subscribe(&self, site: &str) -> Result<mpsc::Receiver<Arc<Event>>, HubError> {
        let (queue, rx) = mpsc::channel(self.buffer);
        let (registered, done) = oneshot::channel();
        self.cmd
            .send(Subscribe {
                site: site.to_owned(),
                queue,
                registered,
            })
            .await
            .map_err(|_| HubError::Stopped)?;
        done.await.map_err(|_| HubError::Stopped)?;
        Ok(rx)
    }
}

struct Site {
    /// The newest outbox id delivered to this site's subscribers.
    cursor: i64,
    subscribers: Vec<mpsc::Sender<Arc<Event>>>,
}

async fn run(pool: PgPool, mut cmds: mpsc::Receiver<Subscribe>, count: Arc<AtomicUsize>) {
    let mut sites: HashMap<String, Site> = HashMap::new();
    let mut listener = loop {
        match listen(&pool).await {
            Ok(l) => break l,
            Err(e) => {
                tracing::warn!(error = %e, "attendance feed: LISTEN failed, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else { return };
                subscribe(&pool, &mut sites, cmd).await;
            }
            note = listener.try_recv() => match note {
                Ok(Some(n)) => {
                    // `<id> <site>`: the site decides which subscribers care.
                    if let Some((_, site)) = n.payload().split_once(' ')
                        && sites.contains_key(site)
                    {
                        let site = site.to_owned();
                        deliver(&pool, &mut sites, &site).await;
                    }
                }
                // The connection was lost (sqlx reconnects on the next call): notifications
                // sent meanwhile are gone, so read every tracked site from its cursor.
                Ok(None) => {
                    metrics::counter!("attendance_feed_listen_reconnects_total").increment(1);
                    deliver_all(&pool, &mut sites).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "attendance feed: listen connection failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            },
            _ = tick.tick() => {
                for s in sites.values_mut() {
                    s.subscribers.retain(|q| !q.is_closed());
                }
                sites.retain(|_, s| !s.subscribers.is_empty());
                deliver_all(&pool, &mut sites).await;
            }
        }
        let n = sites.values().map(|s| s.subscribers.len()).sum();
        count.store(n, Ordering::Relaxed);
        metrics::gauge!("attendance_stream_subscribers").set(n as f64);
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut l = PgListener::connect_with(pool).await?;
    l.listen(CHANNEL).await?;
    Ok(l)
}

async fn subscribe(pool: &PgPool, sites: &mut HashMap<String, Site>, cmd: Subscribe) {
    if !sites.contains_key(&cmd.site) {
        // The first subscriber of a site here: deliver what commits from now on. A subscriber
        // that needs older events reads them from the outbox itself (Last-Event-ID).
        let cursor = match pool.acquire().await {
            Ok(mut c) => store::last_event_id(&mut c, &cmd.site).await,
            Err(e) => Err(e),
        };
        let cursor = match cursor {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "attendance feed: cannot read the outbox");
                return; // `registered` dropped: the route answers 503
            }
        };
        sites.insert(
            cmd.site.clone(),
            Site {
                cursor,
                subscribers: Vec::new(),
            },
        );
    }
    if let Some(s) = sites.get_mut(&cmd.site) {
        s.subscribers.push(cmd.queue);
    }
    let _ = cmd.registered.send(());
}

async fn deliver_all(pool: &PgPool, sites: &mut HashMap<String, Site>) {
    let names: Vec<String> = sites.keys().cloned().collect();
    for site in names {
        deliver(pool, sites, &site).await;
    }
}

/// Reads `site`'s events after its cursor and hands them to its subscribers, in id order.
async fn deliver(pool: &PgPool, sites: &mut HashMap<String, Site>, site: &str) {
    loop {
        let Some(s) = sites.get_mut(site) else { return };
        let events = match store::events_after(pool, site, s.cursor, PAGE).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "attendance feed: cannot read the outbox");
                return; // the next notification or tick retries from the same cursor
            }
        };
        let short = events.len() < PAGE as usize;
        for e in events {
            s.cursor = e.id;
            // Counters, not a histogram: the kit's exporter gives buckets to request latency
            // only, and "delivered more than 1 s after its write" is what the alert asks.
            metrics::counter!("attendance_feed_events_total").increment(1);
            if Utc::now() - e.occurred_at > LATE {
                metrics::counter!("attendance_feed_late_events_total").increment(1);
            }
            let e = Arc::new(e);
            s.subscribers.retain(|q| match q.try_send(Arc::clone(&e)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics::counter!("attendance_stream_dropped_total").increment(1);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        }
        if s.subscribers.is_empty() {
            sites.remove(site);
            return;
        }
        if short {
            return;
        }
    }
}
