//! The planner driven through whole Rollouts over a simulated fleet of country clusters, with an
//! injected clock: each target's Release "runs" when the planner sets its image.

use super::*;
use crate::crd::{Target, Wave};

const V1: &str = "registry/calls:v1";
const V2: &str = "registry/calls:v2";

fn spec(policy: HaltPolicy, max_parallel: u32) -> RolloutSpec {
    let wave = |name: &str, targets: &[&str]| Wave {
        name: name.into(),
        targets: targets
            .iter()
            .map(|t| Target {
                name: (*t).into(),
                kubeconfig_secret: format!("kubeconfig-{t}"),
            })
            .collect(),
        bake_seconds: 600,
    };
    RolloutSpec {
        image: V2.into(),
        namespace: "calls".into(),
        release: "calls".into(),
        waves: vec![
            wave("canary", &["se"]),
            wave("nordics", &["no", "dk"]),
            wave("rest", &["fi"]),
        ],
        max_parallel,
        halt_policy: policy,
        secret_namespace: "meridian-system".into(),
        paused: false,
        progress_deadline_seconds: 3600,
    }
}

/// Country clusters; each Release finishes its cycle one tick after its image changes, with
/// the outcome the test chose for that country.
struct Fleet {
    spec: RolloutSpec,
    status: RolloutStatus,
    now: Timestamp,
    releases: BTreeMap<String, TargetObs>,
    /// Countries whose release of V2 breaches analysis.
    breaches: Vec<&'static str>,
    /// Countries whose release of V2 is promoted but still verifying (not yet `verified`).
    verifying: Vec<&'static str>,
    /// Countries whose operator has not seen a new image yet when the planner next looks: the
    /// status stays the previous cycle's, behind the spec.
    lagging: Vec<&'static str>,
    /// Targets whose image was set, in order (image, target).
    set_images: Vec<(String, String)>,
    reasons: Vec<String>,
}

impl Fleet {
    fn new(policy: HaltPolicy, max_parallel: u32) -> Self {
        let releases = ["se", "no", "dk", "fi"]
            .into_iter()
            .map(|c| {
                (
                    c.to_owned(),
                    TargetObs {
                        image: V1.into(),
                        phase: Some(Phase::Succeeded),
                        active_image: Some(V1.into()),
                        verified: true,
                        current: true,
                    },
                )
            })
            .collect();
        Self {
            spec: spec(policy, max_parallel),
            status: RolloutStatus::default(),
            now: "2026-11-23T12:00:00Z".parse().unwrap(),
            releases,
            breaches: vec![],
            verifying: vec![],
            lagging: vec![],
            set_images: vec![],
            reasons: vec![],
        }
    }

    fn advance(&mut self, secs: i64) {
        self.now = self
            .now
            .checked_add(SignedDuration::from_secs(secs))
            .unwrap();
    }

    /// Releases in flight finish, then the planner makes one decision, which is applied.
    fn tick(&mut self) -> RolloutDecision {
        for (name, r) in &mut self.releases {
            if r.phase == Some(Phase::Pending) {
                if r.image == V2 && self.breaches.contains(&name.as_str()) {
                    r.phase = Some(Phase::RolledBack);
                } else {
                    r.phase = Some(Phase::Succeeded);
                    r.active_image = Some(r.image.clone());
                    r.verified = !self.verifying.contains(&name.as_str());
                }
            }
        }
        let d = plan(&self.spec, &self.status, &self.releases, self.now);
        self.status = d.status.clone();
        for a in &d.actions {
            match a {
                RolloutAction::SetImage { target, image } => {
                    let r = self.releases.get_mut(target).unwrap();
                    r.image.clone_from(image);
                    self.set_images.push((image.clone(), target.clone()));
                    if self.lagging.contains(&target.as_str()) {
                        r.current = false;
                        continue;
                    }
                    // Reverting to the active image is "already active" in the Release.
                    r.phase = if r.active_image.as_deref() == Some(image) {
                        Some(Phase::Succeeded)
                    } else {
                        Some(Phase::Pending)
                    };
                }
                RolloutAction::EmitEvent { reason, .. } => self.reasons.push(reason.clone()),
            }
        }
        d
    }

