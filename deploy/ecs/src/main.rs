//! `meridian-deploy ecs`: one service's blue-green release in one ECS country, the command
//! Buildkite's production step runs for the countries on ECS (buildkite/deploy-prod.sh), where
//! the operator's Release runs for those on EKS.
//!
//! Exit status: 0 promoted (or already active), 1 rolled back (a failed analysis or
//! verification: production is on the old colour), 2 an error (bad input, an AWS call or a
//! deadline); the last line on stdout is a JSON summary either way.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use deploy_ecs::{Clients, EcsTarget, Outcome, Timing};

#[derive(Parser)]
#[command(
    name = "meridian-deploy",
    about = "Deploys a Release where the operator does not run"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Blue-green of one service on ECS Fargate, judged by the operator's probe.
    Ecs {
        /// The Release manifest (`buildkite/lib.sh render_release`), YAML or JSON.
        #[arg(long)]
        release: PathBuf,
        /// The service's ECS target as Terraform publishes it (terraform/modules/ecs output
        /// `blue_green`): cluster, services and target groups by colour, listener rules,
        /// preview URL.
        #[arg(long)]
        target: PathBuf,
        /// File with a bearer token for the probed route (the SLO gate's probe identity).
        #[arg(long, env = "PROBE_TOKEN_FILE")]
        probe_token_file: Option<PathBuf>,
        /// Seconds between two reads of the preview target group's health.
        #[arg(long, default_value_t = 5)]
        health_poll_seconds: u64,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(Cli::parse())) {
        Ok(outcome) => {
            let rolled_back = matches!(outcome, Outcome::RolledBack { .. });
            println!("{}", summary(&outcome));
            if rolled_back {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            println!(
                "{}",
                serde_json::json!({ "outcome": "error", "error": format!("{e:#}") })
            );
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let Command::Ecs {
        release,
        target,
        probe_token_file,
        health_poll_seconds,
    } = cli.command;
    let spec = deploy_ecs::release_spec_from_manifest(
        &std::fs::read_to_string(&release)
            .with_context(|| format!("reading {}", release.display()))?,
    )?;
    let target: EcsTarget = serde_json::from_str(
        &std::fs::read_to_string(&target)
            .with_context(|| format!("reading {}", target.display()))?,
    )
    .with_context(|| format!("{} is not an ECS target", target.display()))?;
    let token = probe_token_file
        .map(|p| probe::BearerToken::from_file(&p))
        .transpose()
        .context("the probe token file")?;
    let config = deploy_ecs::sdk_config_loader().load().await;
    let clients = Clients::new(&config);
    let timing = Timing {
        health_poll: Duration::from_secs(health_poll_seconds.max(1)),
    };
    Ok(deploy_ecs::deploy(&clients, &target, &spec, token, timing).await?)
}

fn summary(outcome: &Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Promoted {
            active,
            task_definition,
        } => serde_json::json!({
            "outcome": "promoted", "active": active.as_str(), "taskDefinition": task_definition,
        }),
        Outcome::AlreadyActive { active, finished } => serde_json::json!({
            "outcome": "already-active", "active": active.as_str(), "finishedInterruptedCycle": finished,
        }),
        Outcome::RolledBack {
            active,
            reason,
            scaled_down,
        } => serde_json::json!({
            "outcome": "rolled-back", "active": active.as_str(), "reason": reason,
            "scaledDown": scaled_down,
        }),
    }
}
