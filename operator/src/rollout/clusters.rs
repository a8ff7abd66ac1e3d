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

/// Builds a client config from kubeconfig YAML (its current context). Use token or
/// client-certificate users: exec plugins (e.g. `aws eks get-token`) need their binary inside
/// the operator image, which ships none.
pub async fn config_from_kubeconfig(secret: &str, yaml: &str) -> Result<kube::Config, Error> {
    let bad = |reason: String| Error::BadKubeconfig {
        secret: secret.to_owned(),
        reason,
    };
    let kubeconfig = Kubeconfig::from_yaml(yaml).map_err(|e| bad(e.to_string()))?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| bad(e.to_string()))
}

/// A client for the cluster behind `secret` (in `namespace` of the management cluster).
pub async fn client_for(mgmt: &Client, namespace: &str, secret: &str) -> Result<Client, Error> {
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
    let config = config_from_kubeconfig(secret, &yaml).await?;
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
        let Ok(client) = client_for(
            &ctx.client,
            &spec.secret_namespace,
            &target.kubeconfig_secret,
        )
        .await
        else {
            tracing::warn!(target = %target.name, "target cluster unreachable");
            continue;
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
/// reconcile; a failing watch is counted here (kind `watch`).
pub async fn run(client: Client) {
    let ctx = Arc::new(Ctx {
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
        let config = config_from_kubeconfig("kubeconfig-se", KUBECONFIG)
            .await
            .unwrap();
        assert_eq!(
            config.cluster_url.to_string(),
            "https://se.eks.example:443/"
        );
        assert_eq!(config.default_namespace, "calls");
        assert!(Client::try_from(config).is_ok());
        let err = config_from_kubeconfig("kubeconfig-x", "not: [yaml")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("kubeconfig-x"), "{err}");
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
