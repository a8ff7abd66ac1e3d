//! The state machine driven through whole releases against a simulated cluster and an injected
//! clock: every action is applied to the simulation the way the reconciler applies it to the API.

use super::*;
use crate::crd::{AnalysisSpec, MigrationSpec, ProbeSpec, Resources, SnapshotSpec};

fn spec(image: &str) -> ReleaseSpec {
    ReleaseSpec {
        service: "streams".into(),
        image: image.into(),
        replicas: 3,
        preview_replicas: Some(1),
        active_service: "streams".into(),
        preview_service: "streams-preview".into(),
        container_port: 8080,
        env: vec![],
        env_from_secret: None,
        service_account_name: None,
        resources: Resources::default(),
        migration: Some(MigrationSpec {
            image: None,
            command: vec!["streams".into(), "migrate".into()],
            args: vec![],
            timeout_seconds: 120,
            backoff_limit: 1,
            snapshot: None,
        }),
        analysis: AnalysisSpec {
            probe: ProbeSpec {
                path: "/healthz".into(),
                port: 80,
                requests: 100,
                p99_ms: 300.0,
                max_error_rate: 0.01,
                concurrency: 4,
                timeout_ms: 2000,
                bearer_token_secret: None,
            },
            prometheus: None,
            interval: "60s".into(),
            count: 1,
            initial_delay: "0s".into(),
            failure_limit: 0,
            consecutive_error_limit: 4,
        },
        auto_promote: true,
        promote: None,
        scale_down_delay_seconds: 300,
        progress_deadline_seconds: 600,
        rollback_policy: RollbackPolicy::Revert,
        paused: false,
        abort: false,
    }
}

fn verdict(passed: bool) -> probe::Verdict {
    probe::judge(
        probe::Measurement {
            requests: 100,
            errors: 0,
            http_errors: 0,
            auth_errors: 0,
            transport_errors: 0,
            error_rate: 0.0,
            p50_ms: 5.0,
            p99_ms: if passed { 20.0 } else { 900.0 },
            max_ms: 950.0,
            elapsed_ms: 1000.0,
        },
        probe::Thresholds {
            p99_ms: 300.0,
            max_error_rate: 0.01,
        },
    )
}

/// A fake cluster: Deployments, one Job, two Service selectors, an Event log.
#[expect(
    clippy::struct_excessive_bools,
    reason = "each flag is one independent behaviour of the simulated cluster"
)]
struct World {
    spec: ReleaseSpec,
    status: ReleaseStatus,
    now: Timestamp,
    blue: Option<DeploymentObs>,
    green: Option<DeploymentObs>,
    job: JobState,
    /// What a created Job ends as on the next tick (`Running` = it never finishes).
    job_outcome: JobState,
    /// Whether pods become ready by the next tick.
    pods_get_ready: bool,
    probe_passes: bool,
    /// Whether measurements of the active colour after promotion pass.
    verification_passes: bool,
    /// Whether the Prometheus check (when set) errors, e.g. no data yet.
    prom_errors: bool,
    /// `metadata.generation` of the Release.
    generation: i64,
    active_selector: Option<Colour>,
    preview_selector: Option<Colour>,
    /// What the reconciler would say about an older Release claiming the Services.
    service_claimed: Option<String>,
    /// What RDS says of the requested snapshot (`None`: nothing requested).
    rds: Option<SnapshotObs>,
    /// What a requested snapshot is on the next tick.
    rds_outcome: SnapshotObs,
    /// Set: RDS refuses the snapshot request with this message.
    rds_refuses: Option<String>,
    events: Vec<(EventType, String)>,
    all_actions: Vec<Action>,
    phases: Vec<Phase>,
}

impl World {
    fn new(image: &str) -> Self {
        Self {
            spec: spec(image),
            status: ReleaseStatus::default(),
            now: "2026-11-23T12:00:00Z".parse().unwrap(),
            blue: None,
            green: None,
            job: JobState::Missing,
            job_outcome: JobState::Succeeded,
            pods_get_ready: true,
            probe_passes: true,
            verification_passes: true,
            prom_errors: false,
            generation: 1,
            active_selector: None,
            preview_selector: None,
            service_claimed: None,
            rds: None,
            rds_outcome: SnapshotObs::Available {
                arn: Some("arn:aws:rds:eu-north-1:1:cluster-snapshot:x".into()),
            },
            rds_refuses: None,
            events: vec![],
            all_actions: vec![],
            phases: vec![],
        }
    }

    /// A world where blue serves v1 and the release of v1 is long finished.
    fn established() -> Self {
        let mut w = Self::new("registry/streams:v1");
        w.settle();
        assert_eq!(w.status.phase, Phase::Succeeded);
        assert_eq!(w.active_selector, Some(Colour::Blue));
        w.events.clear();
        w.all_actions.clear();
        w.phases.clear();
        w.job = JobState::Missing;
        w
    }

    fn deployment_mut(&mut self, c: Colour) -> &mut Option<DeploymentObs> {
        match c {
            Colour::Blue => &mut self.blue,
            Colour::Green => &mut self.green,
        }
    }

    fn advance(&mut self, secs: i64) {
        self.now = self
            .now
            .checked_add(SignedDuration::from_secs(secs))
            .unwrap();
    }

