//! Who may call what, route by route, over real HTTP and a real PostgreSQL: no token and every
//! kind of bad token → 401; alice on bob's streams, and users on admin routes → 403 (and nothing
//! changes); the owner, the playback service and admins → 2xx. And the production binary: it
//! refuses to start without an issuer, and with one it verifies tokens against the issuer's JWKS.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use kit::testing::{JwksServer, TestDb, app_for, bad_tokens, bearer, issuer, spawn_app};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use streams::api::{SCOPE_ADMIN, SCOPE_SESSIONS};

struct H {
    _db: TestDb,
    pool: sqlx::PgPool,
    base: String,
    http: Client,
}

async fn harness() -> H {
    let db = TestDb::new().await;
    let pool = db.service_pool(&streams::SERVICE).await;
    let app = app_for(
        &streams::SERVICE,
        streams::start_with(
            kit::Ctx::routes_only(pool.clone()),
            streams::Settings::default(),
        ),
    );
    H {
        base: spawn_app(app).await,
        _db: db,
        pool,
        http: Client::new(),
    }
}

impl H {
    async fn call(&self, method: Method, path: &str, auth: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        if method == Method::POST && path.ends_with("/sessions") {
            req = req.json(&json!({ "device_id": "tv", "content_id": "film" }));
        } else if method == Method::PUT {
            req = req.json(&json!({ "max_streams": 7 }));
        }
        req.send().await.expect("send")
    }

    /// A live session of bob's, started by bob himself.
    async fn bobs_session(&self) -> String {
        let res = self
            .call(
                Method::POST,
                "/streams/v1/users/bob/sessions",
                Some(&bearer("bob", &[])),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let v: Value = res.json().await.expect("json");
        v["session_id"].as_str().expect("id").to_owned()
    }

    async fn counts(&self) -> (i64, i64) {
        let s: i64 = sqlx::query_scalar("SELECT count(*) FROM streams.sessions")
            .fetch_one(&self.pool)
            .await
            .expect("count");
        let l: i64 = sqlx::query_scalar("SELECT count(*) FROM streams.user_limits")
            .fetch_one(&self.pool)
            .await
            .expect("count");
        (s, l)
    }
}

/// Every route with: callers that must be refused 403, and callers that must succeed.
fn routes(session: &str) -> Vec<(Method, String, Vec<String>, Vec<String>)> {
    let user = || vec![bearer("alice", &[])];
    let bob_or_service = || vec![bearer("bob", &[]), bearer("playback", &[SCOPE_SESSIONS])];
    let admin_only = || {
        vec![
            bearer("alice", &[]),
            bearer("bob", &[]),
            bearer("playback", &[SCOPE_SESSIONS]),
        ]
    };
    vec![
        (
            Method::POST,
            "/streams/v1/users/bob/sessions".into(),
            vec![bearer("alice", &[SCOPE_ADMIN])],
            bob_or_service(),
        ),
        (
            Method::GET,
            "/streams/v1/users/bob/sessions".into(),
            user(),
            bob_or_service(),
        ),
        (
            Method::GET,
            "/streams/v1/users/bob/limit".into(),
            user(),
            vec![
                bearer("bob", &[]),
                bearer("playback", &[SCOPE_SESSIONS]),
                bearer("support", &[SCOPE_ADMIN]),
            ],
        ),
        (
            Method::PUT,
            "/streams/v1/users/bob/limit".into(),
            admin_only(),
            vec![bearer("support", &[SCOPE_ADMIN])],
        ),
        (
            Method::DELETE,
            "/streams/v1/users/bob/limit".into(),
            admin_only(),
            vec![bearer("support", &[SCOPE_ADMIN])],
        ),
        (
            Method::GET,
            format!("/streams/v1/sessions/{session}"),
            user(),
            bob_or_service(),
        ),
        (
            Method::POST,
            format!("/streams/v1/sessions/{session}/heartbeat"),
            user(),
            bob_or_service(),
        ),
        // Last: a successful stop ends the session the routes above need.
        (
            Method::DELETE,
            format!("/streams/v1/sessions/{session}"),
            user(),
            bob_or_service(),
        ),
    ]
}

#[tokio::test]
async fn every_route_refuses_missing_and_bad_tokens_and_the_wrong_caller() {
    let h = harness().await;
    let session = h.bobs_session().await;
    let bad = bad_tokens("bob", &[SCOPE_SESSIONS, SCOPE_ADMIN]);
    for (method, path, forbidden, allowed) in routes(&session) {
        let before = h.counts().await;
        let res = h.call(method.clone(), &path, None).await;
        assert_eq!(
            res.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}: no token"
        );
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        for (what, token) in &bad {
            let res = h
                .call(method.clone(), &path, Some(&format!("Bearer {token}")))
                .await;
            assert_eq!(
                res.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path}: {what}"
            );
        }
        for caller in &forbidden {
            let res = h.call(method.clone(), &path, Some(caller)).await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{method} {path}");
            let p: Value = res.json().await.expect("problem");
            assert_eq!(p["status"], 403);
        }
        assert_eq!(
            h.counts().await,
            before,
            "{method} {path}: a refused request changed something"
        );
        for caller in &allowed {
            let res = h.call(method.clone(), &path, Some(caller)).await;
            assert!(
                res.status().is_success(),
                "{method} {path}: {} for an allowed caller",
                res.status()
            );
        }
    }
}

