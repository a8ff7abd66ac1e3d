//! The thin I/O layer of Rollouts: reach each country's cluster through a kubeconfig Secret in
//! the management cluster, read its Release, set its image; and the Rollout controller that runs
//! [`plan`] over them.
//!
//! Tested here: kubeconfig parsing into a client config, and the two target-cluster calls
//! against a mocked API server. Not tested (no cluster runs here): the Rollout controller loop
//! end to end across real clusters — see operator/README.md.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::controller::{Action as ControllerAction, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use super::eks_token;
use super::plan::{RolloutAction, TargetObs, plan};
use crate::crd::{Release, Rollout, RolloutPhase};
use crate::metrics::{self, Controller as Ctl, ErrorKind};
use crate::release::reconcile::{MANAGER, event_note};

/// Key of the kubeconfig inside each target Secret.
pub const KUBECONFIG_KEY: &str = "kubeconfig";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("secret {0} has no `kubeconfig` key")]
    NoKubeconfig(String),
    #[error("kubeconfig in secret {secret}: {reason}")]
    BadKubeconfig { secret: String, reason: String },
}

impl Error {
    /// The `kind` label this error is counted under.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Kube(_) => ErrorKind::KubeApi,
            Self::NoKubeconfig(_) | Self::BadKubeconfig { .. } => ErrorKind::Kubeconfig,
        }
    }
}

/// Whether a Rollout in `phase` has halted: stopped for good by a failed, unobservable or late
/// Release, whether or not it put previous images back. `Superseded` is not halted: nothing
/// failed, a newer build took over (and its own Rollout reports on it).
pub fn halted(phase: RolloutPhase) -> bool {
    matches!(
        phase,
        RolloutPhase::Halted | RolloutPhase::RollingBack | RolloutPhase::RolledBack
    )
}

/// How the operator signs in to the other countries' EKS clusters: with its own IAM role (IRSA),
/// no credentials in any Secret. A kubeconfig whose current user is what `aws eks
/// update-kubeconfig` writes (`exec: aws eks get-token --cluster-name C [--region R]`) gets, in
/// place of running that binary (the image has none), a token the operator signs itself
/// ([`eks_token`]) with the role's credentials, fresh for every client it builds.
#[derive(Clone, Debug)]
pub struct EksAuth {
    /// The pod's role credentials (IRSA's web identity provider, refreshing them itself).
    pub credentials: aws_credential_types::provider::SharedCredentialsProvider,
    /// The operator's own region: the STS region when a kubeconfig names none.
    pub region: Option<String>,
}

impl EksAuth {
    /// From the pod's credentials provider (IRSA's web identity provider from the default AWS
    /// chain, which refreshes the role session itself) and region.
    pub fn new(
        credentials: aws_credential_types::provider::SharedCredentialsProvider,
        region: Option<String>,
    ) -> Self {
        Self {
            credentials,
            region,
        }
    }
}

/// `aws eks get-token` in an exec user: its cluster and region arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EksExec {
    pub cluster: String,
    pub region: Option<String>,
}

/// The value of `--flag VALUE` or `--flag=VALUE` among `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == flag {
            return it.next().map(String::as_str);
        }
        if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            return Some(v);
        }
    }
    None
}

/// Recognises `command: aws` (any path) with `eks get-token --cluster-name|--cluster-id C`.
pub fn eks_exec(exec: &serde_json::Value) -> Option<EksExec> {
    let command = exec.get("command")?.as_str()?;
    if command.rsplit('/').next() != Some("aws") {
        return None;
    }
    let args: Vec<String> = exec
        .get("args")?
        .as_array()?
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    let eks = args.iter().position(|a| a == "eks")?;
    if args.get(eks + 1).map(String::as_str) != Some("get-token") {
        return None;
    }
    let cluster = flag(&args, "--cluster-name").or_else(|| flag(&args, "--cluster-id"))?;
    Some(EksExec {
        cluster: cluster.to_owned(),
        region: flag(&args, "--region").map(str::to_owned),
    })
}

