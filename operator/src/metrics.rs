//! The operator's Prometheus series (operator/README.md, "Metrics"): every reconcile's outcome
//! and duration, the phase of each Release, each Release analysis' verdict, and whether each
//! Rollout halted. Recorded through the `metrics` facade and rendered by
//! `metrics-exporter-prometheus`, the exporter the services use (`kit::metrics`).
//!
//! Every label is either a closed enum here ([`Controller`], [`ErrorKind`], [`Verdict`],
//! [`Phase`]) or the name of a Kubernetes object, so a typo cannot invent a series: there is
//! no function taking a controller or a kind as a string.
//!
//! The operator builds its own recorder instead of calling `kit::metrics::install`: that one
//! configures buckets only for `http_request_duration_seconds`, and the exporter renders a
//! histogram without buckets as a summary, which `histogram_quantile` cannot aggregate.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use metrics::{KeyName, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::crd::{Phase, RolloutPhase};

/// `meridian_operator_reconciles_total{controller, result}`: result `ok` | `error`.
pub const RECONCILES: &str = "meridian_operator_reconciles_total";
/// `meridian_operator_reconcile_errors_total{controller, kind}`: kind from [`ErrorKind`].
pub const RECONCILE_ERRORS: &str = "meridian_operator_reconcile_errors_total";
/// `meridian_operator_reconcile_duration_seconds{controller}`: histogram, [`DURATION_BUCKETS`].
pub const RECONCILE_DURATION: &str = "meridian_operator_reconcile_duration_seconds";
/// `meridian_release_phase{namespace, release, service, phase}`: 1 for the current phase, 0
/// for every other.
pub const RELEASE_PHASE: &str = "meridian_release_phase";
/// `meridian_release_phase_since_timestamp_seconds{namespace, release}`: `status.phaseSince`.
pub const RELEASE_PHASE_SINCE: &str = "meridian_release_phase_since_timestamp_seconds";
/// `meridian_release_analysis_total{namespace, service, verdict}`.
pub const RELEASE_ANALYSIS: &str = "meridian_release_analysis_total";
/// `meridian_release_held{namespace, release, service, reason}`: 1 while the Release waits for a
/// human for `reason` ([`Held`]), 0 for the other reasons.
pub const RELEASE_HELD: &str = "meridian_release_held";
/// `meridian_rollout_halted{namespace, rollout}`: 1 once the Rollout halted.
pub const ROLLOUT_HALTED: &str = "meridian_rollout_halted";
/// `meridian_rollout_phase{namespace, rollout, phase}`: 1 for the Rollout's current phase, 0 for
/// every other (so `Superseded`, which is not halted, can be seen).
pub const ROLLOUT_PHASE: &str = "meridian_rollout_phase";

/// Reconcile durations: API calls take milliseconds, a reconcile that runs an analysis probe
/// takes as long as its requests (hundreds at a few per millisecond, up to its timeouts).
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The operator's two controllers; the `controller` label of the reconcile series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Controller {
    /// Releases in the managed namespaces (every cluster).
    Release,
    /// Rollouts across clusters (management cluster).
    Rollout,
}

impl Controller {
    pub const ALL: [Self; 2] = [Self::Release, Self::Rollout];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Rollout => "rollout",
        }
    }

    /// The error kinds this controller can report.
    pub const fn error_kinds(self) -> &'static [ErrorKind] {
        match self {
            Self::Release => &[
                ErrorKind::KubeApi,
                ErrorKind::Finalizer,
                ErrorKind::InvalidObject,
                ErrorKind::Watch,
            ],
            Self::Rollout => &[ErrorKind::KubeApi, ErrorKind::Kubeconfig, ErrorKind::Watch],
        }
    }
}

/// Why a reconcile failed: the `kind` label of [`RECONCILE_ERRORS`], derived from the
/// controllers' error enums (`release::reconcile::Error::kind`, `rollout::clusters::Error::kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A Kubernetes API call failed (read, create, patch, Event); retried after 30 s.
    KubeApi,
    /// Adding or removing the Release's finalizer failed.
    Finalizer,
    /// The object cannot be reconciled as handed out (a Release without namespace or name).
    InvalidObject,
    /// A target cluster's kubeconfig Secret has no usable kubeconfig.
    Kubeconfig,
    /// The controller's watch of its objects failed (not a reconcile: counted only here).
    Watch,
}

impl ErrorKind {
    pub const ALL: [Self; 5] = [
        Self::KubeApi,
        Self::Finalizer,
        Self::InvalidObject,
        Self::Kubeconfig,
        Self::Watch,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::KubeApi => "kube_api",
            Self::Finalizer => "finalizer",
            Self::InvalidObject => "invalid_object",
            Self::Kubeconfig => "kubeconfig",
            Self::Watch => "watch",
        }
    }
}

/// The outcome of one Release analysis: the `verdict` label of [`RELEASE_ANALYSIS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Passed,
    /// A threshold was exceeded, or the analysis could not run (probe or token Secret): either
    /// way the preview does not take traffic.
    Breached,
    /// The measurement could not be taken (a Prometheus query error or no data): counted
    /// against `consecutiveErrorLimit`, never a failure.
    Error,
}

