//! The decision engine: (routing configuration, request, state token, now) → what the call does
//! next. Pure and allocation-light; it runs on every call step, so it must never wait on I/O.

use std::{
    collections::{BTreeMap, HashMap},
    time::Instant,
};

use chrono::{DateTime, Datelike, NaiveTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    model::{DoNotDisturb, HangupReason, Node, PbxConfig, Prompt, RingStrategy, SubscriberConfig},
    token::{CallState, TokenKey},
};

/// All routing configuration, as loaded into one immutable snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Routing {
    pub version: i64,
    pub subscribers: HashMap<String, SubscriberConfig>,
    pub pbxes: HashMap<String, PbxConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallType {
    Mobile,
    Pbx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    CallStarted,
    ActionResult,
    Digits,
    QueueTick,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallStarted => "call_started",
            Self::ActionResult => "action_result",
            Self::Digits => "digits",
            Self::QueueTick => "queue_tick",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionResult {
    Success,
    Busy,
    NoAnswer,
    Failed,
    Timeout,
}

/// One webhook from the telephony platform.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// Unique per webhook delivery (for logs and de-duplication).
    pub request_id: String,
    /// Stable for the whole call.
    pub call_id: String,
    pub call_type: CallType,
    pub direction: Direction,
    pub from: String,
    pub to: String,
    pub event: Event,
    /// The node the platform just executed (from the previous answer's `next.node`).
    #[serde(default)]
    pub node: Option<String>,
    /// The previous answer's `next.state`, unchanged.
    #[serde(default)]
    pub state: Option<String>,
    /// Outcome of the last action (connect, menu, queue).
    #[serde(default)]
    pub result: Option<ActionResult>,
    /// Digits the caller entered in a menu.
    #[serde(default)]
    pub digits: Option<String>,
}

/// What the platform should do, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    Play {
        url: String,
    },
    Say {
        text: String,
    },
    Menu {
        prompt: Prompt,
        max_digits: u8,
        timeout_secs: u16,
        repeats: u8,
        finish_key: Option<String>,
    },
    Connect {
        targets: Vec<String>,
        strategy: RingStrategy,
        ring_timeout_secs: u16,
        caller_id: Option<String>,
    },
    Enqueue {
        queue: String,
        announce_position: bool,
        max_wait_secs: u32,
    },
    Voicemail {
        mailbox: String,
        greeting: Option<Prompt>,
    },
    /// Let the mobile call through as dialled.
    Continue,
    Hangup {
        reason: HangupReason,
    },
}

/// Where the call continues: post the next webhook with this node and state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Next {
    pub node: String,
    /// Opaque, signed; send it back unchanged.
    pub state: String,
    /// Which node each result or digit string leads to (for mapping onto 46elks `next`/`busy`/
    /// `failed` URLs, NCCO event URLs or TwiML action URLs).
    pub branches: BTreeMap<String, String>,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// From a snapshot that is current with the database.
    Live,
    /// From the last good snapshot while the database is unreachable.
    Snapshot,
    /// The configured fallback: the decision failed or took too long.
    StaticFallback,
}

impl Source {
    pub const ALL: [Self; 3] = [Self::Live, Self::Snapshot, Self::StaticFallback];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Snapshot => "snapshot",
            Self::StaticFallback => "static_fallback",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    pub actions: Vec<Action>,
    pub next: Option<Next>,
    pub source: Source,
    pub snapshot_version: i64,
    /// Why an unusual answer was given (restarted flow, unknown number, ...).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub notes: Vec<String>,
}

/// Inputs besides the request.
pub struct Ctx<'a> {
    pub routing: &'a Routing,
    pub now: DateTime<Utc>,
    pub key: &'a TokenKey,
    pub token_max_age_secs: i64,
    /// Last-resort target when the number has no configuration at all.
    pub emergency_target: Option<&'a str>,
    /// The decision budget: past this instant the engine stops and answers the static fallback.
    /// Checked between nodes, so the overrun is bounded by one node's work (a hash lookup and a
    /// few clones); `None` means unbounded (tests, tooling).
    pub deadline: Option<Instant>,
}

