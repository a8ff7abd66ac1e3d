//! `meridian`: every service in one process behind one path router — the local stand-in for the
//! ALB — plus the local tooling around it.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use kit::{
    app::{HttpSettings, Mounted},
    config::CommonConfig,
    health::Health,
    pg::PgServer,
};
use sqlx::postgres::PgConnectOptions;

mod learning_cli;
mod playlists_cli;

const ENV_HELP: &str = "\
Identity: `meridian serve` is development mode (MERIDIAN_DEV=1 behaviour): unless AUTH_* name a
real issuer it trusts a local Ed25519 key in ${XDG_STATE_HOME:-~/.local/state}/meridian/ (created
once, mode 0600), serves its JWKS at /.well-known/jwks.json, and `meridian token` mints tokens for
it; calls' state-token key and webhook secret come from the same directory unless set.

Environment (all optional):
  DATABASE_URL            PostgreSQL URL. Unset (and no DATABASE_SECRET_ARN): start a throwaway
                          local server (initdb + pg_ctl from the system's PostgreSQL, deleted on
                          exit); migrate needs one of the two
  DATABASE_SECRET_ARN     AWS: Secrets Manager secret with the database credentials (JSON
                          username, password, host, port, dbname, sslmode), read at start when
                          DATABASE_URL is unset (per-service binaries re-read it: rotation)
  DATABASE_SECRET_REFRESH_SECS  per-service binaries re-read that secret this often (default
                          300) and after a refused password; a rotated one needs no restart
  AWS_REGION              region of that secret; AWS_ENDPOINT_URL overrides the AWS endpoint
                          (tests: a moto server); credentials from the usual AWS SDK chain
  DATABASE_SSL_ROOT_CERT  PEM CA bundle (the RDS bundle) for the secret's sslmode
                          verify-ca/verify-full
  PORT                    listen port (default 8080; --port wins)
  LOG_FORMAT              json | pretty (default json)
  RUST_LOG                log filter (default info)
  MIGRATE_ON_START        per-service binaries: 1 = apply migrations at start; default 0 = only
                          check the schema is at least what the binary needs (`<svc> migrate`
                          is the migration Job); `meridian serve` always migrates
  DB_MAX_CONNECTIONS      pool size per service (default 10)
  DB_ACQUIRE_TIMEOUT_MS   wait for a pooled connection (default 2000)
  DB_MAX_LIFETIME_SECS    replace pooled connections older than this (default 1800)
  SHUTDOWN_GRACE_SECS     drain time after SIGTERM (default 20)
  REQUEST_TIMEOUT_MS      per-request limit (default 10000)
  HTTP_HEADER_READ_TIMEOUT_MS, HTTP_IDLE_TIMEOUT_SECS, HTTP_MAX_CONNECTIONS, HTTP_MAX_IN_FLIGHT
                          connection limits (defaults 10000, 130, 4096, 256): a request head must
                          arrive in time, idle keep-alive connections close, extra connections are
                          closed on accept, extra requests get 503 + Retry-After
  FAULT_DELAY_MS, FAULT_PATH_PREFIX
                          fault injection for gate tests: delay requests under the prefix
  STREAMS_DEFAULT_LIMIT, STREAMS_LEASE_TTL_SECS, STREAMS_HEARTBEAT_INTERVAL_SECS,
  STREAMS_SWEEP_INTERVAL_SECS, STREAMS_SWEEP_BATCH
                          streams service settings (defaults 3, 90, 30, 10, 1000)
  AUTH_ISSUER, AUTH_AUDIENCE, AUTH_JWKS_URL
                          the identity provider whose bearer tokens are accepted (required
                          together outside development mode); AUTH_SCOPE_PREFIX (stripped from
                          scopes, Cognito: `<resource server>/`), AUTH_LEEWAY_SECS (30),
                          AUTH_JWKS_REFRESH_SECS (600), AUTH_JWKS_MIN_REFRESH_SECS (30)
  MERIDIAN_DEV            1 = development mode for the per-service binaries
  CALLS_WEBHOOK_SECRETS   provider:secret pairs that sign the call-decision webhook
  CALLS_TOKEN_KEY, CALLS_TOKEN_KEY_ALSO_ACCEPT, CALLS_TOKEN_MAX_AGE_SECS,
  CALLS_REFRESH_INTERVAL_MS, CALLS_STALE_AFTER_MS, CALLS_SNAPSHOT_PATH, CALLS_DECISION_BUDGET_MS,
  CALLS_EMERGENCY_TARGET, CALLS_LOG_QUEUE, CALLS_STEP_RETENTION_DAYS
                          calls service settings (see services/calls/src/settings.rs)
  PLAYLISTS_MAX_SIZE, PLAYLISTS_MAX_PER_USER, PLAYLISTS_MASTERY_THRESHOLD,
  PLAYLISTS_MASTERY_SESSIONS, PLAYLISTS_SHARE_MAX_DAYS
                          playlists service settings (defaults 20, 50, 0.9, 3, 365)";

