//! The latency/error SLO probe: N HTTP requests — GETs of one URL ([`ProbeConfig`]) or cycles of
//! steps with methods, bodies, expected statuses and signed bodies ([`plan`]) — p50/p99 latency
//! and error rate, judged against thresholds. [`slo`] reads `buildkite/slo.yaml`, the one file
//! the thresholds and the gated routes live in.
//!
//! One library for two callers on purpose: the operator's Release analysis probes the preview
//! Service with it (one GET route per service, [`ProbeConfig`]: the Release CRD has no steps), and
//! the Buildkite staging gate (`slo-gate`) probes staging with it (each service's hot-route cycle
//! from `buildkite/slo.yaml`, [`plan::Plan`]). Both measure, count and judge with the same code
//! (docs/architecture.md, "Delivery contract").
//!
//! What counts:
//! - **latency** is measured per request from send to the last body byte, for every request,
//!   including failed and timed-out ones (a timeout records the time spent waiting), so a hanging
//!   service shows up in p99 instead of disappearing from it;
//! - **errors** are answers other than the expected status (any 2xx unless a step names one, or
//!   an answer without the JSON a step expects), transport failures (refused, reset, TLS) and
//!   timeouts; 401 and 403 are errors like any other (and counted apart as `auth_errors`, so a
//!   gate that fails on a missing or expired token or a refused signature says so), never a pass;
//! - a threshold is breached when the measured value is strictly above it.
//!
//! Routes that need an identity get a [`BearerToken`], sent as `Authorization: Bearer` on every
//! request (every step that does not sign its body). The token is redacted from `Debug`, marked
//! sensitive in the header map, and never written to any output; so is the calls webhook secret
//! ([`signing::WebhookSecret`]).

pub mod plan;
pub mod prometheus;
pub mod signing;
pub mod slo;

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest latency the histogram resolves (one hour in microseconds); longer values saturate.
const MAX_TRACKABLE_MICROS: u64 = 3_600_000_000;

/// Longest bearer token accepted. Cognito access tokens are 1–2 KB; 16 KiB leaves room for any
/// JWT with many scopes and still bounds what is read from a file or a Secret.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A bearer token for the probed routes. `Debug` never shows it; the only way out is the
/// `Authorization` header the probe builds from it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

/// Why a token was refused. Deliberately carries no part of the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is empty")]
    Empty,
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("the token has characters a bearer token cannot have (RFC 6750 b64token)")]
    BadCharacters,
    #[error("reading the token file: {0}")]
    Io(String),
}

impl BearerToken {
    /// Validates a token as RFC 6750's `b64token` (`[A-Za-z0-9-._~+/]+=*`, which every JWT is).
    /// Surrounding whitespace is dropped: token files and Secrets usually end in a newline.
    pub fn new(raw: &str) -> Result<Self, TokenError> {
        let token = raw.trim();
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong);
        }
        let body = token.trim_end_matches('=');
        let b64token = !body.is_empty()
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
        if !b64token {
            return Err(TokenError::BadCharacters);
        }
        Ok(Self(token.to_owned()))
    }

    /// Reads and validates a token file, reading at most [`MAX_TOKEN_BYTES`] (+ a newline).
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let file = std::fs::File::open(path).map_err(|e| TokenError::Io(e.to_string()))?;
        let mut raw = Vec::new();
        // One byte over the limit plus a trailing newline is enough to tell "too long".
        file.take(MAX_TOKEN_BYTES as u64 + 2)
            .read_to_end(&mut raw)
            .map_err(|e| TokenError::Io(e.to_string()))?;
        let text = std::str::from_utf8(&raw).map_err(|_| TokenError::BadCharacters)?;
        Self::new(text)
    }

    fn header_value(&self) -> reqwest::header::HeaderValue {
        let mut value = reqwest::header::HeaderValue::try_from(format!("Bearer {}", self.0))
            .expect("a b64token is a valid header value");
        // Keeps the value out of reqwest/hyper debug output and HTTP/2 header compression.
        value.set_sensitive(true);
        value
    }
}

/// How one probe run is shaped.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The URL every request GETs.
    pub url: String,
    /// Total number of requests.
    pub requests: u32,
    /// Requests in flight at once (closed loop: each worker sends the next when one finishes).
    pub concurrency: u32,
    /// Per-request deadline; a request that takes longer counts as an error.
    pub timeout: Duration,
    /// Sent as `Authorization: Bearer` on every request when set.
    pub bearer_token: Option<BearerToken>,
}

