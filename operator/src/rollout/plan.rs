//! The multi-country Rollout planner as a pure function: spec + status + what each target
//! cluster's Release looks like + clock → next status + actions.
//!
//! Rules, because a bad release must never reach a second country:
//! - targets are released wave by wave, at most `maxParallel` in flight within a wave;
//! - a wave is done when every one of its Releases is `Succeeded` with the Rollout's image active
//!   and verified (measured through its scale-down delay after the switch);
//!   then it bakes: the next wave starts only after `bakeSeconds`, counted from that moment,
//!   during which every released target stayed that way (polled every [`POLL`]);
//! - any released target that fails (Failed/RolledBack/Frozen) or regresses (no longer
//!   Succeeded on the image) halts the Rollout for good; nothing after it starts, and the halt
//!   policy decides what is put back;
//! - a released target that must stay healthy (its wave finished or is baking) but cannot be
//!   observed never lets the Rollout advance: no later target starts and a finished bake waits;
//!   unobserved for more than [`UNOBSERVED_GRACE`] it halts the Rollout, touching nothing;
//! - a wave not healthy within `progressDeadlineSeconds` of its start halts it, touching nothing;
//! - a released target whose Release someone re-imaged (neither this Rollout's image nor the one
//!   it replaced) means a newer build took over: the Rollout ends `Superseded`, puts nothing back
//!   and starts nothing; a halt policy's rollback never sets an image over such a target;
//! - a target not yet started that cannot be observed only blocks progress (the previous image
//!   must be known before it is replaced);
//! - `spec.waves` changed after the targets were laid out from them halts the Rollout, touching
//!   nothing (`spec.image` cannot change: the CRD makes it immutable);
//! - a Release's status counts only once it describes its spec (`status.observedGeneration >=
//!   metadata.generation`): just after `spec.image` is set, the phase is still the previous
//!   cycle's (e.g. the `RolledBack` of the build before), which is neither a failure nor health
//!   of this image; a started target whose status is behind its spec counts as out of sight.

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
    /// `status.observedGeneration >= metadata.generation`: the status describes the spec as it
    /// is. False from the moment `spec.image` is set until the target's operator has seen it.
    pub current: bool,
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
        o.current
            && o.phase == Some(Phase::Succeeded)
            && o.verified
            && o.active_image.as_deref() == Some(image)
    })
}

