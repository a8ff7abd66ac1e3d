//! The Prometheus check against a stand-in Prometheus HTTP API on loopback (the same JSON shapes
//! `/api/v1/query` returns): vector and scalar results, no data, several series, query errors.

use std::time::Duration;

use axum::{Json, Router, extract::Query, routing::get};
use probe::prometheus::{PromError, query_scalar};
use serde_json::{Value, json};

async fn fake_prometheus(
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Json<Value> {
    let sample =
        |v: &str| json!({ "metric": { "colour": "green" }, "value": [1_764_000_000.0, v] });
    Json(match q.get("query").map(String::as_str) {
        Some("p99") => {
            json!({ "status": "success", "data": { "resultType": "vector", "result": [sample("0.042")] } })
        }
        Some("scalar(1)") => {
            json!({ "status": "success", "data": { "resultType": "scalar", "result": [1_764_000_000.0, "1"] } })
        }
        Some("empty") => {
            json!({ "status": "success", "data": { "resultType": "vector", "result": [] } })
        }
        Some("many") => {
            json!({ "status": "success", "data": { "resultType": "vector", "result": [sample("1"), sample("2")] } })
        }
        _ => json!({ "status": "error", "errorType": "bad_data", "error": "parse error" }),
    })
}

#[tokio::test]
async fn instant_queries_are_read_as_one_number() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            Router::new().route("/api/v1/query", get(fake_prometheus)),
        )
        .await
        .unwrap();
    });
    let t = Duration::from_secs(2);
    assert!((query_scalar(&base, "p99", t).await.unwrap() - 0.042).abs() < 1e-9);
    assert!(
        (query_scalar(&format!("{base}/"), "scalar(1)", t)
            .await
            .unwrap()
            - 1.0)
            .abs()
            < 1e-9
    );
    assert!(matches!(
        query_scalar(&base, "empty", t).await,
        Err(PromError::NoData)
    ));
    assert!(matches!(
        query_scalar(&base, "many", t).await,
        Err(PromError::TooMany(2))
    ));
    assert!(
        matches!(query_scalar(&base, "bad(", t).await, Err(PromError::Query(m)) if m == "parse error")
    );
}