/// Builds a client config from kubeconfig YAML (its current context). Token and
/// client-certificate users are used as they are; an `aws eks get-token` exec user is signed in
/// with the operator's IAM role (`eks`; without it such a kubeconfig is refused). Other exec
/// plugins are refused: their binary is not in the operator image.
pub async fn config_from_kubeconfig(
    secret: &str,
    yaml: &str,
    eks: Option<&EksAuth>,
) -> Result<kube::Config, Error> {
    let bad = |reason: String| Error::BadKubeconfig {
        secret: secret.to_owned(),
        reason,
    };
    // Parsed by kube (its YAML reading of names like `no`), then edited as JSON.
    let parsed = Kubeconfig::from_yaml(yaml).map_err(|e| bad(e.to_string()))?;
    let mut doc = serde_json::to_value(&parsed).map_err(|e| bad(e.to_string()))?;
    let user = current_user(&doc);
    if let Some(user) = user
        && let Some(entry) = doc
            .get_mut("users")
            .and_then(serde_json::Value::as_array_mut)
            .and_then(|users| users.iter_mut().find(|u| u["name"] == user.as_str()))
        && let Some(exec) = entry.pointer("/user/exec").cloned()
    {
        let Some(call) = eks_exec(&exec) else {
            return Err(bad(
                "its user runs an exec plugin other than `aws eks get-token`, whose binary the operator image does not have".into(),
            ));
        };
        let Some(eks) = eks else {
            return Err(bad(
                "its user is `aws eks get-token`, but the operator has no AWS identity (IRSA) to sign a token with".into(),
            ));
        };
        let region = call
            .region
            .clone()
            .or_else(|| eks.region.clone())
            .ok_or_else(|| bad("no --region in its exec args and no AWS region set".into()))?;
        let credentials = eks_token::role_credentials(&eks.credentials)
            .await
            .map_err(|e| bad(e.to_string()))?;
        let token = eks_token::token(
            &call.cluster,
            &region,
            &credentials,
            std::time::SystemTime::now(),
        )
        .map_err(|e| bad(e.to_string()))?;
        entry["user"] = json!({ "token": token });
    }
    let kubeconfig: Kubeconfig = serde_json::from_value(doc).map_err(|e| bad(e.to_string()))?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| bad(e.to_string()))
}

/// The user name of the kubeconfig's current context.
fn current_user(doc: &serde_json::Value) -> Option<String> {
    let current = doc.get("current-context")?.as_str()?;
    doc.get("contexts")?
        .as_array()?
        .iter()
        .find(|c| c["name"] == current)?
        .pointer("/context/user")?
        .as_str()
        .map(str::to_owned)
}

/// A client for the cluster behind `secret` (in `namespace` of the management cluster).
pub async fn client_for(
    mgmt: &Client,
    namespace: &str,
    secret: &str,
    eks: Option<&EksAuth>,
) -> Result<Client, Error> {
    let secrets: Api<Secret> = Api::namespaced(mgmt.clone(), namespace);
    let s = secrets.get(secret).await?;
    let bytes = s
        .data
        .and_then(|d| d.get(KUBECONFIG_KEY).cloned())
        .ok_or_else(|| Error::NoKubeconfig(secret.to_owned()))?;
    let yaml = String::from_utf8(bytes.0).map_err(|e| Error::BadKubeconfig {
        secret: secret.to_owned(),
        reason: e.to_string(),
    })?;
    let config = config_from_kubeconfig(secret, &yaml, eks).await?;
    Ok(Client::try_from(config)?)
}

