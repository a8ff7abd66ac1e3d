//! The operator's custom resources, derived from these Rust types so the CRD YAML in
//! `operator/deploy/crds.yaml` can never drift from what the reconcilers read (a test compares them).
//!
//! - [`Release`] (namespaced): one service in one cluster, released blue-green with a migration Job
//!   before the preview starts, SLO analysis against the preview, and automatic rollback.
//! - [`Rollout`] (cluster-scoped, management cluster): one image across countries, wave by wave,
//!   halting on the first failed Release.
//!
//! Field names follow Argo Rollouts' blue-green vocabulary where one exists (activeService,
//! previewService, autoPromotionEnabled → `autoPromote`, scaleDownDelaySeconds, abort, paused).

use k8s_openapi::jiff::Timestamp;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every meridian resource.
pub const GROUP: &str = "meridian.dev";

fn default_true() -> bool {
    true
}
fn default_container_port() -> i32 {
    8080
}
fn default_scale_down_delay() -> u32 {
    300
}
fn default_progress_deadline() -> u32 {
    900
}
fn default_migration_timeout() -> u32 {
    600
}
fn default_backoff_limit() -> i32 {
    1
}
fn default_snapshot_retain() -> u32 {
    5
}
// Aurora snapshots are incremental at the storage layer; 30 min covers a first, full one of a
// mid-size cluster.
fn default_snapshot_timeout() -> u32 {
    1800
}
fn default_probe_port() -> i32 {
    80
}
fn default_concurrency() -> u32 {
    4
}
fn default_timeout_ms() -> u64 {
    2000
}
fn default_token_key() -> String {
    "token".to_owned()
}
fn default_interval() -> String {
    "60s".to_owned()
}
fn default_initial_delay() -> String {
    "0s".to_owned()
}
fn default_count() -> u32 {
    1
}
fn default_consecutive_error_limit() -> u32 {
    4
}

/// A duration as Argo Rollouts writes one: a whole number of seconds, minutes or hours
/// (`30s`, `5m`, `1h`; a bare number is seconds).
const DURATION_PATTERN: &str = r"^[0-9]+(s|m|h)?$";

/// Seconds of a [`DURATION_PATTERN`] duration; `None` when it does not match (the API server
/// refuses such a Release, so this only guards hand-built values).
pub fn duration_secs(s: &str) -> Option<u64> {
    let (digits, unit) = match s.strip_suffix(['s', 'm', 'h']) {
        Some(d) => (d, &s[d.len()..]),
        None => (s, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(match unit {
        "m" => 60,
        "h" => 3600,
        _ => 1,
    })
}

/// A Kubernetes resource quantity (`250m`, `1`, `128Mi`, `1.5Gi`). Only the positive, plain
/// forms: anything else is refused when the Release is applied, not when its pods are.
const QUANTITY_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$";

/// Default CPU request of every pod a Release runs.
pub const DEFAULT_CPU_REQUEST: &str = "100m";
/// Default memory request.
pub const DEFAULT_MEMORY_REQUEST: &str = "128Mi";
/// Default memory limit. There is no default CPU limit: CFS throttling shows up as p99 latency,
/// which is exactly what the SLO analysis judges; set `limits.cpu` where a namespace policy
/// wants one. (The memory limit is what protects the node, so it always has a value.)
pub const DEFAULT_MEMORY_LIMIT: &str = "512Mi";

/// A blue-green release of one service in one cluster.
///
/// Changing `image` (or the migration) starts a new release cycle: migrate, deploy the idle
/// colour as preview, analyse it, switch the active Service, keep the old colour for the
/// scale-down delay so a rollback is a selector switch.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "meridian.dev",
    version = "v1alpha1",
    kind = "Release",
    namespaced,
    status = "ReleaseStatus",
    shortname = "rel",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Active","type":"string","jsonPath":".status.activeColour"}"#,
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".spec.image"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseSpec {
    /// Service name: the container name and the `app.kubernetes.io/name` label.
    pub service: String,
    /// Desired container image (tagged with the git SHA).
    pub image: String,
    /// Replicas of the active colour.
    pub replicas: i32,
    /// Replicas of the preview colour while it is analysed (defaults to `replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_replicas: Option<i32>,
    /// Service that takes production traffic; the operator owns its selector.
    pub active_service: String,
    /// Service the analysis probes; the operator owns its selector.
    pub preview_service: String,
    /// Port the container listens on.
    #[serde(default = "default_container_port")]
    pub container_port: i32,
    /// Plain environment variables for the service and its migration Job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Secret whose keys become environment variables (e.g. `DATABASE_SECRET_ARN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_from_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// CPU and memory of every pod the Release runs (both colours and the migration Job).
    #[serde(default)]
    pub resources: Resources,
    /// The schema migration to run once per release, before the preview starts. Only
    /// expand/contract migrations belong here: the old colour keeps serving on the new schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationSpec>,
    pub analysis: AnalysisSpec,
    /// Promote as soon as analysis passes. When false, the release waits after analysis until
    /// `promote` is set to the image being released.
    #[serde(default = "default_true")]
    pub auto_promote: bool,
    /// Manual promotion: set to `spec.image` to promote a release that passed analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<String>,
    /// How long the old colour keeps running after promotion, so rollback stays instant.
    #[serde(default = "default_scale_down_delay")]
    pub scale_down_delay_seconds: u32,
    /// A release cycle that has not finished this long after it started fails (and rolls back per
    /// policy). Time spent paused does not count.
    #[serde(default = "default_progress_deadline")]
    pub progress_deadline_seconds: u32,
    #[serde(default)]
    pub rollback_policy: RollbackPolicy,
    /// Hold the release where it is (no phase moves forward) until unset.
    #[serde(default)]
    pub paused: bool,
    /// Abort the release in flight (roll back per policy); while set, no new cycle starts.
    #[serde(default)]
    pub abort: bool,
}

/// Requests and limits of the service's containers (and the migration Job's).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    #[serde(default)]
    pub requests: ResourceRequests,
    #[serde(default)]
    pub limits: ResourceLimits,
}

/// What the scheduler reserves for each pod.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequests {
    #[serde(default = "default_cpu_request")]
    #[schemars(regex(pattern = QUANTITY_PATTERN))]
    pub cpu: String,
    #[serde(default = "default_memory_request")]
    #[schemars(regex(pattern = QUANTITY_PATTERN))]
    pub memory: String,
}

