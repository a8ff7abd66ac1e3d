//! Whole-graph validation of configuration, before anything is stored. Every error names the
//! offending field and node, e.g. `flow.nodes.main-menu.invalid`.

use std::collections::{BTreeMap, HashSet};

use kit::FieldError;

use super::model::{Flow, MobileRules, Node, PbxConfig, SubscriberConfig};

/// A phone number in E.164 (`+46701234567`) or a SIP URI (`sip:desk@pbx.example`).
pub fn is_target(s: &str) -> bool {
    if let Some(digits) = s.strip_prefix('+') {
        (6..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    } else if let Some(rest) = s.strip_prefix("sip:") {
        !rest.is_empty() && rest.len() <= 200 && rest.bytes().all(|b| b.is_ascii_graphic())
    } else {
        false
    }
}

/// An E.164 number (the key of subscribers and PBX numbers).
pub fn is_e164(s: &str) -> bool {
    s.starts_with('+') && is_target(s)
}

fn target(errors: &mut Vec<FieldError>, field: &str, value: &str) {
    if !is_target(value) {
        errors.push(FieldError::new(
            field,
            format!("`{value}` is not an E.164 number or sip: URI"),
        ));
    }
}

fn timezone(errors: &mut Vec<FieldError>, field: &str, tz: &str) {
    if tz.parse::<chrono_tz::Tz>().is_err() {
        errors.push(FieldError::new(
            field,
            format!("`{tz}` is not an IANA time zone"),
        ));
    }
}

pub fn subscriber(cfg: &SubscriberConfig) -> Vec<FieldError> {
    let mut e = Vec::new();
    target(&mut e, "fallback_target", &cfg.fallback_target);
    rules(&mut e, &cfg.rules);
    e
}

fn rules(e: &mut Vec<FieldError>, r: &MobileRules) {
    for (i, b) in r.block.iter().enumerate() {
        let number = b.strip_suffix('*').unwrap_or(b);
        if !(number.starts_with('+')
            && number[1..].bytes().all(|c| c.is_ascii_digit())
            && number.len() > 1)
        {
            e.push(FieldError::new(
                format!("rules.block[{i}]"),
                "must be +digits, optionally ending in *",
            ));
        }
    }
    for (field, v) in [
        ("rules.forward_unconditional", &r.forward_unconditional),
        ("rules.forward_busy", &r.forward_busy),
        ("rules.forward_no_answer", &r.forward_no_answer),
    ] {
        if let Some(t) = v {
            target(e, field, t);
        }
    }
    if let Some(d) = &r.do_not_disturb {
        timezone(e, "rules.do_not_disturb.timezone", &d.timezone);
        if d.start == d.end {
            e.push(FieldError::new(
                "rules.do_not_disturb.end",
                "must differ from start",
            ));
        }
        if d.to_voicemail && r.mailbox.is_none() {
            e.push(FieldError::new(
                "rules.mailbox",
                "required when do_not_disturb.to_voicemail is set",
            ));
        }
        for (i, a) in d.allow.iter().enumerate() {
            target(e, &format!("rules.do_not_disturb.allow[{i}]"), a);
        }
    }
}

pub fn pbx(cfg: &PbxConfig) -> Vec<FieldError> {
    let mut e = Vec::new();
    target(&mut e, "fallback_target", &cfg.fallback_target);
    flow(&mut e, &cfg.flow);
    e
}

/// The edges leaving a node, with the field that holds each.
pub fn edges(node: &Node) -> Vec<(String, &str)> {
    match node {
        Node::Announcement { next, .. } => vec![("next".into(), next)],
        Node::Menu {
            options,
            invalid,
            no_input,
            ..
        } => options
            .iter()
            .map(|(k, v)| (format!("options.{k}"), v.as_str()))
            .chain([
                ("invalid".into(), invalid.as_str()),
                ("no_input".into(), no_input.as_str()),
            ])
            .collect(),
        Node::RingGroup {
            no_answer, busy, ..
        } => {
            let mut v = vec![("no_answer".into(), no_answer.as_str())];
            if let Some(b) = busy {
                v.push(("busy".into(), b.as_str()));
            }
            v
        }
        Node::TimeCondition { open, closed, .. } => {
            vec![
                ("open".into(), open.as_str()),
                ("closed".into(), closed.as_str()),
            ]
        }
        Node::Queue { overflow, .. } => vec![("overflow".into(), overflow.as_str())],
        Node::Forward { no_answer, .. } => no_answer
            .iter()
            .map(|n| ("no_answer".into(), n.as_str()))
            .collect(),
        Node::Voicemail { .. } | Node::Hangup { .. } => Vec::new(),
    }
}

fn flow(e: &mut Vec<FieldError>, f: &Flow) {
    timezone(e, "flow.timezone", &f.timezone);
    if f.nodes.is_empty() {
        e.push(FieldError::new(
            "flow.nodes",
            "a flow needs at least one node",
        ));
        return;
    }
    if !f.nodes.contains_key(&f.entry) {
        e.push(FieldError::new(
            "flow.entry",
            format!("node `{}` does not exist", f.entry),
        ));
    }
    for (id, node) in &f.nodes {
        let at = |field: &str| format!("flow.nodes.{id}.{field}");
        if id.is_empty() || id.len() > 64 {
            e.push(FieldError::new(
                format!("flow.nodes.{id}"),
                "node ids are 1..=64 characters",
            ));
        }
        for (field, to) in edges(node) {
            if !f.nodes.contains_key(to) {
                e.push(FieldError::new(
                    at(&field),
                    format!("node `{to}` does not exist"),
                ));
            }
        }
        match node {
            Node::Menu {
                options,
                max_digits,
                finish_key,
                timeout_secs,
                ..
            } => {
                if options.is_empty() {
                    e.push(FieldError::new(
                        at("options"),
                        "a menu needs at least one option",
                    ));
                }
                for key in options.keys() {
                    if key.is_empty()
                        || key.len() > usize::from(*max_digits)
                        || !key
                            .bytes()
                            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
                    {
                        e.push(FieldError::new(
                            at(&format!("options.{key}")),
                            format!("must be 1..={max_digits} of 0-9 * #"),
                        ));
                    }
                }
                if let Some(k) = finish_key
                    && !matches!(k.as_str(), "#" | "*")
                {
                    e.push(FieldError::new(at("finish_key"), "must be # or *"));
                }
                if *timeout_secs == 0 || *timeout_secs > 60 {
                    e.push(FieldError::new(at("timeout_secs"), "must be 1..=60"));
                }
            }
            Node::RingGroup {
                members,
                member_timeout_secs,
                caller_id,
                ..
            } => {
                if members.is_empty() {
                    e.push(FieldError::new(
                        at("members"),
                        "a ring group needs at least one member",
                    ));
                }
                for (i, m) in members.iter().enumerate() {
                    target(e, &at(&format!("members[{i}]")), m);
                }
                if let Some(c) = caller_id {
                    target(e, &at("caller_id"), c);
                }
                if *member_timeout_secs == 0 || *member_timeout_secs > 120 {
                    e.push(FieldError::new(
                        at("member_timeout_secs"),
                        "must be 1..=120",
                    ));
                }
            }
            Node::TimeCondition { hours, .. } => {
                for (i, h) in hours.iter().enumerate() {
                    if h.open >= h.close {
                        e.push(FieldError::new(
                            at(&format!("hours[{i}]")),
                            "open must be before close",
                        ));
                    }
                    if h.days.is_empty() {
                        e.push(FieldError::new(
                            at(&format!("hours[{i}].days")),
                            "needs at least one day",
                        ));
                    }
                }
            }
            Node::Queue {
                max_wait_secs,
                queue,
                ..
            } => {
                if *max_wait_secs == 0 || *max_wait_secs > 3600 {
                    e.push(FieldError::new(at("max_wait_secs"), "must be 1..=3600"));
                }
                if queue.trim().is_empty() {
                    e.push(FieldError::new(at("queue"), "must not be blank"));
                }
            }
            Node::Forward { target: t, .. } => target(e, &at("target"), t),
            Node::Voicemail { mailbox, .. } => {
                if mailbox.trim().is_empty() {
                    e.push(FieldError::new(at("mailbox"), "must not be blank"));
                }
            }
            Node::Announcement { .. } | Node::Hangup { .. } => {}
        }
    }
    if e.iter().any(|x| x.message.contains("does not exist")) {
        return; // cycle detection needs a closed graph
    }
    if let Some(cycle) = input_free_cycle(&f.nodes) {
        e.push(FieldError::new(
            format!("flow.nodes.{}", cycle[0]),
            format!(
                "cycle without caller input: {} (put a menu in the loop or break it)",
                cycle.join(" -> ")
            ),
        ));
    }
}

/// A cycle that passes no menu (the only node that waits for the caller) would loop a call
/// forever. Returns the first such cycle, as node ids.
fn input_free_cycle(nodes: &BTreeMap<String, Node>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit<'a>(
        id: &'a str,
        nodes: &'a BTreeMap<String, Node>,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        marks.insert(id, Mark::Active);
        stack.push(id);
        for (_, to) in edges(&nodes[id]) {
            if matches!(nodes.get(to), Some(Node::Menu { .. }) | None) {
                continue;
            }
            match marks.get(to).copied().unwrap_or(Mark::New) {
                Mark::Active => {
                    let start = stack.iter().position(|s| *s == to).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[start..].iter().map(|s| (*s).to_owned()).collect();
                    cycle.push(to.to_owned());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(to, nodes, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(id, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    let mut seen = HashSet::new();
    for (id, node) in nodes {
        if matches!(node, Node::Menu { .. }) || seen.contains(id.as_str()) {
            continue;
        }
        if marks.get(id.as_str()).copied().unwrap_or(Mark::New) == Mark::New {
            let mut stack = Vec::new();
            if let Some(c) = visit(id, nodes, &mut marks, &mut stack) {
                return Some(c);
            }
        }
        seen.insert(id.as_str());
    }
    None
}
