//! `buildkite/slo.yaml`, read here and nowhere else: `slo-gate` gates each service with the
//! cycle the file gives it, and prints what the pipeline's shell needs (the service list, the
//! Release's `spec.analysis.probe`), so no script parses the file.
//!
//! Shape (version 2):
//!
//! ```yaml
//! version: 2
//! defaults:                       # any service key below except analysis_path and steps
//!   requests: 1000
//!   max_error_rate: 0.01
//!   concurrency: 8
//!   timeout_ms: 5000
//! services:
//!   streams:                      # a service that exists (its crate is in the workspace)
//!     p99_ms: 100                 # latency budget of every request of the cycle
//!     max_error_rate: 0.01        # fraction of requests allowed to fail
//!     requests: 1000              # requests per run (cycles = requests / steps)
//!     concurrency: 8              # cycles in flight at once
//!     timeout_ms: 5000            # per request; longer is an error
//!     analysis_path: /streams/v1/users/slo-probe/sessions   # the Release analysis' GET route
//!     steps:                      # the gate's cycle, in order (crate::plan)
//!       - name: start
//!         method: POST            # default GET
//!         path: /streams/v1/users/slo-probe-${worker}/sessions
//!         headers: { content-type: application/json }
//!         body: '{"device_id":"slo-probe","content_id":"slo-probe"}'
//!         expect_status: 201      # required
//!         expect_json: { user_id: slo-probe-0 }   # optional: field path -> value
//!         signature: { provider: slo-probe }      # optional: sign the body (calls webhook)
//!       - name: stop
//!         method: DELETE
//!         path: /streams/v1/sessions/${start.session_id}
//!         expect_status: 204
//! ```
//!
//! Every error names the service and the field (`service calls: steps[0]: missing field
//! `expect_status``, `service streams: p99_ms: missing ...`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, MapAccess, Visitor};

use crate::plan::{Plan, StepSpec};
use crate::{ProbeError, Thresholds};

/// The version of the shape this module reads.
pub const VERSION: u32 = 2;
/// Largest file read.
pub const MAX_FILE_BYTES: usize = 256 * 1024;
/// Most cycles in flight at once.
pub const MAX_CONCURRENCY: u32 = 256;
/// Longest per-request timeout (ms).
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// One service's SLO and how it is probed.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSlo {
    pub name: String,
    pub thresholds: Thresholds,
    pub requests: u32,
    pub concurrency: u32,
    pub timeout: Duration,
    /// The GET route the operator's Release analysis probes (its CRD has one path, no steps).
    pub analysis_path: String,
    /// The gate's cycle.
    pub steps: Vec<StepSpec>,
}

/// The whole file, services in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct SloFile {
    pub services: Vec<ServiceSlo>,
}

/// A file that could not be read or is not a valid slo.yaml.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct SloError {
    pub file: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: u32,
    #[serde(default)]
    defaults: Option<serde_json::Value>,
    #[serde(default)]
    services: Option<Services>,
}

/// `services:` as (name, body) pairs in file order, each body parsed later so that its errors
/// can name the service.
struct Services(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Services {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Services;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping of service names to their SLOs")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Services, A::Error> {
                let mut out: Vec<(String, serde_json::Value)> = Vec::new();
                while let Some((name, body)) = map.next_entry::<String, serde_json::Value>()? {
                    if out.iter().any(|(n, _)| *n == name) {
                        return Err(de::Error::custom(format!("service {name} appears twice")));
                    }
                    out.push((name, body));
                }
                Ok(Services(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// What `defaults:` and a service share.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    p99_ms: Option<f64>,
    max_error_rate: Option<f64>,
    requests: Option<u32>,
    concurrency: Option<u32>,
    timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    p99_ms: Option<f64>,
    max_error_rate: Option<f64>,
    requests: Option<u32>,
    concurrency: Option<u32>,
    timeout_ms: Option<u64>,
    analysis_path: Option<String>,
    steps: Option<Vec<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: String,
    #[serde(default = "default_method")]
    method: String,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    expect_status: u16,
    #[serde(default)]
    expect_json: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    signature: Option<RawSignature>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    provider: String,
}

fn default_method() -> String {
    "GET".into()
}

/// `value` as `T`; errors say where (`steps[0].expect_status: ...`).
fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })
}