impl Default for ResourceRequests {
    fn default() -> Self {
        Self {
            cpu: default_cpu_request(),
            memory: default_memory_request(),
        }
    }
}

/// What each pod may use at most: over the memory limit the container is killed.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceLimits {
    /// Unset by default: CPU throttling shows up as the p99 latency the analysis judges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = QUANTITY_PATTERN))]
    pub cpu: Option<String>,
    #[serde(default = "default_memory_limit")]
    #[schemars(regex(pattern = QUANTITY_PATTERN))]
    pub memory: String,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        Self {
            cpu: None,
            memory: default_memory_limit(),
        }
    }
}

fn default_cpu_request() -> String {
    DEFAULT_CPU_REQUEST.to_owned()
}
fn default_memory_request() -> String {
    DEFAULT_MEMORY_REQUEST.to_owned()
}
fn default_memory_limit() -> String {
    DEFAULT_MEMORY_LIMIT.to_owned()
}

/// One environment variable.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// What to do when a release fails after its migration ran.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RollbackPolicy {
    /// Switch the active Service back to the old colour and scale the preview down.
    #[default]
    Revert,
    /// For releases whose migration cannot be reversed: keep the old colour serving, scale
    /// nothing down, stop, and page a human (a Warning Event and a `Frozen` phase).
    Freeze,
}

/// The migration Job: by default the release image with the given command.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationSpec {
    /// Image for the Job (defaults to the release image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The release fails when the Job has not succeeded this long after it was created.
    #[serde(default = "default_migration_timeout")]
    pub timeout_seconds: u32,
    /// Retries of the Job's pod before the Job (and so the release) fails.
    #[serde(default = "default_backoff_limit")]
    pub backoff_limit: i32,
    /// A manual Aurora cluster snapshot taken before the Job is created (a restore point for a
    /// destructive migration that slipped through review): AWS only, none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotSpec>,
}

/// The snapshot before a migration: `meridian-<service>-<spec hash>-<request stamp>` of `clusterIdentifier`,
/// taken through the RDS API with the operator's IAM role, waited for until `available`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotSpec {
    /// The Aurora cluster the service's schema lives in (terraform's aurora module output
    /// `cluster_id`: the stack's name prefix, `meridian-<environment>-<country>`).
    #[schemars(length(min = 1, max = 63))]
    pub cluster_identifier: String,
    /// Manual `meridian-<service>-*` snapshots of the cluster kept (the newest, this cycle's
    /// included); older ones are deleted once this cycle's is available.
    #[serde(default = "default_snapshot_retain")]
    #[schemars(range(min = 1, max = 100))]
    pub retain: u32,
    /// The release fails (nothing changed, no Job) when the snapshot is not available this long
    /// after it was requested.
    #[serde(default = "default_snapshot_timeout")]
    #[schemars(range(min = 60))]
    pub timeout_seconds: u32,
}

