//! `slo-gate`: the Buildkite staging latency gate, and the one reader of `buildkite/slo.yaml`.
//! Runs the same probe the operator's Release analysis runs, prints one JSON line, and exits 0
//! on pass, 1 on breach, 2 on a usage error, so `buildkite/slo-gate.sh` can tell "the service is
//! too slow" from "the gate is misconfigured".
//!
//! ```text
//! slo-gate --slo-file F --service S --base-url URL [--bearer-token-file P] [--webhook-secret-file P]
//! slo-gate --slo-file F --list-services          # service names, one per line
//! slo-gate --slo-file F --print-analysis S       # the Release's spec.analysis.probe fields
//! slo-gate --url URL --requests N --p99-ms X --max-error-rate Y [--concurrency N] [--timeout-ms N]
//!          [--bearer-token-file P]               # one GET route, thresholds on the command line
//! ```
//!
//! Routes behind identity get a bearer token from a file (`--bearer-token-file`) or from the
//! environment (`PROBE_BEARER_TOKEN`), never from a command-line value, which any local user
//! could read in the process list; the calls webhook's signing secret only from a file. Neither
//! is ever printed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use probe::signing::WebhookSecret;
use probe::slo::SloFile;
use probe::{BearerToken, ProbeConfig, Thresholds};

/// Environment variable holding a bearer token (alternative to `--bearer-token-file`).
const TOKEN_ENV: &str = "PROBE_BEARER_TOKEN";

/// Probe a service's hot-route cycle from an SLO file (or one URL with N GETs) and judge p99
/// latency and error rate against its thresholds.
#[derive(Debug, Parser)]
#[command(name = "slo-gate", version)]
struct Args {
    /// The SLO file (buildkite/slo.yaml): thresholds, sizes and each service's cycle.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["url", "requests", "p99_ms", "max_error_rate", "concurrency", "timeout_ms"])]
    slo_file: Option<PathBuf>,
    /// With --slo-file: the service to gate.
    #[arg(long, requires_all = ["slo_file", "base_url"], conflicts_with_all = ["list_services", "print_analysis"])]
    service: Option<String>,
    /// With --service: where the services answer (http or https), e.g. http://127.0.0.1:8080;
    /// each step's path is appended.
    #[arg(long, value_name = "URL", requires = "service")]
    base_url: Option<String>,
    /// With --slo-file: print the service names, one per line, and exit.
    #[arg(long, requires = "slo_file", conflicts_with = "print_analysis")]
    list_services: bool,
    /// With --slo-file: print SERVICE's Release `spec.analysis.probe` fields as YAML lines
    /// (path, requests, concurrency, timeoutMs, p99Ms, maxErrorRate) and exit.
    #[arg(long, value_name = "SERVICE", requires = "slo_file")]
    print_analysis: Option<String>,
    /// File holding the calls webhook's signing secret for the cycle's signed steps: the value
    /// after `<provider>:` in the service's CALLS_WEBHOOK_SECRETS (keep it mode 0600).
    #[arg(long, value_name = "PATH", requires = "service")]
    webhook_secret_file: Option<PathBuf>,

    /// Without --slo-file: the URL to GET (http or https).
    #[arg(long)]
    url: Option<String>,
    /// With --url: number of requests to send.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    requests: Option<u32>,
    /// With --url: highest acceptable p99 latency in milliseconds.
    #[arg(long)]
    p99_ms: Option<f64>,
    /// With --url: highest acceptable error rate (0.0-1.0): non-2xx responses, transport errors
    /// and timeouts.
    #[arg(long)]
    max_error_rate: Option<f64>,
    /// With --url: requests in flight at once (default 8).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: Option<u32>,
    /// With --url: per-request timeout in milliseconds (default 5000; a timed-out request is an
    /// error).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: Option<u64>,

    /// File holding a bearer token sent as `Authorization: Bearer` on every request that is not
    /// signed (keep it mode 0600). Alternatively set PROBE_BEARER_TOKEN; setting both is an
    /// error.
    #[arg(long, value_name = "PATH")]
    bearer_token_file: Option<PathBuf>,
}

/// The token from `--bearer-token-file` or `PROBE_BEARER_TOKEN`. Errors name the source, never
/// the content.
fn bearer_token(args: &Args) -> Result<Option<BearerToken>, String> {
    let from_env = std::env::var_os(TOKEN_ENV);
    match (&args.bearer_token_file, from_env) {
        (Some(_), Some(_)) => Err(format!(
            "--bearer-token-file and {TOKEN_ENV} are both set; use one"
        )),
        (Some(path), None) => BearerToken::from_file(path)
            .map(Some)
            .map_err(|e| format!("--bearer-token-file {}: {e}", path.display())),
        (None, Some(value)) => {
            let value = value
                .into_string()
                .map_err(|_| format!("{TOKEN_ENV}: not valid UTF-8"))?;
            BearerToken::new(&value)
                .map(Some)
                .map_err(|e| format!("{TOKEN_ENV}: {e}"))
        }
        (None, None) => Ok(None),
    }
}

