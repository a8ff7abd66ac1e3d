//! Whole-graph validation of configuration, before anything is stored. Every error names the
//! offending field and node, e.g. `flow.nodes.main-menu.invalid`.
//!
//! Size caps come first and are cheap (lengths and counts), so a hostile body costs at most one
//! pass over what the body limit let through; the graph walk runs only on a flow within the caps
//! and uses an explicit worklist, never recursion, so its stack use does not depend on the input.
//! Messages never quote an unbounded client string: long or control-laden values are described,
//! not echoed.

use std::collections::{BTreeMap, HashMap};

use kit::{
    FieldError,
    validate::{Lines, text_problem},
};

use super::model::{Flow, MobileRules, Node, PbxConfig, Prompt, SubscriberConfig};

/// Nodes in one PBX flow. The sample hospital has 13; a large switchboard a few hundred.
pub const MAX_NODES: usize = 1_000;
/// Characters of a node id (also `entry`, every edge, and the `node` of a decision request).
pub const MAX_ID_LEN: usize = 64;
/// Options of one menu.
pub const MAX_MENU_OPTIONS: usize = 64;
/// Digits a menu may collect (a decision request carries at most 32).
pub const MAX_MENU_DIGITS: u8 = 32;
/// Members of one ring group.
pub const MAX_RING_MEMBERS: usize = 50;
/// Opening-hours entries of one time condition.
pub const MAX_HOURS: usize = 32;
/// Holiday dates of one time condition.
pub const MAX_HOLIDAYS: usize = 400;
/// Characters of a spoken (`say`) prompt.
pub const MAX_PROMPT_LEN: usize = 1_000;
/// Characters of a recording (`url`) prompt.
pub const MAX_URL_LEN: usize = 2_048;
/// Characters of a queue or mailbox name.
pub const MAX_NAME_LEN: usize = 128;
/// Characters of an IANA time zone name.
pub const MAX_TIMEZONE_LEN: usize = 64;
/// Entries of a subscriber's block list.
pub const MAX_BLOCK: usize = 1_000;
/// Entries of a subscriber's do-not-disturb allow list.
pub const MAX_ALLOW: usize = 100;
/// Problems listed in one answer; the rest are counted in a last entry.
pub const MAX_ERRORS: usize = 100;

/// Collects problems up to [`MAX_ERRORS`]; a flow with a thousand broken nodes answers with a
/// bounded body.
#[derive(Default)]
struct Report {
    errors: Vec<FieldError>,
    more: usize,
}

impl Report {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(FieldError::new(field, message));
        } else {
            self.more += 1;
        }
    }

    /// Records a text problem (length, control characters, blank) of `value`, if any.
    fn text(&mut self, field: impl Into<String>, value: &str, max: usize, lines: Lines) -> bool {
        match text_problem(value, max, lines) {
            Some(message) => {
                self.push(field, message);
                false
            }
            None => true,
        }
    }

    fn finish(mut self) -> Vec<FieldError> {
        if self.more > 0 {
            self.errors.push(FieldError::new(
                "body",
                format!("{} more problems not listed", self.more),
            ));
        }
        self.errors
    }
}

/// `value` quoted for a message when it is short and printable, else a description of it.
fn quote(value: &str) -> String {
    if value.len() <= MAX_ID_LEN && !value.chars().any(char::is_control) {
        format!("`{value}`")
    } else {
        "(value not shown)".to_owned()
    }
}

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

fn target(r: &mut Report, field: &str, value: &str) {
    if !is_target(value) {
        r.push(
            field,
            format!("{} is not an E.164 number or sip: URI", quote(value)),
        );
    }
}

fn timezone(r: &mut Report, field: &str, tz: &str) {
    if r.text(field, tz, MAX_TIMEZONE_LEN, Lines::Single) && tz.parse::<chrono_tz::Tz>().is_err() {
        r.push(field, format!("{} is not an IANA time zone", quote(tz)));
    }
}

/// At most `max` entries; says so (once) when there are more.
fn count(r: &mut Report, field: &str, len: usize, max: usize) -> bool {
    if len > max {
        r.push(field, format!("at most {max} entries, got {len}"));
        false
    } else {
        true
    }
}