    fn started(&self) -> Vec<&str> {
        self.set_images
            .iter()
            .filter(|(i, _)| i == V2)
            .map(|(_, t)| t.as_str())
            .collect()
    }

    fn reverted(&self) -> Vec<&str> {
        self.set_images
            .iter()
            .filter(|(i, _)| i == V1)
            .map(|(_, t)| t.as_str())
            .collect()
    }
}

#[test]
fn three_waves_in_order_with_bake_time_honoured() {
    let mut f = Fleet::new(HaltPolicy::Halt, 1);
    f.tick();
    assert_eq!(f.started(), vec!["se"]);
    f.tick(); // se succeeded -> wave 0 baking
    assert_eq!(f.status.phase, RolloutPhase::Baking);
    f.advance(599);
    let d = f.tick();
    assert_eq!(
        f.started(),
        vec!["se"],
        "wave 1 started before the bake ended"
    );
    assert_eq!(d.requeue_after, Some(Duration::from_secs(1)));
    f.advance(1);
    f.tick();
    assert_eq!(
        f.started(),
        vec!["se", "no"],
        "maxParallel 1: one at a time"
    );
    f.tick(); // no succeeded, dk starts
    assert_eq!(f.started(), vec!["se", "no", "dk"]);
    f.tick(); // dk succeeded -> wave 1 baking
    assert_eq!(f.status.phase, RolloutPhase::Baking);
    assert_eq!(f.status.current_wave, 1);
    f.advance(300);
    f.tick();
    assert_eq!(f.started().len(), 3);
    f.advance(300);
    f.tick();
    assert_eq!(f.started(), vec!["se", "no", "dk", "fi"]);
    f.tick();
    f.advance(600);
    f.tick();
    assert_eq!(f.status.phase, RolloutPhase::Succeeded);
    assert!(f.reverted().is_empty());
    assert_eq!(
        f.reasons.iter().filter(|r| *r == "WaveSucceeded").count(),
        3
    );
    assert!(f.reasons.contains(&"Succeeded".to_owned()));
    assert!(
        f.status
            .targets
            .iter()
            .all(|t| t.previous_image.as_deref() == Some(V1))
    );
}

#[test]
fn max_parallel_starts_a_wave_together() {
    let mut f = Fleet::new(HaltPolicy::Halt, 2);
    f.tick();
    f.tick();
    f.advance(600);
    f.tick();
    assert_eq!(f.started(), vec!["se", "no", "dk"]);
}

/// Drives the fleet until the wave-2 breach is seen; returns it.
fn breach_in_wave_two(policy: HaltPolicy) -> Fleet {
    let mut f = Fleet::new(policy, 2);
    f.breaches = vec!["no"];
    for _ in 0..4 {
        f.tick();
        f.advance(600);
    }
    assert_eq!(
        f.started(),
        vec!["se", "no", "dk"],
        "wave 3 must never start"
    );
    for _ in 0..3 {
        f.advance(3600);
        f.tick();
    }
    assert_eq!(
        f.started(),
        vec!["se", "no", "dk"],
        "wave 3 must never start"
    );
    assert_eq!(f.status.current_wave, 1);
    assert!(f.reasons.contains(&"Halted".to_owned()));
    assert!(
        f.status
            .message
            .as_deref()
            .unwrap()
            .contains("no (wave 1) is RolledBack")
    );
    f
}

#[test]
fn breach_in_wave_two_halts_wave_three_and_touches_nothing_under_halt() {
    let f = breach_in_wave_two(HaltPolicy::Halt);
    assert_eq!(f.status.phase, RolloutPhase::Halted);
    assert!(f.reverted().is_empty());
    assert_eq!(f.releases["dk"].active_image.as_deref(), Some(V2));
}