    /// The cluster moves (Job finishes, pods get ready), then one decision is made and applied.
    fn tick(&mut self) -> Decision {
        if self.job == JobState::Running {
            self.job = self.job_outcome;
        }
        if self.pods_get_ready {
            for d in [&mut self.blue, &mut self.green].into_iter().flatten() {
                d.ready_replicas = d.replicas;
            }
        }
        if self.rds.is_some() {
            self.rds = Some(self.rds_outcome.clone());
        }
        let reads_snapshot = self
            .status
            .snapshot
            .as_ref()
            .is_some_and(|s| s.state == SnapshotState::Creating);
        let decision = decide(&Observed {
            name: "streams",
            generation: Some(self.generation),
            spec: &self.spec,
            status: &self.status,
            blue: self.blue.clone(),
            green: self.green.clone(),
            job: self.job,
            snapshot: if reads_snapshot {
                Some(self.rds.clone().unwrap_or(SnapshotObs::Missing))
            } else {
                None
            },
            active_selector: self.active_selector,
            service_claimed: self.service_claimed.clone(),
            now: self.now,
        });
        let before = std::mem::replace(&mut self.status, decision.status.clone());
        for action in &decision.actions {
            self.all_actions.push(action.clone());
            match action {
                Action::CreateSnapshot { .. } => match &self.rds_refuses {
                    Some(why) => record_snapshot_failure(&mut self.status, why.clone()),
                    None => {
                        self.rds.get_or_insert(SnapshotObs::Creating {
                            percent_progress: Some(0),
                        });
                    }
                },
                Action::PruneSnapshots { .. } => {}
                Action::CreateMigrationJob { .. } => {
                    if self
                        .spec
                        .migration
                        .as_ref()
                        .is_some_and(|m| m.snapshot.is_some())
                    {
                        let s = before.snapshot.as_ref().expect("a snapshot before the Job");
                        assert_eq!(s.state, SnapshotState::Available, "{s:?}");
                        assert!(s.arn.is_some(), "the ARN is recorded before the Job: {s:?}");
                    }
                    if self.job == JobState::Missing {
                        self.job = JobState::Running;
                    }
                }
                Action::DeleteMigrationJob { .. } => self.job = JobState::Missing,
                Action::ApplyDeployment {
                    colour,
                    image,
                    replicas,
                } => {
                    let d = self.deployment_mut(*colour);
                    let ready = d
                        .as_ref()
                        .filter(|d| &d.image == image)
                        .map_or(0, |d| d.ready_replicas.min(*replicas));
                    *d = Some(DeploymentObs {
                        image: image.clone(),
                        replicas: *replicas,
                        ready_replicas: ready,
                    });
                }
                Action::SwitchPreviewSelector(c) => self.preview_selector = Some(*c),
                Action::SwitchActiveSelector(c) => self.active_selector = Some(*c),
                Action::ScaleDown(c) => {
                    if let Some(d) = self.deployment_mut(*c) {
                        d.replicas = 0;
                        d.ready_replicas = 0;
                    }
                }
                Action::RunAnalysis => {
                    let v = verdict(self.probe_passes);
                    let prom = self.prom_errors.then(|| PromResult {
                        value: Err("query returned no data".into()),
                        max_value: 0.05,
                    });
                    record_analysis(&mut self.status, &v, prom.as_ref(), self.now, false);
                }
                Action::RunVerification(c) => {
                    assert_eq!(self.active_selector, Some(*c), "verifies what serves");
                    let v = verdict(self.verification_passes);
                    record_analysis(&mut self.status, &v, None, self.now, true);
                }
                Action::EmitEvent { type_, reason, .. } => {
                    self.events.push((*type_, reason.clone()));
                }
            }
        }
        if self.phases.last() != Some(&self.status.phase) {
            self.phases.push(self.status.phase);
        }
        decision
    }

    /// Ticks (a second apart) until nothing more happens on its own.
    fn settle(&mut self) {
        for _ in 0..50 {
            let d = self.tick();
            self.advance(1);
            let waiting = d.requeue_after.is_none() || !self.status.phase.in_progress();
            if d.actions.is_empty() && waiting {
                return;
            }
        }
        panic!("did not settle: {:?}", self.status);
    }

    fn reasons(&self) -> Vec<&str> {
        self.events.iter().map(|(_, r)| r.as_str()).collect()
    }