/// How the preview is judged before it takes traffic.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSpec {
    pub probe: ProbeSpec,
    /// Optional Prometheus check over `http_request_duration_seconds` / `http_requests_total`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusCheck>,
    /// Time between two measurements (`30s`, `5m`, `1h`), before promotion and while the
    /// promoted colour is verified until the scale-down delay ends.
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: String,
    /// Measurements (query errors not counted) the preview must get before it is promoted.
    #[serde(default = "default_count")]
    #[schemars(range(min = 1))]
    pub count: u32,
    /// Wait this long after the preview is ready before its first measurement.
    #[serde(default = "default_initial_delay")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub initial_delay: String,
    /// Failed measurements tolerated: one more fails the analysis (before promotion: rollback;
    /// after: the selector goes back to the old colour). 0: the first failure does.
    #[serde(default)]
    pub failure_limit: u32,
    /// Consecutive measurement errors (a Prometheus query that fails or has no data; a probe
    /// that cannot run is a failure, not an error) after which the analysis is inconclusive
    /// and the release waits for a human. Errors are never failures: they roll nothing back.
    #[serde(default = "default_consecutive_error_limit")]
    #[schemars(range(min = 1))]
    pub consecutive_error_limit: u32,
}

impl AnalysisSpec {
    /// [`Self::interval`] in seconds (at least 1).
    pub fn interval_secs(&self) -> u64 {
        duration_secs(&self.interval)
            .or_else(|| duration_secs(&default_interval()))
            .unwrap_or(60)
            .max(1)
    }

    /// [`Self::initial_delay`] in seconds.
    pub fn initial_delay_secs(&self) -> u64 {
        duration_secs(&self.initial_delay).unwrap_or(0)
    }
}

/// The latency/error probe against the preview Service (the same code as the `slo-gate` CLI).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeSpec {
    /// Path to GET on the preview Service, e.g. `/streams/v1/users/probe/sessions`.
    pub path: String,
    /// Port of the preview Service.
    #[serde(default = "default_probe_port")]
    pub port: i32,
    pub requests: u32,
    pub p99_ms: f64,
    pub max_error_rate: f64,
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Secret (in the Release's namespace) whose key holds a bearer token, sent as
    /// `Authorization: Bearer` on every probe request. Read at each analysis, so a token
    /// refreshed in the Secret is used without a restart; unreadable, missing or malformed fails
    /// the analysis. The operator's Role may read only the Secret names it was generated with
    /// (`operator rbac --probe-token-secret`, default `slo-probe-token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret: Option<SecretKeyRef>,
}

/// One key of a Secret in the Release's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub name: String,
    #[serde(default = "default_token_key")]
    pub key: String,
}

/// A PromQL query that must evaluate to a scalar at most `maxValue`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusCheck {
    /// Prometheus base URL, e.g. `http://prometheus.monitoring:9090`.
    pub address: String,
    /// PromQL; `{{colour}}` is replaced by the preview colour.
    pub query: String,
    pub max_value: f64,
}

/// Phases of one release cycle (operator/README.md, "Phases").
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    #[default]
    Pending,
    Migrating,
    DeployingPreview,
    Analyzing,
    Promoting,
    Succeeded,
    RollingBack,
    RolledBack,
    Failed,
    Frozen,
}

impl Phase {
    /// Every phase, in the order of a cycle (the `phase` label values of `meridian_release_phase`).
    pub const ALL: [Self; 10] = [
        Self::Pending,
        Self::Migrating,
        Self::DeployingPreview,
        Self::Analyzing,
        Self::Promoting,
        Self::Succeeded,
        Self::RollingBack,
        Self::RolledBack,
        Self::Failed,
        Self::Frozen,
    ];