#[derive(Parser)]
#[command(name = "meridian", version, about, after_help = ENV_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service on one port: migrations, sample data, then serve until SIGTERM/Ctrl-C.
    Serve {
        /// Port to listen on (overrides PORT).
        #[arg(long)]
        port: Option<u16>,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        /// Skip loading sample data.
        #[arg(long)]
        no_sample_data: bool,
    },
    /// Apply every service's migrations to DATABASE_URL (or DATABASE_SECRET_ARN's database) and
    /// exit.
    Migrate,
    /// Start a throwaway PostgreSQL, print `DATABASE_URL=...` on stdout, and keep it running
    /// until SIGTERM/Ctrl-C (or until the process --watch-pid names exits); then delete it.
    /// The test command uses this when DATABASE_URL is unset.
    Postgres {
        /// Stop when this process is gone (the test command passes its own pid, so the server
        /// is removed even if the test command is killed).
        #[arg(long)]
        watch_pid: Option<u32>,
    },
    /// Print the combined OpenAPI document (no database needed).
    Openapi,
    /// The learning service's tools: `import` (the JSON sources into the database, with a
    /// report) and `generate` (seeded input files at any scale).
    Learning {
        #[command(subcommand)]
        command: learning_cli::LearningCommand,
    },
    /// The playlists service's tools: `rebuild` (truncate the read models and replay the event
    /// log into them).
    Playlists {
        #[command(subcommand)]
        command: playlists_cli::PlaylistsCommand,
    },
    /// Print a bearer token signed with the local dev key, which a running `meridian serve`
    /// accepts (never valid against a real issuer).
    Token {
        /// The subject: a user id (`alice`) or a service name.
        #[arg(long)]
        sub: String,
        /// A scope to grant (repeat for several): streams:sessions, streams:admin, calls:admin,
        /// attendance:site-<site id>, attendance:admin, playlists:analytics, playlists:admin.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Lifetime: 30s, 15m, 1h or 1d.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
    },
    /// Print the `Meridian-Signature` header line for a call-decision body, signed with the local
    /// dev webhook secret (provider `dev`), for `curl -H "$(meridian sign-decision "$body")"`.
    SignDecision {
        /// The exact request body that will be sent.
        body: String,
    },
}

/// `30s`, `15m`, `1h`, `1d` (at most 30 days).
fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected e.g. 30s, 15m, 1h, 1d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" | "" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("`{s}`: unit must be s, m, h or d")),
    };
    if secs == 0 || secs > 30 * 86_400 {
        return Err(format!("`{s}`: between 1s and 30d"));
    }
    Ok(Duration::from_secs(secs))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = CommonConfig::from_env()?;
    kit::telemetry::init(cfg.log_format);
    match cli.command {
        Command::Serve {
            port,
            bind,
            no_sample_data,
        } => serve(cfg, port, &bind, !no_sample_data).await,
        Command::Migrate => {
            let options = configured_database(&cfg)
                .await?
                .context("DATABASE_URL or DATABASE_SECRET_ARN must be set for migrate")?;
            let pools = connect_all(&cfg, &options);
            migrate_all(&pools).await
        }
        Command::Postgres { watch_pid } => run_postgres(watch_pid).await,
        Command::Learning { command } => learning_cli::run(&cfg, command).await,
        Command::Playlists { command } => playlists_cli::run(&cfg, command).await,
        Command::Token { sub, scopes, ttl } => {
            let issuer = kit::auth::dev::issuer().map_err(|e| anyhow::anyhow!(e))?;
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            println!("{}", issuer.token(&sub, &scopes, ttl));
            Ok(())
        }
        Command::SignDecision { body } => {
            let path = kit::auth::dev::state_dir().join("calls-webhook-secret");
            let secret =
                kit::auth::dev::load_or_create_secret(&path).map_err(|e| anyhow::anyhow!(e))?;
            let keys =
                calls::webhook::WebhookKeys::new([(calls::settings::DEV_PROVIDER, &secret[..])])
                    .map_err(|e| anyhow::anyhow!(e))?;
            let now = chrono_now();
            let value = keys
                .sign(calls::settings::DEV_PROVIDER, now, body.as_bytes())
                .context("sign")?;
            println!("{}: {value}", calls::webhook::SIGNATURE_HEADER);
            Ok(())
        }
        Command::Openapi => {
            let url = "postgres://unused@127.0.0.1:1/unused";
            let pools = connect_all(&cfg, &kit::db::connect_options(url)?);
            let (routers, _) = start_all(&pools, StartMode::DocsOnly).await?;
            let (_app, doc) = kit::app::build_with_doc(
                "meridian",
                routers,
                Health::default(),
                &HttpSettings::default(),
            );
            println!("{}", serde_json::to_string_pretty(doc.as_ref())?);
            Ok(())
        }
    }
}