impl Ctx<'_> {
    fn over_budget(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// Note on answers cut short by the budget.
pub const OVER_BUDGET: &str = "decision exceeded its time budget";

/// Runaway guard: no call takes more steps than this.
const MAX_STEPS: u32 = 200;
/// Nodes evaluated inline in one answer (announcements, time conditions).
const MAX_INLINE: usize = 32;

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
        CallType::Mobile => mobile(ctx, req, state.as_ref()),
        CallType::Pbx => pbx(ctx, req, state.as_ref()),
    };
    notes.append(&mut d.notes);
    d.notes = notes;
    d
}

fn decision(ctx: &Ctx<'_>, actions: Vec<Action>, next: Option<Next>) -> Decision {
    Decision {
        actions,
        next,
        source: Source::Live,
        snapshot_version: ctx.routing.version,
        notes: Vec::new(),
    }
}

fn connect(targets: Vec<String>, timeout: u16) -> Action {
    Action::Connect {
        targets,
        strategy: RingStrategy::Sequential,
        ring_timeout_secs: timeout,
        caller_id: None,
    }
}

fn hangup(reason: HangupReason) -> Action {
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

fn mobile(ctx: &Ctx<'_>, req: &DecisionRequest, state: Option<&CallState>) -> Decision {
    if req.direction == Direction::Outbound {
        return decision(ctx, vec![Action::Continue], None);
    }
    let Some(sub) = ctx.routing.subscribers.get(&req.to) else {
        let mut d = decision(ctx, vec![Action::Continue], None);
        d.notes
            .push("no rules for this subscriber; call continues".into());
        return d;
    };
    let rules = &sub.rules;
    if let (Some(_), Event::ActionResult) = (state, req.event) {
        let target = match req.result {
            Some(ActionResult::Busy) => rules.forward_busy.as_ref(),
            Some(ActionResult::NoAnswer | ActionResult::Timeout) => {
                rules.forward_no_answer.as_ref()
            }
            _ => None,
        };
        return match target {
            Some(t) => decision(ctx, vec![connect(vec![t.clone()], 30)], None),
            None => decision(ctx, vec![hangup(HangupReason::Normal)], None),
        };
    }
    if is_blocked(&rules.block, &req.from) {
        return decision(ctx, vec![hangup(HangupReason::Reject)], None);
    }
    if let Some(dnd) = &rules.do_not_disturb
        && in_dnd(dnd, ctx.now)
        && !dnd.allow.iter().any(|a| a == &req.from)
    {
        let action = match (&rules.mailbox, dnd.to_voicemail) {
            (Some(m), true) => Action::Voicemail {
                mailbox: m.clone(),
                greeting: None,
            },
            _ => hangup(HangupReason::Busy),
        };
        return decision(ctx, vec![action], None);
    }
    if let Some(t) = &rules.forward_unconditional {
        return decision(ctx, vec![connect(vec![t.clone()], 30)], None);
    }
    let mut branches = BTreeMap::new();
    if let Some(t) = &rules.forward_busy {
        branches.insert("busy".to_owned(), t.clone());
    }
    if let Some(t) = &rules.forward_no_answer {
        branches.insert("no_answer".to_owned(), t.clone());
    }
    let next = (!branches.is_empty()).then(|| {
        let st = new_state(ctx, req, "mobile", 1);
        Next {
            node: "mobile".into(),
            state: ctx.key.sign(&st),
            branches,
        }
    });
    decision(ctx, vec![Action::Continue], next)
}

fn is_blocked(block: &[String], from: &str) -> bool {
    block.iter().any(|b| match b.strip_suffix('*') {
        Some(prefix) => from.starts_with(prefix),
        None => b == from,
    })
}

fn local_time(tz: &str, now: DateTime<Utc>) -> Option<chrono::DateTime<chrono_tz::Tz>> {
    let tz: chrono_tz::Tz = tz.parse().ok()?;
    Some(now.with_timezone(&tz))
}

/// DND windows may wrap midnight (22:00–07:00).
fn in_dnd(dnd: &DoNotDisturb, now: DateTime<Utc>) -> bool {
    let Some(local) = local_time(&dnd.timezone, now) else {
        return false;
    };
    let t = local.time();
    if dnd.start < dnd.end {
        dnd.start <= t && t < dnd.end
    } else {
        t >= dnd.start || t < dnd.end
    }
}

// ---------------------------------------------------------------------------------------------
// PBX

fn new_state(ctx: &Ctx<'_>, req: &DecisionRequest, node: &str, steps: u32) -> CallState {
    CallState {
        call_id: req.call_id.clone(),
        number: req.to.clone(),
        node: node.to_owned(),
        entered_at: ctx.now.timestamp(),
        issued_at: ctx.now.timestamp(),
        steps,
    }
}

fn pbx(ctx: &Ctx<'_>, req: &DecisionRequest, state: Option<&CallState>) -> Decision {
    let number = state.map_or(req.to.as_str(), |s| s.number.as_str());
    let Some(cfg) = ctx.routing.pbxes.get(number) else {
        return static_fallback(ctx, req, "no flow configured for this PBX number");
    };
    let flow = &cfg.flow;
    let Some(state) = state else {
        return run_from(ctx, req, cfg, &flow.entry, 1);
    };
    if state.steps >= MAX_STEPS {
        return static_fallback(ctx, req, "call exceeded the step limit");
    }
    let steps = state.steps + 1;
    let Some(node) = flow.nodes.get(&state.node) else {
        // The flow changed under a live call and the node is gone: start again.
        let mut d = run_from(ctx, req, cfg, &flow.entry, steps);
        d.notes.push(format!(
            "node `{}` no longer exists; flow restarted",
            state.node
        ));
        return d;
    };
    let result = req.result.unwrap_or(ActionResult::Failed);
    let next_id: Option<&str> = match (node, req.event) {
        (
            Node::Menu {
                options,
                invalid,
                no_input,
                finish_key,
                ..
            },
            Event::Digits,
        ) => {
            let raw = req.digits.as_deref().unwrap_or_default();
            let digits = finish_key
                .as_deref()
                .and_then(|k| raw.strip_suffix(k))
                .unwrap_or(raw);
            if digits.is_empty() {
                Some(no_input)
            } else {
                Some(options.get(digits).unwrap_or(invalid))
            }
        }
        (Node::Menu { no_input, .. }, _) => Some(no_input),
        (
            Node::RingGroup {
                no_answer, busy, ..
            },
            _,
        ) => match result {
            ActionResult::Success => None,
            ActionResult::Busy => Some(busy.as_deref().unwrap_or(no_answer)),
            _ => Some(no_answer),
        },
        (
            Node::Queue {
                max_wait_secs,
                overflow,
                ..
            },
            Event::QueueTick,
        ) => {
            let waited = ctx.now.timestamp() - state.entered_at;
            if waited >= i64::from(*max_wait_secs) {
                Some(overflow)
            } else {
                // Keep waiting: same node, same entry time.
                let st = CallState {
                    issued_at: ctx.now.timestamp(),
                    steps,
                    ..state.clone()
                };
                let next = Next {
                    node: state.node.clone(),
                    state: ctx.key.sign(&st),
                    branches: branches(node),
                };
                return decision(ctx, Vec::new(), Some(next));
            }
        }
        (Node::Queue { overflow, .. }, _) => match result {
            ActionResult::Success => None,
            _ => Some(overflow),
        },
        (Node::Forward { no_answer, .. }, _) => match result {
            ActionResult::Success => None,
            _ => no_answer.as_deref(),
        },
        (Node::Announcement { next, .. }, _) => Some(next),
        (Node::TimeCondition { .. }, _) => Some(flow.entry.as_str()),
        (Node::Voicemail { .. } | Node::Hangup { .. }, _) => None,
    };
    match next_id {
        Some(id) => run_from(ctx, req, cfg, id, steps),
        None => decision(ctx, vec![hangup(HangupReason::Normal)], None),
    }
}

fn branches(node: &Node) -> BTreeMap<String, String> {
    let mut b = BTreeMap::new();
    match node {
        Node::Menu {
            options,
            invalid,
            no_input,
            ..
        } => {
            for (k, v) in options {
                b.insert(format!("digits:{k}"), v.clone());
            }
            b.insert("invalid".into(), invalid.clone());
            b.insert("no_input".into(), no_input.clone());
        }
        Node::RingGroup {
            no_answer, busy, ..
        } => {
            b.insert(
                "busy".into(),
                busy.clone().unwrap_or_else(|| no_answer.clone()),
            );
            b.insert("no_answer".into(), no_answer.clone());
            b.insert("failed".into(), no_answer.clone());
        }
        Node::Queue { overflow, .. } => {
            b.insert("timeout".into(), overflow.clone());
            b.insert("failed".into(), overflow.clone());
        }
        Node::Forward {
            no_answer: Some(n), ..
        } => {
            b.insert("no_answer".into(), n.clone());
            b.insert("busy".into(), n.clone());
            b.insert("failed".into(), n.clone());
        }
        _ => {}
    }
    b
}

fn prompt_action(p: &Prompt) -> Action {
    match p {
        Prompt::Url(u) => Action::Play { url: u.clone() },
        Prompt::Say(t) => Action::Say { text: t.clone() },
    }
}

/// Evaluates nodes from `start` until one needs the platform to act and report back.
fn run_from(
    ctx: &Ctx<'_>,
    req: &DecisionRequest,
    cfg: &PbxConfig,
    start: &str,
    steps: u32,
) -> Decision {
    let flow = &cfg.flow;
    let mut actions = Vec::new();
    let mut id = start;
    for _ in 0..MAX_INLINE {
        if ctx.over_budget() {
            return static_fallback(ctx, req, OVER_BUDGET);
        }
        let Some(node) = flow.nodes.get(id) else {
            return static_fallback(ctx, req, &format!("flow references missing node `{id}`"));
        };
        let wait = |actions: Vec<Action>| {
            let st = new_state(ctx, req, id, steps);
            let next = Next {
                node: id.to_owned(),
                state: ctx.key.sign(&st),
                branches: branches(node),
            };
            decision(ctx, actions, Some(next))
        };
        match node {
            Node::Announcement { prompt, next } => {
                actions.push(prompt_action(prompt));
                id = next;
            }
            Node::TimeCondition {
                hours,
                holidays,
                open,
                closed,
            } => {
                id = if is_open(&flow.timezone, hours, holidays, ctx.now) {
                    open
                } else {
                    closed
                };
            }
            Node::Menu {
                prompt,
                max_digits,
                timeout_secs,
                repeats,
                finish_key,
                ..
            } => {
                actions.push(Action::Menu {
                    prompt: prompt.clone(),
                    max_digits: *max_digits,
                    timeout_secs: *timeout_secs,
                    repeats: *repeats,
                    finish_key: finish_key.clone(),
                });
                return wait(actions);
            }
            Node::RingGroup {
                members,
                strategy,
                member_timeout_secs,
                caller_id,
                ..
            } => {
                actions.push(Action::Connect {
                    targets: members.clone(),
                    strategy: *strategy,
                    ring_timeout_secs: *member_timeout_secs,
                    caller_id: caller_id.clone(),
                });
                return wait(actions);
            }
            Node::Queue {
                queue,
                announce_position,
                max_wait_secs,
                ..
            } => {
                actions.push(Action::Enqueue {
                    queue: queue.clone(),
                    announce_position: *announce_position,
                    max_wait_secs: *max_wait_secs,
                });
                return wait(actions);
            }
            Node::Forward {
                target,
                timeout_secs,
                no_answer,
            } => {
                actions.push(connect(vec![target.clone()], *timeout_secs));
                return if no_answer.is_some() {
                    wait(actions)
                } else {
                    decision(ctx, actions, None)
                };
            }
            Node::Voicemail { mailbox, greeting } => {
                actions.push(Action::Voicemail {
                    mailbox: mailbox.clone(),
                    greeting: greeting.clone(),
                });
                return decision(ctx, actions, None);
            }
            Node::Hangup { reason } => {
                actions.push(hangup(*reason));
                return decision(ctx, actions, None);
            }
        }
    }
    static_fallback(
        ctx,
        req,
        "flow evaluated too many nodes without waiting for the caller",
    )
}

/// Whether `now` falls in opening hours in the flow's time zone (holidays are closed all day).
pub fn is_open(
    tz: &str,
    hours: &[super::model::WeeklyHours],
    holidays: &[chrono::NaiveDate],
    now: DateTime<Utc>,
) -> bool {
    let Some(local) = local_time(tz, now) else {
        return false;
    };
    if holidays.contains(&local.date_naive()) {
        return false;
    }
    let (day, t): (chrono::Weekday, NaiveTime) = (local.weekday(), local.time());
    hours
        .iter()
        .any(|h| h.days.contains(&day) && h.open <= t && t < h.close)
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