    fn scale_downs(&self) -> Vec<Colour> {
        self.all_actions
            .iter()
            .filter_map(|a| match a {
                Action::ScaleDown(c) => Some(*c),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn first_release_goes_through_every_phase() {
    let mut w = World::new("registry/streams:v1");
    w.settle();
    assert_eq!(
        w.phases,
        vec![
            Phase::Pending,
            Phase::Migrating,
            Phase::DeployingPreview,
            Phase::Analyzing,
            Phase::Promoting,
            Phase::Succeeded
        ]
    );
    assert_eq!(
        w.reasons(),
        vec![
            "ReleaseStarted",
            "Migrating",
            "MigrationSucceeded",
            "DeployingPreview",
            "Analyzing",
            "Promoting",
            "Promoted"
        ]
    );
    assert_eq!(w.active_selector, Some(Colour::Blue));
    assert_eq!(w.preview_selector, Some(Colour::Blue));
    assert_eq!(w.blue.as_ref().unwrap().replicas, 3);
    assert_eq!(
        w.status.active_image.as_deref(),
        Some("registry/streams:v1")
    );
    assert_eq!(w.status.analysis.len(), 1);
    assert!(w.status.analysis[0].passed);
    assert_eq!(
        w.status.migration.as_ref().unwrap().state,
        JobState::Succeeded
    );
    let progressing = w
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("False", "Promoted")
    );
    // Nothing to scale down on a first release.
    assert!(w.status.pending_scale_down.is_none());
    assert!(w.scale_downs().is_empty());
}

#[test]
fn second_release_switches_colour_and_keeps_old_for_the_delay() {
    let mut w = World::established();
    w.spec.image = "registry/streams:v2".into();
    // Preview starts on green at preview size while blue keeps serving.
    w.tick(); // -> Pending
    w.tick(); // -> Migrating
    w.tick(); // -> DeployingPreview
    assert_eq!(w.green.as_ref().unwrap().replicas, 1);
    assert_eq!(w.active_selector, Some(Colour::Blue));
    assert_eq!(w.preview_selector, Some(Colour::Green));
    w.settle();
    assert_eq!(w.status.phase, Phase::Succeeded);
    assert_eq!(w.active_selector, Some(Colour::Green));
    assert_eq!(w.green.as_ref().unwrap().replicas, 3);
    // Blue is still fully up: rollback would be a selector switch.
    assert_eq!(w.blue.as_ref().unwrap().replicas, 3);
    let pending = w.status.pending_scale_down.clone().unwrap();
    assert_eq!(pending.colour, Colour::Blue);

    w.advance(250);
    let d = w.tick();
    assert!(w.scale_downs().is_empty(), "scaled down before the delay");
    assert!(d.requeue_after.unwrap() <= Duration::from_secs(50));
    w.advance(60);
    w.tick();
    assert_eq!(w.scale_downs(), vec![Colour::Blue]);
    assert_eq!(w.blue.as_ref().unwrap().replicas, 0);
    assert!(w.reasons().contains(&"ScaledDown"));
    assert!(w.status.pending_scale_down.is_none());
}

#[test]
fn next_release_within_the_delay_reuses_the_old_colour_and_cancels_its_scale_down() {
    let mut w = World::established();
    w.spec.image = "registry/streams:v2".into();
    w.settle();
    assert_eq!(w.active_selector, Some(Colour::Green));
    w.spec.image = "registry/streams:v3".into();
    w.tick();
    assert_eq!(w.status.preview_colour, Some(Colour::Blue));
    assert!(w.status.pending_scale_down.is_none());
    w.advance(400);
    w.settle();
    assert_eq!(w.active_selector, Some(Colour::Blue));
    assert_eq!(w.blue.as_ref().unwrap().image, "registry/streams:v3");
    assert_eq!(
        w.status.pending_scale_down.as_ref().unwrap().colour,
        Colour::Green
    );
    assert!(w.scale_downs().is_empty());
}

#[test]
fn migration_failure_fails_without_moving_traffic() {
    let mut w = World::established();
    w.job_outcome = JobState::Failed;
    w.spec.image = "registry/streams:v2".into();
    w.settle();
    assert_eq!(
        w.phases,
        vec![Phase::Pending, Phase::Migrating, Phase::Failed]
    );
    assert_eq!(w.status.migration.as_ref().unwrap().state, JobState::Failed);
    assert!(w.reasons().contains(&"MigrationFailed"));
    assert!(w.green.is_none(), "preview must never be created");
    assert_eq!(w.active_selector, Some(Colour::Blue));
    assert_eq!(w.blue.as_ref().unwrap().replicas, 3);
    assert!(
        !w.all_actions.iter().any(|a| matches!(
            a,
            Action::SwitchActiveSelector(_) | Action::ScaleDown(_) | Action::ApplyDeployment { .. }
        )),
        "{:?}",
        w.all_actions
    );
    assert!(
        w.status
            .message
            .as_deref()
            .unwrap()
            .contains("no traffic moved")
    );
    // It stays failed; the same spec is not retried.
    w.advance(3600);
    assert!(w.tick().actions.is_empty());
    assert_eq!(w.status.phase, Phase::Failed);
}

#[test]
fn migration_timeout_deletes_the_job_and_fails() {
    let mut w = World::established();
    w.job_outcome = JobState::Running;
    w.spec.image = "registry/streams:v2".into();
    w.tick();
    w.tick();
    w.advance(100);
    w.tick();
    assert_eq!(w.status.phase, Phase::Migrating);
    w.advance(30);
    w.tick();
    assert_eq!(w.status.phase, Phase::Failed);
    assert!(w.all_actions.iter().any(
        |a| matches!(a, Action::DeleteMigrationJob { name } if name.starts_with("streams-migrate-"))
    ));
    assert!(w.reasons().contains(&"MigrationTimedOut"));
    assert!(w.green.is_none());
    assert_eq!(w.active_selector, Some(Colour::Blue));
}

#[test]
fn probe_breach_rolls_back_to_the_old_colour() {
    let mut w = World::established();
    w.probe_passes = false;
    w.spec.image = "registry/streams:v2".into();
    w.settle();
    assert_eq!(
        w.phases,
        vec![
            Phase::Pending,
            Phase::Migrating,
            Phase::DeployingPreview,
            Phase::Analyzing,
            Phase::RollingBack,
            Phase::RolledBack
        ]
    );
    assert_eq!(w.active_selector, Some(Colour::Blue));
    assert_eq!(w.blue.as_ref().unwrap().replicas, 3);
    assert_eq!(w.green.as_ref().unwrap().replicas, 0);
    assert_eq!(w.scale_downs(), vec![Colour::Green]);
    assert!(!w.status.analysis[0].passed);
    assert!(w.reasons().contains(&"AnalysisFailed"));
    assert!(
        w.events
            .iter()
            .any(|(t, r)| *t == EventType::Warning && r == "RolledBack")
    );
    assert_eq!(
        w.status.active_image.as_deref(),
        Some("registry/streams:v1")
    );
    // The selector never pointed at green.
    assert!(
        !w.all_actions
            .contains(&Action::SwitchActiveSelector(Colour::Green))
    );
}

#[test]
fn freeze_keeps_the_old_colour_and_scales_nothing_down() {
    let mut w = World::established();
    w.spec.rollback_policy = RollbackPolicy::Freeze;
    w.probe_passes = false;
    w.spec.image = "registry/streams:v2".into();
    w.settle();
    assert_eq!(w.status.phase, Phase::Frozen);
    assert_eq!(w.active_selector, Some(Colour::Blue));
    assert_eq!(w.blue.as_ref().unwrap().replicas, 3);
    assert_eq!(
        w.green.as_ref().unwrap().replicas,
        1,
        "preview left for a human"
    );
    assert!(w.scale_downs().is_empty());
    assert!(
        w.events
            .iter()
            .any(|(t, r)| *t == EventType::Warning && r == "AnalysisFailed")
    );
    assert!(
        w.status
            .message
            .as_deref()
            .unwrap()
            .contains("needs a human")
    );
    w.advance(86_400);
    assert!(w.tick().actions.is_empty());
    assert_eq!(w.status.phase, Phase::Frozen);
}

#[test]
fn abort_mid_analysis_rolls_back_and_blocks_new_cycles() {
    let mut w = World::established();
    w.spec.auto_promote = false;
    w.spec.image = "registry/streams:v2".into();
    w.settle();
    assert_eq!(w.status.phase, Phase::Analyzing);
    assert!(w.reasons().contains(&"AwaitingPromotion"));
    w.spec.abort = true;
    w.settle();
    assert_eq!(w.status.phase, Phase::RolledBack);
    assert!(w.reasons().contains(&"Aborted"));
    assert_eq!(w.active_selector, Some(Colour::Blue));
    assert_eq!(w.green.as_ref().unwrap().replicas, 0);
    // While abort stays set, a new image does not start a cycle.
    w.spec.image = "registry/streams:v3".into();
    let d = w.tick();
    assert!(d.actions.is_empty());
    assert_eq!(w.status.phase, Phase::RolledBack);
    w.spec.abort = false;
    w.tick();
    assert_eq!(w.status.phase, Phase::Pending);
}

#[test]
fn manual_promotion_waits_for_spec_promote() {
    let mut w = World::established();
    w.spec.auto_promote = false;
    w.spec.image = "registry/streams:v2".into();
    w.settle();
    w.advance(120);
    w.tick();
    assert_eq!(w.status.phase, Phase::Analyzing);
    assert_eq!(w.active_selector, Some(Colour::Blue));
    w.spec.promote = Some("registry/streams:v1".into()); // a stale value does not promote
    w.tick();
    assert_eq!(w.status.phase, Phase::Analyzing);
    w.spec.promote = Some("registry/streams:v2".into());
    w.settle();
    assert_eq!(w.status.phase, Phase::Succeeded);
    assert_eq!(w.active_selector, Some(Colour::Green));
}

#[test]
fn progress_deadline_rolls_back_a_preview_that_never_gets_ready() {
    let mut w = World::established();
    w.pods_get_ready = false;
    w.spec.image = "registry/streams:v2".into();
    w.tick();
    w.tick();
    w.tick();
    assert_eq!(w.status.phase, Phase::DeployingPreview);
    w.advance(590);
    w.tick();
    assert_eq!(w.status.phase, Phase::DeployingPreview);
    w.advance(20);
    w.tick();
    assert_eq!(w.status.phase, Phase::RollingBack);
    assert!(w.reasons().contains(&"ProgressDeadlineExceeded"));
    w.tick();
    assert_eq!(w.status.phase, Phase::RolledBack);
    assert_eq!(w.active_selector, Some(Colour::Blue));
    assert_eq!(w.scale_downs(), vec![Colour::Green]);
}

#[test]
fn time_spent_paused_does_not_count_against_the_deadline() {
    let mut w = World::established();
    w.spec.image = "registry/streams:v2".into();
    w.tick();
    w.tick();
    w.tick();
    assert_eq!(w.status.phase, Phase::DeployingPreview);
    w.spec.paused = true;
    let d = w.tick();
    assert!(w.reasons().contains(&"Paused"));
    assert!(
        d.actions
            .iter()
            .all(|a| matches!(a, Action::EmitEvent { .. }))
    );
    w.advance(3600);
    w.tick();
    assert_eq!(
        w.status.phase,
        Phase::DeployingPreview,
        "paused holds the phase"
    );
    w.spec.paused = false;
    w.settle();
    assert_eq!(w.status.phase, Phase::Succeeded);
    assert!(w.reasons().contains(&"Resumed"));
}

#[test]
fn reverting_the_image_to_the_active_one_releases_nothing() {
    let mut w = World::established();
    w.probe_passes = false;
    w.spec.image = "registry/streams:v2".into();
    w.settle();
    assert_eq!(w.status.phase, Phase::RolledBack);
    w.spec.image = "registry/streams:v1".into();
    w.all_actions.clear();
    w.settle();
    assert_eq!(w.status.phase, Phase::Succeeded);
    assert!(w.reasons().contains(&"AlreadyActive"));
    assert!(
        w.all_actions
            .iter()
            .all(|a| matches!(a, Action::EmitEvent { .. }))
    );
}

#[test]
fn spec_hash_is_stable_and_covers_image_and_migration() {
    let a = spec("registry/streams:v1");
    assert_eq!(spec_hash(&a), spec_hash(&a.clone()));
    assert_eq!(spec_hash(&a).len(), 10);
    let mut b = a.clone();
    b.image = "registry/streams:v2".into();
    assert_ne!(spec_hash(&a), spec_hash(&b));
    let mut c = a.clone();
    c.migration.as_mut().unwrap().command.push("--dry".into());
    assert_ne!(spec_hash(&a), spec_hash(&c));
    let mut d = a.clone();
    d.replicas = 10;
    assert_eq!(spec_hash(&a), spec_hash(&d), "scaling is not a new release");
}

#[test]
fn abort_before_the_analysis_result_rolls_back_without_probing() {
    let mut w = World::established();
    w.spec.image = "registry/streams:v2".into();
    for _ in 0..3 {
        w.tick(); // Pending, Migrating, DeployingPreview
    }
    w.tick(); // preview ready -> Analyzing (+ RunAnalysis)
    assert_eq!(w.status.phase, Phase::Analyzing);
    w.status.analysis.clear(); // the probe is still running when abort lands
    w.spec.abort = true;
    w.settle();
    assert_eq!(w.status.phase, Phase::RolledBack);
    assert!(w.status.analysis.is_empty());
    assert_eq!(w.active_selector, Some(Colour::Blue));
    assert_eq!(w.green.as_ref().unwrap().replicas, 0);
}

#[test]
fn freeze_on_progress_deadline_keeps_both_colours_running() {
    let mut w = World::established();
    w.spec.rollback_policy = RollbackPolicy::Freeze;
    w.pods_get_ready = false;
    w.spec.image = "registry/streams:v2".into();
    for _ in 0..3 {
        w.tick();
    }
    w.advance(601);
    w.tick();
    assert_eq!(w.status.phase, Phase::Frozen);
    assert!(w.reasons().contains(&"ProgressDeadlineExceeded"));
    assert_eq!(w.active_selector, Some(Colour::Blue));
    assert!(w.scale_downs().is_empty());
    assert_eq!(w.blue.as_ref().unwrap().replicas, 3);
}

/// v2 released onto green and promoted; blue (v1) still runs for the scale-down delay.
fn promoted_v2() -> World {
    let mut w = World::established();
    w.spec.image = "registry/streams:v2".into();
    w.settle();
    assert_eq!(w.status.phase, Phase::Succeeded);
    assert_eq!(w.active_selector, Some(Colour::Green));
    assert!(
        !w.status.verified,
        "verified at the switch, before any measurement"
    );
    w.events.clear();
    w.all_actions.clear();
    w.phases.clear();
    w
}

fn verifications(w: &World) -> Vec<&AnalysisRun> {
    w.status
        .analysis
        .iter()
        .filter(|r| r.verification)
        .collect()
}

#[test]
fn a_failed_measurement_after_the_switch_puts_the_old_colour_back_within_one_interval() {
    let mut w = promoted_v2();
    let interval = SignedDuration::from_secs(60);
    w.verification_passes = false;
    w.advance(60);
    let d = w.tick();
    assert_eq!(d.actions, vec![Action::RunVerification(Colour::Green)]);
    let failed_at = verifications(&w).last().expect("measured").at;
    assert!(!verifications(&w)[0].passed);
    assert_eq!(
        w.active_selector,
        Some(Colour::Green),
        "judged at the next reconcile"
    );

    w.advance(i64::try_from(d.requeue_after.unwrap().as_secs()).unwrap());
    let d = w.tick();
    assert_eq!(d.actions[0], Action::SwitchActiveSelector(Colour::Blue));
    assert!(d.actions.contains(&Action::ScaleDown(Colour::Green)));
    assert_eq!(w.active_selector, Some(Colour::Blue));
    let latency = w.now.duration_since(failed_at);
    assert!(
        latency <= interval,
        "rollback latency {latency:?} exceeds one interval"
    );
    // Blue was never scaled down: it takes the traffic back at full size.
    assert_eq!(w.blue.as_ref().unwrap().replicas, 3);
    assert_eq!(w.status.active_colour, Some(Colour::Blue));
    assert_eq!(
        w.status.active_image.as_deref(),
        Some("registry/streams:v1")
    );
    assert!(w.status.pending_scale_down.is_none());
    w.settle();
    assert_eq!(w.status.phase, Phase::RolledBack);
    assert!(!w.status.verified);
    assert_eq!(w.scale_downs(), vec![Colour::Green]);
    assert!(w.reasons().contains(&"VerificationFailed"));
    let verified = w
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Verified")
        .unwrap();
    assert_eq!(
        (verified.status.as_str(), verified.reason.as_str()),
        ("False", "VerificationFailed")
    );
}

#[test]
fn the_active_colour_is_measured_every_interval_and_verified_only_when_the_delay_ends() {
    let mut w = promoted_v2();
    let promoted = w.status.phase_since.unwrap();
    let after = w.status.pending_scale_down.as_ref().unwrap().after;
    while !w.status.verified {
        assert!(w.now < after.checked_add(SignedDuration::from_secs(60)).unwrap());
        assert!(w.scale_downs().is_empty(), "scaled down before verified");
        let d = w.tick();
        w.advance(i64::try_from(d.requeue_after.unwrap_or(POLL).as_secs()).unwrap());
    }
    let at: Vec<i64> = verifications(&w)
        .iter()
        .map(|r| r.at.duration_since(promoted).as_secs())
        .collect();
    assert_eq!(at, vec![60, 120, 180, 240], "one measurement per interval");
    assert_eq!(w.scale_downs(), vec![Colour::Blue]);
    assert_eq!(w.active_selector, Some(Colour::Green));
    assert!(w.reasons().contains(&"Verified"));
    assert!(w.status.pending_scale_down.is_none());
    assert_eq!(w.status.phase, Phase::Succeeded);
}

#[test]
fn a_failed_verification_under_freeze_puts_the_old_colour_back_and_scales_nothing_down() {
    let mut w = promoted_v2();
    w.spec.rollback_policy = RollbackPolicy::Freeze;
    w.verification_passes = false;
    w.advance(60);
    w.tick();
    w.advance(5);
    w.tick();
    assert_eq!(w.status.phase, Phase::Frozen);
    assert_eq!(w.active_selector, Some(Colour::Blue));
    assert!(w.scale_downs().is_empty());
    assert_eq!(w.green.as_ref().unwrap().replicas, 3);
}

#[test]
fn abort_while_verifying_puts_the_old_colour_back() {
    let mut w = promoted_v2();
    w.spec.abort = true;
    w.advance(10);
    w.tick();
    assert_eq!(w.active_selector, Some(Colour::Blue));
    w.settle();
    assert_eq!(w.status.phase, Phase::RolledBack);
    assert!(w.reasons().contains(&"Aborted"));
}

fn paused(w: &World) -> Option<(&str, &str)> {
    w.status
        .conditions
        .iter()
        .find(|c| c.type_ == "Paused")
        .map(|c| (c.status.as_str(), c.reason.as_str()))
}

fn analyses(w: &World) -> Vec<&AnalysisRun> {
    w.status
        .analysis
        .iter()
        .filter(|r| !r.verification)
        .collect()
}

/// v2 on green reaches Analyzing (blue serves v1), with Prometheus answering no data.
fn analysing_with_query_errors() -> World {
    let mut w = World::established();
    w.spec.analysis.initial_delay = "30s".into();
    w.spec.analysis.consecutive_error_limit = 4;
    w.prom_errors = true;
    w.spec.image = "registry/streams:v2".into();
    for _ in 0..4 {
        w.tick();
    }
    assert_eq!(w.status.phase, Phase::Analyzing);
    w
}

#[test]
fn query_errors_are_not_failures_and_pause_for_a_human_at_the_consecutive_error_limit() {
    let mut w = analysing_with_query_errors();
    let analysing_since = w.status.phase_since.unwrap();
    // initialDelay: nothing is measured for 30 s.
    for _ in 0..29 {
        w.advance(1);
        w.tick();
    }
    assert!(analyses(&w).is_empty(), "measured before initialDelay");
    assert!(!w.all_actions.contains(&Action::RunAnalysis));
    // Three errors, one per interval: still Analyzing, nothing rolled back, not paused.
    let mut d = w.tick();
    for n in 1..=3 {
        w.advance(i64::try_from(d.requeue_after.unwrap().as_secs()).unwrap());
        d = w.tick();
        while !d.actions.contains(&Action::RunAnalysis) {
            w.advance(i64::try_from(d.requeue_after.unwrap().as_secs()).unwrap());
            d = w.tick();
        }
        assert_eq!(analyses(&w).len(), n);
        assert!(analyses(&w).iter().all(|r| r.error && !r.passed));
        w.advance(5);
        d = w.tick();
        assert_eq!(w.status.phase, Phase::Analyzing, "after {n} errors");
        assert_ne!(paused(&w), Some(("True", "Inconclusive")));
    }
    let first = analyses(&w)[0].at.duration_since(analysing_since);
    assert_eq!(
        first,
        SignedDuration::from_secs(30),
        "first measurement at initialDelay"
    );
    assert_eq!(
        w.status.measurements.as_ref().unwrap().consecutive_errors,
        3
    );
    // The 4th error: inconclusive, paused for a human with a Warning Event.
    while !d.actions.contains(&Action::RunAnalysis) {
        w.advance(i64::try_from(d.requeue_after.unwrap().as_secs()).unwrap());
        d = w.tick();
    }
    w.advance(5);
    w.tick();
    assert_eq!(paused(&w), Some(("True", "Inconclusive")));
    assert_eq!(w.status.phase, Phase::Analyzing);
    assert!(w.status.inconclusive.is_some());
    assert!(
        w.events
            .contains(&(EventType::Warning, "AnalysisInconclusive".to_owned()))
    );
    assert!(!w.reasons().contains(&"AnalysisFailed"));
    // Held: no more measurements, no rollback, not even past the progress deadline.
    w.advance(3600);
    let d = w.tick();
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(w.status.phase, Phase::Analyzing);
    assert_eq!(w.active_selector, Some(Colour::Blue));
    assert!(w.scale_downs().is_empty());
    assert_eq!(analyses(&w).len(), 4);
}

#[test]
fn a_human_resolves_an_inconclusive_analysis_with_promote_or_abort() {
    let mut go_on = analysing_with_query_errors();
    go_on.consecutive_errors_until_paused();
    // A promote already in the spec before the hold does not count; a new spec change does.
    go_on.spec.promote = Some("registry/streams:v2".into());
    go_on.tick();
    assert_eq!(go_on.status.phase, Phase::Analyzing);
    go_on.generation += 1;
    go_on.settle();
    assert_eq!(go_on.status.phase, Phase::Succeeded);
    assert_eq!(go_on.active_selector, Some(Colour::Green));
    assert!(go_on.reasons().contains(&"InconclusiveAccepted"));

    let mut back = analysing_with_query_errors();
    back.consecutive_errors_until_paused();
    back.spec.abort = true;
    back.generation += 1;
    back.settle();
    assert_eq!(back.status.phase, Phase::RolledBack);
    assert_eq!(back.active_selector, Some(Colour::Blue));
}

impl World {
    fn consecutive_errors_until_paused(&mut self) {
        for _ in 0..100 {
            if self.status.inconclusive.is_some() {
                return;
            }
            let d = self.tick();
            self.advance(i64::try_from(d.requeue_after.unwrap_or(POLL).as_secs()).unwrap());
        }
        panic!("never inconclusive: {:?}", self.status);
    }
}

#[test]
fn a_failure_limit_tolerates_that_many_failed_measurements_and_count_takes_them_all() {
    let mut w = World::established();
    w.spec.analysis.count = 3;
    w.spec.analysis.failure_limit = 1;
    w.spec.image = "registry/streams:v2".into();
    w.probe_passes = false;
    for _ in 0..4 {
        w.tick();
    }
    assert_eq!(w.status.phase, Phase::Analyzing);
    let d = w.tick(); // first failure judged: 1 <= failureLimit
    assert_eq!(w.status.phase, Phase::Analyzing);
    w.probe_passes = true;
    w.advance(i64::try_from(d.requeue_after.unwrap().as_secs()).unwrap());
    w.settle_until(|w| analyses(w).len() == 3);
    w.settle();
    assert_eq!(w.status.phase, Phase::Succeeded);
    let runs = analyses(&w);
    assert_eq!(runs.len(), 3, "count: 3 measurements before promotion");
    assert_eq!(runs.iter().filter(|r| !r.passed).count(), 1);
    assert!(
        w.status.measurements.as_ref().is_none_or(|m| m.count == 0),
        "verification starts its own tally"
    );

    let mut w = World::established();
    w.spec.analysis.count = 3;
    w.spec.analysis.failure_limit = 1;
    w.spec.image = "registry/streams:v2".into();
    w.probe_passes = false;
    w.settle_until(|w| w.status.phase.in_progress() && analyses(w).len() == 2);
    w.tick();
    assert_eq!(
        w.status.phase,
        Phase::RollingBack,
        "2 failures > failureLimit 1"
    );
}

#[test]
fn only_the_latest_measurements_stay_in_status_but_all_are_counted() {
    let mut status = ReleaseStatus {
        preview_hash: Some("h".into()),
        ..ReleaseStatus::default()
    };
    let t: Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
    for i in 0..15 {
        let at = t.checked_add(SignedDuration::from_secs(i)).unwrap();
        record_analysis(&mut status, &verdict(true), None, at, false);
    }
    assert_eq!(status.analysis.len(), MAX_RUNS);
    assert_eq!(
        status.analysis[0].at,
        t.checked_add(SignedDuration::from_secs(5)).unwrap()
    );
    assert_eq!(status.measurements.as_ref().unwrap().count, 15);
}

impl World {
    fn settle_until(&mut self, done: impl Fn(&World) -> bool) {
        for _ in 0..200 {
            if done(self) {
                return;
            }
            let d = self.tick();
            self.advance(i64::try_from(d.requeue_after.unwrap_or(POLL).as_secs().max(1)).unwrap());
        }
        panic!("condition never reached: {:?}", self.status);
    }
}

#[test]
fn a_service_switched_onto_the_preview_by_hand_stops_the_cycle_without_touching_it() {
    let mut w = World::established();
    w.spec.image = "registry/streams:v2".into();
    for _ in 0..3 {
        w.tick();
    }
    assert_eq!(w.status.phase, Phase::DeployingPreview);
    w.active_selector = Some(Colour::Green);
    w.all_actions.clear();
    w.settle();
    assert_eq!(w.status.phase, Phase::Failed);
    assert_eq!(w.status.active_colour, Some(Colour::Green));
    assert!(w.reasons().contains(&"SelectorDrift"));
    let touched_green = w.all_actions.iter().any(|a| {
        matches!(
            a,
            Action::ApplyDeployment {
                colour: Colour::Green,
                ..
            }
        ) || *a == Action::ScaleDown(Colour::Green)
    });
    assert!(!touched_green, "{:?}", w.all_actions);
}

#[test]
fn a_manual_rollback_while_verifying_is_adopted_and_the_old_colour_is_never_scaled_down() {
    let mut w = promoted_v2();
    w.active_selector = Some(Colour::Blue); // the runbook's selector patch
    w.tick();
    assert_eq!(w.status.phase, Phase::RolledBack);
    assert_eq!(w.status.active_colour, Some(Colour::Blue));
    assert_eq!(
        w.status.active_image.as_deref(),
        Some("registry/streams:v1")
    );
    w.advance(600);
    w.settle();
    assert!(w.scale_downs().is_empty());
    assert_eq!(w.blue.as_ref().unwrap().replicas, 3);
}

fn migration_jobs(w: &World) -> Vec<&str> {
    w.all_actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateMigrationJob { name } => Some(name.as_str()),
            _ => None,
        })
        .collect()
}

/// v2 (with its expand migration) is promoted and verified, so blue (v1) is scaled down; then
/// the image goes back to v1. v1's migrations were applied when it was released, the schema is
/// ahead of them and v1 accepts that (it checks only that its own migrations are there,
/// kit::db::check_schema), so the cycle back runs no migration Job at all.
#[test]
fn a_rollback_from_v2_to_v1_runs_no_migration_job() {
    let mut w = promoted_v2();
    w.settle_until(|w| w.status.verified);
    assert_eq!(w.blue.as_ref().unwrap().replicas, 0, "v1 scaled down");
    let hashes: Vec<&str> = w.status.history.iter().map(|p| p.image.as_str()).collect();
    assert_eq!(hashes, vec!["registry/streams:v1", "registry/streams:v2"]);
    w.all_actions.clear();
    w.events.clear();
    w.phases.clear();
    w.job = JobState::Missing;

    w.spec.image = "registry/streams:v1".into();
    w.settle();
    assert!(migration_jobs(&w).is_empty(), "{:?}", w.all_actions);
    assert_eq!(
        w.phases,
        vec![
            Phase::Pending,
            Phase::DeployingPreview,
            Phase::Analyzing,
            Phase::Promoting,
            Phase::Succeeded
        ]
    );
    assert!(w.reasons().contains(&"MigrationSkipped"));
    assert_eq!(w.active_selector, Some(Colour::Blue));
    assert_eq!(
        w.status.active_image.as_deref(),
        Some("registry/streams:v1")
    );
    assert!(w.status.migration.is_none());

    // An image never active here still migrates.
    w.settle_until(|w| w.status.verified);
    w.all_actions.clear();
    w.spec.image = "registry/streams:v3".into();
    w.settle();
    assert_eq!(migration_jobs(&w).len(), 1, "{:?}", w.all_actions);
}

/// Going back while the new colour is still verifying (the old one still runs): skipped too.
#[test]
fn going_back_to_the_colour_still_kept_after_promotion_skips_the_migration() {
    let mut w = promoted_v2();
    w.status.history.clear(); // a status written before history existed: the kept colour says it
    w.spec.image = "registry/streams:v1".into();
    w.settle();
    assert!(migration_jobs(&w).is_empty(), "{:?}", w.all_actions);
    assert_eq!(w.status.phase, Phase::Succeeded);
    assert_eq!(w.active_selector, Some(Colour::Blue));
}

#[test]
fn the_history_keeps_the_latest_active_hashes_once_each() {
    let mut w = World::established();
    for n in 2..=13 {
        w.spec.image = format!("registry/streams:v{n}");
        w.settle();
        assert_eq!(w.status.phase, Phase::Succeeded, "v{n}");
        w.settle_until(|w| w.status.verified);
    }
    let images: Vec<String> = w.status.history.iter().map(|p| p.image.clone()).collect();
    let want: Vec<String> = (4..=13).map(|n| format!("registry/streams:v{n}")).collect();
    assert_eq!(images, want, "the latest {MAX_HISTORY}, newest last");
    assert_eq!(w.status.history.last().unwrap().hash, spec_hash(&w.spec));
}

/// spec.image changes while v2's migration Job runs: the Job is deleted before v3's cycle
/// starts, and v3 gets its own Job.
#[test]
fn a_cycle_replaced_mid_migration_deletes_its_migration_job() {
    let mut w = World::established();
    w.job_outcome = JobState::Running;
    w.spec.image = "registry/streams:v2".into();
    w.tick();
    w.tick();
    assert_eq!(w.status.phase, Phase::Migrating);
    let v2_job = migration_job_name("streams", &spec_hash(&w.spec));
    w.spec.image = "registry/streams:v3".into();
    let d = w.tick();
    assert_eq!(
        d.actions[0],
        Action::DeleteMigrationJob {
            name: v2_job.clone()
        }
    );
    assert!(w.reasons().contains(&"MigrationSuperseded"));
    assert_eq!(w.status.phase, Phase::Pending);
    assert!(w.status.migration.is_none());
    let d = w.tick();
    let v3_job = migration_job_name("streams", &spec_hash(&w.spec));
    assert_eq!(d.actions[0], Action::CreateMigrationJob { name: v3_job });
    assert_ne!(migration_jobs(&w), vec![v2_job.as_str(), v2_job.as_str()]);
}

fn accepted(w: &World) -> Option<(&str, &str)> {
    w.status
        .conditions
        .iter()
        .find(|c| c.type_ == ACCEPTED)
        .map(|c| (c.status.as_str(), c.reason.as_str()))
}

#[test]
fn the_analysis_must_fit_in_the_progress_deadline() {
    let mut s = spec("registry/streams:v1");
    s.progress_deadline_seconds = 600;
    s.analysis.count = 10;
    s.analysis.interval = "1m".into();
    assert_eq!(invalid_spec(&s), None, "10 x 60 s = 600 s fits");
    s.analysis.initial_delay = "1s".into();
    let why = invalid_spec(&s).expect("601 s does not fit");
    assert!(
        why.contains(
            "initialDelay 1s + count 10 x interval 1m = 601s, more than progressDeadlineSeconds 600"
        ),
        "{why}"
    );
    let mut s = spec("registry/streams:v1");
    s.preview_service = s.active_service.clone();
    assert!(invalid_spec(&s).unwrap().contains("both streams"));
}

/// A spec whose analysis cannot finish before its deadline is refused before any action: no
/// Job, no Deployment, no selector; one Warning Event; accepted again once fixed.
#[test]
fn an_invalid_spec_is_refused_before_any_action() {
    let mut w = World::new("registry/streams:v1");
    w.spec.analysis.count = 20; // 20 x 60 s > 600 s
    let d = w.tick();
    assert!(
        d.actions
            .iter()
            .all(|a| matches!(a, Action::EmitEvent { .. })),
        "{:?}",
        d.actions
    );
    assert!(
        w.events
            .contains(&(EventType::Warning, REFUSED_INVALID.to_owned()))
    );
    assert_eq!(accepted(&w), Some(("False", REFUSED_INVALID)));
    assert_eq!(w.status.phase, Phase::Pending);
    assert_eq!(w.status.phase_since, Some(w.now), "counts as held from now");
    w.advance(60);
    assert!(w.tick().actions.is_empty(), "the Event is not repeated");
    assert!(w.status.preview_hash.is_none(), "no cycle started");

    w.spec.analysis.count = 1;
    w.settle();
    assert_eq!(accepted(&w), Some(("True", "Accepted")));
    assert_eq!(w.status.phase, Phase::Succeeded);
}

/// The reconciler found an older Release owning the Service: nothing is done for this one.
#[test]
fn a_release_whose_service_is_claimed_does_nothing() {
    let mut w = World::established();
    w.spec.image = "registry/streams:v2".into();
    w.service_claimed = Some("Service streams is claimed by Release calls-old".into());
    let d = w.tick();
    assert!(
        d.actions
            .iter()
            .all(|a| matches!(a, Action::EmitEvent { .. }))
    );
    assert_eq!(accepted(&w), Some(("False", REFUSED_CLAIMED)));
    assert_eq!(w.status.phase, Phase::Succeeded, "the phase it had");
    assert!(w.status.message.as_deref().unwrap().contains("calls-old"));
    w.service_claimed = None;
    w.settle();
    assert_eq!(
        w.active_selector,
        Some(Colour::Green),
        "v2 released once free"
    );
}

/// The older Release owns a Service (creationTimestamp, then name); a claim counts in either
/// role; unrelated Services, and the Release itself, claim nothing.
#[test]
fn the_older_release_owns_a_service_in_either_role() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let release = |name: &str, at: &str, active: &str, preview: &str| {
        let mut s = spec("registry/streams:v1");
        active.clone_into(&mut s.active_service);
        preview.clone_into(&mut s.preview_service);
        let mut r = Release::new(name, s);
        r.metadata.creation_timestamp = Some(Time(at.parse().unwrap()));
        r
    };
    let a = release("a", "2026-11-01T00:00:00Z", "streams", "streams-preview");
    let b = release("b", "2026-11-02T00:00:00Z", "other", "streams");
    let c = release("c", "2026-11-02T00:00:00Z", "c", "c-preview");
    let all = [a.clone(), b.clone(), c.clone()];
    assert_eq!(service_claimed(&a, &all), None, "the oldest owns");
    let why = service_claimed(&b, &all).expect("b's preview is a's active Service");
    assert!(
        why.contains("Service streams is claimed by Release a"),
        "{why}"
    );
    assert_eq!(service_claimed(&c, &all), None, "nothing shared");
    // Same creation time: the name decides.
    let b2 = release("b2", "2026-11-02T00:00:00Z", "other", "other-preview");
    let b1 = release("b1", "2026-11-02T00:00:00Z", "other", "x");
    let tie = [b1.clone(), b2.clone()];
    assert_eq!(service_claimed(&b1, &tie), None);
    assert!(service_claimed(&b2, &tie).unwrap().contains("Release b1"));
}

