//! `operator`: run the controllers, or print the CRD YAML.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "operator",
    version,
    about = "meridian Release/Rollout operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the CRD YAML of Release and Rollout (what deploy/crds.yaml holds).
    Crd,
}

fn main() {
    match Cli::parse().command {
        Command::Crd => print!("{}", operator::crd::crds_yaml()),
    }
}
