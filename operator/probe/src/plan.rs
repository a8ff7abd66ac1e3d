//! Probe runs of more than one GET: a **cycle** of steps (e.g. start a stream, then stop the
//! session the start answered with), each step one HTTP request with its own method, path,
//! headers, body and expected status, repeated until the run has sent its requests.
//!
//! - **Templates**: a step's path, header values and body may contain `${seq}` (the cycle's
//!   number within the run, warm-ups included, from 0), `${worker}` (the index of the worker
//!   sending it, `0..concurrency`), `${run}` (8 hex digits, random per run) and
//!   `${<step>.<field>[.<field>...]}` (a field of an earlier step's JSON answer in the same
//!   cycle; array elements by index). Anything else after `${` is an error when the plan is built.
//!   A referenced field must be a string, number or boolean of at most 256 characters from
//!   `A-Z a-z 0-9 . _ ~ : @ + -` (ids, not prose), so it is inserted as is into a path, a header or
//!   a JSON string; an answer whose field is missing or not like that counts as a bad answer.
//! - **Expected status**: a step passes when it is answered with exactly its `expect_status`
//!   (any 2xx when none is given) and, when it has `expect_json`, its JSON answer has those
//!   values. Anything else is an error of that step, and the cycle's later steps are skipped
//!   (counted as `skipped`, not sent, not timed).
//! - **Signing**: a step with `sign_as` carries the calls webhook's `Meridian-Signature` over its
//!   exact body (see [`crate::signing`]) and no bearer token; every other step carries the bearer
//!   token when the plan has one.
//! - **Measuring**: every request is timed (send → last body byte) into its step's histogram and
//!   the run's; the run's p99 is over every request of every step (the SLO is per request), and
//!   each step reports its own requests, errors, statuses and p50/p99.
//!
//! The warm-up is the single-route probe's ([`crate::WARMUP_ROUNDS`] barrier-synchronised rounds
//! per worker): here each warm-up round is one whole, untimed cycle.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::signing::{SIGNATURE_HEADER, WebhookSecret, valid_provider};
use crate::{
    BearerToken, MAX_TRACKABLE_MICROS, Measurement, ProbeError, Thresholds, Verdict, WARMUP_ROUNDS,
    judge,
};

/// Most steps in one cycle.
pub const MAX_STEPS: usize = 8;
/// Largest request body of a step, after templating (bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest answer kept for reading fields from it (bytes); longer answers are still read to the
/// end (latency is to the last byte) but count as bad answers when a field was needed.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Longest value taken from an answer into a later step.
pub const MAX_FIELD_LEN: usize = 256;
/// Placeholders every template may use besides earlier steps' fields.
pub const BUILTINS: [&str; 3] = ["seq", "worker", "run"];

/// One step as written (in `buildkite/slo.yaml`, or by a caller); [`Plan::new`] checks it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSpec {
    /// `[a-z][a-z0-9_-]*`, unique in the cycle; later steps refer to its answer by it.
    pub name: String,
    /// GET, POST, PUT, PATCH or DELETE.
    pub method: String,
    /// Relative to the base URL, starting with `/`; a template.
    pub path: String,
    /// Header name → value template. `authorization` and `meridian-signature` are the probe's.
    pub headers: Vec<(String, String)>,
    /// Request body template.
    pub body: Option<String>,
    /// The one status that counts as success; `None`: any 2xx.
    pub expect_status: Option<u16>,
    /// Dotted field path → the JSON value the answer must have there.
    pub expect_json: Vec<(String, serde_json::Value)>,
    /// Sign the body as this provider (the calls webhook's signature) instead of sending the
    /// bearer token.
    pub sign_as: Option<String>,
}

impl StepSpec {
    /// A GET of `path` that expects `expect_status`.
    pub fn get(name: &str, path: &str, expect_status: Option<u16>) -> Self {
        Self {
            name: name.into(),
            method: "GET".into(),
            path: path.into(),
            headers: Vec::new(),
            body: None,
            expect_status,
            expect_json: Vec::new(),
            sign_as: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Seq,
    Worker,
    Run,
    /// Field `field` of the values step `step` extracts.
    Field {
        step: usize,
        field: usize,
    },
}

/// A string with `${...}` placeholders.
#[derive(Debug, Clone, PartialEq)]
struct Template(Vec<Part>);

/// What one request's templates are filled with.
struct Vars<'a> {
    seq: u64,
    worker: u32,
    run: &'a str,
    /// Per step, the values extracted from its answer in this cycle.
    values: &'a [Vec<String>],
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 64
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_step_name(n: &str) -> bool {
    n.len() <= 32
        && n.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && !BUILTINS.contains(&n)
}

/// A dotted field path (`a.b.0`) as keys.
fn field_path(text: &str) -> Result<Vec<String>, String> {
    let keys: Vec<String> = text.split('.').map(str::to_owned).collect();
    if keys.iter().all(|k| valid_key(k)) {
        Ok(keys)
    } else {
        Err(format!(
            "`{text}` is not a field path (keys of letters, digits, _ and - separated by dots)"
        ))
    }
}

impl Template {
    fn literal(text: &str) -> Self {
        Self(vec![Part::Lit(text.to_owned())])
    }

    /// Parses `text`; `${<step>.<field>}` may name only `earlier` steps, and registers the field
    /// in that step's `extract` list.
    fn parse(
        text: &str,
        earlier: &[String],
        extract: &mut [Vec<Vec<String>>],
    ) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find("${") {
            if at > 0 {
                parts.push(Part::Lit(rest[..at].to_owned()));
            }
            let after = &rest[at + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("`${{` without a closing `}}` in `{text}`"))?;
            let name = &after[..end];
            parts.push(match name {
                "seq" => Part::Seq,
                "worker" => Part::Worker,
                "run" => Part::Run,
                _ => {
                    let (step_name, field) = name.split_once('.').ok_or_else(|| {
                        format!(
                            "unknown placeholder `${{{name}}}`: use ${{seq}}, ${{worker}}, ${{run}} or \
                             ${{<earlier step>.<field>}}"
                        )
                    })?;
                    let step = earlier.iter().position(|s| s == step_name).ok_or_else(|| {
                        format!(
                            "`${{{name}}}` refers to `{step_name}`, which is not an earlier step of \
                             this cycle"
                        )
                    })?;
                    let path = field_path(field)?;
                    let fields = &mut extract[step];
                    let field = match fields.iter().position(|f| *f == path) {
                        Some(i) => i,
                        None => {
                            fields.push(path);
                            fields.len() - 1
                        }
                    };
                    Part::Field { step, field }
                }
            });
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_owned()));
        }
        Ok(Self(parts))
    }

    fn render(&self, vars: &Vars<'_>) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Seq => out.push_str(&vars.seq.to_string()),
                Part::Worker => out.push_str(&vars.worker.to_string()),
                Part::Run => out.push_str(vars.run),
                Part::Field { step, field } => {
                    if let Some(v) = vars.values.get(*step).and_then(|f| f.get(*field)) {
                        out.push_str(v);
                    }
                }
            }
        }
        out
    }
}

