//! `operator`: run the controllers against the cluster from the environment (in-cluster service
//! account or KUBECONFIG), or print the CRD or RBAC YAML.

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
    /// Print the Release controller's RBAC for the namespaces it manages: a Role and RoleBinding
    /// in each (what deploy/rbac.yaml holds).
    Rbac {
        /// Namespaces the operator manages (comma-separated): WATCH_NAMESPACES of its Deployment.
        #[arg(long, value_delimiter = ',', required = true)]
        namespaces: Vec<String>,
        /// Secret names the operator may read in those namespaces (the probe's bearer token,
        /// spec.analysis.probe.bearerTokenSecret); repeat for several, pass "" for none.
        #[arg(long, default_value = operator::rbac::DEFAULT_PROBE_TOKEN_SECRET)]
        probe_token_secret: Vec<String>,
    },
    /// Run the controllers until SIGTERM: `release` in every country cluster, `rollout` in the
    /// management cluster (which holds the kubeconfig Secrets).
    Run {
        #[arg(long, value_delimiter = ',', default_value = "release")]
        controllers: Vec<Controller>,
        /// Namespaces whose Releases the release controller manages (comma-separated); it
        /// watches nothing else, and its RBAC covers nothing else (`operator rbac`).
        #[arg(long, env = "WATCH_NAMESPACES", value_delimiter = ',')]
        namespaces: Vec<String>,
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
        Command::Rbac {
            namespaces,
            probe_token_secret,
        } => {
            let namespaces =
                operator::rbac::parse_namespaces(&namespaces).map_err(anyhow::Error::msg)?;
            let secrets = operator::rbac::parse_secret_names(&probe_token_secret)
                .map_err(anyhow::Error::msg)?;
            print!("{}", operator::rbac::rbac_yaml(&namespaces, &secrets));
        }
        Command::Run {
            controllers,
            namespaces,
        } => {
            // Checked before anything starts: without namespaces the release controller would
            // have nothing it may watch.
            let namespaces = if controllers.contains(&Controller::Release) {
                operator::rbac::parse_namespaces(&namespaces).map_err(anyhow::Error::msg)?
            } else {
                Vec::new()
            };
            init_tracing();
            // One TLS provider for kube's clients and the analysis probe.
            probe::install_tls_provider();
            let client = kube::Client::try_default().await?;
            // Before reporting ready: a missing CRD or Role is a clear start-up error, not a
            // watcher retrying forever behind a ready probe.
            if controllers.contains(&Controller::Release) {
                operator::preflight::releases(&client, &namespaces).await?;
            }
            if controllers.contains(&Controller::Rollout) {
                operator::preflight::rollouts(&client).await?;
            }
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
            tracing::info!(?controllers, ?namespaces, port, "controllers starting");
            let release = controllers.contains(&Controller::Release).then(|| {
                operator::release::reconcile::run(client.clone(), &namespaces, Arc::clone(&metrics))
            });
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

/// `LOG_FORMAT=json|pretty` and `RUST_LOG`, like the services (docs/architecture.md).
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