#[test]
fn breach_in_wave_two_rolls_back_wave_two_under_rollback_wave() {
    let f = breach_in_wave_two(HaltPolicy::RollbackWave);
    assert_eq!(f.status.phase, RolloutPhase::RolledBack);
    assert_eq!(f.reverted(), vec!["no", "dk"]);
    assert_eq!(f.releases["dk"].image, V1);
    assert_eq!(f.releases["se"].image, V2, "wave 1 stays");
    assert_eq!(f.releases["fi"].image, V1, "wave 3 never touched");
    assert!(f.status.targets.iter().filter(|t| t.rolled_back).count() == 2);
}

#[test]
fn breach_in_wave_two_rolls_back_everything_under_rollback_all() {
    let f = breach_in_wave_two(HaltPolicy::RollbackAll);
    assert_eq!(f.status.phase, RolloutPhase::RolledBack);
    assert_eq!(f.reverted(), vec!["se", "no", "dk"]);
    assert!(f.releases.values().all(|r| r.image == V1));
}

#[test]
fn a_release_that_regresses_during_the_bake_halts_the_next_wave() {
    let mut f = Fleet::new(HaltPolicy::RollbackWave, 1);
    f.tick();
    f.tick();
    assert_eq!(f.status.phase, RolloutPhase::Baking);
    f.advance(300);
    // Something (a human, or the Release's own analysis of a later change) moved se off V2.
    f.releases.get_mut("se").unwrap().phase = Some(Phase::Promoting);
    f.tick();
    assert_eq!(f.status.phase, RolloutPhase::RolledBack);
    assert_eq!(f.reverted(), vec!["se"]);
    f.advance(3600);
    f.tick();
    assert_eq!(f.started(), vec!["se"]);
}

#[test]
fn an_unreachable_target_blocks_progress_without_failing() {
    let mut f = Fleet::new(HaltPolicy::Halt, 2);
    f.tick();
    f.tick();
    f.advance(600);
    let dk = f.releases.remove("dk").unwrap();
    f.tick();
    assert_eq!(f.started(), vec!["se", "no"]);
    f.tick();
    assert_eq!(f.status.phase, RolloutPhase::Progressing);
    f.releases.insert("dk".into(), dk);
    f.tick();
    assert_eq!(f.started(), vec!["se", "no", "dk"]);
}

#[test]
fn frozen_targets_are_left_to_a_human() {
    let mut f = Fleet::new(HaltPolicy::RollbackAll, 1);
    f.tick();
    f.releases.get_mut("se").unwrap().phase = Some(Phase::Frozen);
    f.tick();
    assert_eq!(f.status.phase, RolloutPhase::Halted);
    assert!(f.reverted().is_empty());
}

#[test]
fn a_promoted_target_still_verifying_does_not_finish_its_wave() {
    let mut f = Fleet::new(HaltPolicy::Halt, 1);
    // Three hours of verifying, inside the wave's deadline (the deadline has its own test).
    f.spec.progress_deadline_seconds = 86_400;
    f.verifying = vec!["se"];
    f.tick();
    assert_eq!(f.started(), vec!["se"]);
    for _ in 0..3 {
        f.advance(3600);
        f.tick();
        assert_eq!(f.status.phase, RolloutPhase::Progressing);
        assert_eq!(
            f.started(),
            vec!["se"],
            "next wave started before se was verified"
        );
    }
    // se's scale-down delay ends with every measurement passed.
    f.releases.get_mut("se").unwrap().verified = true;
    f.tick();
    assert_eq!(f.status.phase, RolloutPhase::Baking);
}

const V3: &str = "registry/calls:v3";

fn halts_and_reasons(f: &Fleet) -> (RolloutPhase, String) {
    (f.status.phase, f.status.message.clone().unwrap_or_default())
}

