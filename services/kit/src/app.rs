//! Assembles services into a finished HTTP application: the kit endpoints, the middleware every
//! request passes through, the OpenAPI document, and problem+json fallbacks.

use std::{sync::Arc, time::Duration};

use aide::{axum::ApiRouter, openapi::OpenApi};
use axum::{
    Extension, Router,
    extract::{DefaultBodyLimit, Request},
    http::{HeaderName, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
};

use crate::{error::ApiError, health::Health};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub use crate::service::{BoxError, Ctx, Service, ServiceParts};

/// One service's routes, ready to mount: `router` already carries the service's state, and its
/// paths start with `/<name>/`.
pub struct Mounted {
    pub name: &'static str,
    pub router: ApiRouter,
}

/// HTTP settings applied to the whole application.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub request_timeout: Duration,
    pub body_limit: usize,
    /// Fault injection: delay every request whose path starts with the prefix. For proving
    /// that SLO gates and analyses fail when they should; never set in production.
    pub fault_delay: Option<(String, Duration)>,
    /// Verifies the bearer tokens of every route that takes a [`Caller`](crate::auth::Caller).
    /// The default refuses every token (fail closed).
    pub auth: Arc<crate::auth::Authenticator>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            body_limit: 2 * 1024 * 1024,
            fault_delay: None,
            auth: crate::auth::Authenticator::deny_all(),
        }
    }
}

impl HttpSettings {
    /// From [`CommonConfig`](crate::config::CommonConfig), verifying tokens with `auth`.
    pub fn from_config(
        cfg: &crate::config::CommonConfig,
        auth: Arc<crate::auth::Authenticator>,
    ) -> Self {
        Self {
            request_timeout: cfg.request_timeout,
            fault_delay: cfg.fault_delay.clone(),
            auth,
            ..Self::default()
        }
    }
}

/// Builds the application: every mounted service (each with its own metrics label), plus
/// `/healthz`, `/readyz`, `/metrics` and `/openapi.json`, with request ids, access logs,
/// metrics, a request timeout, a body limit, panic-to-500 and problem+json 404/405.
pub fn build(title: &str, services: Vec<Mounted>, health: Health, http: &HttpSettings) -> Router {
    build_with_doc(title, services, health, http).0
}

/// [`build`], also returning the OpenAPI document the application serves.
pub fn build_with_doc(
    title: &str,
    services: Vec<Mounted>,
    health: Health,
    http: &HttpSettings,
) -> (Router, Arc<OpenApi>) {
    crate::metrics::install();
    // Not `aide::generate::extract_schemas(true)` here (it is aide's default): setting it
    // replaces the thread's schema generator, and with it every component schema the services'
    // routes registered when they were built, leaving their `$ref`s pointing at nothing.
    // `finish_api` below moves the definitions into the document and resets the context; both
    // happen on the thread that built the routes (services build them synchronously, and
    // `main`/tests run on `block_on`'s thread).
    aide::generate::infer_responses(true);

    let mut api = OpenApi {
        info: aide::openapi::Info {
            title: title.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..Default::default()
        },
        ..Default::default()
    };

    // The request timeout (and fault injection) sit inside the metrics layer, so a request cut
    // off by the timeout is counted as the 503 its client got, and an injected delay shows in the
    // latency histogram like a real slow route would: the error and latency SLOs see them.
    let inner = |router: ApiRouter| {
        let mut router = router.layer(middleware::from_fn_with_state(
            http.request_timeout,
            timeout,
        ));
        // Only when asked for: a layer that does nothing still costs a boxed call per request.
        if let Some(fault) = http.fault_delay.clone() {
            router = router.layer(middleware::from_fn_with_state(
                Arc::new(fault),
                inject_delay,
            ));
        }
        router
    };
    let mut app = ApiRouter::new();
    for svc in services {
        let name = svc.name;
        app = app.merge(
            inner(svc.router).layer(middleware::from_fn(move |req, next| {
                crate::metrics::observe(name, req, next)
            })),
        );
    }
    let app = app.finish_api(&mut api);
    crate::auth::document_scheme(&mut api);
    let api = Arc::new(api);
    let doc = Arc::clone(&api);

    let kit_routes = Router::new()
        .route("/healthz", get(crate::health::healthz))
        .route("/readyz", get(crate::health::readyz).with_state(health))
        .route("/metrics", get(crate::metrics::render))
        .route("/openapi.json", get(serve_openapi))
        .layer(Extension(api));
    let kit_routes =
        Router::from(inner(ApiRouter::from(kit_routes))).layer(middleware::from_fn(|req, next| {
            crate::metrics::observe("kit", req, next)
        }));

    let router = app
        .merge(kit_routes)
        .fallback(crate::error::not_found_fallback)
        .method_not_allowed_fallback(crate::error::method_not_allowed_fallback)
        .layer(DefaultBodyLimit::max(http.body_limit))
        .layer(Extension(Arc::clone(&http.auth)))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal(&"handler panicked").into_response()
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid));
    (router, doc)
}

