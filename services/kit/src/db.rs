//! The PostgreSQL pool of one service and its migrations.
//!
//! Each service owns one schema (`streams`, `calls`, ...). Its pool sets `search_path` to that
//! schema and its migrations keep their bookkeeping table inside it, so five services can share
//! one database (locally, and one Aurora cluster per country) without seeing each other's tables.

use std::{str::FromStr, time::Duration};

use sqlx::{
    PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions, PgSslMode},
};

/// Pool settings; see [`crate::config::CommonConfig`] for the environment variables.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// A connection older than this is closed when it is next returned, so every connection
    /// re-resolves the endpoint now and then: after an Aurora failover the cluster endpoint's DNS
    /// name points at the new writer, and a connection to the old one may stay open (to an
    /// instance that is now a reader) until it is recycled.
    pub max_lifetime: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(2),
            max_lifetime: Duration::from_mins(30),
        }
    }
}

impl PoolSettings {
    /// The pool settings of the `DB_*` variables.
    pub fn from_config(cfg: &crate::config::CommonConfig) -> Self {
        Self {
            max_connections: cfg.db_max_connections,
            acquire_timeout: cfg.db_acquire_timeout,
            max_lifetime: cfg.db_max_lifetime,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid DATABASE_URL: {0}")]
    Url(#[source] sqlx::Error),
    #[error("cannot connect to PostgreSQL at {target}: {source}")]
    Connect { target: String, source: sqlx::Error },
    #[error("migrations of schema {schema} failed: {source}")]
    Migrate {
        schema: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("cannot read the migrations of schema {schema}: {source}")]
    Unreachable { schema: String, source: sqlx::Error },
    #[error(
        "schema {schema} (newest migration {}) lacks migrations this binary ships (up to \
         {needed}): run `{service} migrate` first (the Release's migration Job), or set MIGRATE_ON_START=1 where no Job runs",
        applied.map_or_else(|| "none".to_owned(), |v| v.to_string())
    )]
    SchemaBehind {
        service: &'static str,
        schema: &'static str,
        applied: Option<i64>,
        needed: i64,
    },
}

/// A pooled connection idle longer than this is checked (one round trip) before it is handed
/// out; see [`pool_with`].
pub const CHECK_IDLE_AFTER: Duration = Duration::from_millis(500);

/// Opens a pool whose sessions resolve unqualified names in `schema`.
///
/// The pool connects lazily so a service can start (and report not-ready) while the database is
/// still coming up; [`migrate`] is the first real use.
pub fn pool(url: &str, schema: &str, settings: &PoolSettings) -> Result<PgPool, DbError> {
    Ok(pool_with(connect_options(url)?, schema, settings))
}

/// Parses a `postgres://` URL (the `DATABASE_URL` form) into connection options.
///
/// A URL without `sslmode` (and no `PGSSLMODE`) connects without TLS, as it did before sqlx was
/// built with TLS (for the AWS secret's `verify-full`): libpq's default, `prefer`, would now
/// negotiate TLS with every local server that has it on, changing connect latency under tests.
/// `?sslmode=require` (or `verify-full` with `sslrootcert=`) opts in.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, DbError> {
    let options = PgConnectOptions::from_str(url).map_err(DbError::Url)?;
    let explicit = url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|kv| kv.starts_with("sslmode=") || kv.starts_with("ssl-mode="))
    }) || std::env::var_os("PGSSLMODE").is_some();
    Ok(if explicit {
        options
    } else {
        options.ssl_mode(PgSslMode::Disable)
    })
}