/// se (wave 0) is baking when its cluster drops out of sight: the bake may end, but the next wave
/// does not start while se is unobserved, and past the grace the Rollout halts naming se, putting
/// nothing back (nothing is known to have failed) even under RollbackWave.
#[test]
fn a_target_unobservable_during_the_bake_never_starts_the_next_wave_and_then_halts() {
    let mut f = Fleet::new(HaltPolicy::RollbackWave, 2);
    f.tick();
    f.tick();
    assert_eq!(f.status.phase, RolloutPhase::Baking);
    // The bake polls: a regression would be seen within one poll, not at the bake's end.
    f.advance(300);
    let d = f.tick();
    assert_eq!(d.requeue_after, Some(POLL));
    f.advance(250);
    let se = f.releases.remove("se").unwrap();
    f.tick();
    assert_eq!(f.status.phase, RolloutPhase::Baking);
    assert!(
        f.status
            .message
            .as_deref()
            .unwrap()
            .contains("cannot observe se")
    );
    // The bake is over (600 s), but se has not been seen for 50 s: wave 1 waits.
    f.advance(50);
    let d = f.tick();
    assert_eq!(f.started(), vec!["se"], "wave 1 started with se unobserved");
    assert_eq!(f.status.current_wave, 0);
    assert_eq!(d.requeue_after, Some(POLL));
    f.advance(70); // se unobserved for exactly the grace: still only waiting
    f.tick();
    assert_eq!(f.status.phase, RolloutPhase::Baking);
    f.advance(1);
    f.tick();
    let (phase, msg) = halts_and_reasons(&f);
    assert_eq!(phase, RolloutPhase::Halted);
    assert!(
        msg.contains("se (wave 0) could not be observed for 121s"),
        "{msg}"
    );
    assert!(f.reasons.contains(&"Halted".to_owned()));
    assert!(f.reverted().is_empty(), "{:?}", f.set_images);
    // se comes back healthy: the halt stands, nothing more starts.
    f.releases.insert("se".into(), se);
    f.advance(3600);
    f.tick();
    assert_eq!(f.started(), vec!["se"]);
    assert_eq!(f.status.phase, RolloutPhase::Halted);
}

#[test]
fn a_target_seen_again_within_the_grace_lets_the_rollout_advance() {
    let mut f = Fleet::new(HaltPolicy::Halt, 2);
    f.tick();
    f.tick();
    f.advance(590);
    let se = f.releases.remove("se").unwrap();
    f.tick();
    f.advance(60);
    f.tick();
    assert_eq!(f.started(), vec!["se"]);
    f.releases.insert("se".into(), se);
    f.tick();
    assert_eq!(f.started(), vec!["se", "no", "dk"]);
    assert!(
        f.status
            .targets
            .iter()
            .all(|t| t.unobserved_since.is_none())
    );
}

/// An earlier wave's target out of sight holds the wave in progress: nothing new starts.
#[test]
fn an_earlier_waves_target_out_of_sight_holds_the_next_targets() {
    let mut f = Fleet::new(HaltPolicy::Halt, 1);
    f.tick();
    f.tick();
    f.advance(600);
    f.tick(); // wave 1: no starts
    assert_eq!(f.started(), vec!["se", "no"]);
    let se = f.releases.remove("se").unwrap();
    f.tick(); // no succeeded, but se is out of sight: dk waits
    assert_eq!(f.started(), vec!["se", "no"]);
    f.releases.insert("se".into(), se);
    f.tick();
    assert_eq!(f.started(), vec!["se", "no", "dk"]);
}

/// se is promoted but never verified: at the wave's deadline the Rollout halts, naming se and
/// its state, and touches nothing even under RollbackAll.
#[test]
fn a_wave_not_healthy_within_its_deadline_halts_without_touching_anything() {
    let mut f = Fleet::new(HaltPolicy::RollbackAll, 1);
    f.verifying = vec!["se"];
    f.tick();
    f.advance(3600);
    f.tick();
    assert_eq!(f.status.phase, RolloutPhase::Progressing, "at the deadline");
    f.advance(1);
    f.tick();
    let (phase, msg) = halts_and_reasons(&f);
    assert_eq!(phase, RolloutPhase::Halted);
    assert!(
        msg.contains("wave 0 (canary) not healthy within 3600s (se verifying)"),
        "{msg}"
    );
    assert!(f.reasons.contains(&"ProgressDeadlineExceeded".to_owned()));
    assert!(f.reverted().is_empty());
    assert_eq!(f.started(), vec!["se"]);
}