fn prompt(r: &mut Report, field: &str, p: &Prompt) {
    match p {
        Prompt::Say(text) => {
            // Spoken text may be laid out over several lines; text-to-speech ignores the breaks.
            r.text(format!("{field}.say"), text, MAX_PROMPT_LEN, Lines::Multi);
        }
        Prompt::Url(url) => {
            let field = format!("{field}.url");
            if r.text(&*field, url, MAX_URL_LEN, Lines::Single)
                && !((url.starts_with("https://") || url.starts_with("http://"))
                    && url.bytes().all(|b| b.is_ascii_graphic()))
            {
                r.push(field, "must be an http:// or https:// URL without spaces");
            }
        }
    }
}

pub fn subscriber(cfg: &SubscriberConfig) -> Vec<FieldError> {
    let mut r = Report::default();
    target(&mut r, "fallback_target", &cfg.fallback_target);
    rules(&mut r, &cfg.rules);
    r.finish()
}

fn rules(r: &mut Report, rules: &MobileRules) {
    if count(r, "rules.block", rules.block.len(), MAX_BLOCK) {
        for (i, b) in rules.block.iter().enumerate() {
            let number = b.strip_suffix('*').unwrap_or(b);
            let digits = number.strip_prefix('+').unwrap_or_default();
            if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|c| c.is_ascii_digit())
            {
                r.push(
                    format!("rules.block[{i}]"),
                    "must be + and 1..=15 digits, optionally ending in *",
                );
            }
        }
    }
    for (field, v) in [
        ("rules.forward_unconditional", &rules.forward_unconditional),
        ("rules.forward_busy", &rules.forward_busy),
        ("rules.forward_no_answer", &rules.forward_no_answer),
    ] {
        if let Some(t) = v {
            target(r, field, t);
        }
    }
    if let Some(m) = &rules.mailbox {
        r.text("rules.mailbox", m, MAX_NAME_LEN, Lines::Single);
    }
    if let Some(d) = &rules.do_not_disturb {
        timezone(r, "rules.do_not_disturb.timezone", &d.timezone);
        if d.start == d.end {
            r.push("rules.do_not_disturb.end", "must differ from start");
        }
        if d.to_voicemail && rules.mailbox.is_none() {
            r.push(
                "rules.mailbox",
                "required when do_not_disturb.to_voicemail is set",
            );
        }
        if count(r, "rules.do_not_disturb.allow", d.allow.len(), MAX_ALLOW) {
            for (i, a) in d.allow.iter().enumerate() {
                target(r, &format!("rules.do_not_disturb.allow[{i}]"), a);
            }
        }
    }
}

