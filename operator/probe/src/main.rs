//! `slo-gate`: the Buildkite staging latency gate. Runs the same probe the operator's Release
//! analysis runs, prints one JSON line, and exits 0 on pass, 1 on breach, 2 on a usage error, so
//! `buildkite/slo-gate.sh` can tell "the service is too slow" from "the gate is misconfigured".
//!
//! Routes behind identity get a bearer token from a file (`--bearer-token-file`) or from the
//! environment (`PROBE_BEARER_TOKEN`), never from a command-line value, which any local user
//! could read in the process list. The token is never printed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use probe::{BearerToken, ProbeConfig, Thresholds};

/// Environment variable holding a bearer token (alternative to `--bearer-token-file`).
const TOKEN_ENV: &str = "PROBE_BEARER_TOKEN";

/// Probe URL with N GET requests and judge p99 latency and error rate against thresholds.
#[derive(Debug, Parser)]
#[command(name = "slo-gate", version)]
struct Args {
    /// URL to GET (http or https).
    #[arg(long)]
    url: String,
    /// Number of requests to send.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    requests: u32,
    /// Highest acceptable p99 latency in milliseconds.
    #[arg(long)]
    p99_ms: f64,
    /// Highest acceptable error rate (0.0-1.0): non-2xx responses, transport errors and timeouts.
    #[arg(long)]
    max_error_rate: f64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// Per-request timeout in milliseconds (a timed-out request is an error).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// File holding a bearer token sent as `Authorization: Bearer` on every request (keep it
    /// mode 0600). Alternatively set PROBE_BEARER_TOKEN; setting both is an error.
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

fn main() -> ExitCode {
    // clap exits with 2 on usage errors and 0 on --help/--version.
    let args = Args::parse();
    if !(args.p99_ms.is_finite() && args.p99_ms > 0.0) {
        return usage_error("--p99-ms must be a positive number");
    }
    if !(0.0..=1.0).contains(&args.max_error_rate) {
        return usage_error("--max-error-rate must be between 0 and 1");
    }
    let bearer_token = match bearer_token(&args) {
        Ok(token) => token,
        Err(message) => return usage_error(&message),
    };
    let sent_token = bearer_token.is_some();
    let config = ProbeConfig {
        url: args.url.clone(),
        requests: args.requests,
        concurrency: args.concurrency,
        timeout: Duration::from_millis(args.timeout_ms),
        bearer_token,
    };
    let thresholds = Thresholds {
        p99_ms: args.p99_ms,
        max_error_rate: args.max_error_rate,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return usage_error(&format!("starting the runtime: {e}")),
    };
    match runtime.block_on(probe::run(&config, thresholds)) {
        Ok(verdict) => {
            let mut line = serde_json::to_value(&verdict).unwrap_or_default();
            line["url"] = serde_json::Value::String(args.url);
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
