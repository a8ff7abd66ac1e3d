//! The one contract every service implements.
//!
//! A service crate exports one `pub static SERVICE: kit::Service`: its name (URL prefix and
//! metrics label), its schema and migrations, and two functions, `start` and `sample_data`.
//! Everything that runs services — the per-service binary ([`crate::app::main`]), the
//! `meridian` binary (every service behind one router), `meridian openapi`, and the tests
//! ([`crate::testing::app_for`]) — goes through `start`, so there is exactly one way a service
//! comes to life. docs/adding-a-service.md is the checklist for a new one.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use aide::axum::ApiRouter;
use sqlx::{PgPool, migrate::Migrator};
use tokio::task::JoinHandle;

use crate::{clock::Clock, health::ReadinessCheck};

/// The error type of a service's start-up and sample data.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// What [`Service::start`] returns.
pub type StartFuture = Pin<Box<dyn Future<Output = Result<ServiceParts, BoxError>> + Send>>;
/// What [`Service::sample_data`] returns.
pub type SampleFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// Static description of one service.
pub struct Service {
    /// URL prefix (`/<name>/...`), metrics `service` label, log field.
    pub name: &'static str,
    /// The PostgreSQL schema the service owns (its pool's `search_path`).
    pub schema: &'static str,
    pub migrator: &'static Migrator,
    /// Start (and serve) even when the database is unreachable at start-up: for services that
    /// answer from a local snapshot (calls). Migrations are then left to the migration Job.
    pub start_without_db: bool,
    /// Reads and validates the service's own settings from the environment (in development
    /// mode when the argument is `true`) without starting anything: runners call it before
    /// they connect, so a bad setting stops the process naming the variable (exit 2) whatever
    /// the database's state, and the migration Job validates the settings too.
    pub check_settings: fn(bool) -> Result<(), crate::config::ConfigError>,
    /// Builds the running service from the shared parts. Reads the service's own settings
    /// (from the environment, honouring [`Ctx::dev`]) and fails naming a bad one.
    pub start: fn(Ctx) -> StartFuture,
    /// Loads the service's sample data (idempotent): `meridian serve` calls it on start.
    pub sample_data: fn(PgPool) -> SampleFuture,
}

/// What a service is started with: the parts the kit owns and shares.
#[derive(Clone)]
pub struct Ctx {
    /// The service's own pool (its schema on the search path).
    pub pool: PgPool,
    /// Development mode (`MERIDIAN_DEV=1`, or `meridian serve`): a service may then fall back
    /// to local dev secrets, and must say so loudly.
    pub dev: bool,
    /// The wall clock; tests pin it.
    pub clock: Arc<dyn Clock>,
    /// `false` builds only the routes, with default settings, no background work and no
    /// database access: for generating the OpenAPI document.
    pub background: bool,
}

impl Ctx {
    /// A running service's context: the system clock, background work on.
    ///
    /// Installs the kit's metrics recorder first: a service that registers a counter or sets a
    /// gauge while starting (calls' decision counters, its snapshot version) must not bind it
    /// to the no-op recorder that is global until then, or the series never reaches /metrics.
    pub fn new(pool: PgPool, dev: bool) -> Self {
        crate::metrics::install();
        Self {
            pool,
            dev,
            clock: Arc::new(crate::clock::SystemClock),
            background: true,
        }
    }

    /// Routes only (see [`Ctx::background`]): the OpenAPI document, and tests that drive the
    /// background work themselves.
    pub fn routes_only(pool: PgPool) -> Self {
        Self {
            background: false,
            ..Self::new(pool, true)
        }
    }

    /// With another clock.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// A started service.
pub struct ServiceParts {
    /// Its routes, all under `/<name>/`, already carrying the service's state.
    pub router: ApiRouter,
    /// When this service can take traffic (the app's `/readyz` is the conjunction of all).
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
    /// Background loops (sweepers, refreshers): aborted after the HTTP drain.
    pub background: Vec<JoinHandle<()>>,
    /// Tasks that finish by themselves once the routes are gone (a queue writer whose senders
    /// live in the handlers' state): awaited, within the grace period, so queued work is
    /// written before the pool closes.
    pub flush: Vec<JoinHandle<()>>,
}

/// The tasks of a started service, taken out of its [`ServiceParts`] for [`stop`].
#[derive(Default)]
pub struct Tasks {
    pub background: Vec<JoinHandle<()>>,
    pub flush: Vec<JoinHandle<()>>,
}

impl ServiceParts {
    /// Takes the background and flush tasks out (the routes go to the app).
    pub fn take_tasks(&mut self) -> Tasks {
        Tasks {
            background: std::mem::take(&mut self.background),
            flush: std::mem::take(&mut self.flush),
        }
    }

    /// Routes and readiness, no background work.
    pub fn new(router: ApiRouter, readiness: Vec<Arc<dyn ReadinessCheck>>) -> Self {
        Self {
            router,
            readiness,
            background: Vec::new(),
            flush: Vec::new(),
        }
    }
}

/// How long shutdown waits for flush tasks after a completed drain. The drain itself takes up
/// to `SHUTDOWN_GRACE_SECS` (20 s); both together stay inside the pod's 30 s termination grace,
/// so the process exits on its own instead of being killed mid-write.
pub const FLUSH_BUDGET: Duration = Duration::from_secs(5);

/// Stops what [`ServiceParts`] started, after the HTTP server has drained and dropped the
/// routes: aborts the background loops, then — only if the drain completed (otherwise the
/// abandoned connections still hold what the flush tasks wait for) — waits up to
/// [`FLUSH_BUDGET`] for the flush tasks, and aborts what is left, so that closing the pool
/// afterwards does not wait on their connections. Every service's parts are stopped at once.
pub async fn stop(parts: Vec<Tasks>, drained: bool) {
    let mut flushing = Vec::new();
    for tasks in parts {
        for task in tasks.background {
            task.abort();
        }
        flushing.extend(tasks.flush);
    }
    if !drained {
        if !flushing.is_empty() {
            tracing::warn!("the drain did not complete: queued background work abandoned");
        }
        for task in &flushing {
            task.abort();
        }
        return;
    }
    let aborts: Vec<_> = flushing.iter().map(JoinHandle::abort_handle).collect();
    let flushed =
        tokio::time::timeout(FLUSH_BUDGET, futures_util::future::join_all(flushing)).await;
    if flushed.is_err() {
        tracing::warn!(budget = ?FLUSH_BUDGET, "background work was still flushing at shutdown; abandoned");
        for abort in aborts {
            abort.abort();
        }
    }
}

/// Starts `svc` in `ctx`. The error is the service's own (a [`crate::config::ConfigError`]
/// stays one, so binaries can exit 2 on it); callers name the service.
pub async fn start(svc: &'static Service, ctx: Ctx) -> Result<ServiceParts, BoxError> {
    (svc.start)(ctx).await
}