#[test]
fn time_paused_does_not_count_against_the_wave_deadline() {
    let mut f = Fleet::new(HaltPolicy::Halt, 1);
    f.verifying = vec!["se"];
    f.tick();
    f.advance(1800);
    f.spec.paused = true;
    f.tick();
    f.advance(7200);
    f.tick();
    f.spec.paused = false;
    f.tick();
    f.advance(1700);
    f.tick();
    assert_eq!(f.status.phase, RolloutPhase::Progressing);
    f.releases.get_mut("se").unwrap().verified = true;
    f.tick();
    assert_eq!(f.status.phase, RolloutPhase::Baking);
}

/// A newer build's Rollout (or a human) re-imaged se while it baked: this Rollout ends
/// Superseded and puts nothing back, whatever its halt policy.
#[test]
fn a_target_re_imaged_by_someone_else_supersedes_the_rollout() {
    let mut f = Fleet::new(HaltPolicy::RollbackAll, 1);
    f.tick();
    f.tick();
    assert_eq!(f.status.phase, RolloutPhase::Baking);
    f.advance(300);
    let se = f.releases.get_mut("se").unwrap();
    se.image = V3.into();
    se.phase = Some(Phase::Pending);
    f.tick();
    let (phase, msg) = halts_and_reasons(&f);
    assert_eq!(phase, RolloutPhase::Superseded);
    assert!(msg.contains("se runs registry/calls:v3"), "{msg}");
    assert!(f.reasons.contains(&"Superseded".to_owned()));
    assert!(f.reverted().is_empty(), "rolled back over a newer build");
    f.advance(3600);
    let d = f.tick();
    assert!(d.actions.is_empty());
    assert_eq!(f.started(), vec!["se"], "no later wave");
    assert_eq!(f.releases["se"].image, V3);
}

/// no fails on V2 while dk (same wave) was re-imaged to V3: RollbackWave puts no back and
/// leaves dk on the newer build.
#[test]
fn halt_policy_rollback_never_sets_an_image_over_a_superseded_target() {
    let mut f = Fleet::new(HaltPolicy::RollbackWave, 2);
    f.breaches = vec!["no"];
    f.tick();
    f.tick();
    f.advance(600);
    f.tick();
    assert_eq!(f.started(), vec!["se", "no", "dk"]);
    f.releases.get_mut("dk").unwrap().image = V3.into();
    f.tick();
    let (phase, msg) = halts_and_reasons(&f);
    assert_eq!(phase, RolloutPhase::RolledBack);
    assert_eq!(f.reverted(), vec!["no"]);
    assert!(
        !f.set_images.contains(&(V1.to_owned(), "dk".to_owned())),
        "{:?}",
        f.set_images
    );
    assert_eq!(f.releases["dk"].image, V3);
    assert!(
        msg.contains("left as is (superseded or unreachable): dk"),
        "{msg}"
    );
}

/// Succeeded is not enough: the bake clock starts when the target is verified (its scale-down
/// delay measured through), and lasts bakeSeconds from then.
#[test]
fn the_bake_clock_starts_at_verification_not_at_the_switch() {
    let mut f = Fleet::new(HaltPolicy::Halt, 1);
    f.verifying = vec!["se"];
    f.tick();
    f.tick(); // se Succeeded on V2, not verified
    assert_eq!(f.releases["se"].phase, Some(Phase::Succeeded));
    assert!(!f.releases["se"].verified);
    assert_eq!(f.status.phase, RolloutPhase::Progressing);
    assert_eq!(f.status.baking_since, None, "bake clock started unverified");
    f.advance(900);
    f.tick();
    assert_eq!(f.status.baking_since, None);
    f.releases.get_mut("se").unwrap().verified = true;
    f.tick();
    let verified_at = f.now;
    assert_eq!(f.status.phase, RolloutPhase::Baking);
    assert_eq!(f.status.baking_since, Some(verified_at));
    f.advance(599);
    f.tick();
    assert_eq!(f.started(), vec!["se"], "bake counted from the switch");
    f.advance(1);
    f.tick();
    assert_eq!(f.started(), vec!["se", "no"]);
}

