//! A mobile subscriber's call: blocked callers, do-not-disturb, unconditional / busy /
//! no-answer forwards.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{
    Action, ActionResult, Ctx, Decision, DecisionRequest, Direction, Event, Next, connect,
    decision, hangup, new_state,
};
use crate::domain::{
    model::{DoNotDisturb, HangupReason},
    token::CallState,
};

pub(super) fn mobile(ctx: &Ctx<'_>, req: &DecisionRequest, state: Option<&CallState>) -> Decision {
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

pub(super) fn local_time(tz: &str, now: DateTime<Utc>) -> Option<chrono::DateTime<chrono_tz::Tz>> {
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