fn with_snapshot(w: &mut World, timeout_seconds: u32) {
    w.spec.migration.as_mut().unwrap().snapshot = Some(SnapshotSpec {
        cluster_identifier: "se-aurora".into(),
        retain: 3,
        timeout_seconds,
    });
}

fn position(w: &World, f: impl Fn(&Action) -> bool) -> Option<usize> {
    w.all_actions.iter().position(f)
}

#[test]
fn the_snapshot_is_available_and_recorded_before_the_migration_job() {
    let mut w = World::new("registry/streams:v1");
    with_snapshot(&mut w, 1800);
    w.settle();
    assert_eq!(w.status.phase, Phase::Succeeded, "{:?}", w.status.message);
    let name = w.status.snapshot.as_ref().expect("snapshot").name.clone();
    assert!(
        super::super::snapshot::is_snapshot_of("streams", &spec_hash(&w.spec), &name),
        "{name}"
    );
    let create = position(&w, |a| matches!(a, Action::CreateSnapshot { name: n, cluster } if *n == name && cluster == "se-aurora")).expect("snapshot requested");
    let prune = position(
        &w,
        |a| matches!(a, Action::PruneSnapshots { current, retain: 3, .. } if *current == name),
    )
    .expect("old snapshots pruned");
    let job = position(&w, |a| matches!(a, Action::CreateMigrationJob { .. })).expect("job");
    assert!(create < prune && prune < job, "{:?}", w.all_actions);
    // (tick asserts the ARN was in the status the Job's decision started from.)
    let s = w.status.snapshot.as_ref().unwrap();
    assert_eq!(s.state, SnapshotState::Available);
    assert_eq!(
        s.arn.as_deref(),
        Some("arn:aws:rds:eu-north-1:1:cluster-snapshot:x")
    );
    let r = w.reasons();
    let at = |reason: &str| r.iter().position(|x| *x == reason).unwrap();
    assert!(at("SnapshotRequested") < at("SnapshotAvailable"));
    assert!(at("SnapshotAvailable") < at("Migrating"));
    assert!(
        w.status
            .conditions
            .iter()
            .any(|c| c.type_ == SNAPSHOT_READY && c.status == "True")
    );
}

