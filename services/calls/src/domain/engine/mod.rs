//! The decision engine: (routing configuration, request, state token, now, budget) → what the
//! call does next. Pure and allocation-light; it runs on every call step, so it must never wait on
//! I/O. Its time comes in through [`Ctx`]: `now` (the caller's clock) and the [`Budget`].
//!
//! - [`wire`]: the request and answer types of the webhook contract (docs/calls.md);
//! - `mobile`: a mobile subscriber's rules (block, do-not-disturb, forwards);
//! - `pbx`: walking a switchboard's flow graph;
//! - here: the entry point, the context, the static fallback and the state token of each answer.

mod mobile;
mod pbx;
pub mod wire;

pub use pbx::is_open;
pub use wire::*;

use chrono::{DateTime, Utc};

use super::{
    model::{HangupReason, RingStrategy},
    token::{CallState, TokenKey},
};

/// Inputs besides the request.
pub struct Ctx<'a> {
    pub routing: &'a Routing,
    pub now: DateTime<Utc>,
    pub key: &'a TokenKey,
    pub token_max_age_secs: i64,
    /// Last-resort target when the number has no configuration at all.
    pub emergency_target: Option<&'a str>,
    /// The decision budget: once it is spent the engine stops and answers the static fallback.
    /// Checked between nodes, so the overrun is bounded by one node's work (a hash lookup and a
    /// few clones); `None` means unbounded (tests, tooling). The engine reads no clock itself:
    /// the caller's [`Budget`] does (the webhook's is a monotonic deadline).
    pub budget: Option<&'a dyn Budget>,
}

/// How the engine learns that its time is up, without reading a clock itself.
pub trait Budget {
    /// `true` once the decision must stop.
    fn spent(&self) -> bool;
}

impl Ctx<'_> {
    fn over_budget(&self) -> bool {
        self.budget.is_some_and(Budget::spent)
    }
}

/// Note on answers cut short by the budget.
pub const OVER_BUDGET: &str = "decision exceeded its time budget";

/// Runaway guard: no call takes more steps than this.
pub(super) const MAX_STEPS: u32 = 200;
/// Nodes evaluated inline in one answer (announcements, time conditions).
pub(super) const MAX_INLINE: usize = 32;

/// Decides the next step of a call. The `source` of the result is `Live`; callers downgrade it
/// to `Snapshot` when the snapshot is stale.
pub fn decide(ctx: &Ctx<'_>, req: &DecisionRequest) -> Decision {
    let mut notes = Vec::new();
    let state = match (&req.state, req.event) {
        (Some(token), _) => {
            match ctx.key.verify(
                token,
                &req.call_id,
                ctx.now.timestamp(),
                ctx.token_max_age_secs,
            ) {
                Ok(s) => Some(s),
                Err(e) => {
                    notes.push(format!("{e}; restarting the call flow"));
                    None
                }
            }
        }
        (None, Event::CallStarted) => None,
        (None, _) => {
            notes.push("no state token on a follow-up event; restarting the call flow".into());
            None
        }
    };
    if ctx.over_budget() {
        return static_fallback(ctx, req, OVER_BUDGET);
    }
    let mut d = match req.call_type {
        CallType::Mobile => mobile::mobile(ctx, req, state.as_ref()),
        CallType::Pbx => pbx::pbx(ctx, req, state.as_ref()),
    };
    notes.append(&mut d.notes);
    d.notes = notes;
    d
}

pub(super) fn decision(ctx: &Ctx<'_>, actions: Vec<Action>, next: Option<Next>) -> Decision {
    Decision {
        actions,
        next,
        source: Source::Live,
        snapshot_version: ctx.routing.version,
        notes: Vec::new(),
    }
}

pub(super) fn connect(targets: Vec<String>, timeout: u16) -> Action {
    Action::Connect {
        targets,
        strategy: RingStrategy::Sequential,
        ring_timeout_secs: timeout,
        caller_id: None,
    }
}

pub(super) fn hangup(reason: HangupReason) -> Action {
    Action::Hangup { reason }
}

/// The answer when configuration cannot be used: the number's fallback target, else the
/// emergency target, else let a mobile call through / busy for a PBX.
pub fn static_fallback(ctx: &Ctx<'_>, req: &DecisionRequest, why: &str) -> Decision {
    let configured = match req.call_type {
        CallType::Pbx => ctx
            .routing
            .pbxes
            .get(&req.to)
            .map(|p| p.fallback_target.clone()),
        CallType::Mobile => ctx
            .routing
            .subscribers
            .get(&req.to)
            .map(|s| s.fallback_target.clone()),
    };
    let action = match (configured, ctx.emergency_target, req.call_type) {
        (Some(t), _, _) => connect(vec![t], 30),
        (None, Some(t), CallType::Pbx) => connect(vec![t.to_owned()], 30),
        (None, _, CallType::Mobile) => Action::Continue,
        (None, None, CallType::Pbx) => hangup(HangupReason::Busy),
    };
    Decision {
        actions: vec![action],
        next: None,
        source: Source::StaticFallback,
        snapshot_version: ctx.routing.version,
        notes: vec![why.to_owned()],
    }
}

// ---------------------------------------------------------------------------------------------
// Mobile

pub(super) fn new_state(ctx: &Ctx<'_>, req: &DecisionRequest, node: &str, steps: u32) -> CallState {
    CallState {
        call_id: req.call_id.clone(),
        number: req.to.clone(),
        node: node.to_owned(),
        entered_at: ctx.now.timestamp(),
        issued_at: ctx.now.timestamp(),
        steps,
    }
}

#[cfg(test)]
mod tests;
