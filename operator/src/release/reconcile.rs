//! The Release reconciler: observe → [`state::decide`] → execute the actions → apply status.
//!
//! It holds no decisions of its own. It reads only what the current phase needs (the migration
//! Job while migrating, the preview Deployment while deploying or promoting), so each reconcile
//! makes a small, predictable set of API calls — the tests assert them request by request.
//!
//! Writes: Deployments and status by server-side apply (field manager [`MANAGER`]), Service
//! selectors and scale-downs by merge patch, the Job by create (409 = already there, fine: its
//! name is unique per release). A finalizer makes deletion point the active Service back at the
//! last promoted colour, so orphaned workloads (`--cascade=orphan`) never serve a failed preview.
//!
//! Every pod it creates (both colours, the migration Job) runs as the images' non-root user with
//! the Kubernetes "restricted" security profile: no privilege escalation, every capability
//! dropped, the runtime's default seccomp profile and a read-only root filesystem. What the
//! services write goes to two size-capped `emptyDir`s: `/tmp`, and the XDG state directory
//! (`XDG_STATE_HOME`), where calls keeps its snapshot file, which so survives a container
//! restart in the same pod. Requests and limits come from `spec.resources`.
//!
//! It watches only the namespaces it is given (`--namespaces` / `WATCH_NAMESPACES`), one
//! controller per namespace, so its RBAC is a namespaced Role in each (see [`crate::rbac`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource,
    EnvVar as K8sEnvVar, HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, Secret, SecretEnvSource, SecurityContext, Service,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action as ControllerAction, Controller};
use kube::runtime::events::{Event, EventType as KubeEventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;

use super::state::{self, Action, DeploymentObs, EventType, Observed};
use crate::crd::{Colour, JobState, Phase, Release, ReleaseSpec, ReleaseStatus, SecretKeyRef};

/// Finalizer that restores the active selector before a Release goes away.
pub const FINALIZER: &str = "meridian.dev/release-selector";
/// Field manager for every write, and the Event reporter name.
pub const MANAGER: &str = "meridian-operator";
/// Labels the operator puts on (and selects) pods.
pub const RELEASE_LABEL: &str = "meridian.dev/release";
pub const COLOUR_LABEL: &str = "meridian.dev/colour";
/// uid and gid every pod runs as: the `nonroot` user of the distroless images (docker/Dockerfile,
/// `USER 65532:65532`).
pub const RUN_AS_USER: i64 = 65_532;
/// The writable `emptyDir`s (the root filesystem is read-only): scratch space, and the state
/// directory the services find through `XDG_STATE_HOME` (calls: its snapshot file).
pub const TMP_MOUNT: &str = "/tmp";
pub const STATE_MOUNT: &str = "/var/lib/meridian";
/// Size cap of each; a pod writing more is evicted rather than filling the node.
pub const SCRATCH_SIZE_LIMIT: &str = "128Mi";

/// Runs one probe; injected so tests need no preview Service and the binary uses [`probe::run`].
pub type Prober = Arc<
    dyn Fn(
            probe::ProbeConfig,
            probe::Thresholds,
        )
            -> Pin<Box<dyn Future<Output = Result<probe::Verdict, probe::ProbeError>> + Send>>
        + Send
        + Sync,
>;

/// The probe the operator really runs.
pub fn real_prober() -> Prober {
    Arc::new(|config, thresholds| Box::pin(async move { probe::run(&config, thresholds).await }))
}

/// Runs one Prometheus instant query (address, query) → value; injected like the probe.
pub type PromQuerier = Arc<
    dyn Fn(String, String) -> Pin<Box<dyn Future<Output = Result<f64, String>> + Send>>
        + Send
        + Sync,
>;

/// The Prometheus client the operator really uses.
pub fn real_prom_querier() -> PromQuerier {
    Arc::new(|address, query| {
        Box::pin(async move {
            probe::prometheus::query_scalar(&address, &query, Duration::from_secs(10))
                .await
                .map_err(|e| e.to_string())
        })
    })
}

/// The clock; injected so tests are deterministic.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub prober: Prober,
    pub prometheus: PromQuerier,
    pub clock: Clock,
}

impl Context {
    pub fn new(client: Client) -> Self {
        let recorder = Recorder::new(client.clone(), reporter());
        Self {
            client,
            recorder,
            prober: real_prober(),
            prometheus: real_prom_querier(),
            clock: Arc::new(Timestamp::now),
        }
    }
}