impl Verdict {
    pub const ALL: [Self; 3] = [Self::Passed, Self::Breached, Self::Error];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Breached => "breached",
            Self::Error => "error",
        }
    }
}

/// Why a Release waits for a human: the `reason` label of [`RELEASE_HELD`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Held {
    /// Its analysis or verification reached `consecutiveErrorLimit` (before or after promotion).
    Inconclusive,
    /// An older Release of the namespace owns its active or preview Service.
    ServiceClaimed,
    /// Its spec cannot work (e.g. the analysis does not fit in the progress deadline).
    InvalidSpec,
}

impl Held {
    pub const ALL: [Self; 3] = [Self::Inconclusive, Self::ServiceClaimed, Self::InvalidSpec];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Inconclusive => "Inconclusive",
            Self::ServiceClaimed => "ServiceClaimed",
            Self::InvalidSpec => "InvalidSpec",
        }
    }
}

/// A recorder with the operator's buckets and help texts, not installed anywhere: the binary
/// installs one ([`install`]), tests use one each as a local recorder.
pub fn recorder() -> PrometheusRecorder {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(RECONCILE_DURATION.into()), DURATION_BUCKETS)
        .expect("static bucket list is non-empty")
        .build_recorder();
    describe(&recorder);
    recorder
}

fn describe(recorder: &PrometheusRecorder) {
    let help = |name: &'static str| (KeyName::from_const_str(name), None::<Unit>);
    let text = SharedString::const_str;
    let (k, u) = help(RECONCILES);
    recorder.describe_counter(
        k,
        u,
        text("Reconciles by controller and result (ok, error)."),
    );
    let (k, u) = help(RECONCILE_ERRORS);
    recorder.describe_counter(
        k,
        u,
        text("Failed reconciles (and watch failures, kind=watch) by controller and kind."),
    );
    let (k, u) = help(RECONCILE_DURATION);
    recorder.describe_histogram(k, u, text("Duration of one reconcile in seconds."));
    let (k, u) = help(RELEASE_PHASE);
    recorder.describe_gauge(
        k,
        u,
        text("1 for the Release's current phase, 0 for the others (all 0 once deleted)."),
    );
    let (k, u) = help(RELEASE_PHASE_SINCE);
    recorder.describe_gauge(
        k,
        u,
        text("Unix time the Release entered its current phase (status.phaseSince)."),
    );
    let (k, u) = help(RELEASE_ANALYSIS);
    recorder.describe_counter(
        k,
        u,
        text("Completed Release analysis measurements by verdict (passed, breached, error)."),
    );
    let (k, u) = help(RELEASE_HELD);
    recorder.describe_gauge(
        k,
        u,
        text("1 while the Release waits for a human for this reason (Inconclusive, ServiceClaimed, InvalidSpec)."),
    );
    let (k, u) = help(ROLLOUT_HALTED);
    recorder.describe_gauge(
        k,
        u,
        text("1 once a failed Release halted the Rollout, else 0."),
    );
    let (k, u) = help(ROLLOUT_PHASE);
    recorder.describe_gauge(
        k,
        u,
        text("1 for the Rollout's current phase, 0 for the others (all 0 once deleted)."),
    );
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs [`recorder`] as the process-wide recorder, once, and returns its handle (what
/// `/metrics` renders).
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed");
        }
        handle
    })
}

/// Creates the reconcile counters of `controllers` at 0, so the first error is an increase
/// Prometheus can see rather than a series that appears at 1.
pub fn register(controllers: &[Controller]) {
    for &c in controllers {
        for result in ["ok", "error"] {
            metrics::counter!(RECONCILES, "controller" => c.as_str(), "result" => result)
                .increment(0);
        }
        for kind in c.error_kinds() {
            metrics::counter!(RECONCILE_ERRORS, "controller" => c.as_str(), "kind" => kind.as_str())
                .increment(0);
        }
    }
}

/// One reconcile of `controller` finished after `elapsed`, with `outcome`.
pub fn reconciled(controller: Controller, outcome: Result<(), ErrorKind>, elapsed: Duration) {
    let c = controller.as_str();
    let result = if outcome.is_ok() { "ok" } else { "error" };
    metrics::counter!(RECONCILES, "controller" => c, "result" => result).increment(1);
    if let Err(kind) = outcome {
        error(controller, kind);
    }
    metrics::histogram!(RECONCILE_DURATION, "controller" => c).record(elapsed.as_secs_f64());
}

/// Counts one error of `controller` (a reconcile's, through [`reconciled`], or a watch failure).
pub fn error(controller: Controller, kind: ErrorKind) {
    metrics::counter!(RECONCILE_ERRORS, "controller" => controller.as_str(), "kind" => kind.as_str())
        .increment(1);
}

/// Counts an error of a controller's stream when it is the watch's: a reconcile's error is
/// counted by the reconcile itself, and an object gone before its reconcile is no error.
pub fn controller_error<R, Q>(controller: Controller, e: &kube::runtime::controller::Error<R, Q>) {
    use kube::runtime::controller::Error as C;
    if matches!(e, C::QueueError(_) | C::RunnerError(_)) {
        error(controller, ErrorKind::Watch);
    }
}