fn failed(obs: Option<&TargetObs>, image: &str) -> bool {
    obs.is_some_and(|o| {
        o.current
            && o.image == image
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

/// A started target that must stay healthy and has not been observed for longer than this
/// halts the Rollout. Long enough for an API server restart or a network blip (eight polls),
/// short against any bake: a country nobody can see must not be counted as healthy.
pub const UNOBSERVED_GRACE: Duration = Duration::from_mins(2);

fn done(st: RolloutStatus, actions: Vec<RolloutAction>) -> RolloutDecision {
    RolloutDecision {
        status: st,
        actions,
        requeue_after: None,
    }
}

/// Decides the next step of a Rollout. `observed` is keyed by target name; a missing key means
/// the target could not be reached.
#[expect(
    clippy::too_many_lines,
    reason = "one pass over the rules in the module docs, in their order"
)]
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
                    unobserved_since: None,
                })
            })
            .collect();
    }
    if st.phase.terminal() {
        return done(st, actions);
    }
    // The waves are fixed once the Rollout has laid its targets out from them: a wave list
    // edited mid-flight would leave targets never released, or a wave counted healthy with none
    // of its targets in the status. Halt, touching nothing.
    let laid_out = spec.waves.iter().enumerate().flat_map(|(w, wave)| {
        wave.targets
            .iter()
            .map(move |t| (t.name.as_str(), w as u32))
    });
    if !laid_out.eq(st.targets.iter().map(|t| (t.name.as_str(), t.wave))) {
        let msg = "spec.waves changed after the Rollout started (status.targets were laid out from the old waves); halted, nothing put back, later waves not started: apply a new Rollout".to_owned();
        st.phase = RolloutPhase::Halted;
        st.baking_since = None;
        st.message = Some(msg.clone());
        event(&mut actions, true, "Halted", msg);
        return done(st, actions);
    }

    // 0. Which started targets are out of sight, and since when: unreachable, or their status
    // not yet about their spec.
    let seen = |name: &str| observed.get(name).is_some_and(|o| o.current);
    for t in st.targets.iter_mut().filter(|t| t.started) {
        if seen(&t.name) {
            t.unobserved_since = None;
        } else if t.unobserved_since.is_none() {
            t.unobserved_since = Some(now);
        }
    }
    let baking = st.phase == RolloutPhase::Baking;
    let current = st.current_wave;
    let image = spec.image.clone();
    // Started targets whose wave finished (or is baking): they must stay healthy.
    let must_hold = |t: &TargetStatus| t.started && (t.wave < current || baking);
    // Re-imaged by someone else after this Rollout started them: a newer build owns them now.
    let superseded: Vec<(String, String)> = st
        .targets
        .iter()
        .filter(|t| t.started && !t.rolled_back)
        .filter_map(|t| {
            let obs = observed.get(&t.name)?;
            (obs.image != image && Some(&obs.image) != t.previous_image.as_ref())
                .then(|| (t.name.clone(), obs.image.clone()))
        })
        .collect();
    let is_superseded = |name: &str| superseded.iter().any(|(n, _)| n == name);

    // 1. Failures anywhere among the started targets halt everything.
    let broken = st.targets.iter().find(|t| {
        let obs = observed.get(&t.name);
        t.started
            && !is_superseded(&t.name)
            && (failed(obs, &image) || (must_hold(t) && seen(&t.name) && !healthy(obs, &image)))
    });
    if let Some(b) = broken {
        let (name, wave) = (b.name.clone(), b.wave);
        let phase = observed
            .get(&name)
            .and_then(|o| o.phase)
            .map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        let mut rolled = Vec::new();
        let mut left = Vec::new();
        for t in &mut st.targets {
            let in_scope = match spec.halt_policy {
                HaltPolicy::Halt => false,
                HaltPolicy::RollbackWave => t.wave == wave,
                HaltPolicy::RollbackAll => true,
            };
            if !(in_scope && t.started && !t.rolled_back) {
                continue;
            }
            let obs = observed.get(&t.name);
            // A Frozen Release is waiting for a human; the Rollout does not overrule it. A
            // superseded one runs a newer build, which is not this Rollout's to put back; one
            // out of sight cannot be written to.
            let frozen = obs.and_then(|o| o.phase) == Some(Phase::Frozen);
            if frozen || is_superseded(&t.name) || obs.is_none() {
                if !frozen {
                    left.push(t.name.clone());
                }
                continue;
            }
            if let Some(prev) = &t.previous_image {
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
        let msg = if left.is_empty() {
            msg
        } else {
            format!(
                "{msg}; left as is (superseded or unreachable): {}",
                left.join(", ")
            )
        };
        st.phase = if rolled.is_empty() {
            RolloutPhase::Halted
        } else {
            RolloutPhase::RolledBack
        };
        st.message = Some(msg.clone());
        event(&mut actions, true, "Halted", msg);
        return done(st, actions);
    }

    // 2. A newer build took over a target: stop without touching anything.
    if !superseded.is_empty() {
        let who: Vec<String> = superseded
            .iter()
            .map(|(n, i)| format!("{n} runs {i}"))
            .collect();
        let msg = format!(
            "superseded: {} (neither {image} nor the image it replaced); nothing put back, later waves not started",
            who.join(", ")
        );
        st.phase = RolloutPhase::Superseded;
        st.baking_since = None;
        st.message = Some(msg.clone());
        event(&mut actions, true, "Superseded", msg);
        return done(st, actions);
    }

    // 3. A target that must stay healthy, out of sight beyond the grace: halt, touch nothing.
    let grace = SignedDuration::from_secs(i64::try_from(UNOBSERVED_GRACE.as_secs()).unwrap_or(0));
    let lost = st.targets.iter().find(|t| {
        must_hold(t)
            && t.unobserved_since
                .is_some_and(|since| now.duration_since(since) > grace)
    });
    if let Some(t) = lost {
        let since = t
            .unobserved_since
            .map_or(0, |s| now.duration_since(s).as_secs());
        let msg = format!(
            "{} (wave {}) could not be observed for {since}s while it had to stay healthy; halted, later waves not started, nothing put back",
            t.name, t.wave
        );
        st.phase = RolloutPhase::Halted;
        st.baking_since = None;
        st.message = Some(msg.clone());
        event(&mut actions, true, "Halted", msg);
        return done(st, actions);
    }

    if spec.paused {
        st.paused_since.get_or_insert(now);
        st.message = Some("paused".into());
        return done(st, actions);
    }
    if let Some(since) = st.paused_since.take() {
        // Time paused does not count against the wave's deadline.
        let paused_for = now.duration_since(since);
        st.wave_since = st
            .wave_since
            .map(|w| w.checked_add(paused_for).unwrap_or(w));
    }

    let Some(wave) = spec.waves.get(current as usize) else {
        st.phase = RolloutPhase::Succeeded;
        st.message = Some("every wave released and baked".into());
        return done(st, actions);
    };
    // Started targets that must stay healthy but are out of sight (within the grace): the
    // Rollout holds still until they are seen again.
    let unseen: Vec<String> = st
        .targets
        .iter()
        .filter(|t| must_hold(t) && t.unobserved_since.is_some())
        .map(|t| t.name.clone())
        .collect();
    let hold_unseen = |st: &mut RolloutStatus, what: &str| {
        st.message = Some(format!(
            "{what}: cannot observe {} (halts after {}s unobserved)",
            unseen.join(", "),
            UNOBSERVED_GRACE.as_secs()
        ));
    };

    // 4. Baking: poll through the bake, then move to the next wave.
    if baking {
        let bake = SignedDuration::from_secs(i64::from(wave.bake_seconds));
        let since = st.baking_since.unwrap_or(now);
        let elapsed = now.duration_since(since);
        if elapsed < bake {
            if !unseen.is_empty() {
                hold_unseen(&mut st, "baking");
            }
            let left = (bake - elapsed).unsigned_abs();
            return RolloutDecision {
                status: st,
                actions,
                requeue_after: Some(left.min(POLL)),
            };
        }
        if !unseen.is_empty() {
            hold_unseen(&mut st, &format!("wave {current} baked, not advancing"));
            return RolloutDecision {
                status: st,
                actions,
                requeue_after: Some(POLL),
            };
        }
        st.current_wave += 1;
        st.baking_since = None;
        st.wave_since = None;
        let done_all = st.current_wave as usize >= spec.waves.len();
        st.phase = if done_all {
            RolloutPhase::Succeeded
        } else {
            RolloutPhase::Progressing
        };
        let msg = if done_all {
            "every wave released and baked".to_owned()
        } else {
            format!("wave {} baked; starting wave {}", current, st.current_wave)
        };
        st.message = Some(msg.clone());
        event(
            &mut actions,
            false,
            if done_all { "Succeeded" } else { "WaveBaked" },
            msg,
        );
        if done_all {
            return done(st, actions);
        }
        // Fall through to start the next wave in the same step.
    }
    let current = st.current_wave;
    let Some(wave) = spec.waves.get(current as usize) else {
        return done(st, actions);
    };

    // 5. The wave's deadline: not healthy in time halts it, touching nothing.
    let wave_since = *st.wave_since.get_or_insert(now);
    let deadline = SignedDuration::from_secs(i64::from(spec.progress_deadline_seconds));
    let wave_targets_healthy = |st: &RolloutStatus| {
        st.targets
            .iter()
            .filter(|t| t.wave == current)
            .all(|t| t.started && healthy(observed.get(&t.name), &image))
    };
    if now.duration_since(wave_since) > deadline && !wave_targets_healthy(&st) {
        let waiting: Vec<String> = st
            .targets
            .iter()
            .filter(|t| t.wave == current && !(t.started && healthy(observed.get(&t.name), &image)))
            .map(|t| {
                let state = match observed.get(&t.name) {
                    None => "unobserved".to_owned(),
                    Some(_) if !t.started => "not started".to_owned(),
                    Some(o) if !o.current => "status behind its spec".to_owned(),
                    Some(o) => match o.phase {
                        Some(Phase::Succeeded) if !o.verified => "verifying".to_owned(),
                        Some(p) => p.to_string(),
                        None => "no status".to_owned(),
                    },
                };
                format!("{} {state}", t.name)
            })
            .collect();
        let msg = format!(
            "wave {current} ({}) not healthy within {}s ({}); halted, later waves not started, nothing put back",
            wave.name,
            spec.progress_deadline_seconds,
            waiting.join(", ")
        );
        st.phase = RolloutPhase::Halted;
        st.message = Some(msg.clone());
        event(&mut actions, true, "ProgressDeadlineExceeded", msg);
        return done(st, actions);
    }

    // 6. Progressing: start targets up to maxParallel; when all are healthy, start baking.
    let max_parallel = spec.max_parallel.max(1) as usize;
    let in_flight = st
        .targets
        .iter()
        .filter(|t| t.wave == current && t.started && !healthy(observed.get(&t.name), &image))
        .count();
    // Nothing new starts while an earlier wave's target is out of sight.
    let mut slots = if unseen.is_empty() {
        max_parallel.saturating_sub(in_flight)
    } else {
        hold_unseen(&mut st, &format!("wave {current} holds"));
        0
    };
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
    if wave_targets_healthy(&st) {
        // The bake counts from now: the moment every target of the wave is verified.
        st.phase = RolloutPhase::Baking;
        st.baking_since = Some(now);
        st.wave_since = None;
        let msg = format!(
            "wave {current} ({}) succeeded; baking {}s",
            wave.name, wave.bake_seconds
        );
        st.message = Some(msg.clone());
        event(&mut actions, false, "WaveSucceeded", msg);
        return RolloutDecision {
            status: st,
            actions,
            requeue_after: Some(Duration::from_secs(u64::from(wave.bake_seconds)).min(POLL)),
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