/// [`pool`] from connection options resolved elsewhere (e.g. from a Secrets Manager secret by
/// `kit-aws`); the pool still sets its own `application_name` and `search_path`.
pub fn pool_with(options: PgConnectOptions, schema: &str, settings: &PoolSettings) -> PgPool {
    let options = options
        .application_name(schema)
        .options([("search_path", schema)]);
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(0)
        .acquire_timeout(settings.acquire_timeout)
        // A database restart or failover kills every pooled connection, and an untested dead
        // connection fails the request that draws it: one failed request per pooled connection
        // after each failover. A connection idle longer than CHECK_IDLE_AFTER is pinged on
        // checkout (HikariCP's rule): one failover lasts longer than that, and any use during it
        // fails and closes the connection, so none that sat through it is handed out untested,
        // while the hot path (connections back in the pool within the window) pays no round
        // trip. services/kit/tests/failover.rs shows the zero; bench-pool the cost.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > CHECK_IDLE_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .max_lifetime(Some(settings.max_lifetime))
        .idle_timeout(Some(Duration::from_mins(5)))
        .connect_lazy_with(options)
}

/// Applies `migrator` (from `sqlx::migrate!`) inside `schema`, creating the schema if needed.
/// Safe to run from several replicas at once: sqlx holds an advisory lock while migrating.
///
/// Migrations a newer release applied and this binary does not know are left alone, not an
/// error: with expand/contract migrations the previous release runs against the newer schema
/// (a rollback re-images it and its migration Job runs this), so refusing them would turn every
/// rollback over a migration into a failed Job and a crash-looping old image.
pub async fn migrate(pool: &PgPool, schema: &str, migrator: &Migrator) -> Result<(), DbError> {
    let mut scoped = Migrator {
        migrations: migrator.migrations.clone(),
        ignore_missing: true,
        locking: migrator.locking,
        no_tx: migrator.no_tx,
        ..Migrator::DEFAULT
    };
    scoped.create_schema(schema.to_owned());
    scoped.dangerous_set_table_name(format!("{schema}._sqlx_migrations"));
    scoped.run(pool).await.map_err(|source| DbError::Migrate {
        schema: schema.to_owned(),
        source,
    })
}

/// At start-up without migrating: the database must already hold every migration this binary
/// ships (newer ones are fine, see [`migrate`]). The error says what to run.
pub async fn check_schema(pool: &PgPool, svc: &crate::Service) -> Result<i64, DbError> {
    let needed = latest_version(svc.migrator);
    let unreachable = |source| DbError::Unreachable {
        schema: svc.schema.to_owned(),
        source,
    };
    let table = format!("{}._sqlx_migrations", svc.schema);
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(&table)
        .fetch_one(pool)
        .await
        .map_err(unreachable)?;
    let behind = |applied| DbError::SchemaBehind {
        service: svc.name,
        schema: svc.schema,
        applied,
        needed,
    };
    if exists.is_none() {
        return Err(behind(None));
    }
    // Every migration the binary ships, not only the newest: timestamped migrations from two
    // branches can land out of order.
    let versions: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT version FROM {table} WHERE success"
    )))
    .fetch_all(pool)
    .await
    .map_err(unreachable)?;
    let Some(newest) = versions.iter().copied().max() else {
        return Err(behind(None));
    };
    let applied: std::collections::HashSet<i64> = versions.into_iter().collect();
    if svc.migrator.iter().all(|m| applied.contains(&m.version)) {
        Ok(newest)
    } else {
        Err(behind(Some(newest)))
    }
}

/// The newest migration version a service binary ships; readiness compares it to the database.
pub fn latest_version(migrator: &Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Newest successfully applied migration in `schema`, or `None` before the first migration.
pub async fn applied_version(pool: &PgPool, schema: &str) -> Result<Option<i64>, sqlx::Error> {
    let table = format!("{schema}._sqlx_migrations");
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(&table)
        .fetch_one(pool)
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT max(version) FROM {table} WHERE success"
    )))
    .fetch_one(pool)
    .await
}

