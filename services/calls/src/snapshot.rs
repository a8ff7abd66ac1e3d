//! The in-memory routing snapshot every decision reads, and the task that keeps it current.
//!
//! The snapshot is immutable and swapped atomically (`ArcSwap`), so a decision takes one pointer
//! load and never a lock or a database round trip. It is refreshed on `NOTIFY calls_config` and
//! every `refresh_interval`, written to a local file after each refresh, and read back from that
//! file on a cold start while the database is down.
//!
//! The file holds every number's routing, so it lives in a private place: by default the user's
//! state directory ([`default_path`]); missing directories are created `0700` and the file is
//! written `0600` through a temporary file in the same directory and an atomic rename.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::Notify;

use crate::{domain::engine::Routing, store};

/// Where a snapshot came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Database,
    File,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Loaded {
    pub routing: Routing,
    pub loaded_at: DateTime<Utc>,
    pub origin: Origin,
}

/// Shared between the handlers and the refresher.
pub struct Snapshots {
    current: ArcSwapOption<Loaded>,
    /// Unix ms of the last time the database confirmed the snapshot is current.
    confirmed_ms: AtomicI64,
    /// A snapshot not confirmed for this long is served as `source: snapshot`.
    stale_after: Duration,
    file: Option<PathBuf>,
    wake: Notify,
}

impl Snapshots {
    pub fn new(stale_after: Duration, file: Option<PathBuf>) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwapOption::empty(),
            confirmed_ms: AtomicI64::new(0),
            stale_after,
            file,
            wake: Notify::new(),
        })
    }

    pub fn current(&self) -> Option<Arc<Loaded>> {
        self.current.load_full()
    }

    /// Whether the database confirmed the snapshot recently enough to call answers `live`.
    pub fn is_fresh(&self, now: DateTime<Utc>) -> bool {
        let confirmed = self.confirmed_ms.load(Ordering::Relaxed);
        confirmed > 0 && now.timestamp_millis() - confirmed <= self.stale_after.as_millis() as i64
    }

    /// Seconds since the database last confirmed the snapshot (for metrics and readiness).
    pub fn age_secs(&self, now: DateTime<Utc>) -> Option<f64> {
        let confirmed = self.confirmed_ms.load(Ordering::Relaxed);
        if confirmed > 0 {
            Some((now.timestamp_millis() - confirmed) as f64 / 1000.0)
        } else {
            self.current()
                .map(|l| (now - l.loaded_at).num_milliseconds() as f64 / 1000.0)
        }
    }

    /// Asks the refresher to check now (after an admin write on this replica).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn install(&self, loaded: Loaded) {
        metrics::gauge!("calls_snapshot_version").set(loaded.routing.version as f64);
        self.current.store(Some(Arc::new(loaded)));
    }

    fn confirm(&self, now: DateTime<Utc>) {
        self.confirmed_ms
            .store(now.timestamp_millis(), Ordering::Relaxed);
    }

    /// Loads from the database if its version differs from ours. Returns whether it swapped.
    pub async fn refresh(&self, pool: &PgPool) -> Result<bool, sqlx::Error> {
        let version = store::config_version(pool).await?;
        let have = self
            .current()
            .filter(|l| l.origin == Origin::Database)
            .map(|l| l.routing.version);
        if have == Some(version) {
            self.confirm(Utc::now());
            return Ok(false);
        }
        let (routing, skipped) = store::load_routing(pool).await?;
        if skipped > 0 {
            metrics::counter!("calls_snapshot_rows_skipped_total").increment(skipped as u64);
        }
        let loaded = Loaded {
            routing,
            loaded_at: Utc::now(),
            origin: Origin::Database,
        };
        self.write_file(&loaded).await;
        tracing::info!(
            version = loaded.routing.version,
            pbxes = loaded.routing.pbxes.len(),
            subscribers = loaded.routing.subscribers.len(),
            "routing snapshot loaded"
        );
        self.install(loaded);
        self.confirm(Utc::now());
        Ok(true)
    }

    async fn write_file(&self, loaded: &Loaded) {
        let Some(path) = &self.file else { return };
        let result = match serde_json::to_vec(loaded) {
            Ok(bytes) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || write_private(&path, &bytes))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            }
            Err(e) => Err(std::io::Error::other(e)),
        };
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "could not write snapshot file");
        }
    }

    /// Cold start: the database if it answers within `timeout`, else the last file snapshot.
    pub async fn load_initial(&self, pool: &PgPool, timeout: Duration) {
        match tokio::time::timeout(timeout, self.refresh(pool)).await {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => tracing::warn!(error = %e, "database unavailable at start"),
            Err(_) => tracing::warn!(?timeout, "database did not answer at start"),
        }
        let Some(path) = &self.file else {
            tracing::error!(
                "no snapshot file configured (CALLS_SNAPSHOT_PATH, or a state directory from \
                 XDG_STATE_HOME or HOME): nothing to serve until the database returns"
            );
            return;
        };
        match tokio::fs::read(path)
            .await
            .map(|b| serde_json::from_slice::<Loaded>(&b))
        {
            Ok(Ok(mut loaded)) => {
                loaded.origin = Origin::File;
                tracing::warn!(version = loaded.routing.version, path = %path.display(),
                    "serving the file snapshot until the database returns");
                self.install(loaded);
            }
            Ok(Err(e)) => tracing::error!(error = %e, "snapshot file unreadable"),
            Err(e) => tracing::error!(error = %e, path = %path.display(), "no snapshot file"),
        }
    }

    /// Keeps the snapshot current until the returned tasks (the NOTIFY listener and the
    /// periodic refresh) are aborted.
    pub fn spawn_refresher(
        self: &Arc<Self>,
        pool: PgPool,
        interval: Duration,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let this = Arc::clone(self);
        let listen_pool = pool.clone();
        let listener_this = Arc::clone(self);
        let listener = tokio::spawn(async move { listen(listener_this, listen_pool).await });
        let refresher = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = this.wake.notified() => {}
                }
                if let Err(e) = this.refresh(&pool).await {
                    tracing::warn!(error = %e, "snapshot refresh failed; serving the last snapshot");
                }
                if let Some(age) = this.age_secs(Utc::now()) {
                    metrics::gauge!("calls_snapshot_age_seconds").set(age);
                }
            }
        });
        vec![listener, refresher]
    }
}