/// Reads the target's Release (None when it does not exist).
pub async fn observe_release(
    target: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<TargetObs>, Error> {
    let api: Api<Release> = Api::namespaced(target.clone(), namespace);
    Ok(api.get_opt(name).await?.map(|r| {
        let observed = r.status.as_ref().and_then(|s| s.observed_generation);
        TargetObs {
            image: r.spec.image.clone(),
            phase: r.status.as_ref().map(|s| s.phase),
            active_image: r.status.as_ref().and_then(|s| s.active_image.clone()),
            verified: r.status.as_ref().is_some_and(|s| s.verified),
            // Until the target's operator has seen the spec, its status is the previous cycle's.
            current: match (r.metadata.generation, observed) {
                (Some(generation), Some(observed)) => observed >= generation,
                (Some(_), None) => false,
                (None, _) => true,
            },
        }
    }))
}

/// Sets the target Release's image: from there the target's own operator runs the blue-green
/// cycle (migration, analysis, rollback) and the Rollout only watches its phase.
pub async fn set_image(
    target: &Client,
    namespace: &str,
    name: &str,
    image: &str,
) -> Result<(), Error> {
    let api: Api<Release> = Api::namespaced(target.clone(), namespace);
    let patch = json!({ "spec": { "image": image } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

struct Ctx {
    client: Client,
    recorder: Recorder,
    eks: Option<EksAuth>,
}

/// Reconciles one Rollout, counted and timed in [`crate::metrics`].
async fn reconcile(rollout: Arc<Rollout>, ctx: Arc<Ctx>) -> Result<ControllerAction, Error> {
    let start = Instant::now();
    let result = reconcile_rollout(rollout, ctx).await;
    let outcome = result.as_ref().map(|_| ()).map_err(Error::kind);
    metrics::reconciled(Ctl::Rollout, outcome, start.elapsed());
    result
}

async fn reconcile_rollout(
    rollout: Arc<Rollout>,
    ctx: Arc<Ctx>,
) -> Result<ControllerAction, Error> {
    let spec = &rollout.spec;
    let name = rollout.name_any();
    // What the Rollout's status says now, even if this reconcile fails before writing.
    if let Some(status) = &rollout.status {
        metrics::rollout_halted(&spec.namespace, &name, halted(status.phase));
        metrics::rollout_phase(&spec.namespace, &name, status.phase);
    }
    let mut clients = BTreeMap::new();
    let mut observed = BTreeMap::new();
    for target in spec.waves.iter().flat_map(|w| &w.targets) {
        // An unreachable cluster is "not observed": it blocks progress, it does not fail.
        let client = match client_for(
            &ctx.client,
            &spec.secret_namespace,
            &target.kubeconfig_secret,
            ctx.eks.as_ref(),
        )
        .await
        {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(target = %target.name, %error, "target cluster unreachable");
                continue;
            }
        };
        if let Ok(Some(obs)) = observe_release(&client, &spec.namespace, &spec.release).await {
            observed.insert(target.name.clone(), obs);
        }
        clients.insert(target.name.clone(), client);
    }
    let status = rollout.status.clone().unwrap_or_default();
    let mut decision = plan(spec, &status, &observed, Timestamp::now());
    decision.status.observed_generation = rollout.metadata.generation;
    for action in &decision.actions {
        match action {
            RolloutAction::SetImage { target, image } => {
                if let Some(client) = clients.get(target) {
                    set_image(client, &spec.namespace, &spec.release, image).await?;
                }
            }
            RolloutAction::EmitEvent {
                warning,
                reason,
                note,
            } => {
                let event = Event {
                    type_: if *warning {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    },
                    reason: reason.clone(),
                    note: Some(event_note(note)),
                    action: "Reconcile".into(),
                    secondary: None,
                };
                ctx.recorder
                    .publish(&event, &rollout.object_ref(&()))
                    .await?;
            }
        }
    }
    if rollout.status.as_ref() != Some(&decision.status) {
        let api: Api<Rollout> = Api::all(ctx.client.clone());
        let patch = json!({
            "apiVersion": "meridian.dev/v1alpha1",
            "kind": "Rollout",
            "status": decision.status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        metrics::rollout_halted(&spec.namespace, &name, halted(decision.status.phase));
        metrics::rollout_phase(&spec.namespace, &name, decision.status.phase);
    }
    Ok(ControllerAction::requeue(
        decision.requeue_after.unwrap_or(Duration::from_mins(5)),
    ))
}

/// Runs the Rollout controller (management cluster) until SIGTERM. [`reconcile`] counts every
/// reconcile; a failing watch is counted here (kind `watch`). `eks`: the operator's AWS identity
/// for `aws eks get-token` kubeconfigs ([`EksAuth`]).
pub async fn run(client: Client, eks: Option<EksAuth>) {
    let ctx = Arc::new(Ctx {
        eks,
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
        client: client.clone(),
    });
    Controller::new(Api::<Rollout>::all(client), watcher::Config::default())
        .shutdown_on_signal()
        .run(
            reconcile,
            |_, error, _| {
                tracing::warn!(%error, "rollout reconcile failed");
                ControllerAction::requeue(Duration::from_secs(30))
            },
            ctx,
        )
        .for_each(|result| {
            match result {
                // A scheduled reconcile of a Rollout deleted since: stop reporting it halted.
                Err(kube::runtime::controller::Error::ObjectNotFound(gone)) => {
                    metrics::rollout_deleted(&gone.name);
                }
                Err(e) => {
                    metrics::controller_error(Ctl::Rollout, &e);
                    tracing::warn!(error = %e, "rollout reconcile error");
                }
                Ok(_) => {}
            }
            async {}
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;

    const KUBECONFIG: &str = r"
apiVersion: v1
kind: Config
current-context: se
clusters:
  - name: se
    cluster:
      server: https://se.eks.example:443
contexts:
  - name: se
    context:
      cluster: se
      user: operator
      namespace: calls
users:
  - name: operator
    user:
      token: not-a-real-token
";

    #[tokio::test]
    async fn kubeconfig_secret_becomes_a_client_config() {
        probe::install_tls_provider();
        let config = config_from_kubeconfig("kubeconfig-se", KUBECONFIG, None)
            .await
            .unwrap();
        assert_eq!(
            config.cluster_url.to_string(),
            "https://se.eks.example:443/"
        );
        assert_eq!(config.default_namespace, "calls");
        assert!(Client::try_from(config).is_ok());
        let err = config_from_kubeconfig("kubeconfig-x", "not: [yaml", None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("kubeconfig-x"), "{err}");
    }

    /// What `aws eks update-kubeconfig` writes (no credentials: endpoint, CA, and the exec user).
    const EKS_KUBECONFIG: &str = r"
apiVersion: v1
kind: Config
current-context: no
clusters:
  - name: no
    cluster:
      server: https://ABCDEF.gr7.eu-north-1.eks.amazonaws.com
contexts:
  - name: no
    context:
      cluster: no
      user: eks-no
users:
  - name: eks-no
    user:
      exec:
        apiVersion: client.authentication.k8s.io/v1beta1
        command: aws
        args: [--region, eu-north-1, eks, get-token, --cluster-name, meridian-prod-no, --output, json]
";

    /// The operator's identity with fixed credentials (what IRSA's web identity provides).
    fn eks_auth(region: Option<&str>) -> EksAuth {
        use aws_credential_types::Credentials;
        EksAuth {
            credentials: aws_credential_types::provider::SharedCredentialsProvider::new(
                Credentials::new(
                    "AKIDEXAMPLE",
                    "secret",
                    Some("session".into()),
                    None,
                    "irsa",
                ),
            ),
            region: region.map(str::to_owned),
        }
    }

    #[test]
    fn aws_eks_get_token_exec_users_are_recognised() {
        let exec = |args: &[&str]| json!({ "command": "/usr/local/bin/aws", "args": args });
        assert_eq!(
            eks_exec(&exec(&["eks", "get-token", "--cluster-name", "c1"])),
            Some(EksExec {
                cluster: "c1".into(),
                region: None
            })
        );
        assert_eq!(
            eks_exec(&exec(&[
                "--region=eu-west-1",
                "eks",
                "get-token",
                "--cluster-id=c2"
            ])),
            Some(EksExec {
                cluster: "c2".into(),
                region: Some("eu-west-1".into())
            })
        );
        assert_eq!(
            eks_exec(&exec(&["eks", "describe-cluster", "--cluster-name", "c1"])),
            None
        );
        assert_eq!(
            eks_exec(&json!({ "command": "kubelogin", "args": ["get-token"] })),
            None
        );
    }

    #[tokio::test]
    async fn an_eks_kubeconfig_is_signed_in_with_the_operators_role() {
        probe::install_tls_provider();
        let eks = eks_auth(None);
        let config = config_from_kubeconfig("kubeconfig-prod-no", EKS_KUBECONFIG, Some(&eks))
            .await
            .unwrap();
        assert_eq!(
            config.cluster_url.to_string(),
            "https://ABCDEF.gr7.eu-north-1.eks.amazonaws.com/"
        );
        assert!(config.auth_info.exec.is_none(), "no binary is run");
        let token = config.auth_info.token.as_ref().expect("a bearer token");
        let token = secrecy_expose(token);
        assert!(token.starts_with(eks_token::TOKEN_PREFIX), "{token}");
        let url = String::from_utf8(
            base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                token.trim_start_matches(eks_token::TOKEN_PREFIX),
            )
            .unwrap(),
        )
        .unwrap();
        assert!(url.starts_with("https://sts.eu-north-1.amazonaws.com/?Action=GetCallerIdentity"));
        assert!(url.contains("X-Amz-Security-Token=session"), "{url}");
        assert!(Client::try_from(config).is_ok());

        // No identity: refused, naming the Secret, not run.
        let err = config_from_kubeconfig("kubeconfig-prod-no", EKS_KUBECONFIG, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kubeconfig-prod-no") && err.contains("IRSA"),
            "{err}"
        );
        // Another plugin: refused.
        let other = EKS_KUBECONFIG.replace("command: aws", "command: gke-gcloud-auth-plugin");
        let err = config_from_kubeconfig("kubeconfig-prod-no", &other, Some(&eks))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("exec plugin other than"), "{err}");
        // No --region in the args: the operator's own region, or refused without one.
        let no_region = EKS_KUBECONFIG.replace("--region, eu-north-1, ", "");
        assert!(
            config_from_kubeconfig("k", &no_region, Some(&eks))
                .await
                .is_err()
        );
        let config = config_from_kubeconfig("k", &no_region, Some(&eks_auth(Some("eu-west-1"))))
            .await
            .unwrap();
        let url = String::from_utf8(
            base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                secrecy_expose(config.auth_info.token.as_ref().unwrap())
                    .trim_start_matches(eks_token::TOKEN_PREFIX),
            )
            .unwrap(),
        )
        .unwrap();
        assert!(
            url.starts_with("https://sts.eu-west-1.amazonaws.com/"),
            "{url}"
        );
    }

    fn secrecy_expose(s: &secrecy::SecretString) -> String {
        use secrecy::ExposeSecret as _;
        s.expose_secret().to_owned()
    }

    #[tokio::test]
    async fn observe_and_set_image_on_a_target_cluster() {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(svc, "calls");
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(req.method(), http::Method::GET);
            assert_eq!(
                req.uri().to_string(),
                "/apis/meridian.dev/v1alpha1/namespaces/calls/releases/calls"
            );
            let release = json!({
                "apiVersion": "meridian.dev/v1alpha1", "kind": "Release",
                "metadata": { "name": "calls", "namespace": "calls", "generation": 4 },
                "spec": {
                    "service": "calls", "image": "registry/calls:v1", "replicas": 3,
                    "activeService": "calls", "previewService": "calls-preview",
                    "analysis": { "probe": { "path": "/healthz", "requests": 10, "p99Ms": 300.0, "maxErrorRate": 0.0 } }
                },
                "status": { "phase": "Succeeded", "activeImage": "registry/calls:v1", "verified": true, "observedGeneration": 4 }
            });
            send.send_response(Response::new(Body::from(
                serde_json::to_vec(&release).unwrap(),
            )));
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(req.method(), http::Method::PATCH);
            assert_eq!(
                req.uri().to_string(),
                "/apis/meridian.dev/v1alpha1/namespaces/calls/releases/calls?"
            );
            let body = req.into_body().collect_bytes().await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body, json!({ "spec": { "image": "registry/calls:v2" } }));
            let mut echoed = release;
            echoed["spec"]["image"] = "registry/calls:v2".into();
            // The spec change bumps the generation; the status is still the previous cycle's.
            echoed["metadata"]["generation"] = 5.into();
            send.send_response(Response::new(Body::from(
                serde_json::to_vec(&echoed).unwrap(),
            )));
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(req.method(), http::Method::GET);
            send.send_response(Response::new(Body::from(
                serde_json::to_vec(&echoed).unwrap(),
            )));
        });
        let obs = observe_release(&client, "calls", "calls")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            obs,
            TargetObs {
                image: "registry/calls:v1".into(),
                phase: Some(crate::crd::Phase::Succeeded),
                active_image: Some("registry/calls:v1".into()),
                verified: true,
                current: true,
            }
        );
        set_image(&client, "calls", "calls", "registry/calls:v2")
            .await
            .unwrap();
        let obs = observe_release(&client, "calls", "calls")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(obs.image, "registry/calls:v2");
        assert!(
            !obs.current,
            "observedGeneration 4 < generation 5: the status is not about v2 yet"
        );
        tokio::time::timeout(Duration::from_secs(1), server)
            .await
            .unwrap()
            .unwrap();
    }

    // ------------------------------------------------------------ the Rollout's own series

    use crate::crd::{RolloutSpec, RolloutStatus, Target, Wave};
    use crate::metrics::testing::sample;

    const SECRET: &str = "/api/v1/namespaces/meridian-system/secrets/kubeconfig-se";
    const STATUS: &str = "/apis/meridian.dev/v1alpha1/rollouts/calls-0123456789ab-se/status?&force=true&fieldManager=meridian-operator";
    const HALTED: &str =
        r#"meridian_rollout_halted{namespace="meridian",rollout="calls-0123456789ab-se"}"#;

    fn rollout(status: Option<RolloutStatus>) -> Rollout {
        let mut r = Rollout::new(
            "calls-0123456789ab-se",
            RolloutSpec {
                image: "registry/calls:v2".into(),
                namespace: "meridian".into(),
                release: "calls".into(),
                waves: vec![Wave {
                    name: "se".into(),
                    targets: vec![Target {
                        name: "se".into(),
                        kubeconfig_secret: "kubeconfig-se".into(),
                    }],
                    bake_seconds: 0,
                }],
                max_parallel: 1,
                halt_policy: crate::crd::HaltPolicy::Halt,
                secret_namespace: "meridian-system".into(),
                paused: false,
                progress_deadline_seconds: 3600,
            },
        );
        r.metadata.generation = Some(1);
        r.status = status;
        r
    }

    /// Answers each `(method, uri, status, body)` in order; `None` echoes the request body.
    fn api(
        script: Vec<(http::Method, &'static str, u16, Option<serde_json::Value>)>,
    ) -> (Arc<Ctx>, tokio::task::JoinHandle<()>) {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(svc, "default");
        let server = tokio::spawn(async move {
            for (method, uri, status, body) in script {
                let (req, send) = handle.next_request().await.expect("request made");
                assert_eq!(req.method(), method);
                assert_eq!(req.uri().to_string(), uri);
                let request_body = req.into_body().collect_bytes().await.unwrap();
                let body = body.map_or(request_body.to_vec(), |b| serde_json::to_vec(&b).unwrap());
                send.send_response(
                    Response::builder()
                        .status(status)
                        .body(Body::from(body))
                        .unwrap(),
                );
            }
        });
        let ctx = Arc::new(Ctx {
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: MANAGER.into(),
                    instance: None,
                },
            ),
            client,
            eks: None,
        });
        (ctx, server)
    }

    fn not_found() -> serde_json::Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "reason": "NotFound", "message": "not found", "code": 404,
        })
    }

    #[tokio::test]
    async fn a_halted_rollout_reports_halted() {
        let recorder = crate::metrics::recorder();
        let _local = ::metrics::set_default_local_recorder(&recorder);
        let halted = rollout(Some(RolloutStatus {
            phase: RolloutPhase::Halted,
            observed_generation: Some(1),
            targets: vec![crate::crd::TargetStatus {
                name: "se".into(),
                wave: 0,
                previous_image: Some("registry/calls:v1".into()),
                started: true,
                rolled_back: false,
                unobserved_since: None,
            }],
            ..RolloutStatus::default()
        }));
        // The target is unreachable (no Secret); a halted Rollout writes nothing anyway.
        let (ctx, server) = api(vec![(http::Method::GET, SECRET, 404, Some(not_found()))]);
        reconcile(Arc::new(halted), ctx).await.expect("reconcile");
        tokio::time::timeout(Duration::from_secs(1), server)
            .await
            .unwrap()
            .unwrap();
        let text = recorder.handle().render();
        assert_eq!(sample(&text, HALTED), Some(1.0), "{text}");
        assert_eq!(
            sample(
                &text,
                r#"meridian_operator_reconciles_total{controller="rollout",result="ok"}"#
            ),
            Some(1.0)
        );
    }

    #[tokio::test]
    async fn a_new_rollout_reports_not_halted_and_a_failed_status_write_is_a_kube_api_error() {
        let recorder = crate::metrics::recorder();
        let _local = ::metrics::set_default_local_recorder(&recorder);
        let (ctx, server) = api(vec![
            (http::Method::GET, SECRET, 404, Some(not_found())),
            (
                http::Method::PATCH,
                STATUS,
                200,
                Some(serde_json::to_value(rollout(None)).unwrap()),
            ),
        ]);
        reconcile(Arc::new(rollout(None)), ctx)
            .await
            .expect("reconcile");
        tokio::time::timeout(Duration::from_secs(1), server)
            .await
            .unwrap()
            .unwrap();
        let text = recorder.handle().render();
        assert_eq!(sample(&text, HALTED), Some(0.0), "{text}");

        let (ctx, server) = api(vec![
            (http::Method::GET, SECRET, 404, Some(not_found())),
            (
                http::Method::PATCH,
                STATUS,
                500,
                Some(json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "reason": "InternalError", "message": "etcd", "code": 500,
                })),
            ),
        ]);
        let err = reconcile(Arc::new(rollout(None)), ctx).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::KubeApi);
        tokio::time::timeout(Duration::from_secs(1), server)
            .await
            .unwrap()
            .unwrap();
        let text = recorder.handle().render();
        let r = |s: &str| sample(&text, s);
        assert_eq!(
            r(r#"meridian_operator_reconciles_total{controller="rollout",result="error"}"#),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            r(r#"meridian_operator_reconcile_errors_total{controller="rollout",kind="kube_api"}"#),
            Some(1.0)
        );
    }

    #[test]
    fn kubeconfig_errors_are_their_own_kind() {
        assert_eq!(
            Error::NoKubeconfig("k".into()).kind(),
            ErrorKind::Kubeconfig
        );
        let bad = Error::BadKubeconfig {
            secret: "k".into(),
            reason: "r".into(),
        };
        assert_eq!(bad.kind(), ErrorKind::Kubeconfig);
    }
}