async fn serve_openapi(Extension(api): Extension<Arc<OpenApi>>) -> impl IntoResponse {
    axum::Json(api.as_ref().clone())
}

/// Bounds every request; a request that runs out of time gets a problem+json 503.
async fn timeout(
    axum::extract::State(limit): axum::extract::State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "Request timed out",
        )
        .with_detail(format!("the request did not complete within {limit:?}"))
        .into_response(),
    }
}

/// The whole `main` of a per-service binary: [`run_single_with`], errors printed and turned
/// into the exit status (2 for a configuration error the operator must fix, 1 otherwise).
pub async fn main<D, DF, O, E>(svc: &'static Service, database: D) -> std::process::ExitCode
where
    D: FnOnce() -> DF,
    DF: std::future::Future<Output = Result<Option<O>, E>>,
    O: Into<crate::db::Database>,
    E: Into<BoxError>,
{
    match run_single_with(svc, database).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e}", svc.name);
            // A setting the operator must fix: a bad variable, or a DATABASE_URL that is not one.
            let config = e.downcast_ref::<crate::config::ConfigError>().is_some()
                || matches!(
                    e.downcast_ref::<crate::db::DbError>(),
                    Some(crate::db::DbError::Url(_))
                );
            std::process::ExitCode::from(if config { 2 } else { 1 })
        }
    }
}

