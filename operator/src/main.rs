//! `operator`: run the controllers against the cluster from the environment (in-cluster service
//! account or KUBECONFIG), or print the CRD YAML.

use std::sync::Arc;

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
    /// Run the controllers until SIGTERM: `release` in every country cluster, `rollout` in the
    /// management cluster (which holds the kubeconfig Secrets).
    Run {
        #[arg(long, value_delimiter = ',', default_value = "release")]
        controllers: Vec<Controller>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Controller {
    Release,
    Rollout,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", operator::crd::crds_yaml()),
        Command::Run { controllers } => {
            init_tracing();
            // One TLS provider for kube's clients and the analysis probe.
            probe::install_tls_provider();
            let client = kube::Client::try_default().await?;
            let metrics = Arc::new(operator::serve::Metrics::default());
            let port: u16 = std::env::var("PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(8080);
            let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
            let app = operator::serve::router(Arc::clone(&metrics));
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "health/metrics server stopped");
                }
            });
            tracing::info!(?controllers, port, "controllers starting");
            let release = controllers
                .contains(&Controller::Release)
                .then(|| operator::release::reconcile::run(client.clone(), Arc::clone(&metrics)));
            let rollout = controllers
                .contains(&Controller::Rollout)
                .then(|| operator::rollout::clusters::run(client.clone(), Arc::clone(&metrics)));
            metrics
                .ready
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tokio::join!(
                async {
                    if let Some(f) = release {
                        f.await;
                    }
                },
                async {
                    if let Some(f) = rollout {
                        f.await;
                    }
                }
            );
            tracing::info!("controllers stopped");
        }
    }
    Ok(())
}

/// `LOG_FORMAT=json|pretty` and `RUST_LOG`, like the services (DESIGN.md §2).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::env::var("LOG_FORMAT").as_deref() == Ok("pretty") {
        builder.init();
    } else {
        builder.json().init();
    }
}