/// The Release `namespace/release` of `service` is in `phase` since `since`.
pub fn release_phase(
    namespace: &str,
    release: &str,
    service: &str,
    phase: Phase,
    since: Option<Timestamp>,
) {
    set_phases(namespace, release, service, Some(phase));
    if let Some(since) = since {
        metrics::gauge!(
            RELEASE_PHASE_SINCE,
            "namespace" => namespace.to_owned(),
            "release" => release.to_owned(),
        )
        .set(since.as_millisecond() as f64 / 1000.0);
    }
    // Both verdicts exist from the first sight of the Release, so its first breach is an increase.
    for verdict in Verdict::ALL {
        analysis_counter(namespace, service, verdict).increment(0);
    }
}

/// The Release was deleted: every phase series goes to 0 (the exporter cannot drop a series; it
/// is gone after the operator's next restart).
pub fn release_deleted(namespace: &str, release: &str, service: &str) {
    set_phases(namespace, release, service, None);
    release_held(namespace, release, service, None);
}

/// The Release `namespace/release` of `service` waits for a human because of `held` (none: it
/// does not).
pub fn release_held(namespace: &str, release: &str, service: &str, held: Option<Held>) {
    for reason in Held::ALL {
        metrics::gauge!(
            RELEASE_HELD,
            "namespace" => namespace.to_owned(),
            "release" => release.to_owned(),
            "service" => service.to_owned(),
            "reason" => reason.as_str(),
        )
        .set(if Some(reason) == held { 1.0 } else { 0.0 });
    }
}

fn set_phases(namespace: &str, release: &str, service: &str, current: Option<Phase>) {
    for phase in Phase::ALL {
        metrics::gauge!(
            RELEASE_PHASE,
            "namespace" => namespace.to_owned(),
            "release" => release.to_owned(),
            "service" => service.to_owned(),
            "phase" => phase.to_string(),
        )
        .set(if Some(phase) == current { 1.0 } else { 0.0 });
    }
}

/// One analysis of a Release of `service` in `namespace` completed with `verdict`.
pub fn release_analysis(namespace: &str, service: &str, verdict: Verdict) {
    analysis_counter(namespace, service, verdict).increment(1);
}

fn analysis_counter(namespace: &str, service: &str, verdict: Verdict) -> metrics::Counter {
    metrics::counter!(
        RELEASE_ANALYSIS,
        "namespace" => namespace.to_owned(),
        "service" => service.to_owned(),
        "verdict" => verdict.as_str(),
    )
}

/// The `namespace` label last exported for each Rollout, so that its gauge can be zeroed once
/// the Rollout is gone (the controller then knows only its name).
static ROLLOUT_NAMESPACES: LazyLock<Mutex<HashMap<String, String>>> =
    LazyLock::new(Default::default);

/// Whether the Rollout `rollout` (of the Releases in `namespace`) has halted.
pub fn rollout_halted(namespace: &str, rollout: &str, halted: bool) {
    let previous = ROLLOUT_NAMESPACES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(rollout.to_owned(), namespace.to_owned());
    if let Some(previous) = previous.filter(|p| p != namespace) {
        halted_gauge(&previous, rollout).set(0.0);
        set_rollout_phases(&previous, rollout, None);
    }
    halted_gauge(namespace, rollout).set(if halted { 1.0 } else { 0.0 });
}

/// The Rollout `rollout` no longer exists: its gauge goes to 0 (the exporter cannot drop it), so
/// a deleted halted Rollout stops paging.
pub fn rollout_deleted(rollout: &str) {
    let namespace = ROLLOUT_NAMESPACES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(rollout);
    if let Some(namespace) = namespace {
        halted_gauge(&namespace, rollout).set(0.0);
        set_rollout_phases(&namespace, rollout, None);
    }
}

/// The Rollout `rollout` (of the Releases in `namespace`) is in `phase`. Call after
/// [`rollout_halted`], which remembers the namespace.
pub fn rollout_phase(namespace: &str, rollout: &str, phase: RolloutPhase) {
    set_rollout_phases(namespace, rollout, Some(phase));
}

fn set_rollout_phases(namespace: &str, rollout: &str, current: Option<RolloutPhase>) {
    for phase in RolloutPhase::ALL {
        metrics::gauge!(
            ROLLOUT_PHASE,
            "namespace" => namespace.to_owned(),
            "rollout" => rollout.to_owned(),
            "phase" => phase.to_string(),
        )
        .set(if Some(phase) == current { 1.0 } else { 0.0 });
    }
}

fn halted_gauge(namespace: &str, rollout: &str) -> metrics::Gauge {
    metrics::gauge!(
        ROLLOUT_HALTED,
        "namespace" => namespace.to_owned(),
        "rollout" => rollout.to_owned(),
    )
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;

/// Test support: reading one sample back from rendered text.
#[cfg(test)]
pub(crate) mod testing {
    /// The value of the sample `series` (name and labels exactly as rendered, e.g.
    /// `m{a="x"}`) in `text`, if present.
    pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.parse().expect("a sample value"))
    }
}
