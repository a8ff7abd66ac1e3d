//! The Release reconciler: observe → [`state::decide`] → execute the actions → apply status.
//!
//! It holds no decisions of its own, and builds no objects of its own either: what it writes
//! comes from [`super::manifests`]. It lists the namespace's Releases every time (an older one
//! may own its Services: then it is refused), reads the active Service every time (its selector
//! is the ground truth of what serves) and otherwise only what the current phase needs (the migration
//! Job while migrating, the preview Deployment while deploying or promoting), so each reconcile
//! makes a small, predictable set of API calls — the tests assert them request by request.
//!
//! Writes: Deployments and status by server-side apply (field manager [`MANAGER`]), Service
//! selectors and scale-downs by merge patch, the Job by create (409 = already there, fine: its
//! name is unique per release). A finalizer makes deletion point the active Service back at the
//! last promoted colour, so orphaned workloads (`--cascade=orphan`) never serve a failed preview.
//!
//! Every reconcile is counted and timed, and the phase it observed is exported
//! ([`crate::metrics`]).
//!
//! It watches only the namespaces it is given (`--namespaces` / `WATCH_NAMESPACES`), one
//! controller per namespace, so its RBAC is a namespaced Role in each (see [`crate::rbac`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action as ControllerAction, Controller};
use kube::runtime::events::{Event, EventType as KubeEventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use super::manifests;
use super::snapshot::{self, SnapshotError, Snapshots};
use super::state::{self, Action, DeploymentObs, EventType, Observed, SnapshotObs};
use crate::crd::{
    Colour, JobState, Phase, Release, ReleaseSpec, ReleaseStatus, SecretKeyRef, SnapshotState,
};
use crate::metrics::{self, Controller as Ctl, ErrorKind, Held, Verdict};

/// Finalizer that restores the active selector before a Release goes away.
pub const FINALIZER: &str = "meridian.dev/release-selector";
/// Field manager for every write, and the Event reporter name.
pub const MANAGER: &str = "meridian-operator";
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
    /// RDS, for `spec.migration.snapshot` ([`snapshot::Rds`]; tests: one on moto).
    pub snapshots: Arc<dyn Snapshots>,
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
            snapshots: Arc::new(snapshot::Rds::from_env()),
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

impl Error {
    /// The `kind` label this error is counted under.
    pub fn kind(&self) -> ErrorKind {
        use kube::runtime::finalizer::Error as F;
        match self {
            Self::Kube(_) => ErrorKind::KubeApi,
            Self::NoNamespace => ErrorKind::InvalidObject,

            Self::Finalizer(e) => match e.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.kind(),
                F::AddFinalizer(_) | F::RemoveFinalizer(_) | F::InvalidFinalizer => {
                    ErrorKind::Finalizer
                }
                F::UnnamedObject => ErrorKind::InvalidObject,
            },
        }
    }
}

/// Reconciles one Release (the function the Controller calls), counted and timed in
/// [`crate::metrics`].
pub async fn reconcile(
    release: Arc<Release>,
    ctx: Arc<Context>,
) -> Result<ControllerAction, Error> {
    let start = Instant::now();
    let result = reconcile_release(release, ctx).await;
    let outcome = result.as_ref().map(|_| ()).map_err(Error::kind);
    metrics::reconciled(Ctl::Release, outcome, start.elapsed());
    result
}

async fn reconcile_release(
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

/// Runs the Release controller over `namespaces` until SIGTERM. [`reconcile`] counts every
/// reconcile; a failing watch is counted here (kind `watch`).
///
/// One controller per namespace, each watching only its own namespace's Releases, Deployments
/// and Jobs: a cluster-wide watch would need a ClusterRole to list every namespace's workloads.
pub async fn run(client: Client, namespaces: &[String]) {
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
            if let Err(e) = result {
                metrics::controller_error(Ctl::Release, &e);
                tracing::warn!(error = %e, "release reconcile error");
            }
            async {}
        })
        .await;
}

/// Exports the phase `status` says the Release is in, and whether it waits for a human.
fn export_phase(release: &Release, ns: &str, status: &ReleaseStatus) {
    let name = release.name_any();
    metrics::release_phase(
        ns,
        &name,
        &release.spec.service,
        status.phase,
        status.phase_since,
    );
    metrics::release_held(ns, &name, &release.spec.service, held(status));
}

/// Why `status` says the Release waits for a human, if it does.
fn held(status: &ReleaseStatus) -> Option<Held> {
    if status.inconclusive.is_some() {
        return Some(Held::Inconclusive);
    }
    let refused = status
        .conditions
        .iter()
        .find(|c| c.type_ == state::ACCEPTED && c.status == "False")?;
    match refused.reason.as_str() {
        state::REFUSED_CLAIMED => Some(Held::ServiceClaimed),
        state::REFUSED_INVALID => Some(Held::InvalidSpec),
        _ => None,
    }
}