/// Every service this binary runs, in mount order. A new service is one line here (and its
/// crate in Cargo.toml): docs/adding-a-service.md.
static SERVICES: &[&kit::Service] = &[
    &streams::SERVICE,
    &calls::SERVICE,
    &learning::SERVICE,
    &attendance::SERVICE,
    &playlists::SERVICE,
];

/// One pool per service, each scoped to the service's schema (as in production).
struct Pools(Vec<(&'static kit::Service, sqlx::PgPool)>);

impl Pools {
    async fn close(&self) {
        for (_, pool) in &self.0 {
            pool.close().await;
        }
    }
}

/// The database the environment names: `DATABASE_URL`, else `DATABASE_SECRET_ARN` read from
/// Secrets Manager (AWS), else `None`.
async fn configured_database(cfg: &CommonConfig) -> anyhow::Result<Option<PgConnectOptions>> {
    if let Some(url) = cfg.database_url.as_deref() {
        return Ok(Some(kit::db::connect_options(url)?));
    }
    Ok(kit_aws::database_from_env().await?)
}

fn connect_all(cfg: &CommonConfig, options: &PgConnectOptions) -> Pools {
    let settings = kit::db::PoolSettings::from_config(cfg);
    Pools(
        SERVICES
            .iter()
            .map(|svc| {
                let pool = kit::db::pool_with(options.clone(), svc.schema, &settings);
                (*svc, pool)
            })
            .collect(),
    )
}

async fn migrate_all(pools: &Pools) -> anyhow::Result<()> {
    for (svc, pool) in &pools.0 {
        kit::db::migrate(pool, svc.schema, svc.migrator)
            .await
            .with_context(|| format!("migrating {}", svc.name))?;
    }
    tracing::info!("migrations applied");
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StartMode {
    /// Routes only, no background work or database access (the OpenAPI document).
    DocsOnly,
    /// Running services, in development mode (`meridian serve`).
    Serve,
}

/// Starts every service through its contract. Returns the routes to mount, every service's
/// readiness checks, and what to stop at shutdown.
async fn start_all(
    pools: &Pools,
    mode: StartMode,
) -> anyhow::Result<(Vec<Mounted>, Vec<kit::ServiceParts>)> {
    let mut routers = Vec::new();
    let mut rest = Vec::new();
    for (svc, pool) in &pools.0 {
        let ctx = match mode {
            StartMode::DocsOnly => kit::Ctx::routes_only(pool.clone()),
            StartMode::Serve => kit::Ctx::new(pool.clone(), true),
        };
        let mut parts = kit::service::start(svc, ctx)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", svc.name))?;
        routers.push(Mounted {
            name: svc.name,
            router: std::mem::take(&mut parts.router),
        });
        rest.push(parts);
    }
    Ok((routers, rest))
}

async fn serve(
    cfg: CommonConfig,
    port: Option<u16>,
    bind: &str,
    sample: bool,
) -> anyhow::Result<()> {
    // Every service's settings first: a bad one names itself before a database is started.
    for svc in SERVICES {
        (svc.check_settings)(true).with_context(|| format!("{} settings", svc.name))?;
    }
    // DATABASE_URL (checked reachable), else DATABASE_SECRET_ARN, else a throwaway local server
    // kept until exit.
    let secret = match cfg.database_url {
        Some(_) => None,
        None => kit_aws::database_from_env().await?,
    };
    let (options, server) = match secret {
        Some(options) => (options, None),
        None => {
            let server = PgServer::ensure(cfg.database_url.as_deref()).await?;
            if server.is_throwaway() {
                tracing::info!(url = %kit::config::redact_url(server.url()), "started a throwaway PostgreSQL (deleted on exit)");
            }
            (kit::db::connect_options(server.url())?, Some(server))
        }
    };
    let pools = connect_all(&cfg, &options);
    migrate_all(&pools).await?;
    if sample {
        for (svc, pool) in &pools.0 {
            (svc.sample_data)(pool.clone())
                .await
                .map_err(|e| anyhow::anyhow!("{} sample data: {e}", svc.name))?;
        }
        tracing::info!("sample data loaded");
    }
    for (svc, pool) in &pools.0 {
        kit::db::spawn_pool_metrics(svc.name, pool.clone());
    }

    let (mut routers, mut started) = start_all(&pools, StartMode::Serve).await?;
    let checks = started
        .iter_mut()
        .flat_map(|p| std::mem::take(&mut p.readiness))
        .collect();
    let auth = match kit::auth::AuthSettings::from_env()? {
        Some(_) => kit::auth::from_env_with(false).await?,
        None => {
            let issuer = kit::auth::dev::issuer().map_err(|e| anyhow::anyhow!(e))?;
            tracing::warn!(
                key = %kit::auth::dev::key_path().display(),
                "DEVELOPMENT MODE: trusting the local dev signing key (tokens: meridian token --sub alice); \
                 set AUTH_ISSUER, AUTH_AUDIENCE and AUTH_JWKS_URL to use a real issuer"
            );
            routers.push(dev_jwks_route(issuer.jwks()));
            issuer.authenticator()
        }
    };
    let health = Health::new(checks);
    let app = kit::app::build(
        "meridian",
        routers,
        health.clone(),
        &HttpSettings::from_config(&cfg, auth),
    );
    let listener = tokio::net::TcpListener::bind((bind, port.unwrap_or(cfg.port)))
        .await
        .with_context(|| format!("cannot listen on {bind}:{}", port.unwrap_or(cfg.port)))?;
    let addr = listener.local_addr()?;
    if let Some((prefix, delay)) = &cfg.fault_delay {
        tracing::warn!(%prefix, ?delay, "FAULT INJECTION ON: requests under the prefix are delayed");
    }
    tracing::info!(url = %format!("http://{addr}"), "meridian is serving (Ctrl-C to stop)");
    eprintln!("meridian is serving on http://{addr}  (try: curl http://{addr}/readyz)");
    let drained = kit::shutdown::serve_with(
        listener,
        app,
        health,
        kit::shutdown::signal(),
        cfg.shutdown_grace,
        cfg.http_limits,
    )
    .await?;
    kit::service::stop(
        started
            .iter_mut()
            .map(kit::ServiceParts::take_tasks)
            .collect(),
        drained,
    )
    .await;
    pools.close().await;
    drop(server);
    tracing::info!(drained, "stopped");
    Ok(())
}

async fn run_postgres(watch_pid: Option<u32>) -> anyhow::Result<()> {
    let server = PgServer::ensure(None).await?;
    println!("DATABASE_URL={}", server.url());
    use std::io::Write;
    std::io::stdout().flush()?;
    let parent_gone = async move {
        let Some(pid) = watch_pid else {
            return std::future::pending::<()>().await;
        };
        let proc_dir = format!("/proc/{pid}");
        while std::path::Path::new(&proc_dir).exists() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tracing::info!(pid, "watched process exited");
    };
    tokio::select! {
        () = kit::shutdown::signal() => {}
        () = parent_gone => {}
    }
    drop(server);
    Ok(())
}

/// `GET /.well-known/jwks.json`: the dev issuer's public key, as an identity provider would
/// publish it (only in development mode).
fn dev_jwks_route(jwks: kit::auth::PublicKeys) -> Mounted {
    use aide::axum::routing::get_with;
    let jwks = Arc::new(jwks);
    let router = aide::axum::ApiRouter::new().api_route(
        "/.well-known/jwks.json",
        get_with(
            move || {
                let jwks = Arc::clone(&jwks);
                async move { axum::Json(serde_json::to_value(&*jwks).unwrap_or_default()) }
            },
            |op| {
                kit::auth::public(
                    op.summary("The development issuer's public keys (JWKS)"),
                    "public keys; served only by `meridian serve` in development mode",
                )
            },
        ),
    );
    Mounted {
        name: "dev",
        router,
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
