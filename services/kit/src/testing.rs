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

/// A loopback port nothing listens on right now (for a service process a test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or_else(|e| panic!("no free port: {e}"), |a| a.port())
}

/// Polls `GET {base}/readyz` (base `http://127.0.0.1:PORT`) until it answers 200 or `limit`
/// passes; whether it became ready. Plain HTTP/1.0 over a socket, so it needs no client crate.
pub async fn wait_ready(base: &str, limit: std::time::Duration) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await {
            let mut head = [0u8; 12];
            let ok = tcp.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").await.is_ok()
                && tcp.read_exact(&mut head).await.is_ok()
                && head.ends_with(b" 200");
            if ok {
                return true;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
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
    // The production server (kit::server), with its limits, not a bare axum::serve.
    tokio::spawn(async move {
        let _ = crate::server::serve(
            listener,
            app,
            crate::server::Limits::default(),
            std::future::pending(),
            std::time::Duration::ZERO,
        )
        .await;
    });
    format!("http://{addr}")
}

/// The tests' token issuer: one random Ed25519 key per test process. Applications built with
/// [`http_settings`] (and so [`app_for`]) trust it and nothing else.
pub fn issuer() -> &'static crate::auth::local::LocalIssuer {
    static ISSUER: std::sync::OnceLock<crate::auth::local::LocalIssuer> =
        std::sync::OnceLock::new();
    ISSUER.get_or_init(|| {
        crate::auth::local::LocalIssuer::generate("https://issuer.test", "meridian-test")
            .unwrap_or_else(|e| panic!("test issuer: {e}"))
    })
}

/// A token from [`issuer`] for `sub` with `scopes`, valid for an hour.
pub fn token(sub: &str, scopes: &[&str]) -> String {
    issuer().token(sub, scopes, std::time::Duration::from_hours(1))
}

/// `Authorization` header value for [`token`].
pub fn bearer(sub: &str, scopes: &[&str]) -> String {
    format!("Bearer {}", token(sub, scopes))
}

/// Tokens for `sub` with `scopes` that must all be refused with 401, each named by what is
/// wrong with it: expired, not yet valid, wrong issuer, wrong audience, signed by another key
/// (same and unknown `kid`), `alg: none`, HS256 keyed with the issuer's public key, malformed.
pub fn bad_tokens(sub: &str, scopes: &[&str]) -> Vec<(&'static str, String)> {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let good = issuer();
    let now = chrono::Utc::now().timestamp();
    let claims = |patch: serde_json::Value| {
        let mut c = serde_json::json!({
            "iss": good.issuer, "aud": good.audience, "sub": sub,
            "iat": now, "exp": now + 3600, "scope": scopes.join(" "),
        });
        if let (Some(c), Some(p)) = (c.as_object_mut(), patch.as_object()) {
            for (k, v) in p {
                c.insert(k.clone(), v.clone());
            }
        }
        c
    };
    let other = crate::auth::local::LocalIssuer::generate(&good.issuer, &good.audience)
        .unwrap_or_else(|e| panic!("second key: {e}"));
    let unsigned = |alg: &str| {
        let header = serde_json::json!({ "alg": alg, "typ": "JWT", "kid": good.kid() });
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims(serde_json::json!({})).to_string())
        )
    };
    // The classic confusion: the verifier's public key used as an HMAC secret.
    let public_key = serde_json::to_value(good.jwks())
        .ok()
        .and_then(|v| v["keys"][0]["x"].as_str().map(str::to_owned))
        .and_then(|x| URL_SAFE_NO_PAD.decode(x).ok())
        .unwrap_or_default();
    let hs256 = {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(good.kid().to_owned());
        let key = jsonwebtoken::EncodingKey::from_secret(&public_key)
            .unwrap_or_else(|e| panic!("hs256 key: {e}"));
        jsonwebtoken::encode(&header, &claims(serde_json::json!({})), &key)
            .unwrap_or_else(|e| panic!("hs256: {e}"))
    };
    let mut same_kid_other_key = other.sign(&claims(serde_json::json!({})));
    // Re-sign with the good kid in the header but the other key's signature.
    if let Some((_, sig)) = same_kid_other_key.rsplit_once('.') {
        let good_token = good.sign(&claims(serde_json::json!({})));
        if let Some((signed_part, _)) = good_token.rsplit_once('.') {
            same_kid_other_key = format!("{signed_part}.{sig}");
        }
    }
    vec![
        (
            "expired",
            good.sign(&claims(serde_json::json!({ "exp": now - 3600 }))),
        ),
        (
            "not yet valid",
            good.sign(&claims(serde_json::json!({ "nbf": now + 3600 }))),
        ),
        (
            "wrong issuer",
            good.sign(&claims(serde_json::json!({ "iss": "https://evil.test" }))),
        ),
        (
            "wrong audience",
            good.sign(&claims(serde_json::json!({ "aud": "another-api" }))),
        ),
        ("no exp", {
            let mut c = claims(serde_json::json!({}));
            if let Some(o) = c.as_object_mut() {
                o.remove("exp");
            }
            good.sign(&c)
        }),
        (
            "another key, unknown kid",
            other.sign(&claims(serde_json::json!({}))),
        ),
        ("another key, trusted kid", same_kid_other_key),
        ("alg none", format!("{}.", unsigned("none"))),
        ("HS256 keyed with the public key", hs256),
        ("malformed", "not-a-jwt".to_owned()),
    ]
}

