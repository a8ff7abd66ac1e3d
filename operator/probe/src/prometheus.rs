//! The optional Prometheus half of release analysis: one instant PromQL query that must evaluate
//! to a single number (e.g. the preview colour's p99 from `http_request_duration_seconds`, or its
//! 5xx ratio from `http_requests_total`), compared to a maximum.
//!
//! It lives beside the probe so the gate and the operator judge "too slow" with one code base.
//! No data is an error, not a pass: a query that matches nothing usually means a wrong label, and
//! a release must not be promoted on a check that measured nothing.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error("prometheus request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("prometheus answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("prometheus query failed: {0}")]
    Query(String),
    #[error("query returned no data (check its labels)")]
    NoData,
    #[error("query must return one number, got {0} series")]
    TooMany(usize),
    #[error("unexpected prometheus response: {0}")]
    Shape(String),
}

#[derive(Deserialize)]
struct Response {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: serde_json::Value,
}

/// Runs an instant query at `address` (e.g. `http://prometheus:9090`) and returns its one value.
pub async fn query_scalar(address: &str, query: &str, timeout: Duration) -> Result<f64, PromError> {
    crate::install_tls_provider();
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let url = format!("{}/api/v1/query", address.trim_end_matches('/'));
    let response = client.get(url).query(&[("query", query)]).send().await?;
    let status = response.status();
    let text = response.text().await?;
    let parsed: Response = serde_json::from_str(&text).map_err(|_| PromError::Status {
        status: status.as_u16(),
        body: text.chars().take(200).collect(),
    })?;
    if parsed.status != "success" {
        return Err(PromError::Query(parsed.error.unwrap_or(parsed.status)));
    }
    let data = parsed
        .data
        .ok_or_else(|| PromError::Shape("no data".into()))?;
    let sample = match data.result_type.as_str() {
        "scalar" => data.result,
        "vector" => {
            let series = data.result.as_array().cloned().unwrap_or_default();
            match series.len() {
                0 => return Err(PromError::NoData),
                1 => series[0]["value"].clone(),
                n => return Err(PromError::TooMany(n)),
            }
        }
        other => return Err(PromError::Shape(format!("result type {other}"))),
    };
    let value = sample[1]
        .as_str()
        .ok_or_else(|| PromError::Shape(format!("sample {sample}")))?;
    match value.parse::<f64>() {
        Ok(v) if v.is_nan() => Err(PromError::NoData),
        Ok(v) => Ok(v),
        Err(_) => Err(PromError::Shape(format!("value {value}"))),
    }
}
