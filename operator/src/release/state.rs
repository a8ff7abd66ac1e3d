//! The Release state machine as a pure function: observed state + clock → next status + actions.
//!
//! Nothing here talks to Kubernetes or reads the wall clock, so every path (happy, migration
//! failure, breach, freeze, abort, deadline, pause) is tested by feeding observations and moving an
//! injected clock. The reconciler gathers the observations, calls [`decide`], executes the actions
//! in order and applies the returned status.
//!
//! Safety rules the function keeps, because a bad release must never take traffic it fails on:
//! - the active Service selector only ever moves to a colour that passed analysis and is fully
//!   ready ([`Phase::Promoting`] → [`Phase::Succeeded`]), or back to the colour that was active;
//! - a failure before the preview exists (migration) moves no traffic and scales nothing;
//! - the old colour is never scaled down before the scale-down delay after promotion, and never
//!   under `Freeze`;
//! - a Release that is refused (an older Release owns its Service, or its spec cannot work) does
//!   nothing but say so;
//! - a cycle back to a spec hash that was active here before runs no migration (its migrations
//!   are applied and it accepts the newer schema), and a cycle replaced mid-migration deletes
//!   the Job it no longer needs;
//! - with `spec.migration.snapshot`, the migration Job is created only once the cycle's cluster
//!   snapshot is `available` and its ARN is in the status (a reconcile earlier); a snapshot that
//!   fails or times out fails the release with nothing changed.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use kube::ResourceExt;

use crate::crd::{
    AnalysisRun, Colour, Condition, Inconclusive, JobState, MeasurementCounts, MigrationStatus,
    PastRelease, PendingScaleDown, Phase, Release, ReleaseSpec, ReleaseStatus, RollbackPolicy,
    SnapshotSpec, SnapshotState, SnapshotStatus,
};

/// How often an in-progress release is looked at again when nothing else wakes it.
pub const POLL: Duration = Duration::from_secs(5);

/// Measurements kept in `status.analysis` (the latest); `status.measurements` counts them all.
pub const MAX_RUNS: usize = 10;

/// Previously active spec hashes kept in `status.history`.
pub const MAX_HISTORY: usize = 10;

/// Condition type saying whether the operator acts on the Release at all: `False` (reason
/// [`REFUSED_CLAIMED`] or [`REFUSED_INVALID`]) while it is refused.
pub const ACCEPTED: &str = "Accepted";
/// Condition type of the snapshot before migrate: `False` while it is created, `True` once it
/// is available.
pub const SNAPSHOT_READY: &str = "SnapshotReady";
/// How soon a Release whose snapshot just became available is looked at again (to create the
/// Job in the next reconcile, after the status with the ARN is written).
pub const SNAPSHOT_RECORDED_REQUEUE: Duration = Duration::from_secs(1);

/// Another, older Release of the namespace owns the active or preview Service.
pub const REFUSED_CLAIMED: &str = "ServiceClaimed";
/// The spec cannot work as written (e.g. the analysis does not fit in the progress deadline).
pub const REFUSED_INVALID: &str = "InvalidSpec";

/// Whether an older Release of the namespace (`creationTimestamp`, then name) claims one of the
/// Services `release` would write (its active or preview Service, in either role): the older
/// one owns it, and `release` is refused. Returns why.
pub fn service_claimed(release: &Release, others: &[Release]) -> Option<String> {
    let key = |r: &Release| (r.metadata.creation_timestamp.clone(), r.name_any());
    let mine = [&release.spec.active_service, &release.spec.preview_service];
    let mut older: Vec<&Release> = others
        .iter()
        .filter(|o| o.name_any() != release.name_any() && key(o) < key(release))
        .collect();
    older.sort_by_key(|o| key(o));
    older.iter().find_map(|o| {
        let theirs = [&o.spec.active_service, &o.spec.preview_service];
        let service = mine.iter().find(|s| theirs.contains(s))?;
        Some(format!(
            "Service {service} is claimed by Release {}, which is older; nothing is written until one of them changes",
            o.name_any()
        ))
    })
}

/// Why the spec cannot be acted on, if it cannot: checked before anything else, so a Release
/// that can only fail is refused before it migrates or deploys anything.
pub fn invalid_spec(spec: &ReleaseSpec) -> Option<String> {
    if spec.active_service == spec.preview_service {
        return Some(format!(
            "activeService and previewService are both {}: the preview would take production traffic",
            spec.active_service
        ));
    }
    let a = &spec.analysis;
    // Every measurement before promotion must fit in the progress deadline, with one interval
    // to spare for the preview to deploy and the promotion: otherwise the deadline rolls back
    // every release before its analysis can pass.
    let needed = a
        .initial_delay_secs()
        .saturating_add(u64::from(a.count).saturating_mul(a.interval_secs()));
    let deadline = u64::from(spec.progress_deadline_seconds);
    (needed > deadline).then(|| {
        format!(
            "analysis needs initialDelay {} + count {} x interval {} = {needed}s, more than progressDeadlineSeconds {deadline}: \
             every release would miss its deadline; shorten the analysis or raise progressDeadlineSeconds",
            a.initial_delay, a.count, a.interval
        )
    })
}

/// What the reconciler saw of one colour's Deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentObs {
    pub image: String,
    pub replicas: i32,
    pub ready_replicas: i32,
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// The Release's name (names its Deployments and Jobs).
    pub name: &'a str,
    pub generation: Option<i64>,
    pub spec: &'a ReleaseSpec,
    pub status: &'a ReleaseStatus,
    pub blue: Option<DeploymentObs>,
    pub green: Option<DeploymentObs>,
    /// State of the current cycle's migration Job ([`JobState::Missing`] when there is none).
    pub job: JobState,
    /// What RDS says of the current cycle's snapshot, read while it is being created (`None`:
    /// not read).
    pub snapshot: Option<SnapshotObs>,
    /// The colour of this Release the active Service selects, read at every reconcile: the
    /// ground truth of what serves (none: no Service, or it selects no colour of this Release).
    pub active_selector: Option<Colour>,
    /// Set when an older Release of the namespace claims this one's active or preview Service:
    /// why this one is refused.
    pub service_claimed: Option<String>,
    pub now: Timestamp,
}