/// One compiled step.
#[derive(Debug, Clone)]
pub struct Step {
    name: String,
    method: reqwest::Method,
    /// As written, for reports.
    path: String,
    url: Template,
    headers: Vec<(HeaderName, Template)>,
    body: Option<Template>,
    expect_status: Option<u16>,
    expect_json: Vec<(Vec<String>, serde_json::Value)>,
    /// Fields of this step's answer that later steps use.
    extract: Vec<Vec<String>>,
    sign_as: Option<String>,
}

impl Step {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn method(&self) -> &str {
        self.method.as_str()
    }

    /// The path as written (placeholders unexpanded).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn expect_status(&self) -> Option<u16> {
        self.expect_status
    }

    pub fn signs(&self) -> bool {
        self.sign_as.is_some()
    }

    fn reads_answer(&self) -> bool {
        !self.extract.is_empty() || !self.expect_json.is_empty()
    }
}

/// A whole probe run: the cycle, how many requests, how many at once, and the credentials.
#[derive(Debug, Clone)]
pub struct Plan {
    steps: Vec<Step>,
    /// Requests to send in total; the run does `ceil(requests / steps)` cycles.
    pub requests: u32,
    /// Cycles in flight at once (closed loop: one worker per concurrent cycle).
    pub concurrency: u32,
    /// Per-request deadline; a request that takes longer counts as an error.
    pub timeout: Duration,
    /// Sent as `Authorization: Bearer` on every step that does not sign.
    pub bearer_token: Option<BearerToken>,
    /// The key of signing steps; a plan with such a step does not run without it.
    pub webhook_secret: Option<WebhookSecret>,
    /// `${run}`.
    pub run_id: String,
    /// Follow redirects (the single-URL probe does; cycles do not, so their headers stay with
    /// the host they were meant for).
    pub follow_redirects: bool,
}

/// Placeholder values used to check that every template renders to a valid request.
fn sample_vars(steps: usize) -> (Vec<Vec<String>>, &'static str) {
    (vec![vec!["x".repeat(MAX_FIELD_LEN); 8]; steps], "0badcafe")
}

fn check_base(base_url: &str) -> Result<reqwest::Url, ProbeError> {
    let invalid = |reason: &str| ProbeError::InvalidUrl {
        url: base_url.to_owned(),
        reason: reason.to_owned(),
    };
    let url = reqwest::Url::parse(base_url).map_err(|e| invalid(&e.to_string()))?;
    if url.scheme() == "https" && !cfg!(feature = "tls") {
        return Err(invalid(
            "this build has no TLS; build with --features meridian-probe/tls",
        ));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("scheme must be http or https"));
    }
    Ok(url)
}

fn random_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS once per process and varied per instance.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("{:08x}", h.finish() as u32)
}

impl Plan {
    /// Compiles `steps` against `base_url` (scheme, host and optional path prefix; each step's
    /// path is appended). Errors name the step and what is wrong.
    pub fn new(
        base_url: &str,
        steps: &[StepSpec],
        requests: u32,
        concurrency: u32,
        timeout: Duration,
    ) -> Result<Self, ProbeError> {
        check_base(base_url)?;
        let base = base_url.trim_end_matches('/');
        let steps = compile(base, steps).map_err(ProbeError::InvalidConfig)?;
        let plan = Self {
            steps,
            requests,
            concurrency,
            timeout,
            bearer_token: None,
            webhook_secret: None,
            run_id: random_run_id(),
            follow_redirects: false,
        };
        plan.check_sizes()?;
        Ok(plan)
    }

