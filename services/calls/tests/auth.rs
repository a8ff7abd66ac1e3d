//! Who may call call control, over real HTTP and a real PostgreSQL: the admin API needs
//! `calls:admin` (no token or a bad one → 401, a user's or another service's admin token → 403,
//! and nothing is stored); the decision webhook needs the provider's signature (unsigned, badly
//! signed, replayed → 401); every configuration change is in the audit log with who made it;
//! and the production binary refuses to start without its secrets and issuer.

use std::process::{Command, Stdio};

use calls::{Settings, api::SCOPE_ADMIN, webhook};
use kit::testing::{TestDb, bad_tokens, bearer, spawn_app};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

const HOSPITAL: &str = include_str!("../samples/hospital.json");
const PBX: &str = "+46101110099";
const SUBSCRIBER: &str = "+46701234567";

struct H {
    _db: TestDb,
    pool: sqlx::PgPool,
    base: String,
    http: Client,
}

async fn harness() -> H {
    let db = TestDb::new().await;
    let pool = db.service_pool(&calls::SERVICE).await;
    let dir = std::env::temp_dir().join(format!("calls-auth-{}", uuid::Uuid::new_v4()));
    let settings = Settings {
        snapshot_path: Some(dir.join("snapshot.json")),
        webhook_keys: webhook::testing::keys(),
        ..Settings::default()
    };
    let c = calls::start_with(kit::Ctx::new(pool.clone(), true), settings).await;
    let app = kit::testing::app_for(&calls::SERVICE, c.parts);
    H {
        base: spawn_app(app).await,
        _db: db,
        pool,
        http: Client::new(),
    }
}

fn subscriber() -> Value {
    json!({ "rules": { "forward_busy": "+46705550000" }, "fallback_target": "+46705550000" })
}

impl H {
    async fn call(&self, method: Method, path: &str, auth: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        if method == Method::PUT && path.contains("/pbx/") {
            req = req.json(&serde_json::from_str::<Value>(HOSPITAL).expect("fixture"));
        } else if method == Method::PUT {
            req = req.json(&subscriber());
        }
        req.send().await.expect("send")
    }

    async fn config_rows(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM calls.pbx_flows) + (SELECT count(*) FROM calls.subscribers) \
                  + (SELECT count(*) FROM calls.config_audit)",
        )
        .fetch_one(&self.pool)
        .await
        .expect("count")
    }

    async fn decide_with(&self, signature: Option<String>, body: &[u8]) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/calls/v1/decisions", self.base))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(s) = signature {
            req = req.header(webhook::SIGNATURE_HEADER.as_str(), s);
        }
        req.send().await.expect("send")
    }
}

fn admin_routes() -> Vec<(Method, String)> {
    vec![
        (Method::PUT, format!("/calls/v1/pbx/{PBX}")),
        (Method::GET, format!("/calls/v1/pbx/{PBX}")),
        (Method::PUT, format!("/calls/v1/subscribers/{SUBSCRIBER}")),
        (Method::GET, format!("/calls/v1/subscribers/{SUBSCRIBER}")),
        (Method::GET, "/calls/v1/snapshot".into()),
        (Method::GET, "/calls/v1/audit".into()),
        (
            Method::DELETE,
            format!("/calls/v1/subscribers/{SUBSCRIBER}"),
        ),
        (Method::DELETE, format!("/calls/v1/pbx/{PBX}")),
    ]
}

#[tokio::test]
async fn the_admin_api_needs_calls_admin_and_refusals_store_nothing() {
    let h = harness().await;
    let bad = bad_tokens("ops", &[SCOPE_ADMIN]);
    let wrong = [
        bearer("alice", &[]),
        bearer("support", &["streams:admin"]),
        bearer("playback", &["streams:sessions"]),
    ];
    let admin = bearer("ops", &[SCOPE_ADMIN]);
    for (method, path) in admin_routes() {
        let before = h.config_rows().await;
        let res = h.call(method.clone(), &path, None).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
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
        for caller in &wrong {
            let res = h.call(method.clone(), &path, Some(caller)).await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{method} {path}");
        }
        assert_eq!(
            h.config_rows().await,
            before,
            "{method} {path}: refused but stored"
        );
        let res = h.call(method.clone(), &path, Some(&admin)).await;
        assert!(
            res.status().is_success(),
            "{method} {path}: {} for calls:admin",
            res.status()
        );
    }
}