impl Observed<'_> {
    fn deployment(&self, colour: Colour) -> Option<&DeploymentObs> {
        match colour {
            Colour::Blue => self.blue.as_ref(),
            Colour::Green => self.green.as_ref(),
        }
    }
}

/// What the reconciler saw of the cycle's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotObs {
    Creating {
        percent_progress: Option<i32>,
    },
    Available {
        arn: Option<String>,
    },
    /// RDS reports it failed (or gone into a state it never leaves for `available`).
    Failed(String),
    /// No such snapshot (not visible yet, or deleted by hand): requested again.
    Missing,
    /// RDS could not be asked; waited on within the timeout.
    Unknown(String),
}

/// Kubernetes Event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// One side effect for the reconciler to carry out, in list order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create the migration Job (already existing is fine: the name is unique per cycle).
    CreateMigrationJob { name: String },
    /// Delete a migration Job that is being given up on (timeout, abort).
    DeleteMigrationJob { name: String },
    /// Request the cycle's cluster snapshot (already existing is fine: the name carries the
    /// request's time, so only this request's own retry can find it existing). A refusal is
    /// recorded with [`record_snapshot_failure`].
    CreateSnapshot { cluster: String, name: String },
    /// Delete the service's cycle snapshots of `cluster` beyond the newest `retain` (never
    /// `current`). Failing to is a Warning Event, not a failed release.
    PruneSnapshots {
        cluster: String,
        current: String,
        retain: u32,
    },
    /// Server-side apply one colour's Deployment.
    ApplyDeployment {
        colour: Colour,
        image: String,
        replicas: i32,
    },
    /// Point the preview Service at a colour.
    SwitchPreviewSelector(Colour),
    /// Point the active Service at a colour: promotion, or putting the old colour back.
    SwitchActiveSelector(Colour),
    /// Scale a colour's Deployment to zero now.
    ScaleDown(Colour),
    /// Probe the preview and record the result with [`record_analysis`].
    RunAnalysis,
    /// Probe the active Service (serving this colour since promotion) and record the result
    /// with [`record_analysis`] as a verification measurement.
    RunVerification(Colour),
    EmitEvent {
        type_: EventType,
        reason: String,
        note: String,
    },
}

/// The output of [`decide`].
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub status: ReleaseStatus,
    pub actions: Vec<Action>,
    /// When to look again if nothing else changes.
    pub requeue_after: Option<Duration>,
}

/// A short, stable hash of what a release cycle releases (image and migration). A new hash
/// starts a new cycle; the migration Job's name carries it so the Job runs once per release.
pub fn spec_hash(spec: &ReleaseSpec) -> String {
    let input = serde_json::to_string(&(&spec.image, &spec.migration))
        .expect("image and migration serialize");
    // FNV-1a: stable across Rust versions and processes (unlike DefaultHasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in input.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:010x}", h & 0xff_ffff_ffff)
}

/// Name of the migration Job for one cycle.
pub fn migration_job_name(release: &str, hash: &str) -> String {
    format!("{release}-migrate-{hash}")
}

/// Records that RDS refused the cycle's snapshot request: the next decision fails the release.
pub fn record_snapshot_failure(status: &mut ReleaseStatus, message: String) {
    if let Some(s) = &mut status.snapshot {
        s.state = SnapshotState::Failed;
        s.message = Some(message);
    }
}

/// Name of one colour's Deployment.
pub fn deployment_name(release: &str, colour: Colour) -> String {
    format!("{release}-{colour}")
}

/// Outcome of the optional Prometheus check of one analysis run.
#[derive(Debug, Clone, PartialEq)]
pub struct PromResult {
    /// The query's value, or why there is none (which fails the run).
    pub value: Result<f64, String>,
    pub max_value: f64,
}

/// Appends the outcome of a [`Action::RunAnalysis`] (or, with `verification`, of a
/// [`Action::RunVerification`]) to the status: passed only when the probe passed and the
/// Prometheus check (if configured) returned a value at most its maximum. A Prometheus query
/// that fails or has no data yet makes the measurement an *error* (unless the probe itself
/// breached, which is a failure whatever the query says).
pub fn record_analysis(
    status: &mut ReleaseStatus,
    verdict: &probe::Verdict,
    prometheus: Option<&PromResult>,
    now: Timestamp,
    verification: bool,
) {
    let Some(hash) = status.preview_hash.clone() else {
        return;
    };
    let m = &verdict.measurement;
    let mut passed = verdict.passed;
    let mut message = verdict.summary();
    let mut prometheus_value = None;
    let mut error = false;
    if let Some(p) = prometheus {
        match &p.value {
            Ok(v) => {
                prometheus_value = Some(*v);
                let ok = *v <= p.max_value;
                passed &= ok;
                let cmp = if ok { "<=" } else { ">" };
                message = format!("{message}; prometheus {v} {cmp} {}", p.max_value);
            }
            Err(e) => {
                error = passed;
                passed = false;
                message = format!("{message}; prometheus check failed: {e}");
            }
        }
    }
    push_run(
        status,
        AnalysisRun {
            hash,
            at: now,
            passed,
            requests: m.requests,
            p50_ms: m.p50_ms,
            p99_ms: m.p99_ms,
            error_rate: m.error_rate,
            prometheus_value,
            message,
            verification,
            error,
        },
    );
}

/// Records one measurement: counted in `status.measurements`, kept in `status.analysis` among
/// the latest [`MAX_RUNS`].
fn push_run(status: &mut ReleaseStatus, run: AnalysisRun) {
    let counts = status
        .measurements
        .get_or_insert_with(MeasurementCounts::default);
    if run.error {
        counts.errors += 1;
        counts.consecutive_errors += 1;
    } else {
        counts.count += 1;
        counts.consecutive_errors = 0;
        if !run.passed {
            counts.failed += 1;
        }
    }
    status.analysis.push(run);
    let excess = status.analysis.len().saturating_sub(MAX_RUNS);
    status.analysis.drain(..excess);
}