async fn apply(release: &Release, ctx: &Context, ns: &str) -> Result<ControllerAction, Error> {
    let name = release.name_any();
    // What the cluster says now, even if this reconcile fails before writing anything.
    if let Some(status) = &release.status {
        export_phase(release, ns, status);
    }
    let status = release.status.clone().unwrap_or_default();
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);

    // Two Releases writing one Service would flip it between them: the older one owns it.
    let releases: Api<Release> = Api::namespaced(ctx.client.clone(), ns);
    let service_claimed =
        state::service_claimed(release, &releases.list(&ListParams::default()).await?.items);

    // The active Service's selector is the ground truth of what serves, read every time.
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let active_selector = services
        .get_opt(&release.spec.active_service)
        .await?
        .and_then(|s| selected_colour(&s, &name));

    // Otherwise observe only what the current phase needs.
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

    // The cycle's snapshot, while it is being created (only then: RDS is asked nothing else
    // during a reconcile).
    let mut snapshot = None;
    if status.phase == Phase::Pending
        && let Some(s) = &status.snapshot
        && s.state == SnapshotState::Creating
    {
        snapshot = Some(observe_snapshot(ctx, &s.name).await);
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
        snapshot,
        active_selector,
        service_claimed,
        now,
    });
    let mut new_status = decision.status;
    for action in &decision.actions {
        execute(release, ctx, ns, action, &mut new_status).await?;
    }
    if Some(&new_status) != release.status.as_ref() {
        patch_status(ctx, ns, &name, &new_status).await?;
        export_phase(release, ns, &new_status);
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
                .create(
                    &PostParams::default(),
                    &manifests::migration_job(release, job_name),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Action::CreateSnapshot {
            cluster,
            name: snapshot_name,
        } => {
            let tags = [
                ("meridian:service".to_owned(), spec.service.clone()),
                ("meridian:release".to_owned(), format!("{ns}/{name}")),
                ("meridian:image".to_owned(), spec.image.clone()),
            ];
            match ctx.snapshots.create(cluster, snapshot_name, &tags).await {
                Ok(()) => {}
                Err(SnapshotError::Refused(why)) => state::record_snapshot_failure(status, why),
                // RDS was not reached: the next reconcile finds no such snapshot and requests
                // again, within the snapshot's timeout.
                Err(SnapshotError::Transient(why)) => {
                    if let Some(s) = &mut status.snapshot {
                        s.message = Some(why);
                    }
                }
            }
        }
        Action::PruneSnapshots {
            cluster,
            current,
            retain,
        } => {
            if let Err(why) = prune_snapshots(ctx, &spec.service, cluster, current, *retain).await {
                let note = format!("old snapshots of {cluster} not pruned: {why}");
                tracing::warn!(release = %name, "{note}");
                publish(
                    ctx,
                    release,
                    EventType::Warning,
                    "SnapshotPruneFailed",
                    &note,
                )
                .await?;
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
            let d = manifests::deployment(release, *colour, image, *replicas);
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
            let patch = manifests::scale_down_patch();
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
        Action::RunAnalysis | Action::RunVerification(_) => {
            let runs = status.analysis.len();
            let target = match action {
                Action::RunVerification(colour) => Target {
                    service: &spec.active_service,
                    colour: Some(*colour),
                    verification: true,
                },
                _ => Target {
                    service: &spec.preview_service,
                    colour: status.preview_colour,
                    verification: false,
                },
            };
            run_analysis(spec, ctx, ns, status, &target).await?;
            // A run recorded (passed, breached, or unable to probe) is a completed analysis.
            if status.analysis.len() > runs
                && let Some(run) = status.analysis.last()
            {
                let verdict = if run.passed {
                    Verdict::Passed
                } else if run.error {
                    Verdict::Error
                } else {
                    Verdict::Breached
                };
                metrics::release_analysis(ns, &spec.service, verdict);
            }
        }
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

/// What RDS says of the snapshot `name` now.
async fn observe_snapshot(ctx: &Context, name: &str) -> SnapshotObs {
    match ctx.snapshots.describe(name).await {
        Ok(None) => SnapshotObs::Missing,
        Ok(Some(s)) => match s.status.as_str() {
            "available" => SnapshotObs::Available { arn: s.arn },
            "creating" | "copying" => SnapshotObs::Creating {
                percent_progress: s.percent_progress,
            },
            other => SnapshotObs::Failed(format!("RDS reports it {other}")),
        },
        Err(SnapshotError::Refused(why) | SnapshotError::Transient(why)) => {
            SnapshotObs::Unknown(why)
        }
    }
}

/// Deletes `service`'s cycle snapshots of `cluster` beyond the newest `retain`.
async fn prune_snapshots(
    ctx: &Context,
    service: &str,
    cluster: &str,
    current: &str,
    retain: u32,
) -> Result<(), SnapshotError> {
    let all = ctx.snapshots.list_manual(cluster).await?;
    for old in snapshot::to_prune(service, current, &all, retain) {
        ctx.snapshots.delete(&old).await?;
        tracing::info!(snapshot = %old, cluster, "old snapshot pruned");
    }
    Ok(())
}

/// What one measurement probes: the preview Service before promotion, the active Service while
/// the promoted colour is verified.
struct Target<'a> {
    service: &'a str,
    /// Substituted for `{{colour}}` in the Prometheus query.
    colour: Option<Colour>,
    verification: bool,
}

/// Probes `target` and records the run. A probe that cannot run, or a token Secret that is
/// missing, unreadable or malformed, is recorded as a failed analysis (a preview that cannot be
/// judged must not take traffic); only a transient API error is returned, to retry.
async fn run_analysis(
    spec: &ReleaseSpec,
    ctx: &Context,
    ns: &str,
    status: &mut ReleaseStatus,
    target: &Target<'_>,
) -> Result<(), Error> {
    let verification = target.verification;
    let now = (ctx.clock)();
    let p = &spec.analysis.probe;
    let bearer_token = match &p.bearer_token_secret {
        Some(secret) => match read_token(ctx, ns, secret).await? {
            Ok(token) => Some(token),
            Err(why) => {
                state::record_analysis_error(status, why, now, verification);
                return Ok(());
            }
        },
        None => None,
    };
    let config = probe::ProbeConfig {
        url: format!("http://{}.{ns}.svc:{}{}", target.service, p.port, p.path),
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
            state::record_analysis_error(
                status,
                format!("probe could not run: {e}"),
                now,
                verification,
            );
            return Ok(());
        }
    };
    let prometheus = match &spec.analysis.prometheus {
        Some(check) => {
            let colour = target.colour.map_or("", Colour::as_str);
            let query = check.query.replace("{{colour}}", colour);
            Some(state::PromResult {
                value: (ctx.prometheus)(check.address.clone(), query).await,
                max_value: check.max_value,
            })
        }
        None => None,
    };
    state::record_analysis(status, &verdict, prometheus.as_ref(), now, verification);
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
    let patch = manifests::selector_patch(release, colour);
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
    let patch = manifests::status_patch(status);
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// The API server refuses an Event whose note is longer than this many bytes (events.k8s.io/v1).
pub const EVENT_NOTE_MAX: usize = 1024;

/// `note` cut to what an Event may carry, at a character boundary, marked with `…` when cut. A
/// refused Event fails the reconcile before its status is written, so an uncut message listing
/// many targets or long image names would keep a Release or Rollout from ever reporting it.
pub fn event_note(note: &str) -> String {
    if note.len() <= EVENT_NOTE_MAX {
        return note.to_owned();
    }
    let mut end = EVENT_NOTE_MAX - '…'.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &note[..end])
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
        note: Some(event_note(note)),
        action: "Reconcile".into(),
        secondary: None,
    };
    ctx.recorder
        .publish(&event, &release.object_ref(&()))
        .await?;
    Ok(())
}

/// On delete: point the active Service at the last promoted colour (if any) so whatever keeps
/// running never serves a preview that did not pass analysis — unless an older Release claims
/// that Service, which then is not this one's to write.
async fn cleanup(release: &Release, ctx: &Context, ns: &str) -> Result<ControllerAction, Error> {
    let name = release.name_any();
    let active = release.status.as_ref().and_then(|s| s.active_colour);
    // A Service an older Release owns is that Release's to point, not this one's to restore.
    let releases: Api<Release> = Api::namespaced(ctx.client.clone(), ns);
    let claimed =
        state::service_claimed(release, &releases.list(&ListParams::default()).await?.items);
    let note = match (active, claimed) {
        (_, Some(why)) => format!("release deleted; selector left as is: {why}"),
        (Some(colour), None) => {
            switch_selector(ctx, ns, &release.spec.active_service, &name, colour).await?;
            format!(
                "release deleted; {} points at {colour}",
                release.spec.active_service
            )
        }
        (None, None) => "release deleted before any promotion; selector left as is".to_owned(),
    };
    publish(ctx, release, EventType::Normal, "Deleted", &note).await?;
    metrics::release_deleted(ns, &name, &release.spec.service);
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
    // while old-template pods are still the ready ones. And the counts describe the current
    // spec only once the Deployment controller has observed it: until then they are the
    // previous spec's (e.g. the old image's ready pods, just after an apply).
    let updated = status.and_then(|s| s.updated_replicas).unwrap_or(0);
    let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let observed = status.and_then(|s| s.observed_generation).unwrap_or(0);
    let current = observed >= d.metadata.generation.unwrap_or(0);
    DeploymentObs {
        image,
        replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
        ready_replicas: if current { ready.min(updated) } else { 0 },
    }
}

/// The colour of Release `release` that `service` selects, if it selects one.
fn selected_colour(service: &Service, release: &str) -> Option<Colour> {
    let selector = service.spec.as_ref()?.selector.as_ref()?;
    if selector.get(manifests::RELEASE_LABEL).map(String::as_str) != Some(release) {
        return None;
    }
    match selector.get(manifests::COLOUR_LABEL).map(String::as_str) {
        Some("blue") => Some(Colour::Blue),
        Some("green") => Some(Colour::Green),
        _ => None,
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

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
