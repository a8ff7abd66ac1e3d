//! `operator`: run the controllers against the cluster from the environment (in-cluster service
//! account or KUBECONFIG), or print the CRD or RBAC YAML.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use clap::{Parser, Subcommand};
use operator::metrics::Controller;

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
            // The services' log format (kit::telemetry): one JSON object per line unless
            // LOG_FORMAT=pretty; RUST_LOG filters (deploy/deployment.yaml: info,kube=warn).
            let log_format = kit::config::var_or("LOG_FORMAT", kit::config::LogFormat::Json)?;
            kit::telemetry::init(log_format);
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
            let metrics = operator::metrics::install();
            operator::metrics::register(&controllers);
            tokio::spawn(operator::serve::upkeep(metrics.clone()));
            let ready = operator::serve::Ready::default();
            let port: u16 = std::env::var("PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(8080);
            let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
            let app = operator::serve::router(Arc::clone(&ready), metrics.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "health/metrics server stopped");
                }
            });
            tracing::info!(?controllers, ?namespaces, port, "controllers starting");
            let release = controllers
                .contains(&Controller::Release)
                .then(|| operator::release::reconcile::run(client.clone(), &namespaces));
            // The Rollout controller signs EKS tokens for the other countries' clusters with the
            // pod's IAM role (IRSA: the default chain's web identity provider, which refreshes
            // the session itself); nothing is asked of AWS until a kubeconfig needs a token.
            let eks = if controllers.contains(&Controller::Rollout) {
                let aws = operator::release::snapshot::sdk_config_loader()
                    .load()
                    .await;
                aws.credentials_provider().map(|credentials| {
                    operator::rollout::clusters::EksAuth::new(
                        credentials,
                        aws.region().map(ToString::to_string),
                    )
                })
            } else {
                None
            };
            let rollout = controllers
                .contains(&Controller::Rollout)
                .then(|| operator::rollout::clusters::run(client.clone(), eks));
            ready.store(true, Ordering::Relaxed);
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