/// Runs one service as its own process (the production shape): reads [`CommonConfig`] from the
/// environment, connects, checks (or applies) its migrations, starts the service ([`Service::start`]) and serves on
/// `PORT` until SIGTERM, then drains, stops its background work and closes the pool.
///
/// With the single argument `migrate` it only applies migrations and exits: that is the command
/// of the Release's migration Job. Serving, it does not migrate (unless `MIGRATE_ON_START=1`):
/// it checks the schema holds every migration it ships, and accepts a newer one
/// ([`crate::db::check_schema`]).
///
/// The database is `DATABASE_URL`, else whatever `database` resolves
/// (`kit_aws::rotating_database_from_env` reads `DATABASE_SECRET_ARN` from Secrets Manager), else
/// the binary fails naming both variables. The resolver runs after telemetry is initialised, so
/// its logs are JSON like the rest; keeping it a closure keeps kit itself free of the AWS SDK.
/// When it comes with a [`crate::db::CredentialSource`] (a rotating secret), a serving process
/// runs it beside the pool until it stops: new connections use the rotated password, no
/// restart.
///
/// [`CommonConfig`]: crate::config::CommonConfig
pub async fn run_single_with<D, DF, O, E>(
    svc: &'static Service,
    database: D,
) -> Result<(), BoxError>
where
    D: FnOnce() -> DF,
    DF: std::future::Future<Output = Result<Option<O>, E>>,
    O: Into<crate::db::Database>,
    E: Into<BoxError>,
{
    let cfg = crate::config::CommonConfig::from_env()?;
    crate::telemetry::init(cfg.log_format);
    // The explicit development mode; each fallback it allows says so loudly where it is taken.
    let dev = crate::auth::dev_mode();
    // Before any connection: a bad setting names itself whatever the database's state.
    (svc.check_settings)(dev)?;
    let migrate_only = std::env::args().nth(1).as_deref() == Some("migrate");
    // Before any connection: a production start without an issuer fails naming the setting.
    // The migration Job serves nothing and needs none.
    let auth = if migrate_only {
        crate::auth::Authenticator::deny_all()
    } else {
        crate::auth::from_env().await?
    };
    let crate::db::Database {
        options,
        credentials,
    } = match cfg.database_url.as_deref() {
        Some(url) => crate::db::connect_options(url)?.into(),
        None => database()
            .await
            .map_err(Into::into)?
            .map(Into::into)
            .ok_or_else(|| crate::config::ConfigError {
                name: "DATABASE_URL".into(),
                value: String::new(),
                reason: "required (or, in AWS, DATABASE_SECRET_ARN): the PostgreSQL URL of this \
                     service's database"
                    .into(),
            })?,
    };
    let pool = crate::db::pool_with(
        options,
        svc.schema,
        &crate::db::PoolSettings::from_config(&cfg),
    );
    // The migration Job runs for seconds: only a serving process outlives a rotation.
    let rotation = credentials
        .filter(|_| !migrate_only)
        .map(|source| tokio::spawn(source.keep_current(vec![pool.clone()])));
    // Only the migration Job migrates (`<service> migrate`): a serving replica checks that the
    // schema is at least what it needs and accepts a newer one, so the previous release keeps
    // starting beside (and after a rollback from) a newer one. MIGRATE_ON_START=1 is for where
    // no Job runs before traffic moves (today: the ECS countries).
    let migrate_on_start = crate::config::flag("MIGRATE_ON_START")?;
    let prepared = if migrate_only || migrate_on_start {
        crate::db::migrate(&pool, svc.schema, svc.migrator).await
    } else {
        crate::db::check_schema(&pool, svc).await.map(|_| ())
    };
    match prepared {
        Ok(()) if migrate_only => {
            tracing::info!(service = svc.name, "migrations applied");
            return Ok(());
        }
        Ok(()) => {}
        // Only an unreachable database: a reachable one that is behind would take writes the
        // schema cannot hold.
        Err(e @ (crate::db::DbError::Unreachable { .. } | crate::db::DbError::Migrate { .. }))
            if svc.start_without_db && !migrate_only =>
        {
            tracing::warn!(service = svc.name, error = %e, "database unavailable at start; serving without it");
        }
        Err(e) => return Err(e.into()),
    }
    crate::db::spawn_pool_metrics(svc.name, pool.clone());
    let mut parts = crate::service::start(svc, crate::service::Ctx::new(pool.clone(), dev)).await?;
    let tasks = parts.take_tasks();
    let health = Health::new(parts.readiness);
    let app = build(
        svc.name,
        vec![Mounted {
            name: svc.name,
            router: parts.router,
        }],
        health.clone(),
        &HttpSettings::from_config(&cfg, auth),
    );
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", cfg.port)).await?;
    tracing::info!(service = svc.name, addr = %listener.local_addr()?, "listening");
    let drained = crate::shutdown::serve_with(
        listener,
        app,
        health,
        crate::shutdown::signal(),
        cfg.shutdown_grace,
        cfg.http_limits,
    )
    .await?;
    crate::service::stop(vec![tasks], drained).await;
    if let Some(rotation) = rotation {
        rotation.abort();
    }
    pool.close().await;
    tracing::info!(service = svc.name, "stopped");
    Ok(())
}

async fn inject_delay(
    axum::extract::State(fault): axum::extract::State<Arc<(String, Duration)>>,
    req: Request,
    next: Next,
) -> Response {
    if req.uri().path().starts_with(&fault.0) {
        tokio::time::sleep(fault.1).await;
    }
    next.run(req).await
}