#[test]
fn a_refused_snapshot_fails_the_release_before_anything_changes() {
    let mut w = World::established();
    w.spec = spec("registry/streams:v2");
    with_snapshot(&mut w, 1800);
    w.rds_refuses = Some("CreateDBClusterSnapshot: DBClusterNotFoundFault: no se-aurora".into());
    w.settle();
    assert_eq!(w.status.phase, Phase::Failed);
    let msg = w.status.message.clone().unwrap();
    assert!(msg.contains("DBClusterNotFoundFault"), "{msg}");
    assert!(msg.contains("no traffic moved"), "{msg}");
    assert!(w.reasons().contains(&"SnapshotFailed"), "{:?}", w.reasons());
    let progressing = w
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(progressing.reason, "SnapshotFailed");
    assert!(
        !w.all_actions.iter().any(|a| matches!(
            a,
            Action::CreateMigrationJob { .. }
                | Action::ApplyDeployment { .. }
                | Action::SwitchActiveSelector(_)
                | Action::SwitchPreviewSelector(_)
                | Action::ScaleDown(_)
        )),
        "{:?}",
        w.all_actions
    );
    assert_eq!(w.active_selector, Some(Colour::Blue), "v1 keeps serving");
}

#[test]
fn a_snapshot_that_never_becomes_available_times_out_on_its_own_clock() {
    let mut w = World::established();
    w.spec = spec("registry/streams:v2");
    // Longer than the progress deadline (600 s): the snapshot's timeout decides, not it.
    with_snapshot(&mut w, 1200);
    w.rds_outcome = SnapshotObs::Creating {
        percent_progress: Some(40),
    };
    w.tick(); // the cycle starts
    w.tick(); // the snapshot is requested
    w.tick(); // RDS reports progress
    assert_eq!(w.status.phase, Phase::Pending);
    assert!(
        w.status.message.as_deref().unwrap().contains("40%"),
        "{:?}",
        w.status.message
    );
    w.advance(700);
    w.tick();
    assert_eq!(
        w.status.phase,
        Phase::Pending,
        "past the progress deadline, still waiting"
    );
    w.advance(600);
    w.tick();
    assert_eq!(w.status.phase, Phase::Failed);
    assert!(
        w.reasons().contains(&"SnapshotTimedOut"),
        "{:?}",
        w.reasons()
    );
    assert_eq!(
        w.status.snapshot.as_ref().unwrap().state,
        SnapshotState::Failed
    );
    assert!(
        !w.all_actions
            .iter()
            .any(|a| matches!(a, Action::CreateMigrationJob { .. }))
    );
}

