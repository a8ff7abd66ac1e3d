//! The tests' harness: a database of its own per test, the service started through its
//! contract's `start_with` with a pinned clock, on a loopback port, the sample catalogue loaded.

#![allow(dead_code)]

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use kit::{
    clock::PinnedClock,
    testing::{TestDb, app_for, bearer, spawn_app},
};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

pub const USER: &str = "ada";
pub const OTHER: &str = "bo";

pub fn learner() -> String {
    bearer(USER, &[])
}
pub fn other_learner() -> String {
    bearer(OTHER, &[])
}
pub fn admin() -> String {
    bearer("support-1", &[playlists::api::SCOPE_ADMIN])
}
pub fn analyst() -> String {
    bearer("dashboards", &[playlists::api::SCOPE_ANALYTICS])
}

/// Wednesday 2026-03-04 18:00 UTC.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 4, 18, 0, 0).unwrap()
}

pub struct H {
    pub db: TestDb,
    pub pool: PgPool,
    pub base: String,
    pub http: Client,
    pub clock: Arc<PinnedClock>,
}

pub async fn harness() -> H {
    harness_with(playlists::Settings::default()).await
}

pub async fn harness_with(settings: playlists::Settings) -> H {
    harness_pool(settings, kit::db::PoolSettings::default()).await
}

/// A harness whose service has a pool of its own shape (e.g. few connections).
pub async fn harness_pool(settings: playlists::Settings, pool: kit::db::PoolSettings) -> H {
    let db = TestDb::new().await;
    drop(db.service_pool(&playlists::SERVICE).await);
    let pool = db.pool_with(playlists::SERVICE.schema, &pool);
    playlists::store::upsert_lessons(&pool, &playlists::sample_catalogue())
        .await
        .expect("catalogue");
    let clock = Arc::new(PinnedClock::new(t0()));
    let ctx = kit::Ctx::new(pool.clone(), true).with_clock(clock.clone());
    let parts = playlists::start_with(ctx, settings);
    let base = spawn_app(app_for(&playlists::SERVICE, parts)).await;
    H {
        db,
        pool,
        base,
        http: Client::new(),
        clock,
    }
}

pub struct Res {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl H {
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let r = self.req(method, path, auth, body, &[]).await;
        (r.status, r.body)
    }

    pub async fn req(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Res {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        Res {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
            headers,
        }
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM playlists.{table}"
        )))
        .fetch_one(&self.pool)
        .await
        .expect("count")
    }

    pub async fn events(&self) -> i64 {
        self.count("events").await
    }

    /// A new playlist of `user`: its id.
    pub async fn playlist(&self, user: &str, name: &str) -> String {
        let (s, b) = self
            .send(
                Method::POST,
                &format!("/playlists/v1/users/{user}/playlists"),
                Some(&bearer(user, &[])),
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["id"].as_str().expect("id").to_owned()
    }

    /// Adds `lesson` to the playlist: the playlist after.
    pub async fn add(&self, user: &str, playlist: &str, lesson: &str) -> Value {
        let (s, b) = self
            .send(
                Method::POST,
                &format!("/playlists/v1/users/{user}/playlists/{playlist}/lessons"),
                Some(&bearer(user, &[])),
                Some(json!({"lesson_id": lesson})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b
    }

    pub async fn remove(&self, user: &str, playlist: &str, lesson: &str, reason: &str) {
        let (s, b) = self
            .send(
                Method::DELETE,
                &format!(
                    "/playlists/v1/users/{user}/playlists/{playlist}/lessons/{lesson}?reason={reason}&note=why"
                ),
                Some(&bearer(user, &[])),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }

    pub async fn session(&self, user: &str, lesson: &str, accuracy: f64, at: DateTime<Utc>) {
        let (s, b) = self
            .send(
                Method::POST,
                &format!("/playlists/v1/users/{user}/sessions"),
                Some(&bearer(user, &[])),
                Some(json!({"lesson_id": lesson, "accuracy": accuracy, "duration_secs": 300, "at": at})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }

    /// A share link: (id, token).
    pub async fn share(&self, user: &str, playlist: &str, channel: &str) -> (String, String) {
        let (s, b) = self
            .send(
                Method::POST,
                &format!("/playlists/v1/users/{user}/playlists/{playlist}/shares"),
                Some(&bearer(user, &[])),
                Some(json!({"channel": channel})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        (
            b["id"].as_str().expect("id").to_owned(),
            b["token"].as_str().expect("token").to_owned(),
        )
    }

    /// The three analytics answers over 2025-2026 (removals, shares, retention).
    pub async fn analytics(&self) -> (Value, Value, Value) {
        let range = "from=2025-01-01&to=2026-12-31";
        let mut out = Vec::new();
        for path in [
            format!("/playlists/v1/analytics/removals?{range}&limit=100"),
            format!("/playlists/v1/analytics/shares?{range}"),
            format!("/playlists/v1/analytics/retention?{range}"),
        ] {
            let (s, b) = self.send(Method::GET, &path, Some(&analyst()), None).await;
            assert_eq!(s, StatusCode::OK, "{path}: {b}");
            out.push(b);
        }
        let retention = out.pop().unwrap_or_default();
        let shares = out.pop().unwrap_or_default();
        (out.pop().unwrap_or_default(), shares, retention)
    }
}
