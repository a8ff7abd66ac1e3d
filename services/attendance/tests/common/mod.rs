//! The tests' harness: a database of its own per test, the service started through its
//! contract's `start_with` (the feed's hub and LISTEN connection running), on a loopback port.

#![allow(dead_code)]

use kit::testing::{TestDb, app_for, bearer, spawn_app};
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use sqlx::PgPool;

pub const SITE: &str = "oak";
pub const OTHER_SITE: &str = "elm";

pub fn staff() -> String {
    bearer("staff-1", &["attendance:site-oak"])
}
pub fn admin() -> String {
    bearer("admin-1", &[attendance::api::SCOPE_ADMIN])
}
pub fn ingest() -> String {
    bearer("producer", &[attendance::api::SCOPE_INGEST])
}
pub fn reader() -> String {
    bearer("dashboard", &[attendance::api::SCOPE_READ])
}

pub struct H {
    pub db: TestDb,
    pub pool: PgPool,
    pub base: String,
    pub http: Client,
}

/// A started instance on `db` (another replica when called twice on one database).
pub async fn instance(db: &TestDb, settings: attendance::Settings) -> (PgPool, String) {
    let pool = db.service_pool(&attendance::SERVICE).await;
    let parts = attendance::start_with(kit::Ctx::new(pool.clone(), true), settings);
    let app = app_for(&attendance::SERVICE, parts);
    (pool, spawn_app(app).await)
}

pub async fn harness() -> H {
    harness_with(attendance::Settings::default()).await
}

pub async fn harness_with(settings: attendance::Settings) -> H {
    let db = TestDb::new().await;
    let (pool, base) = instance(&db, settings).await;
    let h = H {
        db,
        pool,
        base,
        http: Client::new(),
    };
    for site in [SITE, OTHER_SITE] {
        let (s, b) = h
            .send(
                Method::PUT,
                &format!("/attendance/v1/sites/{site}"),
                Some(&admin()),
                Some(serde_json::json!({"name": site})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    h
}

impl H {
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        send(&self.http, &self.base, method, path, auth, body).await
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM attendance.{table}"
        )))
        .fetch_one(&self.pool)
        .await
        .expect("count")
    }

    /// A ticket for `site`'s stream.
    pub async fn ticket(&self, site: &str) -> String {
        let (s, b) = self
            .send(
                Method::POST,
                &format!("/attendance/v1/sites/{site}/stream-tickets"),
                Some(&admin()),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["ticket"].as_str().expect("ticket").to_owned()
    }
}

pub async fn send(
    http: &Client,
    base: &str,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http.request(method, format!("{base}{path}"));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    let text = res.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Signs `child` in at `site` through the API; the attendance.
pub async fn sign_in(http: &Client, base: &str, site: &str, child: &str) -> Value {
    let (s, b) = send(
        http,
        base,
        Method::POST,
        &format!("/attendance/v1/sites/{site}/attendance"),
        Some(&admin()),
        Some(
            serde_json::json!({"id": uuid::Uuid::new_v4(), "entity_id": child, "source": "kiosk"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b
}

/// One parsed Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Sse {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

/// A Server-Sent Events reader over a reqwest response.
pub struct SseReader {
    res: reqwest::Response,
    buf: String,
    pub comments: usize,
}

impl SseReader {
    pub async fn open(base: &str, site: &str, ticket: &str, last_event_id: Option<&str>) -> Self {
        let mut req = Client::new().get(format!(
            "{base}/attendance/v1/sites/{site}/attendance/stream?ticket={ticket}"
        ));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let res = req.send().await.expect("stream");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        Self {
            res,
            buf: String::new(),
            comments: 0,
        }
    }

    /// The next event (comments counted and skipped), or None when the stream ended, within 10 s.
    pub async fn next(&mut self) -> Option<Sse> {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.next_inner())
            .await
            .expect("an event within 10 s")
    }

    async fn next_inner(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
                let mut only_comments = true;
                for line in block.lines() {
                    if line.is_empty() {
                        continue;
                    }
                    if line.starts_with(':') {
                        self.comments += 1;
                        continue;
                    }
                    only_comments = false;
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        v.trim().clone_into(&mut event);
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if only_comments {
                    continue;
                }
                return Some(Sse {
                    id,
                    event,
                    data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
                });
            }
            match self.res.chunk().await {
                Ok(Some(c)) => self.buf.push_str(&String::from_utf8_lossy(&c)),
                _ => return None,
            }
        }
    }
}