#[tokio::test]
async fn the_webhook_needs_a_fresh_signature_from_a_known_provider() {
    let h = harness().await;
    let body = serde_json::to_vec(&json!({
        "request_id": "r1", "call_id": "c1", "call_type": "pbx", "direction": "inbound",
        "from": "+46700000001", "to": PBX, "event": "call_started" }))
    .expect("body");
    let now = chrono::Utc::now().timestamp();
    let keys = webhook::testing::keys();
    let stranger = webhook::WebhookKeys::new([(
        webhook::testing::PROVIDER,
        &b"another-providers-secret-0123456789"[..],
    )])
    .expect("keys");
    let cases: Vec<(&str, Option<String>)> = vec![
        ("unsigned", None),
        ("garbage", Some("nonsense".into())),
        (
            "wrong secret",
            stranger.sign(webhook::testing::PROVIDER, now, &body),
        ),
        (
            "another body",
            keys.sign(webhook::testing::PROVIDER, now, b"{}"),
        ),
        (
            "replayed 6 minutes later",
            keys.sign(webhook::testing::PROVIDER, now - 360, &body),
        ),
        (
            "from the future",
            keys.sign(webhook::testing::PROVIDER, now + 360, &body),
        ),
        (
            "unknown provider",
            webhook::WebhookKeys::new([("other", webhook::testing::secret().as_bytes())])
                .expect("keys")
                .sign("other", now, &body),
        ),
    ];
    for (what, sig) in cases {
        let res = h.decide_with(sig, &body).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    // A bearer token, even an admin's, is not the provider's signature.
    let res = h
        .http
        .post(format!("{}/calls/v1/decisions", h.base))
        .header("authorization", bearer("ops", &[SCOPE_ADMIN]))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let res = h
        .decide_with(
            keys.sign(webhook::testing::PROVIDER, now - 60, &body),
            &body,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK, "signed a minute ago");
    let d: Value = res.json().await.expect("decision");
    assert!(d["actions"].is_array(), "{d}");
}

#[tokio::test]
async fn every_configuration_change_is_audited_with_its_author() {
    let h = harness().await;
    let alice = bearer("ops-alice", &[SCOPE_ADMIN]);
    let bob = bearer("ops-bob", &[SCOPE_ADMIN]);
    let path = format!("/calls/v1/pbx/{PBX}");
    assert_eq!(h.call(Method::PUT, &path, Some(&alice)).await.status(), 200);
    // A refused write leaves no audit row.
    let bad = serde_json::json!({ "flow": { "entry": "nowhere", "nodes": {} }, "fallback_target": "+46705550000" });
    let res = h
        .http
        .put(format!("{}{path}", h.base))
        .header("authorization", &alice)
        .json(&bad)
        .send()
        .await
        .expect("send");
    assert!(res.status().is_client_error());
    let sub = format!("/calls/v1/subscribers/{SUBSCRIBER}");
    assert_eq!(h.call(Method::PUT, &sub, Some(&bob)).await.status(), 200);
    assert_eq!(
        h.call(Method::DELETE, &path, Some(&bob)).await.status(),
        204
    );

    let res = h
        .call(
            Method::GET,
            "/calls/v1/audit?number=%2B46101110099",
            Some(&alice),
        )
        .await;
    assert_eq!(res.status(), 200);
    let page: Value = res.json().await.expect("page");
    let items = page["items"].as_array().expect("items");
    let seen: Vec<(&str, &str, &str)> = items
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or_default(),
                e["action"].as_str().unwrap_or_default(),
                e["kind"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("ops-alice", "put", "pbx"), ("ops-bob", "delete", "pbx")]
    );
    for e in items {
        assert!(
            e["version_after"].as_i64() > e["version_before"].as_i64(),
            "{e}"
        );
        assert_eq!(e["number"], PBX);
    }

    let all: Value = h
        .call(Method::GET, "/calls/v1/audit?limit=2", Some(&alice))
        .await
        .json()
        .await
        .expect("page");
    assert_eq!(all["items"].as_array().map(Vec::len), Some(2));
    let next = all["next_cursor"].as_str().expect("a second page");
    let rest: Value = h
        .call(
            Method::GET,
            &format!("/calls/v1/audit?limit=2&cursor={next}"),
            Some(&alice),
        )
        .await
        .json()
        .await
        .expect("page");
    assert_eq!(rest["items"][0]["kind"], "pbx");
    assert_eq!(rest["items"][0]["action"], "delete");
    let versions: Vec<i64> = all["items"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(rest["items"].as_array().into_iter().flatten())
        .flat_map(|e| [e["version_before"].as_i64(), e["version_after"].as_i64()])
        .flatten()
        .collect();
    assert!(
        versions.windows(2).all(|w| w[0] <= w[1]),
        "changes are serialized: {versions:?}"
    );
}

fn calls_binary(db: &TestDb) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_calls"));
    cmd.env_remove("MERIDIAN_DEV")
        .env("DATABASE_URL", db.url())
        .env("AUTH_ISSUER", "https://issuer.test")
        .env("AUTH_AUDIENCE", "meridian-test")
        .env("AUTH_JWKS_URL", "http://127.0.0.1:9/jwks")
        .env("CALLS_TOKEN_KEY", "a-production-like-token-key-0123456789")
        .env("CALLS_WEBHOOK_SECRETS", webhook::testing::env())
        .env("PORT", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

#[tokio::test]
async fn production_refuses_to_start_without_each_secret_naming_it() {
    let db = TestDb::new().await;
    for missing in ["CALLS_TOKEN_KEY", "CALLS_WEBHOOK_SECRETS", "AUTH_ISSUER"] {
        let mut cmd = calls_binary(&db);
        cmd.env_remove(missing);
        if missing == "AUTH_ISSUER" {
            cmd.env_remove("AUTH_AUDIENCE").env_remove("AUTH_JWKS_URL");
        }
        let out = cmd.output().expect("run calls");
        assert!(!out.status.success(), "started without {missing}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(missing), "{missing}: {err}");
        assert!(
            !err.contains("production-like-token-key"),
            "a secret was printed: {err}"
        );
    }
    let mut short = calls_binary(&db);
    short.env("CALLS_TOKEN_KEY", "too-short");
    let out = short.output().expect("run calls");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 32"));
}

/// An anonymous client cannot make a replica read bodies: without a plausible signature the
/// webhook answers before the body arrives.
#[tokio::test]
async fn an_unsigned_webhook_is_refused_before_its_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = harness().await;
    let addr = h.base.trim_start_matches("http://").to_owned();
    for signature in [
        None,
        Some("p=nobody,t=1,v1=00".to_owned()),
        webhook::testing::keys().sign(webhook::testing::PROVIDER, 1, b"{}"),
    ] {
        let mut tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let mut head = "POST /calls/v1/decisions HTTP/1.1\r\nhost: x\r\n\
                        content-type: application/json\r\ncontent-length: 1000000\r\n"
            .to_owned();
        if let Some(s) = &signature {
            head = head + "meridian-signature: " + s + "\r\n";
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes()).await.expect("write head");
        // Not one byte of the announced megabyte is sent: the answer must come anyway.
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(2), tcp.read(&mut buf))
            .await
            .expect("answered without waiting for the body")
            .expect("read");
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(
            answer.starts_with("HTTP/1.1 401"),
            "{signature:?}: {answer}"
        );
        // The unread body stays unread: the client is told the connection will not be reused.
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "{signature:?}: {answer}"
        );
    }
}