/// Runs `batch_op(batch)` (a bounded DELETE, say) until it affects fewer than `batch` rows,
/// pausing `pause` between full batches so a large backlog cannot monopolise the pool or the
/// writer. Returns the rows affected in total.
pub async fn in_batches<F, Fut>(
    batch: i64,
    pause: Duration,
    mut batch_op: F,
) -> Result<u64, sqlx::Error>
where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = Result<u64, sqlx::Error>>,
{
    let mut total = 0;
    loop {
        let n = batch_op(batch).await?;
        total += n;
        if n < batch.unsigned_abs() {
            return Ok(total);
        }
        tokio::time::sleep(pause).await;
    }
}

/// SQLSTATE 28P01 (`invalid_password`): the server refused the pool's credentials. In AWS this
/// is what a rotated database password looks like to connections opened with the old one.
pub fn is_auth_failure(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("28P01"))
}

// Every waiter wakes (notify_waiters) and compares the count, so a failure between two waits is
// not lost and two pools' rotations (or tests in one process) do not steal each other's wake-up.
static AUTH_FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static AUTH_FAILED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Reports `err` to [`auth_failed_since`]'s waiters when it is an authentication failure
/// ([`is_auth_failure`]). [`crate::ApiError`]'s `From<sqlx::Error>` and the readiness check call
/// it, so every handler's `?` on a query reports without code of its own.
pub fn note_error(err: &sqlx::Error) {
    if is_auth_failure(err) {
        AUTH_FAILURES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        AUTH_FAILED.notify_waiters();
    }
}

/// How many authentication failures [`note_error`] has seen in this process.
pub fn auth_failures() -> u64 {
    AUTH_FAILURES.load(std::sync::atomic::Ordering::SeqCst)
}

/// Resolves once [`auth_failures`] differs from `seen`; returns the new count.
pub async fn auth_failed_since(seen: u64) -> u64 {
    loop {
        let notified = AUTH_FAILED.notified();
        let mut notified = std::pin::pin!(notified);
        // Registered before the count is read, so a failure in between still wakes us.
        notified.as_mut().enable();
        let now = auth_failures();
        if now != seen {
            return now;
        }
        notified.await;
    }
}

/// Keeps the pools' credentials current while the process runs (kit-aws: re-reads a rotated
/// Secrets Manager secret). Kit only calls it; the AWS SDK stays out of kit.
pub trait CredentialSource: Send + Sync + 'static {
    /// Runs until the process stops; updates `pools` with
    /// [`sqlx::Pool::set_connect_options`] (new connections only: open ones keep working).
    fn keep_current(
        self: Box<Self>,
        pools: Vec<PgPool>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

/// A database to connect to: its options, and what keeps their credentials current when they
/// can change under a running process (`None`: they cannot, e.g. a `DATABASE_URL`).
pub struct Database {
    pub options: PgConnectOptions,
    pub credentials: Option<Box<dyn CredentialSource>>,
}

impl From<PgConnectOptions> for Database {
    fn from(options: PgConnectOptions) -> Self {
        Self {
            options,
            credentials: None,
        }
    }
}

/// Samples pool usage into `db_pool_connections{service,state}` and `db_pool_max_connections`.
pub fn spawn_pool_metrics(service: &'static str, pool: PgPool) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            if pool.is_closed() {
                break;
            }
            let size = pool.size();
            let idle = pool.num_idle() as u32;
            metrics::gauge!("db_pool_connections", "service" => service, "state" => "in_use")
                .set(f64::from(size.saturating_sub(idle)));
            metrics::gauge!("db_pool_connections", "service" => service, "state" => "idle")
                .set(f64::from(idle));
            metrics::gauge!("db_pool_max_connections", "service" => service)
                .set(f64::from(pool.options().get_max_connections()));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_sslmode_is_honoured_and_defaults_to_no_tls() {
        let opts = connect_options("postgres://u:p@h:5433/d?sslmode=require").unwrap();
        assert!(matches!(opts.get_ssl_mode(), PgSslMode::Require));
        if std::env::var_os("PGSSLMODE").is_none() {
            let opts = connect_options("postgres://u:p@h:5433/d").unwrap();
            assert!(matches!(opts.get_ssl_mode(), PgSslMode::Disable));
        }
    }
}