/// Headers carrying [`bearer`]: `reqwest::Client::builder().default_headers(auth_headers(..))`.
pub fn auth_headers(sub: &str, scopes: &[&str]) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    let value = http::HeaderValue::from_str(&bearer(sub, scopes))
        .unwrap_or_else(|e| panic!("token is not a header value: {e}"));
    headers.insert(http::header::AUTHORIZATION, value);
    headers
}

/// A JWKS endpoint on loopback whose key set a test can replace (issuer key rotation), and
/// which counts its fetches.
pub struct JwksServer {
    pub url: String,
    keys: Arc<Mutex<serde_json::Value>>,
    fetches: Arc<std::sync::atomic::AtomicUsize>,
}

impl JwksServer {
    /// Serves `jwks` at `http://127.0.0.1:PORT/.well-known/jwks.json`.
    pub async fn start(jwks: &crate::auth::PublicKeys) -> Self {
        let keys = Arc::new(Mutex::new(
            serde_json::to_value(jwks).unwrap_or_else(|e| panic!("jwks: {e}")),
        ));
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (k, f) = (Arc::clone(&keys), Arc::clone(&fetches));
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let (k, f) = (Arc::clone(&k), Arc::clone(&f));
                async move {
                    f.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let v = k.lock().map(|g| g.clone()).unwrap_or_default();
                    axum::Json(v)
                }
            }),
        );
        let base = spawn_app(app).await;
        Self {
            url: format!("{base}/.well-known/jwks.json"),
            keys,
            fetches,
        }
    }

    /// Replaces the served key set.
    pub fn set(&self, jwks: &crate::auth::PublicKeys) {
        if let Ok(mut g) = self.keys.lock() {
            *g = serde_json::to_value(jwks).unwrap_or_default();
        }
    }

    /// How many times the key set was fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The `AUTH_*` environment of a service process that trusts `issuer` through this server.
    pub fn env(&self, issuer: &crate::auth::local::LocalIssuer) -> Vec<(&'static str, String)> {
        vec![
            ("AUTH_ISSUER", issuer.issuer.clone()),
            ("AUTH_AUDIENCE", issuer.audience.clone()),
            ("AUTH_JWKS_URL", self.url.clone()),
        ]
    }
}

/// Default HTTP settings whose verifier trusts [`issuer`].
pub fn http_settings() -> crate::app::HttpSettings {
    crate::app::HttpSettings {
        auth: issuer().authenticator(),
        ..crate::app::HttpSettings::default()
    }
}