impl ProbeConfig {
    /// A config with the defaults `slo-gate` uses: concurrency 8, timeout 5 s.
    pub fn new(url: impl Into<String>, requests: u32) -> Self {
        Self {
            url: url.into(),
            requests,
            concurrency: 8,
            timeout: Duration::from_secs(5),
            bearer_token: None,
        }
    }
}

/// The limits a run is judged against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Highest acceptable p99 latency in milliseconds.
    pub p99_ms: f64,
    /// Highest acceptable fraction of failed requests (0.0–1.0).
    pub max_error_rate: f64,
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub requests: u32,
    /// All failed requests: `http_errors + transport_errors`.
    pub errors: u32,
    /// Responses with a non-2xx status.
    pub http_errors: u32,
    /// Of `http_errors`, those answered 401 or 403: the token is missing, expired or lacks a
    /// scope. Counted apart only to say so; they fail the run like any other error.
    #[serde(default)]
    pub auth_errors: u32,
    /// Requests that got no complete response (connect/reset/TLS failure or timeout).
    pub transport_errors: u32,
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Wall-clock time of the whole run.
    pub elapsed_ms: f64,
}

/// One threshold that a measurement broke.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Breach {
    P99 { measured_ms: f64, limit_ms: f64 },
    ErrorRate { measured: f64, limit: f64 },
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::P99 {
                measured_ms,
                limit_ms,
            } => write!(f, "p99 {measured_ms:.1}ms > {limit_ms}ms"),
            Self::ErrorRate { measured, limit } => {
                write!(f, "error rate {measured:.4} > {limit}")
            }
        }
    }
}

/// The result of judging a measurement: passed iff no breaches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub passed: bool,
    #[serde(flatten)]
    pub measurement: Measurement,
    pub thresholds: Thresholds,
    pub breaches: Vec<Breach>,
}

impl Verdict {
    /// A one-line human summary, used in operator Events and status messages.
    pub fn summary(&self) -> String {
        let m = &self.measurement;
        let head = format!(
            "{} requests, p50 {:.1}ms, p99 {:.1}ms, error rate {:.4}",
            m.requests, m.p50_ms, m.p99_ms, m.error_rate
        );
        let head = if m.auth_errors > 0 {
            format!(
                "{head} ({} answered 401/403: token missing, expired or without the scope)",
                m.auth_errors
            )
        } else {
            head
        };
        if self.breaches.is_empty() {
            format!("{head}: within thresholds")
        } else {
            let breaches: Vec<String> = self.breaches.iter().map(ToString::to_string).collect();
            format!("{head}: breached {}", breaches.join(", "))
        }
    }
}

/// Why a probe could not run at all (as opposed to running and finding a breach).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("invalid probe config: {0}")]
    InvalidConfig(String),
    #[error("invalid url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Installs ring as the process-wide rustls provider, once. The probe's HTTP client is built