    /// The single-route probe: GET `url`, any 2xx passes (what [`crate::ProbeConfig`] runs).
    pub fn single_get(
        url: &str,
        requests: u32,
        concurrency: u32,
        timeout: Duration,
    ) -> Result<Self, ProbeError> {
        let plan = Self {
            steps: vec![Step {
                name: "get".into(),
                method: reqwest::Method::GET,
                path: url.to_owned(),
                url: Template::literal(url),
                headers: Vec::new(),
                body: None,
                expect_status: None,
                expect_json: Vec::new(),
                extract: Vec::new(),
                sign_as: None,
            }],
            requests,
            concurrency,
            timeout,
            bearer_token: None,
            webhook_secret: None,
            run_id: random_run_id(),
            follow_redirects: true,
        };
        plan.check_sizes()?;
        check_base(url)?;
        Ok(plan)
    }

    fn check_sizes(&self) -> Result<(), ProbeError> {
        if self.requests == 0 {
            return Err(ProbeError::InvalidConfig(
                "requests must be at least 1".into(),
            ));
        }
        if self.concurrency == 0 {
            return Err(ProbeError::InvalidConfig(
                "concurrency must be at least 1".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(ProbeError::InvalidConfig("timeout must be positive".into()));
        }
        Ok(())
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Whether any step signs its body (and so needs [`Plan::webhook_secret`]).
    pub fn signs(&self) -> bool {
        self.steps.iter().any(Step::signs)
    }

    /// Cycles a run sends: enough for `requests` requests.
    pub fn cycles(&self) -> u32 {
        self.requests.div_ceil(self.steps.len().max(1) as u32)
    }
}

/// Checks and compiles steps; `base` has no trailing slash.
fn compile(base: &str, specs: &[StepSpec]) -> Result<Vec<Step>, String> {
    if specs.is_empty() {
        return Err("a cycle needs at least one step".into());
    }
    if specs.len() > MAX_STEPS {
        return Err(format!("a cycle has at most {MAX_STEPS} steps"));
    }
    let mut names: Vec<String> = Vec::new();
    let mut extract: Vec<Vec<Vec<String>>> = vec![Vec::new(); specs.len()];
    let mut partial = Vec::new();
    for spec in specs {
        let name = &spec.name;
        let fail = |what: &str, why: String| format!("step {name}: {what}: {why}");
        if !valid_step_name(name) {
            return Err(format!(
                "step {name:?}: name: must be 1-32 of a-z 0-9 _ - starting with a letter, and not \
                 seq, worker or run"
            ));
        }
        if names.contains(name) {
            return Err(format!("step {name}: name: two steps are called {name}"));
        }
        let method = match spec.method.as_str() {
            "GET" => reqwest::Method::GET,
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            "PATCH" => reqwest::Method::PATCH,
            "DELETE" => reqwest::Method::DELETE,
            other => {
                return Err(fail(
                    "method",
                    format!("{other:?} is not one of GET, POST, PUT, PATCH, DELETE"),
                ));
            }
        };
        if !spec.path.starts_with('/') {
            return Err(fail("path", "must start with /".into()));
        }
        let path =
            Template::parse(&spec.path, &names, &mut extract).map_err(|e| fail("path", e))?;
        let mut url = Template::literal(base);
        url.0.extend(path.0);
        let mut headers = Vec::new();
        for (header, value) in &spec.headers {
            let lower = header.to_ascii_lowercase();
            let name = HeaderName::from_bytes(lower.as_bytes())
                .map_err(|_| fail("headers", format!("{header:?} is not a header name")))?;
            if matches!(
                lower.as_str(),
                "authorization"
                    | SIGNATURE_HEADER
                    | "host"
                    | "content-length"
                    | "transfer-encoding"
            ) {
                return Err(fail(
                    "headers",
                    format!(
                        "{lower} is set by the probe (the bearer token, the signature) or by HTTP itself"
                    ),
                ));
            }
            let value = Template::parse(value, &names, &mut extract)
                .map_err(|e| fail(&format!("headers.{lower}"), e))?;
            headers.push((name, value));
        }
        let body = spec
            .body
            .as_deref()
            .map(|b| Template::parse(b, &names, &mut extract))
            .transpose()
            .map_err(|e| fail("body", e))?;
        if let Some(status) = spec.expect_status
            && !(100..=599).contains(&status)
        {
            return Err(fail(
                "expect_status",
                format!("{status} is not an HTTP status (100-599)"),
            ));
        }
        let mut expect_json = Vec::new();
        for (field, value) in &spec.expect_json {
            let path = field_path(field).map_err(|e| fail("expect_json", e))?;
            if value.is_array() || value.is_object() {
                return Err(fail(
                    "expect_json",
                    format!("{field}: expect a string, number, boolean or null"),
                ));
            }
            expect_json.push((path, value.clone()));
        }
        if let Some(provider) = &spec.sign_as
            && !valid_provider(provider)
        {
            return Err(fail(
                "signature.provider",
                format!("{provider:?} must be 1-32 of letters, digits, - and _"),
            ));
        }
        names.push(name.clone());
        partial.push(Step {
            name: name.clone(),
            method,
            path: spec.path.clone(),
            url,
            headers,
            body,
            expect_status: spec.expect_status,
            expect_json,
            extract: Vec::new(),
            sign_as: spec.sign_as.clone(),
        });
    }
    for (step, fields) in partial.iter_mut().zip(extract) {
        step.extract = fields;
    }
    // Every template must make a valid request with the longest values it can be filled with.
    let (values, run) = sample_vars(partial.len());
    let vars = Vars {
        seq: u64::MAX,
        worker: u32::MAX,
        run,
        values: &values,
    };
    for step in &partial {
        let name = &step.name;
        let url = step.url.render(&vars);
        let parsed = reqwest::Url::parse(&url).map_err(|e| {
            format!(
                "step {name}: path: {:?} does not make a URL: {e}",
                step.path
            )
        })?;
        if parsed.fragment().is_some() || url.contains(' ') {
            return Err(format!(
                "step {name}: path: {:?} must be a plain URL path (and query)",
                step.path
            ));
        }
        for (header, value) in &step.headers {
            HeaderValue::from_str(&value.render(&vars))
                .map_err(|_| format!("step {name}: headers.{header}: not a valid header value"))?;
        }
        if let Some(body) = &step.body
            && body.render(&vars).len() > MAX_BODY_BYTES
        {
            return Err(format!(
                "step {name}: body: longer than {MAX_BODY_BYTES} bytes"
            ));
        }
    }
    Ok(partial)
}

/// What one step measured over a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMeasurement {
    pub name: String,
    pub method: String,
    /// As written, placeholders unexpanded.
    pub path: String,
    /// `None`: any 2xx.
    pub expect_status: Option<u16>,
    pub signed: bool,
    pub requests: u32,
    /// `http_errors + transport_errors`.
    pub errors: u32,
    /// Answers other than expected: wrong status, or the right status with an answer that lacks
    /// what was expected or needed (`bad_answers`).
    pub http_errors: u32,
    /// Of `http_errors`, those answered 401 or 403 (when 401/403 was not the expected status).
    pub auth_errors: u32,
    /// Of `http_errors`, answers with the expected status but not the expected JSON, or without a
    /// field a later step needs.
    pub bad_answers: u32,
    pub transport_errors: u32,
    /// Times this step was not sent because an earlier step of its cycle failed.
    pub skipped: u32,
    /// Every status received, with its count.
    pub statuses: BTreeMap<u16, u32>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// A run of a plan: the whole-run measurement and each step's.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanMeasurement {
    pub total: Measurement,
    pub cycles: u32,
    pub steps: Vec<StepMeasurement>,
}

/// A judged run of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanVerdict {
    #[serde(flatten)]
    pub verdict: Verdict,
    pub cycles: u32,
    pub steps: Vec<StepMeasurement>,
}

fn plural(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl StepMeasurement {
    /// What went wrong with this step, or `None` when nothing did.
    fn trouble(&self) -> Option<String> {
        if self.errors == 0 && self.skipped == 0 {
            return None;
        }
        let mut parts = Vec::new();
        if self.errors > 0 {
            parts.push(format!("{} of {} failed", self.errors, self.requests));
        }
        let wrong: Vec<String> = self
            .statuses
            .iter()
            .filter(|(s, _)| match self.expect_status {
                Some(e) => **s != e,
                None => !(200..300).contains(*s),
            })
            .map(|(s, n)| format!("{s} ×{n}"))
            .collect();
        if !wrong.is_empty() {
            let expected = self
                .expect_status
                .map_or_else(|| "2xx".to_owned(), |s| s.to_string());
            parts.push(format!(
                "answered {} (expected {expected})",
                wrong.join(", ")
            ));
        }
        if self.auth_errors > 0 {
            parts.push(if self.signed {
                format!(
                    "{} answered 401/403 to a signed request: the webhook secret or provider is not one the service accepts",
                    self.auth_errors
                )
            } else {
                format!(
                    "{} answered 401/403: token missing, expired or without the scope",
                    self.auth_errors
                )
            });
        }
        if self.bad_answers > 0 {
            parts.push(format!(
                "{} without the expected JSON",
                plural(self.bad_answers, "answer", "answers")
            ));
        }
        if self.transport_errors > 0 {
            parts.push(format!(
                "{} (connection, timeout)",
                plural(self.transport_errors, "transport error", "transport errors")
            ));
        }
        if self.skipped > 0 {
            parts.push(format!(
                "skipped {} (an earlier step failed)",
                plural(self.skipped, "time", "times")
            ));
        }
        Some(format!(
            "step {} ({} {}): {}",
            self.name,
            self.method,
            self.path,
            parts.join("; ")
        ))
    }
}

impl PlanVerdict {
    /// A one-line human summary: the run, its breaches, and what went wrong in which step.
    pub fn summary(&self) -> String {
        let m = &self.verdict.measurement;
        let mut out = format!(
            "{} requests in {} of {}, p50 {:.1}ms, p99 {:.1}ms, error rate {:.4}",
            m.requests,
            plural(self.cycles, "cycle", "cycles"),
            plural(self.steps.len() as u32, "step", "steps"),
            m.p50_ms,
            m.p99_ms,
            m.error_rate
        );
        if self.verdict.breaches.is_empty() {
            out.push_str(": within thresholds");
        } else {
            let breaches: Vec<String> = self
                .verdict
                .breaches
                .iter()
                .map(ToString::to_string)
                .collect();
            out.push_str(": breached ");
            out.push_str(&breaches.join(", "));
            let per_step: Vec<String> = self
                .steps
                .iter()
                .map(|s| {
                    if s.requests == 0 {
                        format!("{} not sent", s.name)
                    } else {
                        format!("{} p50 {:.1}ms p99 {:.1}ms", s.name, s.p50_ms, s.p99_ms)
                    }
                })
                .collect();
            out.push_str(" (steps: ");
            out.push_str(&per_step.join(", "));
            out.push(')');
        }
        for trouble in self.steps.iter().filter_map(StepMeasurement::trouble) {
            out.push_str("; ");
            out.push_str(&trouble);
        }
        out
    }
}

/// Runs a plan and measures it. Errors only when the probe cannot run (bad config, a signing
/// step without a secret); an unreachable target is a measurement with a 100% error rate.
pub async fn measure_plan(plan: &Plan) -> Result<PlanMeasurement, ProbeError> {
    plan.check_sizes()?;
    if plan.signs() && plan.webhook_secret.is_none() {
        let signing: Vec<&str> = plan
            .steps
            .iter()
            .filter(|s| s.signs())
            .map(Step::name)
            .collect();
        return Err(ProbeError::InvalidConfig(format!(
            "step {} signs its body: a webhook secret is needed (slo-gate --webhook-secret-file)",
            signing.join(", ")
        )));
    }
    // reqwest sets up TLS when the client is built, even for plain-http URLs.
    crate::install_tls_provider();
    let cycles = plan.cycles();
    let workers = plan.concurrency.min(cycles);
    let redirects = if plan.follow_redirects {
        reqwest::redirect::Policy::default()
    } else {
        reqwest::redirect::Policy::none()
    };
    let client = reqwest::Client::builder()
        .timeout(plan.timeout)
        // reqwest drops Authorization on a redirect to another host, so the token cannot leak
        // through a redirect; cycles follow none at all.
        .redirect(redirects)
        .pool_max_idle_per_host(workers as usize)
        .build()
        .map_err(ProbeError::Client)?;
    let shared = Arc::new(Shared {
        bearer: plan.bearer_token.as_ref().map(BearerToken::header_value),
        plan: plan.clone(),
        client,
        next_cycle: AtomicU32::new(0),
        seq: AtomicU64::new(0),
        cycles,
        warmed: tokio::sync::Barrier::new(workers as usize),
    });
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for index in 0..workers {
        let shared = Arc::clone(&shared);
        set.spawn(async move { worker(&shared, index).await });
    }
    let mut tallies: Vec<Tally> = plan.steps.iter().map(|_| Tally::new()).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(parts) => {
                for (tally, part) in tallies.iter_mut().zip(&parts) {
                    tally.merge(part);
                }
            }
            // A worker only panics on a bug; surface it instead of under-counting silently.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    let elapsed = started.elapsed();
    let mut all = Tally::new();
    for tally in &tallies {
        all.merge(tally);
    }
    let steps = plan
        .steps
        .iter()
        .zip(&tallies)
        .map(|(step, tally)| tally.step_measurement(step))
        .collect();
    Ok(PlanMeasurement {
        total: all.into_measurement(elapsed),
        cycles,
        steps,
    })
}

/// [`measure_plan`] then [`judge`].
pub async fn run_plan(plan: &Plan, thresholds: Thresholds) -> Result<PlanVerdict, ProbeError> {
    let m = measure_plan(plan).await?;
    Ok(PlanVerdict {
        verdict: judge(m.total, thresholds),
        cycles: m.cycles,
        steps: m.steps,
    })
}

struct Shared {
    plan: Plan,
    client: reqwest::Client,
    bearer: Option<HeaderValue>,
    /// Cycles claimed from the budget.
    next_cycle: AtomicU32,
    /// `${seq}`: every cycle sent, warm-ups included.
    seq: AtomicU64,
    cycles: u32,
    warmed: tokio::sync::Barrier,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    Ok,
    /// A status other than the expected one.
    HttpError,
    /// 401 or 403 (not expected): an HTTP error whose cause is the credential.
    AuthError,
    /// The expected status, but not the expected or needed JSON.
    BadAnswer,
    TransportError,
}

struct Tally {
    histogram: Histogram<u64>,
    requests: u32,
    http_errors: u32,
    auth_errors: u32,
    bad_answers: u32,
    transport_errors: u32,
    skipped: u32,
    statuses: BTreeMap<u16, u32>,
}

impl Tally {
    fn new() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, MAX_TRACKABLE_MICROS, 3)
                .expect("static histogram bounds are valid"),
            requests: 0,
            http_errors: 0,
            auth_errors: 0,
            bad_answers: 0,
            transport_errors: 0,
            skipped: 0,
            statuses: BTreeMap::new(),
        }
    }

    fn record(&mut self, micros: u64, outcome: Outcome, status: Option<u16>) {
        self.histogram.saturating_record(micros.max(1));
        self.requests += 1;
        if let Some(s) = status {
            *self.statuses.entry(s).or_default() += 1;
        }
        match outcome {
            Outcome::Ok => {}
            Outcome::HttpError => self.http_errors += 1,
            Outcome::AuthError => {
                self.http_errors += 1;
                self.auth_errors += 1;
            }
            Outcome::BadAnswer => {
                self.http_errors += 1;
                self.bad_answers += 1;
            }
            Outcome::TransportError => self.transport_errors += 1,
        }
    }

    fn merge(&mut self, other: &Self) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms share bounds");
        self.requests += other.requests;
        self.http_errors += other.http_errors;
        self.auth_errors += other.auth_errors;
        self.bad_answers += other.bad_answers;
        self.transport_errors += other.transport_errors;
        self.skipped += other.skipped;
        for (s, n) in &other.statuses {
            *self.statuses.entry(*s).or_default() += n;
        }
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        self.histogram.value_at_quantile(q) as f64 / 1000.0
    }

    fn step_measurement(&self, step: &Step) -> StepMeasurement {
        StepMeasurement {
            name: step.name.clone(),
            method: step.method.to_string(),
            path: step.path.clone(),
            expect_status: step.expect_status,
            signed: step.signs(),
            requests: self.requests,
            errors: self.http_errors + self.transport_errors,
            http_errors: self.http_errors,
            auth_errors: self.auth_errors,
            bad_answers: self.bad_answers,
            transport_errors: self.transport_errors,
            skipped: self.skipped,
            statuses: self.statuses.clone(),
            p50_ms: self.quantile_ms(0.50),
            p99_ms: self.quantile_ms(0.99),
            max_ms: self.histogram.max() as f64 / 1000.0,
        }
    }

    fn into_measurement(self, elapsed: Duration) -> Measurement {
        let errors = self.http_errors + self.transport_errors;
        Measurement {
            requests: self.requests,
            errors,
            http_errors: self.http_errors,
            auth_errors: self.auth_errors,
            transport_errors: self.transport_errors,
            error_rate: if self.requests == 0 {
                0.0
            } else {
                f64::from(errors) / f64::from(self.requests)
            },
            p50_ms: self.quantile_ms(0.50),
            p99_ms: self.quantile_ms(0.99),
            max_ms: self.histogram.max() as f64 / 1000.0,
            elapsed_ms: elapsed.as_secs_f64() * 1000.0,
        }
    }
}

