//! Test support: an isolated, freshly created database per test on a real PostgreSQL server.
//!
//! The server is `DATABASE_URL` when set (the test command sets it), otherwise a throwaway
//! cluster this process starts and shares between its tests. Each [`TestDb`] is a new database
//! with a random name, dropped again when the `TestDb` is dropped, so tests run in parallel and
//! never see each other's rows.

use std::sync::{Arc, Mutex, Weak};

use sqlx::{Connection, Executor, PgConnection, PgPool};

use crate::{db::PoolSettings, pg::PgServer};

static SERVER: Mutex<Weak<PgServer>> = Mutex::new(Weak::new());

async fn server() -> Arc<PgServer> {
    if let Some(s) = SERVER.lock().ok().and_then(|g| g.upgrade()) {
        return s;
    }
    let url = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty());
    let server = Arc::new(
        PgServer::ensure(url.as_deref())
            .await
            .unwrap_or_else(|e| panic!("no PostgreSQL for tests: {e}")),
    );
    if let Ok(mut guard) = SERVER.lock() {
        if let Some(existing) = guard.upgrade() {
            return existing;
        }
        *guard = Arc::downgrade(&server);
    }
    server
}

/// A database of its own for one test.
pub struct TestDb {
    name: String,
    url: String,
    server: Arc<PgServer>,
}

impl TestDb {
    pub async fn new() -> Self {
        let server = server().await;
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(server.url())
            .await
            .unwrap_or_else(|e| panic!("connect to test server: {e}"));
        admin
            .execute(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .await
            .unwrap_or_else(|e| panic!("create test database: {e}"));
        let _ = admin.close().await;
        let url = server.url_for_database(&name);
        Self { name, url, server }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn server(&self) -> &PgServer {
        &self.server
    }

    /// A pool for `schema` in this database (the same shape services use in production).
    pub fn pool(&self, schema: &str) -> PgPool {
        self.pool_with(schema, &PoolSettings::default())
    }

    pub fn pool_with(&self, schema: &str, settings: &PoolSettings) -> PgPool {
        crate::db::pool(&self.url, schema, settings).unwrap_or_else(|e| panic!("test pool: {e}"))
    }

    /// A migrated pool for `service`.
    pub async fn service_pool(&self, service: &crate::Service) -> PgPool {
        let pool = self.pool(service.schema);
        crate::db::migrate(&pool, service.schema, service.migrator)
            .await
            .unwrap_or_else(|e| panic!("migrate {}: {e}", service.schema));
        pool
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs outside any runtime guarantee, so drop the database from a thread of its own.
        let name = std::mem::take(&mut self.name);
        let admin_url = self.server.url().to_owned();
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ = admin
                        .execute(sqlx::AssertSqlSafe(format!(
                            r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                        )))
                        .await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// Serves `app` on a free loopback port in the background; returns its base URL
/// (`http://127.0.0.1:PORT`). The server lives as long as the test's runtime.
pub async fn spawn_app(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind test listener: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local addr: {e}"));
    tokio::spawn(async move {
        let _ = axum::serve(crate::shutdown::nodelay(listener), app.into_make_service()).await;
    });
    format!("http://{addr}")
}

/// Builds a finished application around one service router, as `meridian serve` would, with a
/// readiness check on `pool`.
pub fn app_for(
    service: &'static crate::Service,
    router: aide::axum::ApiRouter,
    pool: PgPool,
) -> axum::Router {
    let health = crate::health::Health::new(vec![Arc::new(crate::health::DbReady::new(
        service.schema,
        pool,
        service.migrator,
    ))]);
    crate::app::build(
        service.name,
        vec![crate::app::Mounted {
            name: service.name,
            router,
        }],
        health,
        &crate::app::HttpSettings::default(),
    )
}