pub fn pbx(cfg: &PbxConfig) -> Vec<FieldError> {
    let mut r = Report::default();
    target(&mut r, "fallback_target", &cfg.fallback_target);
    flow(&mut r, &cfg.flow);
    r.finish()
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

fn flow(r: &mut Report, f: &Flow) {
    timezone(r, "flow.timezone", &f.timezone);
    if f.nodes.is_empty() {
        r.push("flow.nodes", "a flow needs at least one node");
        return;
    }
    // Before any per-node work: one pass over a flow this size is all a request may cost.
    if !count(r, "flow.nodes", f.nodes.len(), MAX_NODES) {
        return;
    }
    // Every field name below embeds node ids, so they are checked before anything names them.
    let mut ids_ok = true;
    for (i, id) in f.nodes.keys().enumerate() {
        if let Some(problem) = text_problem(id, MAX_ID_LEN, Lines::Single) {
            r.push(
                "flow.nodes",
                format!("node id #{i} (in key order): {problem}"),
            );
            ids_ok = false;
        }
    }
    if !ids_ok {
        return;
    }
    if !f.nodes.contains_key(&f.entry) {
        r.push(
            "flow.entry",
            format!("node {} does not exist", quote(&f.entry)),
        );
    }
    let mut closed = true;
    for (id, n) in &f.nodes {
        let at = |field: &str| format!("flow.nodes.{id}.{field}");
        for (field, to) in edges(n) {
            if !f.nodes.contains_key(to) {
                closed = false;
                // `field` may name a menu key: only a valid key is echoed into a field name.
                let field = if field.len() <= MAX_ID_LEN && !field.chars().any(char::is_control) {
                    at(&field)
                } else {
                    at("options")
                };
                r.push(field, format!("node {} does not exist", quote(to)));
            }
        }
        node(r, id, n);
    }
    if !closed {
        return; // cycle detection needs a closed graph
    }
    if let Some(cycle) = input_free_cycle(&f.nodes) {
        r.push(
            format!("flow.nodes.{}", cycle[0]),
            format!(
                "cycle without caller input: {} (put a menu in the loop or break it)",
                describe_cycle(&cycle)
            ),
        );
    }
}

/// The checks of one node whose id is valid.
fn node(r: &mut Report, id: &str, node: &Node) {
    let at = |field: &str| format!("flow.nodes.{id}.{field}");
    match node {
        Node::Announcement { prompt: p, .. } => prompt(r, &at("prompt"), p),
        Node::Menu {
            prompt: p,
            options,
            max_digits,
            finish_key,
            timeout_secs,
            ..
        } => {
            prompt(r, &at("prompt"), p);
            if options.is_empty() {
                r.push(at("options"), "a menu needs at least one option");
            }
            if !(1..=MAX_MENU_DIGITS).contains(max_digits) {
                r.push(at("max_digits"), format!("must be 1..={MAX_MENU_DIGITS}"));
            }
            if count(r, &at("options"), options.len(), MAX_MENU_OPTIONS) {
                for key in options.keys() {
                    let valid = !key.is_empty()
                        && key.len() <= usize::from(*max_digits)
                        && key
                            .bytes()
                            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#');
                    if !valid {
                        // A long or odd key is described, not put into the field name.
                        let field = if key.len() <= usize::from(MAX_MENU_DIGITS)
                            && !key.chars().any(char::is_control)
                        {
                            at(&format!("options.{key}"))
                        } else {
                            at("options")
                        };
                        r.push(field, format!("keys must be 1..={max_digits} of 0-9 * #"));
                    }
                }
            }
            if let Some(k) = finish_key
                && !matches!(k.as_str(), "#" | "*")
            {
                r.push(at("finish_key"), "must be # or *");
            }
            if *timeout_secs == 0 || *timeout_secs > 60 {
                r.push(at("timeout_secs"), "must be 1..=60");
            }
        }
        Node::RingGroup {
            members,
            member_timeout_secs,
            caller_id,
            ..
        } => {
            if members.is_empty() {
                r.push(at("members"), "a ring group needs at least one member");
            }
            if count(r, &at("members"), members.len(), MAX_RING_MEMBERS) {
                for (i, m) in members.iter().enumerate() {
                    target(r, &at(&format!("members[{i}]")), m);
                }
            }
            if let Some(c) = caller_id {
                target(r, &at("caller_id"), c);
            }
            if *member_timeout_secs == 0 || *member_timeout_secs > 120 {
                r.push(at("member_timeout_secs"), "must be 1..=120");
            }
        }
        Node::TimeCondition {
            hours, holidays, ..
        } => {
            count(r, &at("holidays"), holidays.len(), MAX_HOLIDAYS);
            if count(r, &at("hours"), hours.len(), MAX_HOURS) {
                for (i, h) in hours.iter().enumerate() {
                    if h.open >= h.close {
                        r.push(at(&format!("hours[{i}]")), "open must be before close");
                    }
                    if h.days.is_empty() || h.days.len() > 7 {
                        r.push(at(&format!("hours[{i}].days")), "needs 1..=7 days");
                    }
                }
            }
        }
        Node::Queue {
            max_wait_secs,
            queue,
            ..
        } => {
            if *max_wait_secs == 0 || *max_wait_secs > 3600 {
                r.push(at("max_wait_secs"), "must be 1..=3600");
            }
            r.text(at("queue"), queue, MAX_NAME_LEN, Lines::Single);
        }
        Node::Forward { target: t, .. } => target(r, &at("target"), t),
        Node::Voicemail { mailbox, greeting } => {
            r.text(at("mailbox"), mailbox, MAX_NAME_LEN, Lines::Single);
            if let Some(g) = greeting {
                prompt(r, &at("greeting"), g);
            }
        }
        Node::Hangup { .. } => {}
    }
}

/// `a -> b -> c -> a`, with the middle of a long cycle elided so the message stays short.
fn describe_cycle(cycle: &[&str]) -> String {
    const SHOWN: usize = 8;
    if cycle.len() <= 2 * SHOWN {
        return cycle.join(" -> ");
    }
    format!(
        "{} -> … {} more … -> {}",
        cycle[..SHOWN].join(" -> "),
        cycle.len() - 2 * SHOWN,
        cycle[cycle.len() - SHOWN..].join(" -> ")
    )
}

/// A cycle that passes no menu (the only node that waits for the caller) would loop a call
/// forever. Returns the first such cycle, as node ids, ending where it starts.
///
/// Depth-first search over an explicit stack: each frame holds a node on the current path and the
/// edges it has yet to follow. Memory is O(nodes + edges) on the heap, whatever the depth.
fn input_free_cycle(nodes: &BTreeMap<String, Node>) -> Option<Vec<&str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Active,
        Done,
    }
    // Edges into menus are not followed: a menu breaks any loop it is on.
    fn pending<'a>(nodes: &'a BTreeMap<String, Node>, node: &'a Node) -> Vec<&'a str> {
        let mut next: Vec<&str> = edges(node)
            .into_iter()
            .map(|(_, to)| to)
            .filter(|to| {
                nodes
                    .get(*to)
                    .is_some_and(|n| !matches!(n, Node::Menu { .. }))
            })
            .collect();
        // Popped from the back: reversed, the edges are followed in declaration order.
        next.reverse();
        next
    }
    let mut marks: HashMap<&str, Mark> = HashMap::with_capacity(nodes.len());
    let mut path: Vec<(&str, Vec<&str>)> = Vec::new();
    for (root, node) in nodes {
        if matches!(node, Node::Menu { .. }) || marks.contains_key(root.as_str()) {
            continue;
        }
        marks.insert(root, Mark::Active);
        path.push((root, pending(nodes, node)));
        while let Some((id, next)) = path.last_mut() {
            let id = *id;
            let Some(to) = next.pop() else {
                marks.insert(id, Mark::Done);
                path.pop();
                continue;
            };
            match marks.get(to) {
                Some(Mark::Active) => {
                    let start = path.iter().position(|(p, _)| *p == to).unwrap_or(0);
                    let mut cycle: Vec<&str> = path[start..].iter().map(|(p, _)| *p).collect();
                    cycle.push(to);
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some((key, n)) = nodes.get_key_value(to) {
                        marks.insert(key, Mark::Active);
                        path.push((key, pending(nodes, n)));
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::HangupReason;

    fn announcement(next: &str) -> Node {
        Node::Announcement {
            prompt: Prompt::Say("hello".into()),
            next: next.into(),
        }
    }

    /// `n0 -> n1 -> … -> n{len-1}`, ending in a hangup or, with `back_to`, an edge back.
    fn chain(len: usize, back_to: Option<usize>) -> BTreeMap<String, Node> {
        let mut nodes: BTreeMap<String, Node> = (0..len - 1)
            .map(|i| (format!("n{i}"), announcement(&format!("n{}", i + 1))))
            .collect();
        let last = match back_to {
            Some(i) => announcement(&format!("n{i}")),
            None => Node::Hangup {
                reason: HangupReason::Normal,
            },
        };
        nodes.insert(format!("n{}", len - 1), last);
        nodes
    }

    /// Runs `f` on a thread with a 128 KiB stack: a recursive walk of a long chain would overflow
    /// it (and abort the test process), the worklist does not.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("no panic")
    }

    #[test]
    fn cycle_search_walks_a_deep_chain_without_recursion() {
        let found = on_small_stack(|| {
            let nodes = chain(200_000, Some(199_990));
            input_free_cycle(&nodes).map(|c| c.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
        })
        .expect("the loop at the end of the chain");
        assert_eq!(found.len(), 11, "{found:?}");
        assert_eq!(found.first().map(String::as_str), Some("n199990"));
        assert_eq!(found.last().map(String::as_str), Some("n199990"));
        assert!(on_small_stack(
            || input_free_cycle(&chain(200_000, None)).is_none()
        ));
    }

    #[test]
    fn a_menu_breaks_a_loop() {
        let mut nodes = chain(3, Some(0));
        nodes.insert(
            "n0".into(),
            Node::Menu {
                prompt: Prompt::Say("press 1".into()),
                max_digits: 1,
                timeout_secs: 5,
                repeats: 2,
                finish_key: None,
                options: [("1".to_owned(), "n1".to_owned())].into(),
                invalid: "n0".into(),
                no_input: "n1".into(),
            },
        );
        assert_eq!(input_free_cycle(&nodes), None);
        let looped = chain(3, Some(1));
        assert_eq!(input_free_cycle(&looped), Some(vec!["n1", "n2", "n1"]));
    }

    fn flow_of(nodes: BTreeMap<String, Node>) -> PbxConfig {
        PbxConfig {
            flow: Flow {
                entry: "n0".into(),
                timezone: "Europe/Stockholm".into(),
                nodes,
            },
            fallback_target: "+46101110000".into(),
        }
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn too_many_nodes_is_one_error_before_any_other_check() {
        // Every node also points nowhere: none of that is reported, the count comes first.
        let mut nodes = chain(MAX_NODES + 1, None);
        nodes.insert("n5".into(), announcement("nowhere"));
        let errors = pbx(&flow_of(nodes));
        assert_eq!(fields(&errors), ["flow.nodes"]);
        assert_eq!(errors[0].message, "at most 1000 entries, got 1001");
        assert!(pbx(&flow_of(chain(MAX_NODES, None))).is_empty());
    }

    #[test]
    fn the_long_cycle_message_is_bounded() {
        let errors = pbx(&flow_of(chain(MAX_NODES, Some(0))));
        assert_eq!(fields(&errors), ["flow.nodes.n0"]);
        assert!(
            errors[0].message.contains("… 985 more …"),
            "{}",
            errors[0].message
        );
        assert!(errors[0].message.len() < 300);
    }

    #[test]
    fn bad_node_ids_are_described_not_echoed() {
        let mut nodes = chain(2, None);
        let huge = "x".repeat(10_000);
        nodes.insert(huge.clone(), announcement("n0"));
        nodes.insert("bad\0id".into(), announcement("n0"));
        let errors = pbx(&flow_of(nodes));
        assert_eq!(fields(&errors), ["flow.nodes", "flow.nodes"]);
        assert!(errors.iter().all(|e| e.message.len() < 200), "{errors:?}");
        assert!(
            errors[0].message.contains("control characters"),
            "{errors:?}"
        );
        assert!(errors[1].message.contains("at most 64"), "{errors:?}");
        // An edge to a huge id: named by its field, the value not repeated.
        let mut nodes = chain(2, None);
        nodes.insert("n0".into(), announcement(&huge));
        let errors = pbx(&flow_of(nodes));
        assert_eq!(fields(&errors), ["flow.nodes.n0.next"]);
        assert_eq!(errors[0].message, "node (value not shown) does not exist");
    }

    #[test]
    fn prompts_names_and_collections_are_capped() {
        let mut nodes = chain(2, None);
        nodes.insert(
            "n0".into(),
            Node::Announcement {
                prompt: Prompt::Say("Welcome\0".into()),
                next: "n1".into(),
            },
        );
        nodes.insert(
            "n1".into(),
            Node::Voicemail {
                mailbox: "m".repeat(MAX_NAME_LEN + 1),
                greeting: Some(Prompt::Url("file:///etc/passwd".into())),
            },
        );
        let errors = pbx(&flow_of(nodes));
        assert_eq!(
            fields(&errors),
            [
                "flow.nodes.n0.prompt.say",
                "flow.nodes.n1.mailbox",
                "flow.nodes.n1.greeting.url"
            ]
        );
        let mut nodes = chain(2, None);
        nodes.insert(
            "n0".into(),
            Node::Announcement {
                prompt: Prompt::Say(format!("Line one.\n{}", "a".repeat(MAX_PROMPT_LEN - 10))),
                next: "n1".into(),
            },
        );
        assert!(
            pbx(&flow_of(nodes)).is_empty(),
            "a multi-line prompt at the cap"
        );

        let mut nodes = chain(2, None);
        nodes.insert(
            "n0".into(),
            Node::RingGroup {
                members: vec!["+46101110001".into(); MAX_RING_MEMBERS + 1],
                strategy: crate::domain::model::RingStrategy::Simultaneous,
                member_timeout_secs: 20,
                caller_id: None,
                no_answer: "n1".into(),
                busy: None,
            },
        );
        assert_eq!(fields(&pbx(&flow_of(nodes))), ["flow.nodes.n0.members"]);
    }

    #[test]
    fn the_error_list_is_bounded() {
        let mut nodes = chain(2, None);
        for i in 0..500 {
            nodes.insert(
                format!("q{i}"),
                Node::Voicemail {
                    mailbox: " ".into(),
                    greeting: None,
                },
            );
        }
        let errors = pbx(&flow_of(nodes));
        assert_eq!(errors.len(), MAX_ERRORS + 1);
        assert_eq!(errors[MAX_ERRORS].message, "400 more problems not listed");
    }

    #[test]
    fn subscriber_lists_and_mailbox_are_capped() {
        let cfg = SubscriberConfig {
            rules: MobileRules {
                block: vec!["+4670*".into(); MAX_BLOCK + 1],
                mailbox: Some("box\u{1b}[2J".into()),
                ..MobileRules::default()
            },
            fallback_target: "+46705550000".into(),
        };
        assert_eq!(fields(&subscriber(&cfg)), ["rules.block", "rules.mailbox"]);
    }
}
