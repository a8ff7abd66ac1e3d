//! `slo-gate`: the Buildkite staging latency gate. Runs the same probe the operator's Release
//! analysis runs, prints one JSON line, and exits 0 on pass, 1 on breach, 2 on a usage error, so
//! `buildkite/slo-gate.sh` can tell "the service is too slow" from "the gate is misconfigured".

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use probe::{ProbeConfig, Thresholds};

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
    let config = ProbeConfig {
        url: args.url.clone(),
        requests: args.requests,
        concurrency: args.concurrency,
        timeout: Duration::from_millis(args.timeout_ms),
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