const EXIT_BREACH: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn usage_error(message: &str) -> ExitCode {
    eprintln!("slo-gate: {message}");
    ExitCode::from(EXIT_USAGE)
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| usage_error(&format!("starting the runtime: {e}")))
}

fn main() -> ExitCode {
    // clap exits with 2 on usage errors and 0 on --help/--version.
    let args = Args::parse();
    match &args.slo_file {
        Some(file) => from_slo_file(&args, file),
        None => single_url(&args),
    }
}

/// `--slo-file`: list, print the analysis, or gate one service.
fn from_slo_file(args: &Args, file: &Path) -> ExitCode {
    let slo = match SloFile::load(file) {
        Ok(slo) => slo,
        Err(e) => return usage_error(&e.to_string()),
    };
    if args.list_services {
        for name in slo.names() {
            println!("{name}");
        }
        return ExitCode::SUCCESS;
    }
    let (Some(name), mode) = (
        args.print_analysis.as_ref().or(args.service.as_ref()),
        args.print_analysis.is_some(),
    ) else {
        return usage_error(
            "with --slo-file, give --service S --base-url URL, --list-services or --print-analysis S",
        );
    };
    let Some(service) = slo.service(name) else {
        return usage_error(&format!(
            "service {name} is not in {} (it lists: {})",
            file.display(),
            slo.names().join(", ")
        ));
    };
    if mode {
        print!("{}", service.release_analysis());
        return ExitCode::SUCCESS;
    }
    let base_url = args.base_url.as_deref().unwrap_or_default();
    let mut plan = match service.plan(base_url) {
        Ok(plan) => plan,
        Err(e) => return usage_error(&format!("service {name}: {e}")),
    };
    plan.bearer_token = match bearer_token(args) {
        Ok(token) => token,
        Err(message) => return usage_error(&message),
    };
    plan.webhook_secret = match (&args.webhook_secret_file, service.signs()) {
        (Some(path), _) => match WebhookSecret::from_file(path) {
            Ok(secret) => Some(secret),
            Err(e) => {
                return usage_error(&format!("--webhook-secret-file {}: {e}", path.display()));
            }
        },
        (None, true) => {
            return usage_error(&format!(
                "service {name} signs its requests like the calls webhook's provider: give \
                 --webhook-secret-file (buildkite/slo-gate.sh: SLO_PROBE_WEBHOOK_SECRET_FILE or \
                 the secret SLO_PROBE_WEBHOOK_SECRET)"
            ));
        }
        (None, false) => None,
    };
    // Signed steps never carry the token.
    let sent_token = plan.bearer_token.is_some() && plan.steps().iter().any(|s| !s.signs());
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(probe::plan::run_plan(&plan, service.thresholds)) {
        Ok(verdict) => {
            let mut line = serde_json::to_value(&verdict).unwrap_or_default();
            line["service"] = serde_json::Value::String(name.clone());
            line["base_url"] = serde_json::Value::String(base_url.to_owned());
            line["sent_bearer_token"] = serde_json::Value::Bool(sent_token);
            println!("{line}");
            if verdict.verdict.passed {
                ExitCode::SUCCESS
            } else {
                eprintln!("slo-gate: {name}: {}", verdict.summary());
                ExitCode::from(EXIT_BREACH)
            }
        }
        Err(e) => usage_error(&format!("service {name}: {e}")),
    }
}

/// `--url`: N GETs of one URL, thresholds from the command line.
fn single_url(args: &Args) -> ExitCode {
    let (Some(url), Some(requests), Some(p99_ms), Some(max_error_rate)) = (
        args.url.clone(),
        args.requests,
        args.p99_ms,
        args.max_error_rate,
    ) else {
        return usage_error(
            "give --slo-file F with --service/--list-services/--print-analysis, or --url with \
             --requests, --p99-ms and --max-error-rate",
        );
    };
    if !(p99_ms.is_finite() && p99_ms > 0.0) {
        return usage_error("--p99-ms must be a positive number");
    }
    if !(0.0..=1.0).contains(&max_error_rate) {
        return usage_error("--max-error-rate must be between 0 and 1");
    }
    let bearer_token = match bearer_token(args) {
        Ok(token) => token,
        Err(message) => return usage_error(&message),
    };
    let sent_token = bearer_token.is_some();
    let config = ProbeConfig {
        url: url.clone(),
        requests,
        concurrency: args.concurrency.unwrap_or(8),
        timeout: Duration::from_millis(args.timeout_ms.unwrap_or(5000)),
        bearer_token,
    };
    let thresholds = Thresholds {
        p99_ms,
        max_error_rate,
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(probe::run(&config, thresholds)) {
        Ok(verdict) => {
            let mut line = serde_json::to_value(&verdict).unwrap_or_default();
            line["url"] = serde_json::Value::String(url);
            line["sent_bearer_token"] = serde_json::Value::Bool(sent_token);
            println!("{line}");
            if verdict.passed {
                ExitCode::SUCCESS
            } else {
                eprintln!("slo-gate: {}", verdict.summary());
                ExitCode::from(EXIT_BREACH)
            }
        }
        // The probe could not run at all (bad URL, client setup): a gate misconfiguration.
        Err(e) => usage_error(&e.to_string()),
    }
}