/// A request that failed: which step, how, and how long it took.
struct Failure {
    step: usize,
    outcome: Outcome,
    status: Option<u16>,
    micros: u64,
}

async fn worker(shared: &Shared, index: u32) -> Vec<Tally> {
    let steps = shared.plan.steps.len();
    let mut tallies: Vec<Tally> = (0..steps).map(|_| Tally::new()).collect();
    // Untimed warm-up rounds: every worker runs one whole cycle, then waits for all the others,
    // WARMUP_ROUNDS times. They open this worker's connection and let the service grow its
    // database pool to the probe's concurrency, so the run measures the steady state the SLO is
    // about, not cold connection set-up (TLS, database authentication). One round is not
    // enough: a service's pool hands a released connection to a waiting request while the
    // connection it was opening for it arrives later, so after one concurrent round the pool
    // can still be short, and the first timed burst then pays for new connections (seen: two
    // requests of 200 at 110-250 ms against a 2 ms median on a fresh `meridian serve`, enough
    // to decide the p99 of a healthy service). No worker starts timing before every worker
    // has finished warming up. Only a successful warm-up is free: a failed one takes one of
    // the run's cycles and its failed request counts as a failed, timed request (the cycle's
    // later steps as skipped).
    let mut warm = true;
    for _ in 0..WARMUP_ROUNDS {
        // A worker whose warm-up failed stops warming up, but still meets the others at each
        // round's barrier (or they would wait for it forever).
        if warm {
            let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
            if let Err(failed) = cycle(shared, index, seq, None).await {
                warm = false;
                if shared.next_cycle.fetch_add(1, Ordering::Relaxed) < shared.cycles {
                    tallies[failed.step].record(failed.micros, failed.outcome, failed.status);
                    for later in &mut tallies[failed.step + 1..] {
                        later.skipped += 1;
                    }
                }
            }
        }
        shared.warmed.wait().await;
    }
    while shared.next_cycle.fetch_add(1, Ordering::Relaxed) < shared.cycles {
        let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
        // Failures are already in the tallies.
        let _ = cycle(shared, index, seq, Some(&mut tallies)).await;
    }
    tallies
}