    /// Phases in which a cycle is still moving (and the progress deadline applies).
    pub fn in_progress(self) -> bool {
        matches!(
            self,
            Self::Pending
                | Self::Migrating
                | Self::DeployingPreview
                | Self::Analyzing
                | Self::Promoting
                | Self::RollingBack
        )
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// The two Deployments a Release alternates between.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Blue,
    Green,
}

impl Colour {
    #[must_use]
    pub fn other(self) -> Self {
        match self {
            Self::Blue => Self::Green,
            Self::Green => Self::Blue,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blue => "blue",
            Self::Green => "green",
        }
    }
}

impl std::fmt::Display for Colour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Observed state of a Release, written by the operator with server-side apply.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseStatus {
    #[serde(default)]
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Colour behind the active Service (none before the first promotion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_colour: Option<Colour>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_image: Option<String>,
    /// Colour being released in the current cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_colour: Option<Colour>,
    /// Hash of the spec being released (image + migration); a new hash starts a new cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_hash: Option<String>,
    /// When the current phase was entered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub phase_since: Option<Timestamp>,
    /// Start of the progress-deadline clock (moved forward by time spent paused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub progress_since: Option<Timestamp>,
    /// Set while `paused` holds the cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub paused_since: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationStatus>,
    /// The current cycle's snapshot before migrate (`spec.migration.snapshot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotStatus>,
    /// The latest measurements of the current cycle (at most 10), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis: Vec<AnalysisRun>,
    /// Counts of the current analysis or verification (all its measurements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurements: Option<MeasurementCounts>,
    /// Set while an inconclusive analysis (or verification) waits for a human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive: Option<Inconclusive>,
    /// A colour to scale to zero once `after` has passed (the old colour after promotion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_scale_down: Option<PendingScaleDown>,
    /// The active colour was measured every analysis interval until the scale-down delay ended
    /// and never failed (or there was no previous colour to fall back to). A Rollout counts the
    /// target healthy only once this is true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verified: bool,
    /// What was active here before (its migration had succeeded, or it had none), newest last,
    /// at most 10: a cycle back to one of these hashes skips its migration, because its
    /// migrations are already applied and it accepts the newer schema (expand/contract).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<PastRelease>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One spec hash that was active (see [`ReleaseStatus::history`]).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PastRelease {
    pub hash: String,
    pub image: String,
}

/// The migration Job of the current cycle.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationStatus {
    pub job_name: String,
    pub state: JobState,
}

/// The snapshot of the current cycle, from request to `available`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStatus {
    /// `meridian-<service>-<spec hash>-<request stamp>` (base36 seconds of `requestedAt`).
    pub name: String,
    pub cluster_identifier: String,
    pub state: SnapshotState,
    /// When it was requested (the timeout counts from here).
    #[schemars(with = "String")]
    pub requested_at: Timestamp,
    /// RDS's `PercentProgress` while it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent_progress: Option<i32>,
    /// `DBClusterSnapshotArn`, once RDS reports it: what the restore runbook starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// Why it failed (RDS's error code and message, or its status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where a snapshot is.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SnapshotState {
    /// Requested; RDS has not reported it `available` yet.
    Creating,
    Available,
    Failed,
}

/// What the operator knows about a Job.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum JobState {
    /// Not found in the cluster.
    Missing,
    Running,
    Succeeded,
    Failed,
}

/// One analysis measurement.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRun {
    /// Spec hash the run judged.
    pub hash: String,
    #[schemars(with = "String")]
    pub at: Timestamp,
    pub passed: bool,
    pub requests: u32,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub error_rate: f64,
    /// Value of the Prometheus query, when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_value: Option<f64>,
    pub message: String,
    /// A measurement of the active colour after promotion (false: of the preview before it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verification: bool,
    /// The measurement could not be taken (probe or query error, or no data): neither passed
    /// nor failed, counted against `consecutiveErrorLimit`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub error: bool,
}

/// Tally of the measurements of the current analysis (before promotion) or verification
/// (after it); reset when either starts. `analysis[]` keeps only the latest runs, this counts all.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeasurementCounts {
    /// Measurements taken, errors excluded.
    #[serde(default)]
    pub count: u32,
    #[serde(default)]
    pub failed: u32,
    #[serde(default)]
    pub errors: u32,
    #[serde(default)]
    pub consecutive_errors: u32,
}

/// An analysis or verification that reached `consecutiveErrorLimit`: held for a human.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Inconclusive {
    #[schemars(with = "String")]
    pub since: Timestamp,
    /// `metadata.generation` when it was held: only a later spec change (`promote`, `abort`)
    /// resolves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingScaleDown {
    pub colour: Colour,
    #[schemars(with = "String")]
    pub after: Timestamp,
    /// Spec hash the old colour runs (restored as `activeHash` if verification fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Image the old colour runs (restored as `activeImage` if verification fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// A metav1.Condition (own type so the CRD schema stays small and exact).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    pub message: String,
    #[schemars(with = "String")]
    pub last_transition_time: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One image across countries, wave by wave (management cluster).
