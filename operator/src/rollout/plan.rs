//! The multi-country Rollout planner as a pure function: spec + status + what each target
//! cluster's Release looks like + clock → next status + actions.
//!
//! Rules, because a bad release must never reach a second country:
//! - targets are released wave by wave, at most `maxParallel` in flight within a wave;
//! - a wave is done when every one of its Releases is `Succeeded` with the Rollout's image active
//!   and verified (measured through its scale-down delay after the switch);
//!   then it bakes: the next wave starts only after `bakeSeconds` during which every released
//!   target stayed that way;
//! - any released target that fails (Failed/RolledBack/Frozen) or regresses (no longer
//!   Succeeded on the image) halts the Rollout for good; nothing after it starts, and the halt
//!   policy decides what is put back;
//! - a target that cannot be observed (cluster unreachable) blocks progress but is not a failure.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::crd::{HaltPolicy, Phase, RolloutPhase, RolloutSpec, RolloutStatus, TargetStatus};

/// What the planner knows about the Release in one target cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetObs {
    /// `spec.image` of the target's Release.
    pub image: String,
    /// `status.phase` (none before the target's operator first wrote status).
    pub phase: Option<Phase>,
    /// `status.activeImage`: what serves traffic there.
    pub active_image: Option<String>,
    /// `status.verified`: the active colour passed every measurement until its scale-down
    /// delay ended.
    pub verified: bool,
}