/// Records an analysis that could not run at all (e.g. the preview Service has no address);
/// it counts as a failed analysis, because an unprobeable preview must not take traffic.
pub fn record_analysis_error(
    status: &mut ReleaseStatus,
    message: String,
    now: Timestamp,
    verification: bool,
) {
    let Some(hash) = status.preview_hash.clone() else {
        return;
    };
    push_run(
        status,
        AnalysisRun {
            hash,
            at: now,
            passed: false,
            requests: 0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            error_rate: 1.0,
            prometheus_value: None,
            message,
            verification,
            error: false,
        },
    );
}

struct Step<'a> {
    obs: &'a Observed<'a>,
    hash: String,
    status: ReleaseStatus,
    actions: Vec<Action>,
    requeue_after: Option<Duration>,
}

/// Decides what to do next. See the module docs for the rules it keeps.
pub fn decide(obs: &Observed<'_>) -> Decision {
    let mut s = Step {
        obs,
        hash: spec_hash(obs.spec),
        status: obs.status.clone(),
        actions: Vec::new(),
        requeue_after: None,
    };
    s.status.observed_generation = obs.generation;
    s.step();
    Decision {
        status: s.status,
        actions: s.actions,
        requeue_after: s.requeue_after,
    }
}

impl Step<'_> {
    fn spec(&self) -> &ReleaseSpec {
        self.obs.spec
    }

    fn now(&self) -> Timestamp {
        self.obs.now
    }

    fn preview(&self) -> Colour {
        self.status.preview_colour.unwrap_or_else(|| {
            self.status
                .active_colour
                .map_or(Colour::Blue, Colour::other)
        })
    }

    fn preview_replicas(&self) -> i32 {
        self.spec().preview_replicas.unwrap_or(self.spec().replicas)
    }

    fn event(&mut self, type_: EventType, reason: &str, note: String) {
        self.actions.push(Action::EmitEvent {
            type_,
            reason: reason.to_owned(),
            note,
        });
    }

    /// Moves to `phase` with an Event whose reason is the phase name (or `reason` for
    /// failures, so `kubectl get events` says why).
    fn transition(&mut self, phase: Phase, reason: Option<&str>, message: &str) {
        let warning = matches!(
            phase,
            Phase::RollingBack | Phase::RolledBack | Phase::Failed | Phase::Frozen
        );
        self.status.phase = phase;
        self.status.phase_since = Some(self.now());
        self.status.message = Some(message.to_owned());
        let reason = reason.map_or_else(|| phase.to_string(), str::to_owned);
        self.event(
            if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            &reason,
            message.to_owned(),
        );
        let (progressing, why) = if phase.in_progress() {
            ("True", phase.to_string())
        } else {
            ("False", reason)
        };
        self.set_condition("Progressing", progressing, &why, message);
    }

    fn set_condition(&mut self, type_: &str, status: &str, reason: &str, message: &str) {
        let now = self.now();
        let generation = self.obs.generation;
        let conditions = &mut self.status.conditions;
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now;
                }
                status.clone_into(&mut c.status);
                reason.clone_into(&mut c.reason);
                message.clone_into(&mut c.message);
                c.observed_generation = generation;
            }
            None => conditions.push(Condition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
                message: message.to_owned(),
                last_transition_time: now,
                observed_generation: generation,
            }),
        }
    }

    fn since(&self, t: Option<Timestamp>) -> SignedDuration {
        t.map_or(SignedDuration::ZERO, |t| self.now().duration_since(t))
    }

    fn poll(&mut self) {
        self.requeue_after = Some(POLL);
    }

    /// The active Service selects another colour than the status says (a manual selector patch,
    /// or a write lost between an action and the status): the Service wins. The status is
    /// corrected, with a Warning Event, before anything else is decided, so nothing is ever
    /// deployed onto, or scaled down from, the colour that serves. Returns true when it
    /// corrected something (the rest waits for the next reconcile).
    fn follow_active_selector(&mut self) -> bool {
        let Some(sel) = self.obs.active_selector else {
            return false;
        };
        if self.status.active_colour == Some(sel) {
            return false;
        }
        let phase = self.status.phase;
        // Promoting switched the selector and its status has not been written yet: finishing
        // the promotion writes it.
        if phase == Phase::Promoting && self.status.preview_colour == Some(sel) {
            return false;
        }
        let was = describe(self.status.active_colour);
        let back = self.status.pending_scale_down.take_if(|p| p.colour == sel);
        self.status.active_colour = Some(sel);
        match &back {
            Some(p) => {
                self.status.active_hash.clone_from(&p.hash);
                self.status.active_image.clone_from(&p.image);
            }
            None => {
                self.status.active_hash = None;
                self.status.active_image = None;
            }
        }
        let msg = format!("the active Service selects {sel}, not {was} as the status said");
        self.poll();
        if phase.in_progress() && self.status.preview_colour == Some(sel) {
            self.status.preview_colour = None;
            self.transition(
                Phase::Failed,
                Some("SelectorDrift"),
                &format!("{msg}: {sel} was this cycle's preview; stopped, nothing written to it"),
            );
        } else if phase == Phase::Succeeded && back.is_some() {
            self.status.verified = false;
            self.status.inconclusive = None;
            self.transition(
                Phase::RolledBack,
                Some("SelectorDrift"),
                &format!("{msg}: rolled back by hand while verifying; nothing scaled down"),
            );
        } else {
            self.status.message = Some(msg.clone());
            self.event(EventType::Warning, "SelectorDrift", msg);
        }
        true
    }

    /// A Release that cannot be acted on (another Release owns its Service, or its spec cannot
    /// work) is refused before anything else: a condition, one Warning Event, and no action.
    /// Returns true when it is refused; clears an earlier refusal otherwise.
    fn refused(&mut self) -> bool {
        let refusal = self
            .obs
            .service_claimed
            .clone()
            .map(|m| (REFUSED_CLAIMED, m))
            .or_else(|| invalid_spec(self.spec()).map(|m| (REFUSED_INVALID, m)));
        let was_refused = self
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == ACCEPTED && c.status == "False");
        let Some((reason, msg)) = refusal else {
            if was_refused {
                self.set_condition(ACCEPTED, "True", "Accepted", "no longer refused");
                self.event(
                    EventType::Normal,
                    "Accepted",
                    "no longer refused".to_owned(),
                );
            }
            return false;
        };
        let same = self.status.conditions.iter().any(|c| {
            c.type_ == ACCEPTED && c.status == "False" && c.reason == reason && c.message == msg
        });
        if !same {
            self.set_condition(ACCEPTED, "False", reason, &msg);
            self.event(EventType::Warning, reason, msg.clone());
        }
        self.status.message = Some(format!("refused: {msg}"));
        // A new Release has no phase start yet: from now on it counts as held in Pending.
        if self.status.phase_since.is_none() {
            self.status.phase_since = Some(self.now());
        }
        true
    }

    fn step(&mut self) {
        if self.refused() {
            return;
        }
        if self.follow_active_selector() {
            return;
        }
        if self.status.preview_hash.as_deref() != Some(self.hash.as_str()) {
            if self.spec().abort {
                self.status.message = Some("abort is set: not starting a new release".into());
                return;
            }
            self.start_cycle();
            // One transition per reconcile: Pending is recorded (status + Event) before the
            // first side effect of the cycle.
            return;
        }
        let phase = self.status.phase;
        if phase.in_progress() && phase != Phase::RollingBack {
            if self.hold_for_pause() {
                return;
            }
            if self.spec().abort {
                self.fail("Aborted", "aborted by spec.abort");
                return;
            }
            let deadline =
                SignedDuration::from_secs(i64::from(self.spec().progress_deadline_seconds));
            // An inconclusive analysis waits for a human, not for the deadline; a snapshot being
            // created is bounded by its own timeout, and its time is not the release's.
            if self.since(self.status.progress_since) > deadline
                && self.status.inconclusive.is_none()
                && !self.snapshot_creating()
            {
                let msg = format!(
                    "no progress within {}s (stuck in {phase})",
                    self.spec().progress_deadline_seconds
                );
                self.fail("ProgressDeadlineExceeded", &msg);
                return;
            }
        }
        match phase {
            Phase::Pending => self.pending(),
            Phase::Migrating => self.migrating(),
            Phase::DeployingPreview => self.deploying_preview(),
            Phase::Analyzing => self.analyzing(),
            Phase::Promoting => self.promoting(),
            Phase::Succeeded => self.succeeded(),
            Phase::RollingBack => {
                let old = self
                    .status
                    .active_colour
                    .map_or_else(|| "no colour".to_owned(), |c| c.to_string());
                self.transition(
                    Phase::RolledBack,
                    None,
                    &format!("rolled back: {old} serves, preview scaled down"),
                );
            }
            Phase::RolledBack | Phase::Failed | Phase::Frozen => {}
        }
    }

    fn start_cycle(&mut self) {
        // A cycle replaced while its migration Job runs: that Job migrates for an image that
        // will never be released; it is deleted (its pods with it) before the new cycle starts.
        if matches!(self.status.phase, Phase::Pending | Phase::Migrating)
            && let Some(m) = self.status.migration.take()
            && m.state == JobState::Running
        {
            self.actions.push(Action::DeleteMigrationJob {
                name: m.job_name.clone(),
            });
            self.event(
                EventType::Normal,
                "MigrationSuperseded",
                format!(
                    "migration Job {} deleted: a new cycle replaced it",
                    m.job_name
                ),
            );
        }
        let preview = self
            .status
            .active_colour
            .map_or(Colour::Blue, Colour::other);
        if self.status.active_hash.as_deref() == Some(self.hash.as_str()) {
            // Back to what is already serving (e.g. the image reverted after a rollback).
            self.status.preview_hash = Some(self.hash.clone());
            self.status.preview_colour = None;
            self.transition(
                Phase::Succeeded,
                Some("AlreadyActive"),
                "spec matches the active colour; nothing to release",
            );
            return;
        }
        // The idle colour is about to be reused: a scale-down still pending for it is void.
        if self
            .status
            .pending_scale_down
            .as_ref()
            .is_some_and(|p| p.colour == preview)
        {
            // What that colour ran was active: remembered before the record of it goes (a
            // status written before `history` existed knows it only from here).
            if let Some(PendingScaleDown {
                hash: Some(hash),
                image: Some(image),
                ..
            }) = self.status.pending_scale_down.take()
                && !self.status.history.iter().any(|p| p.hash == hash)
            {
                self.remember(hash, image);
            }
        }
        self.status.preview_colour = Some(preview);
        self.status.preview_hash = Some(self.hash.clone());
        self.status.progress_since = Some(self.now());
        self.status.paused_since = None;
        self.status.migration = None;
        // The snapshot is the cycle's own: a spec released again (after a failed cycle, or
        // once it left the history) takes a new one, never the restore point of back then.
        self.status.snapshot = None;
        self.status.analysis.clear();
        self.status.measurements = None;
        self.status.inconclusive = None;
        let image = self.spec().image.clone();
        self.transition(
            Phase::Pending,
            Some("ReleaseStarted"),
            &format!("releasing {image} on {preview}"),
        );
    }

    /// Returns true when `paused` holds the release; on resume, moves the deadline clock on by
    /// the time spent paused.
    fn hold_for_pause(&mut self) -> bool {
        let now = self.now();
        if self.spec().paused {
            if self.status.paused_since.is_none() {
                self.status.paused_since = Some(now);
                self.set_condition("Paused", "True", "Paused", "spec.paused is set");
                self.event(
                    EventType::Normal,
                    "Paused",
                    format!("paused in {}", self.status.phase),
                );
            }
            return true;
        }
        if let Some(since) = self.status.paused_since.take() {
            let paused_for = now.duration_since(since);
            self.status.progress_since = self
                .status
                .progress_since
                .map(|p| p.checked_add(paused_for).unwrap_or(p));
            self.set_condition("Paused", "False", "Resumed", "spec.paused was unset");
            self.event(
                EventType::Normal,
                "Resumed",
                format!("resumed in {}", self.status.phase),
            );
        }
        false
    }

    /// A failure. Before the preview exists nothing moved, so it is just `Failed`; afterwards the
    /// rollback policy decides.
    fn fail(&mut self, reason: &str, message: &str) {
        match self.status.phase {
            Phase::Pending | Phase::Migrating => {
                if let Some(m) = &mut self.status.migration
                    && m.state == JobState::Running
                {
                    let name = m.job_name.clone();
                    self.actions.push(Action::DeleteMigrationJob { name });
                }
                self.transition(
                    Phase::Failed,
                    Some(reason),
                    &format!("{message}; no traffic moved"),
                );
            }
            _ => self.roll_back(reason, message),
        }
    }

    fn roll_back(&mut self, reason: &str, message: &str) {
        self.status.inconclusive = None;
        let preview = self.preview();
        let old = self.status.active_colour;
        // Re-assert the old colour even though promotion never moved it: the selector is the
        // one thing that must be right after a failure.
        if let Some(old) = old {
            self.actions.push(Action::SwitchActiveSelector(old));
        }
        match self.spec().rollback_policy {
            RollbackPolicy::Revert => {
                self.actions.push(Action::ScaleDown(preview));
                self.transition(
                    Phase::RollingBack,
                    Some(reason),
                    &format!("{message}; rolling back to {}", describe(old)),
                );
            }
            RollbackPolicy::Freeze => {
                // Nothing is scaled down: the old colour keeps serving and the preview stays for
                // the human who has to decide about an irreversible migration.
                self.status.pending_scale_down = None;
                self.transition(
                    Phase::Frozen,
                    Some(reason),
                    &format!(
                        "{message}; frozen: {} keeps serving, {preview} left running, needs a human",
                        describe(old)
                    ),
                );
            }
        }
    }

    /// Whether this cycle's spec hash was active here before: its migrations are applied, and a
    /// schema that is ahead of them is one it accepts (services check on boot only that the
    /// schema holds every migration they ship, `kit::db::check_schema`: the contract half of
    /// expand/contract). So going back to it needs no migration.
    fn was_active(&self) -> bool {
        let hash = Some(self.hash.as_str());
        self.status
            .history
            .iter()
            .any(|p| Some(p.hash.as_str()) == hash)
            || self.status.active_hash.as_deref() == hash
            || self
                .status
                .pending_scale_down
                .as_ref()
                .is_some_and(|p| p.hash.as_deref() == hash)
    }

    /// Records the hash just promoted in `status.history`.
    fn remember_active(&mut self) {
        let hash = self.hash.clone();
        let image = self.spec().image.clone();
        self.remember(hash, image);
    }

    /// Records `hash` as once active (newest last, at most [`MAX_HISTORY`]).
    fn remember(&mut self, hash: String, image: String) {
        let history = &mut self.status.history;
        history.retain(|p| p.hash != hash);
        history.push(PastRelease { hash, image });
        let excess = history.len().saturating_sub(MAX_HISTORY);
        history.drain(..excess);
    }

    fn pending(&mut self) {
        match self.spec().migration.clone() {
            Some(_) if self.was_active() => {
                let image = self.spec().image.clone();
                self.event(
                    EventType::Normal,
                    "MigrationSkipped",
                    format!(
                        "{image} was active here before: its migrations are applied and it accepts the newer schema"
                    ),
                );
                self.enter_deploying_preview();
            }
            Some(m) => {
                if let Some(snapshot) = &m.snapshot
                    && !self.snapshot_available(snapshot)
                {
                    return;
                }
                let name = migration_job_name(self.obs.name, &self.hash);
                self.actions
                    .push(Action::CreateMigrationJob { name: name.clone() });
                self.status.migration = Some(MigrationStatus {
                    job_name: name.clone(),
                    state: JobState::Running,
                });
                self.transition(
                    Phase::Migrating,
                    None,
                    &format!("migration Job {name} started"),
                );
                self.poll();
            }
            None => self.enter_deploying_preview(),
        }
    }

    /// Whether the cycle waits, in `Pending`, for its snapshot to become available.
    fn snapshot_creating(&self) -> bool {
        self.status.phase == Phase::Pending
            && self.status.snapshot.as_ref().is_some_and(|s| {
                s.state == SnapshotState::Creating
                    && super::snapshot::is_snapshot_of(&self.spec().service, &self.hash, &s.name)
            })
    }

    /// Whether this cycle's snapshot is available and recorded; otherwise requests it, waits
    /// for it (progress in the status), or fails the release (refused, failed, timed out).
    fn snapshot_available(&mut self, spec: &SnapshotSpec) -> bool {
        let service = self.spec().service.clone();
        let cluster = spec.cluster_identifier.clone();
        let current = self.status.snapshot.clone().filter(|s| {
            super::snapshot::is_snapshot_of(&service, &self.hash, &s.name)
                && s.cluster_identifier == cluster
        });
        let Some(mut current) = current else {
            let name = super::snapshot::snapshot_name(&service, &self.hash, self.now());
            self.actions.push(Action::CreateSnapshot {
                cluster: cluster.clone(),
                name: name.clone(),
            });
            self.status.snapshot = Some(SnapshotStatus {
                name: name.clone(),
                cluster_identifier: cluster.clone(),
                state: SnapshotState::Creating,
                requested_at: self.now(),
                percent_progress: None,
                arn: None,
                message: None,
            });
            let msg =
                format!("snapshot {name} of cluster {cluster} requested before the migration");
            self.set_condition(SNAPSHOT_READY, "False", "Creating", &msg);
            self.event(EventType::Normal, "SnapshotRequested", msg.clone());
            self.status.message = Some(msg);
            self.poll();
            return false;
        };
        let name = current.name.clone();
        match current.state {
            SnapshotState::Available => return true,
            SnapshotState::Failed => {
                let why = current.message.clone().unwrap_or_default();
                self.set_condition(SNAPSHOT_READY, "False", "SnapshotFailed", &why);
                self.fail(
                    "SnapshotFailed",
                    &format!(
                        "snapshot {name} of cluster {cluster} failed: {why}; no migration ran"
                    ),
                );
                return false;
            }
            SnapshotState::Creating => {}
        }
        match self.obs.snapshot.clone() {
            Some(SnapshotObs::Available { arn }) => {
                current.state = SnapshotState::Available;
                current.percent_progress = Some(100);
                current.arn.clone_from(&arn);
                // The progress deadline is the release's: the time the snapshot took moves it
                // on, as time spent paused does.
                let took = self.now().duration_since(current.requested_at);
                self.status.progress_since = self
                    .status
                    .progress_since
                    .map(|p| p.checked_add(took).unwrap_or(p));
                self.status.snapshot = Some(current);
                let msg = format!(
                    "snapshot {name} available ({}); the migration starts next",
                    arn.as_deref().unwrap_or("no ARN reported")
                );
                self.set_condition(SNAPSHOT_READY, "True", "Available", &msg);
                self.event(EventType::Normal, "SnapshotAvailable", msg.clone());
                self.status.message = Some(msg);
                self.actions.push(Action::PruneSnapshots {
                    cluster,
                    current: name,
                    retain: spec.retain,
                });
                // The Job waits for the next reconcile: the ARN is written first.
                self.requeue_after = Some(SNAPSHOT_RECORDED_REQUEUE);
                return false;
            }
            Some(SnapshotObs::Failed(why)) => {
                current.state = SnapshotState::Failed;
                current.message = Some(why.clone());
                self.status.snapshot = Some(current);
                self.set_condition(SNAPSHOT_READY, "False", "SnapshotFailed", &why);
                self.fail(
                    "SnapshotFailed",
                    &format!(
                        "snapshot {name} of cluster {cluster} failed: {why}; no migration ran"
                    ),
                );
                return false;
            }
            Some(SnapshotObs::Creating { percent_progress }) => {
                current.percent_progress = percent_progress;
            }
            Some(SnapshotObs::Missing) => {
                // Not visible yet, or deleted by hand: requesting again is idempotent.
                self.actions.push(Action::CreateSnapshot {
                    cluster: cluster.clone(),
                    name: name.clone(),
                });
            }
            Some(SnapshotObs::Unknown(why)) => current.message = Some(why),
            None => {}
        }
        let timeout = SignedDuration::from_secs(i64::from(spec.timeout_seconds));
        let requested_at = current.requested_at;
        let progress = current
            .percent_progress
            .map_or_else(String::new, |p| format!(", {p}%"));
        self.status.snapshot = Some(current);
        if self.now().duration_since(requested_at) > timeout {
            let why = format!("not available within {}s", spec.timeout_seconds);
            if let Some(s) = &mut self.status.snapshot {
                s.state = SnapshotState::Failed;
                s.message = Some(why.clone());
            }
            self.set_condition(SNAPSHOT_READY, "False", "SnapshotTimedOut", &why);
            self.fail(
                "SnapshotTimedOut",
                &format!("snapshot {name} of cluster {cluster} {why}; no migration ran"),
            );
            return false;
        }
        self.status.message = Some(format!(
            "waiting for snapshot {name} of cluster {cluster} to be available (creating{progress})"
        ));
        self.poll();
        false
    }

    fn migrating(&mut self) {
        let Some(migration) = self.spec().migration.clone() else {
            self.enter_deploying_preview();
            return;
        };
        let name = self
            .status
            .migration
            .as_ref()
            .map_or_else(String::new, |m| m.job_name.clone());
        match self.obs.job {
            JobState::Succeeded => {
                if let Some(m) = &mut self.status.migration {
                    m.state = JobState::Succeeded;
                }
                self.event(
                    EventType::Normal,
                    "MigrationSucceeded",
                    format!("migration Job {name} succeeded"),
                );
                self.enter_deploying_preview();
            }
            JobState::Failed => {
                if let Some(m) = &mut self.status.migration {
                    m.state = JobState::Failed;
                }
                self.fail("MigrationFailed", &format!("migration Job {name} failed"));
            }
            JobState::Running | JobState::Missing => {
                let timeout = SignedDuration::from_secs(i64::from(migration.timeout_seconds));
                if self.since(self.status.phase_since) > timeout {
                    self.fail(
                        "MigrationTimedOut",
                        &format!(
                            "migration Job {name} did not finish within {}s",
                            migration.timeout_seconds
                        ),
                    );
                    return;
                }
                if self.obs.job == JobState::Missing {
                    // Not visible yet (or deleted by hand): creating again is idempotent.
                    self.actions.push(Action::CreateMigrationJob { name });
                }
                self.poll();
            }
        }
    }

    fn enter_deploying_preview(&mut self) {
        let preview = self.preview();
        let image = self.spec().image.clone();
        self.actions.push(Action::ApplyDeployment {
            colour: preview,
            image: image.clone(),
            replicas: self.preview_replicas(),
        });
        self.actions.push(Action::SwitchPreviewSelector(preview));
        self.transition(
            Phase::DeployingPreview,
            None,
            &format!("deploying {image} on {preview} as preview"),
        );
        self.poll();
    }

    fn deploying_preview(&mut self) {
        let preview = self.preview();
        let want = self.preview_replicas();
        let image = self.spec().image.clone();
        match self.obs.deployment(preview) {
            Some(d) if d.image == image && d.ready_replicas >= want => {
                let delay = self.spec().analysis.initial_delay_secs();
                if delay == 0 {
                    self.actions.push(Action::RunAnalysis);
                }
                self.transition(
                    Phase::Analyzing,
                    None,
                    &format!("preview {preview} ready ({want} replicas); analysing"),
                );
                if delay == 0 {
                    self.judge_soon();
                } else {
                    self.requeue_after = Some(Duration::from_secs(delay));
                }
            }
            Some(d) if d.image == image && d.replicas >= want => self.poll(),
            _ => {
                // Missing or drifted: apply again (server-side apply is idempotent).
                self.actions.push(Action::ApplyDeployment {
                    colour: preview,
                    image,
                    replicas: want,
                });
                self.poll();
            }
        }
    }

    /// The latest measurement of this cycle's analysis (before promotion) or, with
    /// `verification`, of its verification.
    fn latest_run(&self, verification: bool) -> Option<AnalysisRun> {
        self.status
            .analysis
            .iter()
            .rev()
            .find(|r| r.hash == self.hash && r.verification == verification)
            .cloned()
    }

    /// `status.measurements`, or (for a status written before it existed) the tally of the
    /// runs still listed.
    fn counts(&self, verification: bool) -> MeasurementCounts {
        if let Some(c) = &self.status.measurements {
            return c.clone();
        }
        let mut c = MeasurementCounts::default();
        for r in self
            .status
            .analysis
            .iter()
            .filter(|r| r.hash == self.hash && r.verification == verification)
        {
            if r.error {
                c.errors += 1;
                c.consecutive_errors += 1;
            } else {
                c.count += 1;
                c.consecutive_errors = 0;
                c.failed += u32::from(!r.passed);
            }
        }
        c
    }

    fn latest_failure(&self, verification: bool) -> String {
        self.status
            .analysis
            .iter()
            .rev()
            .find(|r| {
                r.hash == self.hash && r.verification == verification && !r.passed && !r.error
            })
            .map_or_else(|| "a measurement failed".to_owned(), |r| r.message.clone())
    }

    /// `consecutiveErrorLimit` reached: hold for a human (no rollback, nothing scaled down).
    fn hold_inconclusive(&mut self, reason: &str, what: &str, last: Option<&AnalysisRun>) {
        let limit = self.spec().analysis.consecutive_error_limit;
        let last = last.map_or("", |r| r.message.as_str());
        let image = self.spec().image.clone();
        let msg = format!(
            "{what} inconclusive: {limit} consecutive measurement errors (last: {last}); \
             waiting for a human: spec.promote = {image} to go on, spec.abort to roll back"
        );
        self.status.inconclusive = Some(Inconclusive {
            since: self.now(),
            generation: self.obs.generation,
        });
        self.status.message = Some(msg.clone());
        self.set_condition("Paused", "True", "Inconclusive", &msg);
        self.event(EventType::Warning, reason, msg);
    }

    /// Whether a human told an inconclusive hold to go on: `spec.promote` names the image, set
    /// in a spec change after the hold began.
    fn inconclusive_accepted(&self) -> bool {
        let Some(held) = &self.status.inconclusive else {
            return false;
        };
        let later = match (self.obs.generation, held.generation) {
            (Some(now), Some(then)) => now > then,
            _ => false,
        };
        later && self.spec().promote.as_deref() == Some(self.spec().image.as_str())
    }

    /// Ends an inconclusive hold a human accepted; the time held is added back to the progress
    /// deadline.
    fn release_inconclusive(&mut self) {
        if let Some(held) = self.status.inconclusive.take() {
            let held_for = self.now().duration_since(held.since);
            self.status.progress_since = self
                .status
                .progress_since
                .map(|p| p.checked_add(held_for).unwrap_or(p));
            let msg = "spec.promote accepted the inconclusive measurements";
            self.set_condition("Paused", "False", "InconclusiveAccepted", msg);
            self.event(EventType::Normal, "InconclusiveAccepted", msg.to_owned());
        }
    }

    fn analyzing(&mut self) {
        let analysis = self.spec().analysis.clone();
        let counts = self.counts(false);
        let latest = self.latest_run(false);
        if counts.failed > analysis.failure_limit {
            let message = self.latest_failure(false);
            self.set_condition("AnalysisPassed", "False", "Breach", &message);
            self.fail("AnalysisFailed", &format!("analysis failed: {message}"));
            return;
        }
        if self.status.inconclusive.is_some() {
            if !self.inconclusive_accepted() {
                return;
            }
            self.release_inconclusive();
        } else if counts.consecutive_errors >= analysis.consecutive_error_limit {
            self.set_condition(
                "AnalysisPassed",
                "Unknown",
                "Inconclusive",
                "too many measurement errors",
            );
            self.hold_inconclusive("AnalysisInconclusive", "analysis", latest.as_ref());
            return;
        } else if counts.count < analysis.count {
            let now = self.now();
            let due =
                match &latest {
                    Some(r) => r.at.checked_add(self.interval()),
                    None => self.status.phase_since.unwrap_or(now).checked_add(
                        SignedDuration::from_secs(
                            i64::try_from(analysis.initial_delay_secs()).unwrap_or(i64::MAX),
                        ),
                    ),
                }
                .unwrap_or(now);
            if now >= due {
                self.actions.push(Action::RunAnalysis);
                self.judge_soon();
            } else {
                self.requeue_after = Some(due.duration_since(now).unsigned_abs());
            }
            return;
        }
        let run = latest.unwrap_or_else(|| AnalysisRun {
            hash: self.hash.clone(),
            at: self.now(),
            passed: false,
            requests: 0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            error_rate: 0.0,
            prometheus_value: None,
            message: "no measurement".into(),
            verification: false,
            error: true,
        });
        self.set_condition("AnalysisPassed", "True", "WithinSLO", &run.message);
        let image = self.spec().image.clone();
        let manual_ok = self.spec().promote.as_deref() == Some(image.as_str());
        if !(self.spec().auto_promote || manual_ok) {
            let msg = format!("analysis passed; waiting for spec.promote = {image}");
            if self.status.message.as_deref() != Some(msg.as_str()) {
                self.event(EventType::Normal, "AwaitingPromotion", msg.clone());
                self.status.message = Some(msg);
            }
            return;
        }
        let preview = self.preview();
        let replicas = self.spec().replicas;
        self.actions.push(Action::ApplyDeployment {
            colour: preview,
            image,
            replicas,
        });
        self.transition(
            Phase::Promoting,
            None,
            &format!(
                "analysis passed ({}); scaling {preview} to {replicas}",
                run.message
            ),
        );
        self.poll();
    }

    fn promoting(&mut self) {
        let preview = self.preview();
        let replicas = self.spec().replicas;
        let image = self.spec().image.clone();
        let ready = self
            .obs
            .deployment(preview)
            .is_some_and(|d| d.image == image && d.ready_replicas >= replicas);
        if !ready {
            self.poll();
            return;
        }
        self.actions.push(Action::SwitchActiveSelector(preview));
        let old = self.status.active_colour;
        if let Some(old) = old {
            let delay = SignedDuration::from_secs(i64::from(self.spec().scale_down_delay_seconds));
            let after = self.now().checked_add(delay).unwrap_or(self.now());
            self.status.pending_scale_down = Some(PendingScaleDown {
                colour: old,
                after,
                hash: self.status.active_hash.clone(),
                image: self.status.active_image.clone(),
            });
            self.status.verified = false;
            let interval = self.spec().analysis.interval_secs();
            self.set_condition(
                "Verified",
                "False",
                "Verifying",
                &format!("{preview} is measured every {interval}s until {after}; {old} kept"),
            );
            self.requeue_after = Some(Duration::from_secs(
                interval.min(u64::from(self.spec().scale_down_delay_seconds)),
            ));
        } else {
            self.status.verified = true;
            self.set_condition(
                "Verified",
                "True",
                "NoPreviousColour",
                "first release: no colour to fall back to",
            );
        }
        self.status.active_colour = Some(preview);
        // Verification counts its own measurements.
        self.status.measurements = None;
        self.status.inconclusive = None;
        self.status.active_hash = Some(self.hash.clone());
        self.status.active_image = Some(image.clone());
        self.remember_active();
        self.transition(
            Phase::Succeeded,
            Some("Promoted"),
            &format!(
                "{preview} ({image}) is active; {} kept for {}s",
                describe(old),
                self.spec().scale_down_delay_seconds
            ),
        );
    }

    fn interval(&self) -> SignedDuration {
        let secs = self.spec().analysis.interval_secs();
        SignedDuration::from_secs(i64::try_from(secs).unwrap_or(i64::MAX))
    }

    /// How soon to look again after a measurement was asked for: the verdict is judged at the
    /// next reconcile, so a failed measurement moves the selector back at most this long after
    /// it was taken (never more than one interval).
    fn judge_soon(&mut self) {
        let interval = Duration::from_secs(self.spec().analysis.interval_secs());
        self.requeue_after = Some(POLL.min(interval));
    }

    /// Verifying after the switch: the active colour is measured every analysis interval until
    /// the scale-down delay ends. A failed measurement puts the old colour (still running) back
    /// behind the active Service; only a delay that ends with every measurement passed scales
    /// the old colour down and marks the release verified.
    fn succeeded(&mut self) {
        let Some(pending) = self.status.pending_scale_down.clone() else {
            if !self.status.verified {
                // Nothing left to fall back to (a first release, or a status written before
                // verification existed, whose delay already ended).
                self.status.verified = true;
                self.set_condition(
                    "Verified",
                    "True",
                    "NoPreviousColour",
                    "no colour to fall back to",
                );
            }
            return;
        };
        let Some(active) = self.status.active_colour else {
            return;
        };
        let last = self.latest_run(true);
        let counts = self.counts(true);
        let failure_limit = self.spec().analysis.failure_limit;
        let error_limit = self.spec().analysis.consecutive_error_limit;
        if counts.failed > failure_limit {
            let msg = format!(
                "verification of {active} failed: {}",
                self.latest_failure(true)
            );
            self.revert_promotion(&pending, "VerificationFailed", &msg);
            return;
        }
        if self.spec().abort {
            self.revert_promotion(&pending, "Aborted", "aborted by spec.abort while verifying");
            return;
        }
        let now = self.now();
        let mut accepted = false;
        if self.status.inconclusive.is_some() {
            // Both colours keep running, nothing is measured, until a human decides.
            if !self.inconclusive_accepted() {
                return;
            }
            self.release_inconclusive();
            accepted = true;
        } else if counts.consecutive_errors >= error_limit {
            self.hold_inconclusive("VerificationInconclusive", "verification", last.as_ref());
            return;
        }
        if (now >= pending.after && counts.count > 0) || accepted {
            self.actions.push(Action::ScaleDown(pending.colour));
            self.status.pending_scale_down = None;
            self.status.verified = true;
            let msg = format!(
                "{active} passed every measurement for {}s; {} scaled to 0",
                self.spec().scale_down_delay_seconds,
                pending.colour
            );
            self.set_condition("Verified", "True", "Verified", &msg);
            self.event(EventType::Normal, "Verified", msg);
            self.event(
                EventType::Normal,
                "ScaledDown",
                format!("scale-down delay over: {} scaled to 0", pending.colour),
            );
            return;
        }
        let since = last
            .as_ref()
            .map_or(self.status.phase_since, |r| Some(r.at))
            .unwrap_or(now);
        let due = since.checked_add(self.interval()).unwrap_or(now);
        // The delay ending without any measurement yet measures once before deciding.
        if now >= due || now >= pending.after {
            self.actions.push(Action::RunVerification(active));
            self.judge_soon();
            return;
        }
        let next = if due < pending.after {
            due
        } else {
            pending.after
        };
        self.requeue_after = Some(next.duration_since(now).unsigned_abs());
    }

    /// A promoted colour that failed verification: the old colour becomes the active one again
    /// (status first, so [`Self::roll_back`] switches the selector to it and treats the promoted
    /// colour as the preview to scale down or, under `Freeze`, to leave running).
    fn revert_promotion(&mut self, pending: &PendingScaleDown, reason: &str, message: &str) {
        let promoted = self.status.active_colour;
        self.status.active_colour = Some(pending.colour);
        self.status.active_hash.clone_from(&pending.hash);
        self.status.active_image.clone_from(&pending.image);
        self.status.preview_colour = promoted;
        self.status.pending_scale_down = None;
        self.status.verified = false;
        self.set_condition("Verified", "False", reason, message);
        self.roll_back(reason, message);
    }
}

fn describe(colour: Option<Colour>) -> String {
    colour.map_or_else(|| "no previous colour".to_owned(), |c| c.to_string())
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