#[tokio::test]
async fn a_session_that_does_not_exist_is_not_a_way_around_ownership() {
    let h = harness().await;
    let alice = bearer("alice", &[]);
    let unknown = "01900000-0000-7000-8000-000000000000";
    let res = h
        .call(
            Method::GET,
            &format!("/streams/v1/sessions/{unknown}"),
            Some(&alice),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = h
        .call(
            Method::DELETE,
            &format!("/streams/v1/sessions/{unknown}"),
            Some(&alice),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::NO_CONTENT,
        "stop stays idempotent"
    );
}

fn streams_binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streams"));
    cmd.env_remove("MERIDIAN_DEV")
        .env_remove("AUTH_ISSUER")
        .env_remove("AUTH_AUDIENCE")
        .env_remove("AUTH_JWKS_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

#[tokio::test]
async fn production_refuses_to_start_without_an_issuer() {
    let db = TestDb::new().await;
    let out = streams_binary()
        .env("DATABASE_URL", db.url())
        .env("PORT", "0")
        .output()
        .expect("run streams");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AUTH_ISSUER"), "{err}");

    let out = streams_binary()
        .env("DATABASE_URL", db.url())
        .env("AUTH_ISSUER", "https://issuer.test")
        .env("AUTH_JWKS_URL", "https://issuer.test/jwks")
        .output()
        .expect("run streams");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AUTH_AUDIENCE"), "{err}");
}

#[tokio::test]
async fn production_verifies_tokens_against_the_issuers_jwks() {
    let db = TestDb::new().await;
    // What the migration Job did before the replica starts (replicas only check the schema).
    db.service_pool(&streams::SERVICE).await;
    let jwks = JwksServer::start(&issuer().jwks()).await;
    let port = kit::testing::free_port();
    let mut child = streams_binary()
        .envs(jwks.env(issuer()))
        .env("DATABASE_URL", db.url())
        .env("PORT", port.to_string())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn streams");
    let base = format!("http://127.0.0.1:{port}");
    let http = Client::new();
    let ready = kit::testing::wait_ready(&base, Duration::from_secs(15)).await;
    let list = |auth: String| {
        http.get(format!("{base}/streams/v1/users/bob/sessions"))
            .header("authorization", auth)
            .send()
    };
    let own = list(bearer("bob", &[])).await.map(|r| r.status());
    let other = list(bearer("alice", &[])).await.map(|r| r.status());
    let forged = {
        let stranger =
            kit::auth::local::LocalIssuer::generate(&issuer().issuer, &issuer().audience)
                .expect("key");
        list(format!(
            "Bearer {}",
            stranger.token("bob", &[], Duration::from_mins(1))
        ))
        .await
        .map(|r| r.status())
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "streams did not become ready");
    assert_eq!(own.ok(), Some(StatusCode::OK));
    assert_eq!(other.ok(), Some(StatusCode::FORBIDDEN));
    assert_eq!(forged.ok(), Some(StatusCode::UNAUTHORIZED));
    assert!(jwks.fetches() >= 1, "the binary fetched the issuer's keys");
}

/// Only the migration Job migrates: a serving replica refuses a schema older than it needs
/// (naming the command to run), starts against one a release newer (expand/contract: the
/// previous release runs beside, and after a rollback from, the next), and the previous
/// release's migration Job, re-run by a rollback, succeeds against the newer schema.
#[tokio::test]
async fn replicas_check_the_schema_and_accept_a_newer_one() {
    let db = TestDb::new().await;
    let jwks = JwksServer::start(&issuer().jwks()).await;
    let out = streams_binary()
        .envs(jwks.env(issuer()))
        .env("DATABASE_URL", db.url())
        .env("PORT", "0")
        .output()
        .expect("run streams");
    assert!(!out.status.success(), "started on an unmigrated schema");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("streams migrate"), "{err}");

    // The migration Job's command.
    let migrate = || {
        streams_binary()
            .arg("migrate")
            .env("DATABASE_URL", db.url())
            .output()
            .expect("run streams migrate")
    };
    let migrate_once = migrate();
    assert!(
        migrate_once.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate_once.stderr)
    );

    // The next release's expand migration, which this binary has never heard of.
    let pool = db.pool(streams::SERVICE.schema);
    let newest = kit::db::latest_version(&streams::MIGRATOR);
    sqlx::query(
        "INSERT INTO streams._sqlx_migrations \
           (version, description, success, checksum, execution_time) \
         VALUES ($1, 'a newer release''s expand migration', true, '\\x00'::bytea, 1)",
    )
    .bind(newest + 1)
    .execute(&pool)
    .await
    .expect("record a newer migration");

    let again = migrate();
    assert!(
        again.status.success(),
        "the previous release's migration Job fails on the newer schema: {}",
        String::from_utf8_lossy(&again.stderr)
    );

    let port = kit::testing::free_port();
    let mut child = streams_binary()
        .envs(jwks.env(issuer()))
        .env("DATABASE_URL", db.url())
        .env("PORT", port.to_string())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn streams");
    let base = format!("http://127.0.0.1:{port}");
    let ready = kit::testing::wait_ready(&base, Duration::from_secs(15)).await;
    let alive = child.try_wait().ok().flatten().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        alive && ready,
        "the previous release did not start on the newer schema"
    );
}

/// A bad setting stops the binary with exit 2 naming the variable before any connection, even
/// with an unreachable database, and the migration Job validates settings too.
#[tokio::test]
async fn a_bad_setting_exits_2_naming_it_before_the_database() {
    for args in [&[][..], &["migrate"][..]] {
        let out = streams_binary()
            .args(args)
            .env("MERIDIAN_DEV", "1")
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:9/none")
            .env("STREAMS_DEFAULT_LIMIT", "0")
            .output()
            .expect("run streams");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("STREAMS_DEFAULT_LIMIT"), "{args:?}: {err}");
    }
    let out = streams_binary()
        .env("MERIDIAN_DEV", "1")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:9/none")
        .env("MIGRATE_ON_START", "true")
        .output()
        .expect("run streams");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("MIGRATE_ON_START"), "{err}");
}
