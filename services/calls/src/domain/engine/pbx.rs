//! A switchboard's call: walking its flow graph (menus, ring groups, time conditions, queues,
//! announcements, voicemail, forwards), a bounded number of nodes per answer.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveTime, Utc};

use super::{
    Action, ActionResult, Ctx, Decision, DecisionRequest, Event, MAX_INLINE, MAX_STEPS, Next,
    OVER_BUDGET, connect, decision, hangup, mobile::local_time, new_state, static_fallback,
};
use crate::domain::{
    model::{HangupReason, Node, PbxConfig, Prompt},
    token::CallState,
};

pub(super) fn pbx(ctx: &Ctx<'_>, req: &DecisionRequest, state: Option<&CallState>) -> Decision {
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
    hours: &[crate::domain::model::WeeklyHours],
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