#[test]
fn a_snapshot_rds_reports_failed_fails_the_release_and_a_missing_one_is_requested_again() {
    let mut w = World::established();
    w.spec = spec("registry/streams:v2");
    with_snapshot(&mut w, 1800);
    w.rds_outcome = SnapshotObs::Missing;
    w.tick(); // the cycle starts
    w.tick(); // the snapshot is requested
    w.tick(); // RDS does not know it
    let creates = w
        .all_actions
        .iter()
        .filter(|a| matches!(a, Action::CreateSnapshot { .. }))
        .count();
    assert_eq!(creates, 2, "requested, then again when RDS did not know it");
    w.rds_outcome = SnapshotObs::Failed("status failed".into());
    w.tick();
    assert_eq!(w.status.phase, Phase::Failed);
    assert!(
        w.status
            .message
            .as_deref()
            .unwrap()
            .contains("status failed")
    );
    assert!(
        !w.all_actions
            .iter()
            .any(|a| matches!(a, Action::CreateMigrationJob { .. }))
    );
}

/// A spec released again (its first cycle failed, so it never became active) takes a new
/// snapshot: the name carries the request's time, so RDS cannot answer "already exists" with
/// the restore point of the first try.
#[test]
fn a_spec_released_again_takes_a_new_snapshot_not_the_old_one() {
    let mut w = World::established();
    w.spec = spec("registry/streams:v2");
    with_snapshot(&mut w, 1800);
    w.rds_refuses = Some("CreateDBClusterSnapshot: SnapshotQuotaExceeded".into());
    w.settle();
    assert_eq!(w.status.phase, Phase::Failed);
    w.rds_refuses = None;
    w.spec = spec("registry/streams:v3");
    with_snapshot(&mut w, 1800);
    w.settle();
    assert_eq!(w.status.phase, Phase::Succeeded, "{:?}", w.status.message);
    w.advance(3600);
    w.spec = spec("registry/streams:v2");
    with_snapshot(&mut w, 1800);
    let v2 = spec_hash(&w.spec);
    w.settle();
    assert_eq!(w.status.phase, Phase::Succeeded, "{:?}", w.status.message);
    let v2_requests: Vec<&String> = w
        .all_actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateSnapshot { name, .. }
                if super::super::snapshot::is_snapshot_of("streams", &v2, name) =>
            {
                Some(name)
            }
            _ => None,
        })
        .collect();
    assert_eq!(v2_requests.len(), 2, "{:?}", w.all_actions);
    assert_ne!(v2_requests[0], v2_requests[1]);
    assert_eq!(
        &w.status.snapshot.as_ref().unwrap().name,
        v2_requests[1],
        "the status names the second request's snapshot"
    );
}