/// One side effect for the Rollout reconciler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutAction {
    /// Patch `spec.image` of the Release in `target`'s cluster.
    SetImage { target: String, image: String },
    EmitEvent {
        warning: bool,
        reason: String,
        note: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct RolloutDecision {
    pub status: RolloutStatus,
    pub actions: Vec<RolloutAction>,
    pub requeue_after: Option<Duration>,
}

/// How often an unfinished Rollout is looked at when nothing else wakes it.
pub const POLL: Duration = Duration::from_secs(15);

fn healthy(obs: Option<&TargetObs>, image: &str) -> bool {
    obs.is_some_and(|o| {
        o.phase == Some(Phase::Succeeded) && o.verified && o.active_image.as_deref() == Some(image)
    })
}

fn failed(obs: Option<&TargetObs>, image: &str) -> bool {
    obs.is_some_and(|o| {
        o.image == image
            && matches!(
                o.phase,
                Some(Phase::Failed | Phase::RolledBack | Phase::Frozen)
            )
    })
}

fn event(actions: &mut Vec<RolloutAction>, warning: bool, reason: &str, note: String) {
    actions.push(RolloutAction::EmitEvent {
        warning,
        reason: reason.to_owned(),
        note,
    });
}

/// Decides the next step of a Rollout. `observed` is keyed by target name; a missing key means
/// the target could not be reached.
pub fn plan(
    spec: &RolloutSpec,
    status: &RolloutStatus,
    observed: &BTreeMap<String, TargetObs>,
    now: Timestamp,
) -> RolloutDecision {
    let mut st = status.clone();
    let mut actions = Vec::new();
    if st.targets.is_empty() {
        st.targets = spec
            .waves
            .iter()
            .enumerate()
            .flat_map(|(w, wave)| {
                wave.targets.iter().map(move |t| TargetStatus {
                    name: t.name.clone(),
                    wave: w as u32,
                    previous_image: None,
                    started: false,
                    rolled_back: false,
                })
            })
            .collect();
    }
    if matches!(
        st.phase,
        RolloutPhase::Succeeded | RolloutPhase::Halted | RolloutPhase::RolledBack
    ) {
        return RolloutDecision {
            status: st,
            actions,
            requeue_after: None,
        };
    }

    // 1. Failures anywhere among the started targets halt everything.
    let baking = st.phase == RolloutPhase::Baking;
    let current = st.current_wave;
    let broken = st.targets.iter().find(|t| {
        let obs = observed.get(&t.name);
        t.started
            && (failed(obs, &spec.image)
                // Once a wave finished, its targets must stay healthy (bake and beyond).
                || ((t.wave < current || baking) && obs.is_some() && !healthy(obs, &spec.image)))
    });
    if let Some(b) = broken {
        let (name, wave) = (b.name.clone(), b.wave);
        let phase = observed
            .get(&name)
            .and_then(|o| o.phase)
            .map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        let mut rolled = Vec::new();
        for t in &mut st.targets {
            let in_scope = match spec.halt_policy {
                HaltPolicy::Halt => false,
                HaltPolicy::RollbackWave => t.wave == wave,
                HaltPolicy::RollbackAll => true,
            };
            // A Frozen Release is waiting for a human; the Rollout does not overrule it.
            let frozen = observed.get(&t.name).and_then(|o| o.phase) == Some(Phase::Frozen);
            if in_scope
                && t.started
                && !t.rolled_back
                && !frozen
                && let Some(prev) = &t.previous_image
            {
                actions.push(RolloutAction::SetImage {
                    target: t.name.clone(),
                    image: prev.clone(),
                });
                t.rolled_back = true;
                rolled.push(t.name.clone());
            }
        }
        st.current_wave = wave;
        st.baking_since = None;
        let msg = if rolled.is_empty() {
            format!("{name} (wave {wave}) is {phase}; halted, later waves not started")
        } else {
            format!(
                "{name} (wave {wave}) is {phase}; halted and put back the previous image on {}",
                rolled.join(", ")
            )
        };
        st.phase = if rolled.is_empty() {
            RolloutPhase::Halted
        } else {
            RolloutPhase::RolledBack
        };
        st.message = Some(msg.clone());
        event(&mut actions, true, "Halted", msg);
        return RolloutDecision {
            status: st,
            actions,
            requeue_after: None,
        };
    }
    if spec.paused {
        st.message = Some("paused".into());
        return RolloutDecision {
            status: st,
            actions,
            requeue_after: None,
        };
    }

    let Some(wave) = spec.waves.get(current as usize) else {
        st.phase = RolloutPhase::Succeeded;
        st.message = Some("every wave released and baked".into());
        return RolloutDecision {
            status: st,
            actions,
            requeue_after: None,
        };
    };

    // 2. Baking: wait out the bake, then move to the next wave.
    if baking {
        let bake = SignedDuration::from_secs(i64::from(wave.bake_seconds));
        let since = st.baking_since.unwrap_or(now);
        let elapsed = now.duration_since(since);
        if elapsed < bake {
            return RolloutDecision {
                status: st,
                actions,
                requeue_after: Some((bake - elapsed).unsigned_abs()),
            };
        }
        st.current_wave += 1;
        st.baking_since = None;
        let done = st.current_wave as usize >= spec.waves.len();
        st.phase = if done {
            RolloutPhase::Succeeded
        } else {
            RolloutPhase::Progressing
        };
        let msg = if done {
            "every wave released and baked".to_owned()
        } else {
            format!("wave {} baked; starting wave {}", current, st.current_wave)
        };
        st.message = Some(msg.clone());
        event(
            &mut actions,
            false,
            if done { "Succeeded" } else { "WaveBaked" },
            msg,
        );
        if done {
            return RolloutDecision {
                status: st,
                actions,
                requeue_after: None,
            };
        }
        // Fall through to start the next wave in the same step.
    }

    // 3. Progressing: start targets up to maxParallel; when all are healthy, start baking.
    let current = st.current_wave;
    let max_parallel = spec.max_parallel.max(1) as usize;
    let image = spec.image.clone();
    let in_flight = st
        .targets
        .iter()
        .filter(|t| t.wave == current && t.started && !healthy(observed.get(&t.name), &image))
        .count();
    let mut slots = max_parallel.saturating_sub(in_flight);
    for t in st
        .targets
        .iter_mut()
        .filter(|t| t.wave == current && !t.started)
    {
        if slots == 0 {
            break;
        }
        // Only start what can be seen: the previous image must be known to roll back.
        let Some(obs) = observed.get(&t.name) else {
            continue;
        };
        t.previous_image = Some(
            obs.active_image
                .clone()
                .unwrap_or_else(|| obs.image.clone()),
        );
        t.started = true;
        slots -= 1;
        actions.push(RolloutAction::SetImage {
            target: t.name.clone(),
            image: image.clone(),
        });
        event(
            &mut actions,
            false,
            "TargetStarted",
            format!("wave {current}: releasing {image} to {}", t.name),
        );
    }
    let wave_targets: Vec<&TargetStatus> =
        st.targets.iter().filter(|t| t.wave == current).collect();
    let all_healthy = wave_targets
        .iter()
        .all(|t| t.started && healthy(observed.get(&t.name), &image));
    if all_healthy {
        st.phase = RolloutPhase::Baking;
        st.baking_since = Some(now);
        let msg = format!(
            "wave {current} ({}) succeeded; baking {}s",
            wave.name, wave.bake_seconds
        );
        st.message = Some(msg.clone());
        event(&mut actions, false, "WaveSucceeded", msg);
        return RolloutDecision {
            status: st,
            actions,
            requeue_after: Some(Duration::from_secs(u64::from(wave.bake_seconds))),
        };
    }
    st.phase = RolloutPhase::Progressing;
    RolloutDecision {
        status: st,
        actions,
        requeue_after: Some(POLL),
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