fn valid_service_name(n: &str) -> bool {
    n.len() <= 63
        && n.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn valid_get_path(p: &str) -> bool {
    p.starts_with('/')
        && p.len() <= 1024
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~/-".contains(&b))
}

impl SloFile {
    /// Reads and checks `path` (at most [`MAX_FILE_BYTES`]).
    pub fn load(path: &Path) -> Result<Self, SloError> {
        let fail = |message: String| SloError {
            file: path.display().to_string(),
            message,
        };
        let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
        let mut raw = Vec::new();
        file.take(MAX_FILE_BYTES as u64 + 1)
            .read_to_end(&mut raw)
            .map_err(|e| fail(e.to_string()))?;
        if raw.len() > MAX_FILE_BYTES {
            return Err(fail(format!("larger than {MAX_FILE_BYTES} bytes")));
        }
        let text = String::from_utf8(raw).map_err(|_| fail("not UTF-8".into()))?;
        Self::parse(&text).map_err(fail)
    }

    /// Parses and checks the text of an slo.yaml.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawFile = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        if raw.version != VERSION {
            return Err(format!(
                "version: {} is not supported (this slo-gate reads version {VERSION})",
                raw.version
            ));
        }
        let defaults: RawDefaults = match raw.defaults {
            Some(v) if !v.is_null() => typed(v).map_err(|e| format!("defaults: {e}"))?,
            _ => RawDefaults::default(),
        };
        let services = raw.services.map(|s| s.0).unwrap_or_default();
        if services.is_empty() {
            return Err("services: no services".into());
        }
        let services = services
            .into_iter()
            .map(|(name, body)| {
                service(&name, body, &defaults).map_err(|e| format!("service {name}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { services })
    }

    pub fn service(&self, name: &str) -> Option<&ServiceSlo> {
        self.services.iter().find(|s| s.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.services.iter().map(|s| s.name.as_str()).collect()
    }
}

fn service(name: &str, body: serde_json::Value, d: &RawDefaults) -> Result<ServiceSlo, String> {
    if !valid_service_name(name) {
        return Err("name: must be 1-63 of a-z 0-9 - starting with a letter".into());
    }
    let raw: RawService = if body.is_null() {
        return Err("no settings (it needs at least analysis_path and steps)".into());
    } else {
        typed(body)?
    };
    let missing = |field: &str| format!("{field}: missing (set it on the service or in defaults)");
    let p99_ms = raw.p99_ms.or(d.p99_ms).ok_or_else(|| missing("p99_ms"))?;
    if !(p99_ms.is_finite() && p99_ms > 0.0) {
        return Err(format!(
            "p99_ms: {p99_ms} is not a positive number of milliseconds"
        ));
    }
    let max_error_rate = raw
        .max_error_rate
        .or(d.max_error_rate)
        .ok_or_else(|| missing("max_error_rate"))?;
    if !(0.0..=1.0).contains(&max_error_rate) {
        return Err(format!(
            "max_error_rate: {max_error_rate} is not a fraction (0 to 1)"
        ));
    }
    let requests = raw
        .requests
        .or(d.requests)
        .ok_or_else(|| missing("requests"))?;
    if requests == 0 {
        return Err("requests: must be at least 1".into());
    }
    let concurrency = raw
        .concurrency
        .or(d.concurrency)
        .ok_or_else(|| missing("concurrency"))?;
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(format!("concurrency: must be 1 to {MAX_CONCURRENCY}"));
    }
    let timeout_ms = raw
        .timeout_ms
        .or(d.timeout_ms)
        .ok_or_else(|| missing("timeout_ms"))?;
    if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(format!("timeout_ms: must be 1 to {MAX_TIMEOUT_MS}"));
    }
    let analysis_path = raw.analysis_path.ok_or_else(|| {
        "analysis_path: missing (the GET route the operator's Release analysis probes)".to_owned()
    })?;
    if !valid_get_path(&analysis_path) {
        return Err(format!(
            "analysis_path: {analysis_path:?} must be an absolute path of A-Z a-z 0-9 . _ ~ / - \
             (no placeholders: the Release analysis sends one GET)"
        ));
    }
    let steps: Vec<StepSpec> = raw
        .steps
        .ok_or_else(|| "steps: missing (the cycle the gate sends)".to_owned())?
        .into_iter()
        .map(|s| StepSpec {
            name: s.name,
            method: s.method,
            path: s.path,
            headers: s.headers.into_iter().collect(),
            body: s.body,
            expect_status: Some(s.expect_status),
            expect_json: s.expect_json.into_iter().collect(),
            sign_as: s.signature.map(|s| s.provider),
        })
        .collect();
    let slo = ServiceSlo {
        name: name.to_owned(),
        thresholds: Thresholds {
            p99_ms,
            max_error_rate,
        },
        requests,
        concurrency,
        timeout: Duration::from_millis(timeout_ms),
        analysis_path,
        steps,
    };
    // The steps must compile: every check of crate::plan, against a placeholder base URL.
    slo.plan("http://slo.invalid").map_err(|e| match e {
        ProbeError::InvalidConfig(m) => m,
        other => other.to_string(),
    })?;
    Ok(slo)
}

impl ServiceSlo {
    /// The gate's run against `base_url` (credentials still to be set).
    pub fn plan(&self, base_url: &str) -> Result<Plan, ProbeError> {
        Plan::new(
            base_url,
            &self.steps,
            self.requests,
            self.concurrency,
            self.timeout,
        )
    }

    /// Whether the cycle signs a body (and so needs the webhook secret).
    pub fn signs(&self) -> bool {
        self.steps.iter().any(|s| s.sign_as.is_some())
    }

    /// The Release's `spec.analysis.probe` fields (operator/src/crd.rs `ProbeSpec`), one
    /// `key: value` YAML line each, for `buildkite/lib.sh`'s `render_analysis`.
    pub fn release_analysis(&self) -> String {
        format!(
            "path: {}\nrequests: {}\nconcurrency: {}\ntimeoutMs: {}\np99Ms: {}\nmaxErrorRate: {}\n",
            self.analysis_path,
            self.requests,
            self.concurrency,
            self.timeout.as_millis(),
            self.thresholds.p99_ms,
            self.thresholds.max_error_rate
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
version: 2
defaults:
  requests: 1000
  max_error_rate: 0.01
  concurrency: 8
  timeout_ms: 5000
services:
  streams:
    p99_ms: 100
    analysis_path: /streams/v1/users/slo-probe/sessions
    steps:
      - name: start
        method: POST
        path: /streams/v1/users/slo-probe-${worker}/sessions
        headers:
          content-type: application/json
        body: '{"device_id":"slo-probe","content_id":"slo-probe"}'
        expect_status: 201
      - name: stop
        method: DELETE
        path: /streams/v1/sessions/${start.session_id}
        expect_status: 204
  calls:
    p99_ms: 50
    max_error_rate: 0.001
    requests: 500
    analysis_path: /readyz
    steps:
      - name: decide
        method: POST
        path: /calls/v1/decisions
        body: '{"request_id":"${run}-${seq}"}'
        expect_status: 200
        expect_json:
          source: live
        signature:
          provider: slo-probe
"#;

    #[test]
    fn a_good_file_keeps_order_applies_defaults_and_compiles() {
        let f = SloFile::parse(GOOD).unwrap();
        assert_eq!(f.names(), vec!["streams", "calls"], "file order");
        let streams = f.service("streams").unwrap();
        assert_eq!(streams.requests, 1000);
        assert_eq!(
            streams.thresholds,
            Thresholds {
                p99_ms: 100.0,
                max_error_rate: 0.01
            }
        );
        assert_eq!(streams.concurrency, 8);
        assert_eq!(streams.steps.len(), 2);
        assert_eq!(streams.steps[1].method, "DELETE");
        assert!(!streams.signs());
        let calls = f.service("calls").unwrap();
        assert_eq!(calls.requests, 500);
        assert_eq!(
            calls.thresholds,
            Thresholds {
                p99_ms: 50.0,
                max_error_rate: 0.001
            }
        );
        assert!(calls.signs());
        assert_eq!(calls.steps[0].sign_as.as_deref(), Some("slo-probe"));
        assert_eq!(
            calls.steps[0].expect_json,
            vec![("source".to_owned(), serde_json::json!("live"))]
        );
        assert_eq!(
            calls.release_analysis(),
            "path: /readyz\nrequests: 500\nconcurrency: 8\ntimeoutMs: 5000\np99Ms: 50\nmaxErrorRate: 0.001\n"
        );
        let plan = streams.plan("http://127.0.0.1:8080/").unwrap();
        assert_eq!(plan.cycles(), 500);
    }

    #[test]
    fn the_repository_file_is_valid_and_gates_only_services_that_exist() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../buildkite/slo.yaml");
        let f = SloFile::load(Path::new(path)).unwrap();
        assert_eq!(
            f.names(),
            vec!["streams", "calls", "learning", "attendance", "playlists"]
        );
        for s in &f.services {
            assert!(
                s.requests >= 1000,
                "{}: p99 of fewer than 1000 requests",
                s.name
            );
            let crate_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../services/");
            assert!(
                Path::new(&format!("{crate_dir}{}/Cargo.toml", s.name)).exists(),
                "{} has no crate",
                s.name
            );
        }
        assert!(f.service("calls").unwrap().signs());
    }

    fn error(text: &str) -> String {
        SloFile::parse(text).unwrap_err()
    }

    /// GOOD with `from` replaced by `to` (exactly once).
    fn edit(from: &str, to: &str) -> String {
        assert_eq!(GOOD.matches(from).count(), 1, "{from:?}");
        GOOD.replace(from, to)
    }

    #[test]
    fn errors_name_the_service_and_the_field() {
        let cases = [
            (
                edit("    p99_ms: 100\n", ""),
                "service streams: p99_ms: missing",
            ),
            (
                edit("    p99_ms: 50\n", "    p99_ms: -1\n"),
                "service calls: p99_ms: -1 is not a positive",
            ),
            (
                edit("    max_error_rate: 0.001\n", "    max_error_rate: 2\n"),
                "service calls: max_error_rate: 2 is not a fraction",
            ),
            (
                edit("    p99_ms: 50\n", "    p99_ms: fast\n"),
                "service calls: p99_ms: invalid type: string \"fast\"",
            ),
            (
                edit("    requests: 500\n", "    requests: 0\n"),
                "service calls: requests: must be at least 1",
            ),
            (
                edit("    requests: 500\n", "    request: 500\n"),
                "service calls: request: unknown field `request`",
            ),
            (
                edit("    analysis_path: /readyz\n", ""),
                "service calls: analysis_path: missing",
            ),
            (
                edit(
                    "    analysis_path: /readyz\n",
                    "    analysis_path: /calls/${seq}\n",
                ),
                "service calls: analysis_path: \"/calls/${seq}\" must be",
            ),
            (
                edit("        expect_status: 200\n", ""),
                "service calls: steps[0]: missing field `expect_status`",
            ),
            (
                edit(
                    "        expect_status: 200\n",
                    "        expect_status: ok\n",
                ),
                "service calls: steps[0].expect_status: invalid type",
            ),
            (
                edit(
                    "        expect_status: 204\n",
                    "        expect_status: 204\n        expect: 1\n",
                ),
                "service streams: steps[1].expect: unknown field `expect`",
            ),
            (
                edit("${start.session_id}", "${stop.session_id}"),
                "service streams: step stop: path: `${stop.session_id}` refers to `stop`, which is not an earlier step",
            ),
            (
                edit("        method: DELETE\n", "        method: REMOVE\n"),
                "service streams: step stop: method: \"REMOVE\"",
            ),
            (
                edit(
                    "          provider: slo-probe\n",
                    "          provider: slo probe\n",
                ),
                "service calls: step decide: signature.provider",
            ),
            (
                edit("  calls:\n", "  Calls:\n"),
                "service Calls: name: must be",
            ),
            (
                edit("version: 2\n", "version: 1\n"),
                "version: 1 is not supported",
            ),
            (
                edit("  concurrency: 8\n", "  concurrency: 8\n  parallel: 2\n"),
                "defaults: parallel: unknown field `parallel`",
            ),
            (
                edit("  timeout_ms: 5000\n", ""),
                "service streams: timeout_ms: missing",
            ),
            (
                "version: 2\nservices:\n".to_owned(),
                "services: no services",
            ),
            (format!("{GOOD}  streams:\n    p99_ms: 1\n"), "streams"),
        ];
        for (text, want) in cases {
            let err = error(&text);
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
    }

    #[test]
    fn files_are_read_bounded() {
        let dir = std::env::temp_dir().join(format!("probe-slo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let huge = dir.join("huge.yaml");
        std::fs::write(&huge, "#".repeat(MAX_FILE_BYTES + 10)).unwrap();
        let err = SloFile::load(&huge).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        assert!(err.to_string().starts_with(&huge.display().to_string()));
        let missing = SloFile::load(&dir.join("missing.yaml")).unwrap_err();
        assert!(missing.to_string().contains("missing.yaml"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