/// The default snapshot file: `$XDG_STATE_HOME/meridian/calls/snapshot.json`, else
/// `$HOME/.local/state/meridian/calls/snapshot.json` (the XDG base directory for state that
/// outlives a restart; a runtime directory would be emptied by a reboot, which is exactly when a
/// cold start needs the file). `None` when neither variable holds an absolute path.
pub fn default_path() -> Option<PathBuf> {
    kit::config::state_dir().map(|d| d.join("calls/snapshot.json"))
}

/// Writes `bytes` to `path` so that only this user can read it and a reader never sees half a
/// file: missing parent directories are created `0700`, the data goes to a new `0600` temporary
/// file beside `path` (a fresh name opened with `O_EXCL`, so nothing planted there is followed),
/// is flushed to disk, and is renamed over `path`.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::{
        io::Write,
        os::unix::fs::{DirBuilderExt, OpenOptionsExt},
        sync::atomic::AtomicU64,
    };
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(
        ".snapshot-{}-{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
    };
    let written = (|| {
        let mut file = match create() {
            // Left by a crashed process with the same pid (pid 1 in every container).
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(&tmp)?;
                create()?
            }
            other => other?,
        };
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    // The rename is durable once the directory entry is.
    std::fs::File::open(dir)?.sync_all()
}

/// Turns `NOTIFY calls_config` into wake-ups; reconnects after database outages.
async fn listen(snapshots: Arc<Snapshots>, pool: PgPool) {
    loop {
        let Ok(mut listener) = PgListener::connect_with(&pool).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        if listener.listen("calls_config").await.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // A change may have happened while we were not listening.
        snapshots.wake();
        // `Ok(None)` or an error means the connection was lost: reconnect.
        while let Ok(Some(_)) = listener.try_recv().await {
            snapshots.wake();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