///
/// Each target is a cluster reached through a kubeconfig Secret; in each, the Release named
/// `release` (in `namespace`) gets `spec.image` set. A wave starts only when every earlier wave's
/// Releases Succeeded and stayed healthy through that wave's bake time.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "meridian.dev",
    version = "v1alpha1",
    kind = "Rollout",
    status = "RolloutStatus",
    shortname = "mro",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Wave","type":"integer","jsonPath":".status.currentWave"}"#,
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".spec.image"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// The image every target's Release gets. Fixed once the Rollout exists (the API server
    /// refuses a change): the targets it started, their previous images and its bake all belong
    /// to this image, and a new build is a new Rollout.
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "spec.image is immutable: a new image is a new Rollout"
    }]))]
    pub image: String,
    /// Namespace of the Release in every target cluster.
    pub namespace: String,
    /// Name of the Release in every target cluster.
    pub release: String,
    /// Ordered waves; wave N+1 starts only after wave N baked.
    pub waves: Vec<Wave>,
    /// Clusters of one wave released at the same time (at least 1).
    #[serde(default = "default_max_parallel")]
    pub max_parallel: u32,
    #[serde(default)]
    pub halt_policy: HaltPolicy,
    /// Namespace (in the management cluster) holding the kubeconfig Secrets.
    #[serde(default = "default_secret_namespace")]
    pub secret_namespace: String,
    #[serde(default)]
    pub paused: bool,
    /// A wave whose targets are not all healthy (Succeeded, verified, on `image`) this long after
    /// the wave started halts the Rollout (`Halted`, nothing put back). Time paused does not count.
    #[serde(default = "default_wave_deadline")]
    #[schemars(range(min = 1))]
    pub progress_deadline_seconds: u32,
}

fn default_wave_deadline() -> u32 {
    3600
}

fn default_max_parallel() -> u32 {
    1
}
fn default_secret_namespace() -> String {
    "meridian-system".to_owned()
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Wave {
    pub name: String,
    pub targets: Vec<Target>,
    /// How long every Release of this wave must stay Succeeded and healthy before the next wave.
    #[serde(default)]
    pub bake_seconds: u32,
}

/// One target cluster (a country).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Country code, e.g. `se`.
    pub name: String,
    /// Secret with a `kubeconfig` key for that country's cluster.
    pub kubeconfig_secret: String,
}

/// What to do when a Release in a wave fails.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum HaltPolicy {
    /// Stop: later waves never start, nothing already released is touched.
    #[default]
    Halt,
    /// Stop, and put every target of the failing wave back on its previous image.
    RollbackWave,
    /// Stop, and put every target of every started wave back on its previous image.
    RollbackAll,
}

/// Phases of a Rollout (operator/README.md, "Rollout"). `Superseded`: a started target's Release
/// was re-imaged by someone else (neither this Rollout's image nor the one it replaced), so a
/// newer build took over; nothing is put back and no later wave starts.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RolloutPhase {
    #[default]
    Progressing,
    Baking,
    Succeeded,
    Halted,
    RollingBack,
    RolledBack,
    Superseded,
}

impl RolloutPhase {
    /// Every phase (the `phase` label values of `meridian_rollout_phase`).
    pub const ALL: [Self; 7] = [
        Self::Progressing,
        Self::Baking,
        Self::Succeeded,
        Self::Halted,
        Self::RollingBack,
        Self::RolledBack,
        Self::Superseded,
    ];

    /// Phases the planner never leaves.
    pub fn terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Halted | Self::RolledBack | Self::Superseded
        )
    }
}

impl std::fmt::Display for RolloutPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    #[serde(default)]
    pub phase: RolloutPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Index of the wave in progress (or the one that halted).
    #[serde(default)]
    pub current_wave: u32,
    /// Per target: what was released and what it replaced (for rollback).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetStatus>,
    /// When the current wave finished (all Succeeded), i.e. the start of its bake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub baking_since: Option<Timestamp>,
    /// When the current wave started (its progress deadline counts from here; moved on by time
    /// spent paused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub wave_since: Option<Timestamp>,
    /// Set while `spec.paused` holds the Rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub paused_since: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    pub name: String,
    pub wave: u32,
    /// Image the target ran before this Rollout touched it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_image: Option<String>,
    /// Whether this Rollout has set the target's Release image.
    pub started: bool,
    /// Whether this Rollout has put the previous image back.
    #[serde(default)]
    pub rolled_back: bool,
    /// Since when a started target could not be observed (cluster or Release unreachable);
    /// cleared when it is seen again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub unobserved_since: Option<Timestamp>,
}

/// The YAML of both CRDs, as `operator crd` prints it and `deploy/crds.yaml` holds it.
pub fn crds_yaml() -> String {
    use kube::CustomResourceExt;
    let mut out = String::new();
    for crd in [Release::crd(), Rollout::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd).expect("CRDs serialize to YAML"));
    }
    out
}
