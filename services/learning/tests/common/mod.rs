//! The API tests' harness: a database of its own per test, the real files imported through the
//! importer's library function, and the service's app on a loopback port.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use kit::testing::{TestDb, app_for, spawn_app};
use reqwest::{Client, Method};
use serde_json::Value;
use sqlx::PgPool;

/// A learner of the real user_data.json (35 attempts).
pub const ME: &str = "05IsdAyoSnekvovtyr2fC5cNOnF3";
/// Another learner of the real file.
pub const OTHER: &str = "0Fp1XjEKbGMMmdNxN2Gw842k0ik1";
pub const PAPER: &str = "medlymockaqaGCSEBio_Sept_Mock1Higher";
pub const ITEM: &str = "aqaGCSEBio_1_1_1_EBc0BgD11T";
pub const LESSON: &str = "aqaGCSEBio2.0.12";

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

pub struct H {
    pub _db: TestDb,
    pub pool: PgPool,
    pub base: String,
    pub http: Client,
}

fn quiet() -> learning::import::Options {
    learning::import::Options {
        progress: learning::import::Progress::Quiet,
        ..learning::import::Options::default()
    }
}

/// The real files imported (the practices file does not exist: no practice banks).
pub async fn harness() -> H {
    harness_from(&data_dir()).await
}

/// The files of `dir` imported.
pub async fn harness_from(dir: &Path) -> H {
    let db = TestDb::new().await;
    let pool = db.service_pool(&learning::SERVICE).await;
    learning::import::run(&pool, dir, &quiet())
        .await
        .unwrap_or_else(|e| panic!("import {}: {e}", dir.display()));
    let app = app_for(
        &learning::SERVICE,
        learning::start_with(
            kit::Ctx::routes_only(pool.clone()),
            learning::Settings::default(),
        ),
    );
    H {
        base: spawn_app(app).await,
        _db: db,
        pool,
        http: Client::new(),
    }
}

/// The generator's files at scale 1 (the real data plus practice banks) imported.
pub async fn harness_generated() -> (H, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    learning::generate::write_all(dir.path(), 1, 7).expect("generate");
    (harness_from(dir.path()).await, dir)
}

pub enum Body<'a> {
    None,
    Json(Value),
    Raw(&'a str, String),
}

impl H {
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Body<'_>,
    ) -> reqwest::Response {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req
                .header("content-type", "application/merge-patch+json")
                .body(v.to_string()),
            Body::Raw(ct, s) => req.header("content-type", ct).body(s),
        };
        req.send().await.expect("send")
    }

    /// GET as an admin; the status and the JSON body.
    pub async fn get(&self, path: &str, auth: &str) -> (u16, Value) {
        let res = self.send(Method::GET, path, Some(auth), Body::None).await;
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Everything a PATCH could change: every user's profile columns.
    pub async fn profiles(
        &self,
    ) -> Vec<(
        String,
        Option<String>,
        Value,
        Option<chrono::DateTime<chrono::Utc>>,
    )> {
        sqlx::query_as(
            "SELECT firebase_uid, name, metadata, updated_at FROM learning.users ORDER BY firebase_uid",
        )
        .fetch_all(&self.pool)
        .await
        .expect("profiles")
    }

    pub async fn scalar(&self, sql: &str, bind: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(bind)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}