fn reporter() -> Reporter {
    Reporter {
        controller: MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("release has no namespace")]
    NoNamespace,
    #[error(transparent)]
    Finalizer(#[from] Box<kube::runtime::finalizer::Error<Error>>),
}

/// Reconciles one Release (the function the Controller calls).
pub async fn reconcile(
    release: Arc<Release>,
    ctx: Arc<Context>,
) -> Result<ControllerAction, Error> {
    let ns = release.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<Release> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, release, |event| async {
        match event {
            FinalizerEvent::Apply(r) => apply(&r, &ctx, &ns).await,
            FinalizerEvent::Cleanup(r) => cleanup(&r, &ctx, &ns).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Retries failed reconciles after a pause (API errors are usually transient).
pub fn error_policy(_release: Arc<Release>, error: &Error, _ctx: Arc<Context>) -> ControllerAction {
    tracing::warn!(%error, "reconcile failed");
    ControllerAction::requeue(Duration::from_secs(30))
}

/// Runs the Release controller over `namespaces` until SIGTERM, counting outcomes in `metrics`.
///
/// One controller per namespace, each watching only its own namespace's Releases, Deployments
/// and Jobs: a cluster-wide watch would need a ClusterRole to list every namespace's workloads.
pub async fn run(client: Client, namespaces: &[String], metrics: Arc<crate::serve::Metrics>) {
    let ctx = Arc::new(Context::new(client.clone()));
    let controllers = namespaces.iter().map(|ns| {
        Controller::new(
            Api::<Release>::namespaced(client.clone(), ns),
            watcher::Config::default(),
        )
        .owns(
            Api::<Deployment>::namespaced(client.clone(), ns),
            watcher::Config::default(),
        )
        .owns(
            Api::<Job>::namespaced(client.clone(), ns),
            watcher::Config::default(),
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, Arc::clone(&ctx))
        .boxed()
    });
    futures_util::stream::select_all(controllers)
        .for_each(|result| {
            metrics.record("release", result.is_ok());
            if let Err(e) = result {
                tracing::warn!(error = %e, "release reconcile error");
            }
            async {}
        })
        .await;
}

async fn apply(release: &Release, ctx: &Context, ns: &str) -> Result<ControllerAction, Error> {
    let name = release.name_any();
    let status = release.status.clone().unwrap_or_default();
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);

    // Observe only what the current phase needs.
    let mut observed_blue = None;
    let mut observed_green = None;
    if matches!(status.phase, Phase::DeployingPreview | Phase::Promoting)
        && let Some(colour) = status.preview_colour
    {
        let obs = deployments
            .get_opt(&state::deployment_name(&name, colour))
            .await?
            .map(|d| observe_deployment(&d));
        match colour {
            Colour::Blue => observed_blue = obs,
            Colour::Green => observed_green = obs,
        }
    }
    let mut job = JobState::Missing;
    if status.phase == Phase::Migrating
        && let Some(m) = &status.migration
    {
        job = jobs
            .get_opt(&m.job_name)
            .await?
            .map_or(JobState::Missing, |j| job_state(&j));
    }

    let now = (ctx.clock)();
    let decision = state::decide(&Observed {
        name: &name,
        generation: release.metadata.generation,
        spec: &release.spec,
        status: &status,
        blue: observed_blue,
        green: observed_green,
        job,
        now,
    });
    let mut new_status = decision.status;
    for action in &decision.actions {
        execute(release, ctx, ns, action, &mut new_status).await?;
    }
    if Some(&new_status) != release.status.as_ref() {
        patch_status(ctx, ns, &name, &new_status).await?;
    }
    Ok(decision.requeue_after.map_or_else(
        || ControllerAction::requeue(Duration::from_mins(5)),
        ControllerAction::requeue,
    ))
}

async fn execute(
    release: &Release,
    ctx: &Context,
    ns: &str,
    action: &Action,
    status: &mut ReleaseStatus,
) -> Result<(), Error> {
    let name = release.name_any();
    let spec = &release.spec;
    let pp = PatchParams::apply(MANAGER).force();
    match action {
        Action::CreateMigrationJob { name: job_name } => {
            let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
            match jobs
                .create(&PostParams::default(), &migration_job(release, job_name))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Action::DeleteMigrationJob { name: job_name } => {
            let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
            let dp = kube::api::DeleteParams::background();
            match jobs.delete(job_name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Action::ApplyDeployment {
            colour,
            image,
            replicas,
        } => {
            let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
            let d = deployment(release, *colour, image, *replicas);
            deployments
                .patch(
                    &state::deployment_name(&name, *colour),
                    &pp,
                    &Patch::Apply(&d),
                )
                .await?;
        }
        Action::SwitchPreviewSelector(colour) => {
            switch_selector(ctx, ns, &spec.preview_service, &name, *colour).await?;
        }
        Action::SwitchActiveSelector(colour) => {
            switch_selector(ctx, ns, &spec.active_service, &name, *colour).await?;
        }
        Action::ScaleDown(colour) => {
            let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
            let patch = json!({ "spec": { "replicas": 0 } });
            match deployments
                .patch(
                    &state::deployment_name(&name, *colour),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Action::RunAnalysis => run_analysis(spec, ctx, ns, status).await?,
        Action::EmitEvent {
            type_,
            reason,
            note,
        } => {
            publish(ctx, release, *type_, reason, note).await?;
        }
    }
    Ok(())
}

/// Probes the preview and records the run. A probe that cannot run, or a token Secret that is
/// missing, unreadable or malformed, is recorded as a failed analysis (a preview that cannot be
/// judged must not take traffic); only a transient API error is returned, to retry.
async fn run_analysis(
    spec: &ReleaseSpec,
    ctx: &Context,
    ns: &str,
    status: &mut ReleaseStatus,
) -> Result<(), Error> {
    let now = (ctx.clock)();
    let p = &spec.analysis.probe;
    let bearer_token = match &p.bearer_token_secret {
        Some(secret) => match read_token(ctx, ns, secret).await? {
            Ok(token) => Some(token),
            Err(why) => {
                state::record_analysis_error(status, why, now);
                return Ok(());
            }
        },
        None => None,
    };
    let config = probe::ProbeConfig {
        url: format!(
            "http://{}.{ns}.svc:{}{}",
            spec.preview_service, p.port, p.path
        ),
        requests: p.requests,
        concurrency: p.concurrency,
        timeout: Duration::from_millis(p.timeout_ms),
        bearer_token,
    };
    let thresholds = probe::Thresholds {
        p99_ms: p.p99_ms,
        max_error_rate: p.max_error_rate,
    };
    let verdict = match (ctx.prober)(config, thresholds).await {
        Ok(verdict) => verdict,
        Err(e) => {
            state::record_analysis_error(status, format!("probe could not run: {e}"), now);
            return Ok(());
        }
    };
    let prometheus = match &spec.analysis.prometheus {
        Some(check) => {
            let colour = status.preview_colour.map_or("", Colour::as_str);
            let query = check.query.replace("{{colour}}", colour);
            Some(state::PromResult {
                value: (ctx.prometheus)(check.address.clone(), query).await,
                max_value: check.max_value,
            })
        }
        None => None,
    };
    state::record_analysis(status, &verdict, prometheus.as_ref(), now);
    Ok(())
}

/// The probe's bearer token from its Secret. The outer error is a transient API failure (retry);
/// the inner one a configuration problem that fails the analysis. Messages name the Secret and
/// key, never any of its content.
async fn read_token(
    ctx: &Context,
    ns: &str,
    secret: &SecretKeyRef,
) -> Result<Result<probe::BearerToken, String>, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let name = &secret.name;
    let found = match secrets.get_opt(name).await {
        Ok(found) => found,
        // Forbidden is configuration too: the Role lets the operator read only the Secret names
        // it was generated with.
        Err(kube::Error::Api(e)) if e.code == 403 => {
            return Ok(Err(format!(
                "probe token Secret {name}: the operator may not read it (operator rbac --probe-token-secret)"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let Some(found) = found else {
        return Ok(Err(format!("probe token Secret {name} not found")));
    };
    let Some(bytes) = found.data.as_ref().and_then(|d| d.get(&secret.key)) else {
        return Ok(Err(format!(
            "probe token Secret {name} has no key {}",
            secret.key
        )));
    };
    let token = std::str::from_utf8(&bytes.0)
        .map_err(|_| probe::TokenError::BadCharacters)
        .and_then(probe::BearerToken::new);
    Ok(token.map_err(|e| format!("probe token Secret {name} key {}: {e}", secret.key)))
}

async fn switch_selector(
    ctx: &Context,
    ns: &str,
    service: &str,
    release: &str,
    colour: Colour,
) -> Result<(), Error> {
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({ "spec": { "selector": {
        RELEASE_LABEL: release,
        COLOUR_LABEL: colour.as_str(),
    } } });
    services
        .patch(service, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

async fn patch_status(
    ctx: &Context,
    ns: &str,
    name: &str,
    status: &ReleaseStatus,
) -> Result<(), Error> {
    let api: Api<Release> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({
        "apiVersion": "meridian.dev/v1alpha1",
        "kind": "Release",
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

async fn publish(
    ctx: &Context,
    release: &Release,
    type_: EventType,
    reason: &str,
    note: &str,
) -> Result<(), Error> {
    let event = Event {
        type_: match type_ {
            EventType::Normal => KubeEventType::Normal,
            EventType::Warning => KubeEventType::Warning,
        },
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    ctx.recorder
        .publish(&event, &release.object_ref(&()))
        .await?;
    Ok(())
}

/// On delete: point the active Service at the last promoted colour (if any) so whatever keeps
/// running never serves a preview that did not pass analysis.
async fn cleanup(release: &Release, ctx: &Context, ns: &str) -> Result<ControllerAction, Error> {
    let name = release.name_any();
    let active = release.status.as_ref().and_then(|s| s.active_colour);
    let note = match active {
        Some(colour) => {
            switch_selector(ctx, ns, &release.spec.active_service, &name, colour).await?;
            format!(
                "release deleted; {} points at {colour}",
                release.spec.active_service
            )
        }
        None => "release deleted before any promotion; selector left as is".to_owned(),
    };
    publish(ctx, release, EventType::Normal, "Deleted", &note).await?;
    Ok(ControllerAction::await_change())
}

fn observe_deployment(d: &Deployment) -> DeploymentObs {
    let image = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let status = d.status.as_ref();
    // Ready only counts pods of the current template: a rollout of a new image is not ready
    // while old-template pods are still the ready ones.
    let updated = status.and_then(|s| s.updated_replicas).unwrap_or(0);
    let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
    DeploymentObs {
        image,
        replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
        ready_replicas: ready.min(updated),
    }
}

fn job_state(job: &Job) -> JobState {
    let Some(status) = &job.status else {
        return JobState::Running;
    };
    if status.succeeded.unwrap_or(0) > 0 {
        return JobState::Succeeded;
    }
    let failed = status
        .conditions
        .iter()
        .flatten()
        .any(|c| matches!(c.type_.as_str(), "Failed" | "FailureTarget") && c.status == "True");
    if failed {
        JobState::Failed
    } else {
        JobState::Running
    }
}

fn owner_meta(release: &Release, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: release.namespace(),
        labels: Some(labels),
        owner_references: release.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

fn env(spec: &ReleaseSpec) -> (Option<Vec<K8sEnvVar>>, Option<Vec<EnvFromSource>>) {
    let var = |name: &str, value: &str| K8sEnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..K8sEnvVar::default()
    };
    // First, so that the spec's own env can still point it elsewhere (the last entry wins).
    let mut env = vec![var("XDG_STATE_HOME", STATE_MOUNT)];
    env.extend(spec.env.iter().map(|e| var(&e.name, &e.value)));
    let env_from = spec.env_from_secret.as_ref().map(|s| {
        vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: s.clone(),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]
    });
    (Some(env), env_from)
}

/// The pod-level half of the restricted profile: non-root uid/gid, default seccomp profile.
fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_USER),
        run_as_group: Some(RUN_AS_USER),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// The container-level half: no escalation, no capabilities, nothing written outside `/tmp`.
fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            add: None,
            drop: Some(vec!["ALL".into()]),
        }),
        ..SecurityContext::default()
    }
}

fn resources(spec: &ReleaseSpec) -> ResourceRequirements {
    let r = &spec.resources;
    let mut limits = BTreeMap::from([("memory".to_owned(), Quantity(r.limits.memory.clone()))]);
    if let Some(cpu) = &r.limits.cpu {
        limits.insert("cpu".to_owned(), Quantity(cpu.clone()));
    }
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(r.requests.cpu.clone())),
            ("memory".to_owned(), Quantity(r.requests.memory.clone())),
        ])),
        limits: Some(limits),
        ..ResourceRequirements::default()
    }
}

/// The writable volumes, by name and mount path.
const SCRATCH: [(&str, &str); 2] = [("tmp", TMP_MOUNT), ("state", STATE_MOUNT)];

fn scratch_volumes() -> Vec<Volume> {
    SCRATCH
        .iter()
        .map(|(name, _)| Volume {
            name: (*name).into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: None,
                size_limit: Some(Quantity(SCRATCH_SIZE_LIMIT.into())),
            }),
            ..Volume::default()
        })
        .collect()
}

fn scratch_mounts() -> Vec<VolumeMount> {
    SCRATCH
        .iter()
        .map(|(name, path)| VolumeMount {
            name: (*name).into(),
            mount_path: (*path).into(),
            ..VolumeMount::default()
        })
        .collect()
}

fn labels(spec: &ReleaseSpec, release: &str, colour: Option<Colour>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), spec.service.clone()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGER.to_owned(),
        ),
        (RELEASE_LABEL.to_owned(), release.to_owned()),
    ]);
    if let Some(c) = colour {
        l.insert(COLOUR_LABEL.to_owned(), c.as_str().to_owned());
    }
    l
}

/// The Deployment of one colour.
pub fn deployment(release: &Release, colour: Colour, image: &str, replicas: i32) -> Deployment {
    let name = release.name_any();
    let spec = &release.spec;
    let pod_labels = labels(spec, &name, Some(colour));
    let selector = BTreeMap::from([
        (RELEASE_LABEL.to_owned(), name.clone()),
        (COLOUR_LABEL.to_owned(), colour.as_str().to_owned()),
    ]);
    let (env, env_from) = env(spec);
    let http_probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(spec.container_port),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(5),
        ..Probe::default()
    };
    Deployment {
        metadata: owner_meta(
            release,
            state::deployment_name(&name, colour),
            pod_labels.clone(),
        ),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: spec.service_account_name.clone(),
                    // The services never call the Kubernetes API; IRSA mounts its own token.
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security_context()),
                    // Covers the services' bounded drain on SIGTERM (SHUTDOWN_GRACE_SECS, 20 s by default).
                    termination_grace_period_seconds: Some(30),
                    volumes: Some(scratch_volumes()),
                    containers: vec![Container {
                        name: spec.service.clone(),
                        image: Some(image.to_owned()),
                        ports: Some(vec![ContainerPort {
                            container_port: spec.container_port,
                            name: Some("http".into()),
                            ..ContainerPort::default()
                        }]),
                        env,
                        env_from,
                        readiness_probe: Some(http_probe("/readyz")),
                        liveness_probe: Some(http_probe("/healthz")),
                        resources: Some(resources(spec)),
                        security_context: Some(container_security_context()),
                        volume_mounts: Some(scratch_mounts()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The migration Job of one cycle.
pub fn migration_job(release: &Release, job_name: &str) -> Job {
    let spec = &release.spec;
    let migration = spec
        .migration
        .clone()
        .unwrap_or_else(|| crate::crd::MigrationSpec {
            image: None,
            command: vec![],
            args: vec![],
            timeout_seconds: 600,
            backoff_limit: 1,
        });
    let (env, env_from) = env(spec);
    Job {
        metadata: owner_meta(
            release,
            job_name.to_owned(),
            labels(spec, &release.name_any(), None),
        ),
        spec: Some(JobSpec {
            backoff_limit: Some(migration.backoff_limit),
            active_deadline_seconds: Some(i64::from(migration.timeout_seconds)),
            // Kept a day for post-mortems, then garbage-collected.
            ttl_seconds_after_finished: Some(86_400),
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: spec.service_account_name.clone(),
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security_context()),
                    volumes: Some(scratch_volumes()),
                    containers: vec![Container {
                        name: "migrate".into(),
                        image: Some(migration.image.unwrap_or_else(|| spec.image.clone())),
                        command: Some(migration.command),
                        args: (!migration.args.is_empty()).then_some(migration.args),
                        env,
                        env_from,
                        resources: Some(resources(spec)),
                        security_context: Some(container_security_context()),
                        volume_mounts: Some(scratch_mounts()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