/// The build before failed in se (its Release RolledBack). This Rollout sets V2; when it next
/// looks, se's operator has not seen the change yet: spec.image is V2 but the status is still
/// the previous cycle's RolledBack. That is no failure of V2: nothing halts, nothing is put back,
/// and once se's operator catches up the Rollout goes on.
#[test]
fn a_status_from_before_the_image_was_set_is_neither_a_failure_nor_health() {
    let mut f = Fleet::new(HaltPolicy::RollbackWave, 1);
    let se = f.releases.get_mut("se").unwrap();
    se.phase = Some(Phase::RolledBack);
    se.verified = false;
    f.lagging = vec!["se"];
    f.tick();
    assert_eq!(f.started(), vec!["se"]);
    let se = &f.releases["se"];
    assert_eq!((se.image.as_str(), se.phase), (V2, Some(Phase::RolledBack)));
    f.advance(1);
    f.tick();
    assert_eq!(f.status.phase, RolloutPhase::Progressing, "{:?}", f.status);
    assert!(f.reverted().is_empty(), "rolled back on a stale status");
    assert!(!f.reasons.contains(&"Halted".to_owned()));
    // se's operator sees V2 and starts its cycle; it succeeds and is verified.
    let se = f.releases.get_mut("se").unwrap();
    se.current = true;
    se.phase = Some(Phase::Pending);
    f.tick();
    f.tick();
    assert_eq!(f.status.phase, RolloutPhase::Baking);
}

/// A Succeeded, verified target whose status is behind its spec (someone changed the Release
/// while it baked) is not known to be healthy: the bake ends but the next wave waits until the
/// status is current again.
#[test]
fn a_baked_target_whose_status_is_behind_its_spec_holds_the_next_wave() {
    let mut f = Fleet::new(HaltPolicy::RollbackWave, 2);
    f.tick();
    f.tick();
    assert_eq!(f.status.phase, RolloutPhase::Baking);
    f.advance(590);
    f.releases.get_mut("se").unwrap().current = false;
    f.tick();
    f.advance(30);
    f.tick();
    assert_eq!(
        f.started(),
        vec!["se"],
        "advanced on a status behind its spec"
    );
    assert_eq!(f.status.current_wave, 0);
    assert!(f.reverted().is_empty());
    assert!(
        f.status
            .message
            .as_deref()
            .unwrap()
            .contains("cannot observe se"),
        "{:?}",
        f.status.message
    );
    f.releases.get_mut("se").unwrap().current = true;
    f.tick();
    assert_eq!(f.started(), vec!["se", "no", "dk"]);
}

/// Waves edited while the Rollout runs (a country added to the finished first wave, which would
/// otherwise never be released, or a new wave whose targets the status does not know): halted,
/// nothing set.
#[test]
fn waves_edited_mid_flight_halt_the_rollout_touching_nothing() {
    let mut f = Fleet::new(HaltPolicy::RollbackAll, 1);
    f.tick();
    f.tick();
    assert_eq!(f.status.phase, RolloutPhase::Baking);
    f.spec.waves[0].targets.push(Target {
        name: "fi".into(),
        kubeconfig_secret: "kubeconfig-fi".into(),
    });
    f.spec.waves[2].targets.clear();
    f.advance(600);
    f.tick();
    let (phase, msg) = halts_and_reasons(&f);
    assert_eq!(phase, RolloutPhase::Halted);
    assert!(msg.contains("spec.waves changed"), "{msg}");
    assert!(f.reverted().is_empty());
    assert_eq!(f.started(), vec!["se"]);
}

/// spec.image cannot change once the Rollout exists: the API server enforces this CEL transition
/// rule on update, so the planner never sees the targets it started under another image.
#[test]
fn the_rollout_crd_makes_spec_image_immutable() {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(crate::crd::Rollout::crd()).unwrap();
    let image = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["image"];
    assert_eq!(
        image["x-kubernetes-validations"][0]["rule"], "self == oldSelf",
        "{image}"
    );
}