/// without a bundled provider so that it shares the operator's TLS stack instead of compiling a
/// second one; every process that probes HTTPS calls this first. Calling it again is harmless.
pub fn install_tls_provider() {
    // Err means a provider is already installed, which is exactly what we want.
    #[cfg(feature = "tls")]
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Sends `config.requests` GETs and measures them. Errors only when the probe cannot run;
/// an unreachable target is a measurement with a 100% error rate, not an `Err`.
pub async fn measure(config: &ProbeConfig) -> Result<Measurement, ProbeError> {
    let mut plan = plan::Plan::single_get(
        &config.url,
        config.requests,
        config.concurrency,
        config.timeout,
    )?;
    plan.bearer_token.clone_from(&config.bearer_token);
    Ok(plan::measure_plan(&plan).await?.total)
}

/// Judges a measurement against thresholds.
pub fn judge(measurement: Measurement, thresholds: Thresholds) -> Verdict {
    let mut breaches = Vec::new();
    if measurement.p99_ms > thresholds.p99_ms {
        breaches.push(Breach::P99 {
            measured_ms: measurement.p99_ms,
            limit_ms: thresholds.p99_ms,
        });
    }
    if measurement.error_rate > thresholds.max_error_rate {
        breaches.push(Breach::ErrorRate {
            measured: measurement.error_rate,
            limit: thresholds.max_error_rate,
        });
    }
    Verdict {
        passed: breaches.is_empty(),
        measurement,
        thresholds,
        breaches,
    }
}

/// [`measure`] then [`judge`].
pub async fn run(config: &ProbeConfig, thresholds: Thresholds) -> Result<Verdict, ProbeError> {
    Ok(judge(measure(config).await?, thresholds))
}

/// Untimed, barrier-synchronised warm-up rounds per worker (see [`plan`]'s worker): each worker
/// sends one request (one whole cycle), then waits for every other worker, this many times,
/// before anything is timed.
pub const WARMUP_ROUNDS: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(p99_ms: f64, error_rate: f64) -> Measurement {
        Measurement {
            requests: 100,
            errors: (error_rate * 100.0) as u32,
            http_errors: (error_rate * 100.0) as u32,
            auth_errors: 0,
            transport_errors: 0,
            error_rate,
            p50_ms: p99_ms / 2.0,
            p99_ms,
            max_ms: p99_ms,
            elapsed_ms: 1000.0,
        }
    }

    const LIMITS: Thresholds = Thresholds {
        p99_ms: 100.0,
        max_error_rate: 0.01,
    };

    #[test]
    fn at_the_threshold_passes_above_it_breaches() {
        assert!(judge(measurement(100.0, 0.01), LIMITS).passed);
        let v = judge(measurement(100.5, 0.02), LIMITS);
        assert!(!v.passed);
        assert_eq!(
            v.breaches,
            vec![
                Breach::P99 {
                    measured_ms: 100.5,
                    limit_ms: 100.0
                },
                Breach::ErrorRate {
                    measured: 0.02,
                    limit: 0.01
                }
            ]
        );
        assert!(v.summary().contains("breached p99 100.5ms > 100ms"));
    }

    #[test]
    fn verdict_json_is_flat_with_tagged_breaches() {
        let v = judge(measurement(150.0, 0.0), LIMITS);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["passed"], false);
        assert_eq!(json["p99_ms"], 150.0);
        assert_eq!(json["thresholds"]["p99_ms"], 100.0);
        assert_eq!(json["breaches"][0]["kind"], "p99");
    }

    #[test]
    fn bearer_tokens_are_validated_and_never_shown() {
        let jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJzbG8tcHJvYmUifQ.c2ln-_";
        let token = BearerToken::new(&format!("{jwt}\n")).unwrap();
        assert_eq!(
            token,
            BearerToken::new(jwt).unwrap(),
            "trailing newline dropped"
        );
        assert_eq!(format!("{token:?}"), "BearerToken([redacted])");
        let config = ProbeConfig {
            bearer_token: Some(token.clone()),
            ..ProbeConfig::new("http://x/", 1)
        };
        assert!(!format!("{config:?}").contains(jwt));
        let header = token.header_value();
        assert!(header.is_sensitive());
        assert_eq!(header.to_str().unwrap(), format!("Bearer {jwt}"));
        assert!(BearerToken::new("abc==").is_ok(), "b64token padding");

        assert_eq!(BearerToken::new(" \n"), Err(TokenError::Empty));
        for bad in [
            "two words",
            "tab\there",
            "nul\0",
            "quote\"",
            "é",
            "==",
            "a=b",
        ] {
            assert_eq!(
                BearerToken::new(bad),
                Err(TokenError::BadCharacters),
                "{bad:?}"
            );
        }
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(BearerToken::new(&long), Err(TokenError::TooLong));
        assert!(BearerToken::new(&long[1..]).is_ok());
        // The error never carries the token.
        let err = BearerToken::new("secret value").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn token_files_are_read_bounded() {
        let dir = std::env::temp_dir().join(format!("probe-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = dir.join("ok");
        std::fs::write(&ok, "abc.def.ghi\n").unwrap();
        assert_eq!(
            BearerToken::from_file(&ok).unwrap(),
            BearerToken::new("abc.def.ghi").unwrap()
        );
        let huge = dir.join("huge");
        std::fs::write(&huge, "a".repeat(1 << 20)).unwrap();
        assert_eq!(BearerToken::from_file(&huge), Err(TokenError::TooLong));
        assert!(matches!(
            BearerToken::from_file(&dir.join("missing")),
            Err(TokenError::Io(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn bad_config_is_an_error_not_a_breach() {
        let mut c = ProbeConfig::new("http://127.0.0.1:1/", 0);
        assert!(matches!(
            measure(&c).await,
            Err(ProbeError::InvalidConfig(_))
        ));
        c.requests = 1;
        c.url = "ftp://x/".into();
        assert!(matches!(
            measure(&c).await,
            Err(ProbeError::InvalidUrl { .. })
        ));
    }

    #[tokio::test]
    async fn unreachable_target_is_a_full_error_rate() {
        // Port 1 on loopback refuses connections.
        let mut c = ProbeConfig::new("http://127.0.0.1:1/", 4);
        c.timeout = Duration::from_millis(500);
        let m = measure(&c).await.unwrap();
        assert_eq!(m.requests, 4);
        assert_eq!(m.transport_errors, 4);
        assert!((m.error_rate - 1.0).abs() < f64::EPSILON);
    }
}
