//! The service starts through its contract on a migrated database and answers its health route.

use kit::testing::{TestDb, app_for, spawn_app};

#[tokio::test]
async fn health_reports_the_database_and_needs_no_token() {
    let db = TestDb::new().await;
    let pool = db.service_pool(&learning::SERVICE).await;
    let parts = kit::testing::start(&learning::SERVICE, pool).await;
    let base = spawn_app(app_for(&learning::SERVICE, parts)).await;
    let res = reqwest::get(format!("{base}/learning/v1/health"))
        .await
        .expect("GET health");
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], "ok");
    assert_eq!(
        body["schema_version"],
        kit::db::latest_version(&learning::MIGRATOR)
    );
    let ready = reqwest::get(format!("{base}/readyz"))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
}