/// One cycle: every step in order until one fails. With `tallies`, each request is recorded
/// (and the steps after a failure counted as skipped); without, nothing is (a warm-up).
async fn cycle(
    shared: &Shared,
    worker: u32,
    seq: u64,
    mut tallies: Option<&mut Vec<Tally>>,
) -> Result<(), Failure> {
    let steps = &shared.plan.steps;
    let mut values: Vec<Vec<String>> = vec![Vec::new(); steps.len()];
    for (i, step) in steps.iter().enumerate() {
        let vars = Vars {
            seq,
            worker,
            run: &shared.plan.run_id,
            values: &values,
        };
        let (outcome, status, micros, extracted) = request(shared, step, &vars).await;
        if let Some(t) = tallies.as_deref_mut() {
            t[i].record(micros, outcome, status);
        }
        if outcome != Outcome::Ok {
            if let Some(t) = tallies.as_deref_mut() {
                for later in &mut t[i + 1..] {
                    later.skipped += 1;
                }
            }
            return Err(Failure {
                step: i,
                outcome,
                status,
                micros,
            });
        }
        values[i] = extracted;
    }
    Ok(())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Sends one step: its outcome, the status (when one came), the time from send to the last
/// body byte, and the fields later steps need.
async fn request(
    shared: &Shared,
    step: &Step,
    vars: &Vars<'_>,
) -> (Outcome, Option<u16>, u64, Vec<String>) {
    let failed = |outcome| (outcome, None, 1, Vec::new());
    let Ok(url) = reqwest::Url::parse(&step.url.render(vars)) else {
        return failed(Outcome::TransportError);
    };
    let mut req = shared.client.request(step.method.clone(), url);
    for (name, value) in &step.headers {
        let Ok(value) = HeaderValue::from_str(&value.render(vars)) else {
            return failed(Outcome::TransportError);
        };
        req = req.header(name, value);
    }
    let body = step
        .body
        .as_ref()
        .map(|b| b.render(vars))
        .unwrap_or_default();
    if let Some(provider) = &step.sign_as {
        // measure_plan refuses a signing plan without a secret.
        if let Some(secret) = &shared.plan.webhook_secret {
            let mut value =
                HeaderValue::from_str(&secret.sign(provider, unix_now(), body.as_bytes()))
                    .expect("a signature is a valid header value");
            value.set_sensitive(true);
            req = req.header(SIGNATURE_HEADER, value);
        }
    } else if let Some(bearer) = &shared.bearer {
        req = req.header(reqwest::header::AUTHORIZATION, bearer.clone());
    }
    if step.body.is_some() {
        req = req.body(body);
    }
    let keep = step.reads_answer();
    let start = Instant::now();
    let elapsed = |start: Instant| u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    let Ok(mut response) = req.send().await else {
        return (Outcome::TransportError, None, elapsed(start), Vec::new());
    };
    let status = response.status().as_u16();
    // Read the whole body: latency is time to the last byte, and a body cut off midway is a
    // failed response even with a 2xx status.
    let mut answer = Vec::new();
    let mut too_big = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if keep && !too_big {
                    if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                        too_big = true;
                        answer = Vec::new();
                    } else {
                        answer.extend_from_slice(&chunk);
                    }
                }
            }
            Ok(None) => break,
            Err(_) => {
                return (
                    Outcome::TransportError,
                    Some(status),
                    elapsed(start),
                    Vec::new(),
                );
            }
        }
    }
    let micros = elapsed(start);
    let expected = match step.expect_status {
        Some(e) => status == e,
        None => (200..300).contains(&status),
    };
    if !expected {
        let outcome = if matches!(status, 401 | 403) {
            Outcome::AuthError
        } else {
            Outcome::HttpError
        };
        return (outcome, Some(status), micros, Vec::new());
    }
    if !keep {
        return (Outcome::Ok, Some(status), micros, Vec::new());
    }
    match read_answer(step, &answer, too_big) {
        Some(values) => (Outcome::Ok, Some(status), micros, values),
        None => (Outcome::BadAnswer, Some(status), micros, Vec::new()),
    }
}