/// Builds a finished application around a started service, as the service's own binary would
/// (its routes under the kit's endpoints and middleware, `/readyz` from its own readiness
/// checks), trusting the tests' [`issuer`]. The background tasks keep running (the test's
/// runtime ends them).
pub fn app_for(service: &'static crate::Service, parts: crate::ServiceParts) -> axum::Router {
    app_with(service, parts, &http_settings())
}

/// [`app_for`] with other HTTP settings (another verifier, limits, fault injection).
pub fn app_with(
    service: &'static crate::Service,
    parts: crate::ServiceParts,
    http: &crate::app::HttpSettings,
) -> axum::Router {
    crate::app::build(
        service.name,
        vec![crate::app::Mounted {
            name: service.name,
            router: parts.router,
        }],
        crate::health::Health::new(parts.readiness),
        http,
    )
}

/// Starts `service` on `pool` through its contract ([`crate::Service::start`]), with the
/// system clock, in development mode (so secrets the test does not set fall back to dev ones).
/// Panics on a start-up error: a test's set-up failing is the test failing.
pub async fn start(service: &'static crate::Service, pool: PgPool) -> crate::ServiceParts {
    crate::service::start(service, crate::Ctx::new(pool, true))
        .await
        .unwrap_or_else(|e| panic!("{} did not start: {e}", service.name))
}

/// A moto server (the AWS API emulator the AWS tests talk to) on a free port of 127.0.0.1,
/// killed on drop. Its binary is `MOTO_SERVER`, else
/// `${MERIDIAN_CACHE:-$HOME/.cache/meridian}/moto-venv/bin/moto_server` (tests/run installs it
/// there from PyPI: `pip install 'moto[server]'`). Without it the test panics with the install
/// command: AWS tests never skip.
pub struct Moto {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl Moto {
    fn binary() -> std::path::PathBuf {
        use std::path::PathBuf;
        let install = "python3 -m venv \"${MERIDIAN_CACHE:-$HOME/.cache/meridian}/moto-venv\" && \
                       \"${MERIDIAN_CACHE:-$HOME/.cache/meridian}/moto-venv/bin/pip\" install 'moto[server]' \
                       (tests/run does this), or set MOTO_SERVER to a moto_server binary";
        let path = match std::env::var_os("MOTO_SERVER") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => {
                let cache = std::env::var_os("MERIDIAN_CACHE")
                    .filter(|c| !c.is_empty())
                    .map_or_else(
                        || {
                            let home = std::env::var_os("HOME").unwrap_or_else(|| {
                                panic!("neither MOTO_SERVER nor HOME is set: {install}")
                            });
                            PathBuf::from(home).join(".cache/meridian")
                        },
                        PathBuf::from,
                    );
                cache.join("moto-venv/bin/moto_server")
            }
        };
        assert!(
            path.is_file(),
            "moto_server not found at {}: these tests need moto's AWS emulator: {install}",
            path.display()
        );
        path
    }

    /// Starts a fresh server (empty state) and waits until it listens.
    pub fn start() -> Self {
        use std::{
            net::{Ipv4Addr, SocketAddr, TcpStream},
            process::{Command, Stdio},
            time::{Duration, Instant},
        };
        let bin = Self::binary();
        // moto_server cannot report a port it picked itself: take a free one, then hand it over.
        let port = free_port();
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            if let Some(status) = child.try_wait().expect("poll moto_server") {
                panic!("moto_server exited before answering ({status}); port {port}");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {addr} within 60s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, addr }
    }

    /// `http://127.0.0.1:PORT`, the SDK's endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Forgets every resource (moto's `POST /moto-api/reset`).
    pub async fn reset(&self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .unwrap_or_else(|e| panic!("connect to moto at {}: {e}", self.addr));
        tcp.write_all(b"POST /moto-api/reset HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
            .await
            .expect("send the reset");
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head)
            .await
            .expect("read the reset's status");
        assert!(head.ends_with(b" 200"), "moto reset answered {head:?}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