fn lookup<'a>(value: &'a serde_json::Value, path: &[String]) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(value, |v, key| match v {
        serde_json::Value::Object(map) => map.get(key),
        serde_json::Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// A value fit for a later step's path, header or JSON string.
fn field_value(value: &serde_json::Value) -> Option<String> {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    let ok = !text.is_empty()
        && text.len() <= MAX_FIELD_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~:@+-".contains(&b));
    ok.then_some(text)
}

/// The expected JSON checked and the needed fields taken, or `None` for a bad answer.
fn read_answer(step: &Step, answer: &[u8], too_big: bool) -> Option<Vec<String>> {
    if too_big {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(answer).ok()?;
    for (path, want) in &step.expect_json {
        if lookup(&json, path) != Some(want) {
            return None;
        }
    }
    step.extract
        .iter()
        .map(|path| lookup(&json, path).and_then(field_value))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, method: &str, path: &str) -> StepSpec {
        StepSpec {
            method: method.into(),
            ..StepSpec::get(name, path, Some(200))
        }
    }

    fn plan(steps: &[StepSpec]) -> Result<Plan, String> {
        Plan::new(
            "http://127.0.0.1:9/base/",
            steps,
            10,
            2,
            Duration::from_secs(1),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn templates_fill_seq_worker_run_and_earlier_fields() {
        let mut stop = spec("stop", "DELETE", "/s/${start.session_id}/${start.meta.0}");
        stop.headers = vec![("X-Seq".into(), "${seq}-${worker}".into())];
        stop.body = Some(r#"{"run":"${run}","id":"${start.session_id}"}"#.into());
        let p = plan(&[spec("start", "POST", "/u/p-${worker}/s?n=${seq}"), stop]).unwrap();
        let [start, stop] = p.steps() else {
            panic!("two steps")
        };
        assert_eq!(
            start.extract,
            vec![
                vec!["session_id".to_owned()],
                vec!["meta".to_owned(), "0".to_owned()]
            ],
            "a field used twice is extracted once"
        );
        assert!(stop.extract.is_empty());
        let values = vec![vec!["abc-1".to_owned(), "7".to_owned()], Vec::new()];
        let vars = Vars {
            seq: 41,
            worker: 3,
            run: "cafe0001",
            values: &values,
        };
        assert_eq!(
            start.url.render(&vars),
            "http://127.0.0.1:9/base/u/p-3/s?n=41"
        );
        assert_eq!(stop.url.render(&vars), "http://127.0.0.1:9/base/s/abc-1/7");
        assert_eq!(stop.headers[0].1.render(&vars), "41-3");
        assert_eq!(
            stop.body.as_ref().unwrap().render(&vars),
            r#"{"run":"cafe0001","id":"abc-1"}"#
        );
        assert_eq!(p.cycles(), 5, "10 requests of 2 steps");
        assert_eq!(p.run_id.len(), 8);
        assert_ne!(p.run_id, plan(&[spec("a", "GET", "/")]).unwrap().run_id);
    }

    #[test]
    fn bad_steps_are_refused_naming_the_step_and_field() {
        let cases: Vec<(Vec<StepSpec>, &str)> = vec![
            (vec![], "at least one step"),
            (vec![spec("a", "FETCH", "/")], "step a: method"),
            (
                vec![spec("a", "GET", "nope")],
                "step a: path: must start with /",
            ),
            (
                vec![spec("a", "GET", "/${nope}")],
                "step a: path: unknown placeholder `${nope}`",
            ),
            (vec![spec("a", "GET", "/${a.id}")], "not an earlier step"),
            (
                vec![spec("a", "GET", "/${b.id}"), spec("b", "GET", "/")],
                "step a: path: `${b.id}` refers to `b`, which is not an earlier step",
            ),
            (vec![spec("a", "GET", "/${seq")], "without a closing"),
            (
                vec![spec("a", "GET", "/"), spec("b", "GET", "/${a.x..y}")],
                "not a field path",
            ),
            (
                vec![spec("a", "GET", "/"), spec("a", "GET", "/")],
                "step a: name: two steps",
            ),
            (vec![spec("Seq", "GET", "/")], "name: must be"),
            (vec![spec("seq", "GET", "/")], "step \"seq\": name: must be"),
            (vec![spec("a", "GET", "/has space")], "step a: path"),
            (vec![spec("a", "GET", "/#frag")], "plain URL path"),
            (
                vec![StepSpec {
                    headers: vec![("Authorization".into(), "x".into())],
                    ..spec("a", "GET", "/")
                }],
                "step a: headers: authorization is set by the probe",
            ),
            (
                vec![StepSpec {
                    headers: vec![("bad header".into(), "x".into())],
                    ..spec("a", "GET", "/")
                }],
                "step a: headers: \"bad header\" is not a header name",
            ),
            (
                vec![StepSpec {
                    headers: vec![("x-a".into(), "line\nbreak".into())],
                    ..spec("a", "GET", "/")
                }],
                "step a: headers.x-a: not a valid header value",
            ),
            (
                vec![StepSpec {
                    expect_status: Some(99),
                    ..spec("a", "GET", "/")
                }],
                "step a: expect_status: 99",
            ),
            (
                vec![StepSpec {
                    expect_json: vec![("a".into(), serde_json::json!([1]))],
                    ..spec("a", "GET", "/")
                }],
                "step a: expect_json",
            ),
            (
                vec![StepSpec {
                    sign_as: Some("bad,name".into()),
                    ..spec("a", "POST", "/")
                }],
                "step a: signature.provider",
            ),
            (
                vec![StepSpec {
                    body: Some("x".repeat(MAX_BODY_BYTES + 1)),
                    ..spec("a", "POST", "/")
                }],
                "step a: body: longer than",
            ),
        ];
        for (steps, want) in cases {
            let err = plan(&steps).unwrap_err();
            assert!(err.contains(want), "{steps:?}: {err:?} lacks {want:?}");
        }
        let ftp = Plan::new(
            "ftp://x/",
            &[spec("a", "GET", "/")],
            1,
            1,
            Duration::from_secs(1),
        );
        assert!(matches!(ftp, Err(ProbeError::InvalidUrl { .. })));
        let zero = Plan::new(
            "http://x/",
            &[spec("a", "GET", "/")],
            0,
            1,
            Duration::from_secs(1),
        );
        assert!(matches!(zero, Err(ProbeError::InvalidConfig(_))));
    }

    #[test]
    fn answers_give_fields_only_when_they_are_plain_ids() {
        let p = plan(&[
            StepSpec {
                expect_json: vec![("source".into(), serde_json::json!("live"))],
                ..spec("start", "POST", "/")
            },
            spec("stop", "DELETE", "/${start.id}/${start.n}"),
        ])
        .unwrap();
        let start = &p.steps()[0];
        let read = |body: &str| read_answer(start, body.as_bytes(), false);
        assert_eq!(
            read(r#"{"source":"live","id":"018f-ab","n":3}"#),
            Some(vec!["018f-ab".to_owned(), "3".to_owned()])
        );
        assert_eq!(
            read(r#"{"source":"snapshot","id":"x","n":3}"#),
            None,
            "expect_json"
        );
        assert_eq!(read(r#"{"source":"live","n":3}"#), None, "missing field");
        assert_eq!(
            read(r#"{"source":"live","id":"a/b","n":3}"#),
            None,
            "a slash"
        );
        assert_eq!(
            read(r#"{"source":"live","id":{"x":1},"n":3}"#),
            None,
            "an object"
        );
        assert_eq!(read("not json"), None);
        assert_eq!(read_answer(start, b"{}", true), None, "too big");
    }

    #[test]
    fn troubles_name_the_step_the_statuses_and_the_cause() {
        let step = |signed: bool, statuses: &[(u16, u32)], auth: u32| StepMeasurement {
            name: "decide".into(),
            method: "POST".into(),
            path: "/calls/v1/decisions".into(),
            expect_status: Some(200),
            signed,
            requests: 10,
            errors: 10,
            http_errors: 10,
            auth_errors: auth,
            bad_answers: 0,
            transport_errors: 0,
            skipped: 0,
            statuses: statuses.iter().copied().collect(),
            p50_ms: 1.0,
            p99_ms: 2.0,
            max_ms: 3.0,
        };
        let t = step(true, &[(401, 10)], 10).trouble().unwrap();
        assert!(
            t.starts_with("step decide (POST /calls/v1/decisions): 10 of 10 failed"),
            "{t}"
        );
        assert!(t.contains("answered 401 ×10 (expected 200)"), "{t}");
        assert!(t.contains("401/403 to a signed request"), "{t}");
        let t = step(false, &[(403, 10)], 10).trouble().unwrap();
        assert!(t.contains("10 answered 401/403: token missing"), "{t}");
        let t = step(false, &[(201, 10)], 0).trouble().unwrap();
        assert!(t.contains("answered 201 ×10 (expected 200)"), "{t}");
        let mut ok = step(false, &[(200, 10)], 0);
        ok.errors = 0;
        ok.http_errors = 0;
        assert_eq!(ok.trouble(), None);
        ok.skipped = 4;
        assert!(ok.trouble().unwrap().contains("skipped 4 times"));
    }
}
