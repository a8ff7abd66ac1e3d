//! Unit tests of the pure decision engine: routing and context built in memory, no database, no
//! HTTP. Each step of a call feeds the previous answer's `next.node` and `next.state` back in, as
//! the telephony platform does.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc, Weekday};

use super::*;
use crate::domain::{
    model::{
        DoNotDisturb, Flow, HangupReason, MobileRules, Node, PbxConfig, Prompt, RingStrategy,
        SubscriberConfig, WeeklyHours,
    },
    token::{CallState, TokenKey},
};

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const MAX_AGE: i64 = 3_600;
const CALL: &str = "call-1";
const CALLER: &str = "+46700000001";
const PBX: &str = "+46101110099";
const PBX_FALLBACK: &str = "+46101110000";
const SUB: &str = "+46705550001";
const SUB_FALLBACK: &str = "+46705559999";
const VERSION: i64 = 7;

/// Wednesday 2026-11-18, 11:00 in Stockholm (CET): inside opening hours.
fn now() -> DateTime<Utc> {
    at("2026-11-18T10:00:00Z")
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("valid timestamp")
        .with_timezone(&Utc)
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).expect("valid time")
}

fn say(text: &str) -> Prompt {
    Prompt::Say(text.into())
}

fn weekdays() -> Vec<Weekday> {
    vec![
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
    ]
}

/// The hospital switchboard of docs/calls.md, plus a few nodes that reach every node kind.
fn hospital() -> PbxConfig {
    let n = |id: &str, node: Node| (id.to_owned(), node);
    let nodes = BTreeMap::from([
        n(
            "hours",
            Node::TimeCondition {
                hours: vec![WeeklyHours {
                    days: weekdays(),
                    open: hm(8, 0),
                    close: hm(17, 0),
                }],
                holidays: vec![NaiveDate::from_ymd_opt(2026, 12, 24).expect("date")],
                open: "welcome".into(),
                closed: "closed-message".into(),
            },
        ),
        n(
            "welcome",
            Node::Announcement {
                prompt: say("Welcome to Northside Hospital."),
                next: "main-menu".into(),
            },
        ),
        n(
            "main-menu",
            Node::Menu {
                prompt: say("For the ward, press 1."),
                max_digits: 1,
                timeout_secs: 5,
                repeats: 2,
                finish_key: Some("#".into()),
                options: BTreeMap::from([
                    ("0".to_owned(), "switchboard".to_owned()),
                    ("1".to_owned(), "ward".to_owned()),
                    ("2".to_owned(), "appointments".to_owned()),
                    ("3".to_owned(), "pharmacy".to_owned()),
                    ("9".to_owned(), "goodbye".to_owned()),
                ]),
                invalid: "main-menu".into(),
                no_input: "switchboard".into(),
            },
        ),
        n(
            "ward",
            Node::RingGroup {
                members: vec![
                    "+46101110001".into(),
                    "+46101110002".into(),
                    "+46101110003".into(),
                ],
                strategy: RingStrategy::Simultaneous,
                member_timeout_secs: 20,
                caller_id: Some("+46101110099".into()),
                no_answer: "ward-queue".into(),
                busy: Some("ward-voicemail".into()),
            },
        ),
        n(
            "appointments",
            Node::RingGroup {
                members: vec!["+46101110010".into(), "+46101110011".into()],
                strategy: RingStrategy::Sequential,
                member_timeout_secs: 15,
                caller_id: None,
                no_answer: "appointments-voicemail".into(),
                busy: None,
            },
        ),
        n(
            "ward-queue",
            Node::Queue {
                queue: "ward".into(),
                announce_position: true,
                max_wait_secs: 120,
                overflow: "ward-voicemail".into(),
            },
        ),
        n(
            "ward-voicemail",
            Node::Voicemail {
                mailbox: "ward".into(),
                greeting: None,
            },
        ),
        n(
            "appointments-voicemail",
            Node::Voicemail {
                mailbox: "appointments".into(),
                greeting: Some(say("Appointments are closed.")),
            },
        ),
        n(
            "switchboard",
            Node::Forward {
                target: "+46101110000".into(),
                timeout_secs: 30,
                no_answer: Some("ward-voicemail".into()),
            },
        ),
        n(
            "pharmacy",
            Node::Forward {
                target: "+46101110020".into(),
                timeout_secs: 25,
                no_answer: None,
            },
        ),
        n(
            "goodbye",
            Node::Announcement {
                prompt: Prompt::Url("https://example.com/goodbye.mp3".into()),
                next: "end".into(),
            },
        ),
        n(
            "end",
            Node::Hangup {
                reason: HangupReason::Normal,
            },
        ),
        n(
            "closed-message",
            Node::Announcement {
                prompt: say("We are closed."),
                next: "after-hours-voicemail".into(),
            },
        ),
        n(
            "after-hours-voicemail",
            Node::Voicemail {
                mailbox: "after-hours".into(),
                greeting: Some(Prompt::Url("https://example.com/after-hours.mp3".into())),
            },
        ),
    ]);
    PbxConfig {
        flow: Flow {
            entry: "hours".into(),
            timezone: "Europe/Stockholm".into(),
            nodes,
        },
        fallback_target: PBX_FALLBACK.into(),
    }
}

fn subscriber(rules: MobileRules) -> SubscriberConfig {
    SubscriberConfig {
        rules,
        fallback_target: SUB_FALLBACK.into(),
    }
}

struct World {
    routing: Routing,
    key: TokenKey,
    emergency: Option<String>,
    deadline: Option<Deadline>,
}

/// A monotonic deadline, as the webhook's budget is.
struct Deadline(Instant);

impl Budget for Deadline {
    fn spent(&self) -> bool {
        Instant::now() >= self.0
    }
}

impl World {
    fn new() -> Self {
        Self {
            routing: Routing {
                version: VERSION,
                subscribers: HashMap::new(),
                pbxes: HashMap::from([(PBX.to_owned(), hospital())]),
            },
            key: TokenKey::new(KEY),
            emergency: None,
            deadline: None,
        }
    }

    fn with_pbx(cfg: PbxConfig) -> Self {
        let mut w = Self::new();
        w.routing.pbxes.insert(PBX.to_owned(), cfg);
        w
    }

    fn with_subscriber(rules: MobileRules) -> Self {
        let mut w = Self::new();
        w.routing
            .subscribers
            .insert(SUB.to_owned(), subscriber(rules));
        w
    }

    fn ctx(&self, now: DateTime<Utc>) -> Ctx<'_> {
        Ctx {
            routing: &self.routing,
            now,
            key: &self.key,
            token_max_age_secs: MAX_AGE,
            emergency_target: self.emergency.as_deref(),
            budget: self.deadline.as_ref().map(|d| d as &dyn Budget),
        }
    }

    fn decide_at(&self, now: DateTime<Utc>, req: &DecisionRequest) -> Decision {
        decide(&self.ctx(now), req)
    }

    fn decide(&self, req: &DecisionRequest) -> Decision {
        self.decide_at(now(), req)
    }

    /// The state a decision hands out, as this world's key reads it back.
    fn state(&self, d: &Decision, now: DateTime<Utc>) -> CallState {
        let next = d.next.as_ref().expect("decision waits for the platform");
        self.key
            .verify(&next.state, CALL, now.timestamp(), MAX_AGE)
            .expect("state token verifies")
    }

    fn sign(&self, st: &CallState) -> String {
        self.key.sign(st)
    }
}

fn started(call_type: CallType, to: &str) -> DecisionRequest {
    DecisionRequest {
        request_id: "r-1".into(),
        call_id: CALL.into(),
        call_type,
        direction: Direction::Inbound,
        from: CALLER.into(),
        to: to.into(),
        event: Event::CallStarted,
        node: None,
        state: None,
        result: None,
        digits: None,
    }
}

fn pbx_call() -> DecisionRequest {
    started(CallType::Pbx, PBX)
}

fn mobile_call() -> DecisionRequest {
    started(CallType::Mobile, SUB)
}

/// The request the platform posts after `prev`: same call, `prev.next`'s node and state.
fn follow(first: &DecisionRequest, prev: &Decision, event: Event) -> DecisionRequest {
    let next = prev.next.as_ref().expect("previous answer has a next step");
    DecisionRequest {
        request_id: format!("{}+", first.request_id),
        event,
        node: Some(next.node.clone()),
        state: Some(next.state.clone()),
        result: None,
        digits: None,
        ..first.clone()
    }
}

fn digits(first: &DecisionRequest, prev: &Decision, entered: &str) -> DecisionRequest {
    DecisionRequest {
        digits: Some(entered.into()),
        ..follow(first, prev, Event::Digits)
    }
}

fn result(first: &DecisionRequest, prev: &Decision, r: ActionResult) -> DecisionRequest {
    DecisionRequest {
        result: Some(r),
        ..follow(first, prev, Event::ActionResult)
    }
}

fn next_node(d: &Decision) -> Option<&str> {
    d.next.as_ref().map(|n| n.node.as_str())
}

fn branches(d: &Decision) -> BTreeMap<String, String> {
    d.next
        .as_ref()
        .map(|n| n.branches.clone())
        .unwrap_or_default()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn main_menu_action() -> Action {
    Action::Menu {
        prompt: say("For the ward, press 1."),
        max_digits: 1,
        timeout_secs: 5,
        repeats: 2,
        finish_key: Some("#".into()),
    }
}

fn ward_ring() -> Action {
    Action::Connect {
        targets: vec![
            "+46101110001".into(),
            "+46101110002".into(),
            "+46101110003".into(),
        ],
        strategy: RingStrategy::Simultaneous,
        ring_timeout_secs: 20,
        caller_id: Some("+46101110099".into()),
    }
}

fn ward_voicemail() -> Action {
    Action::Voicemail {
        mailbox: "ward".into(),
        greeting: None,
    }
}

fn connect_one(target: &str, secs: u16) -> Action {
    Action::Connect {
        targets: vec![target.into()],
        strategy: RingStrategy::Sequential,
        ring_timeout_secs: secs,
        caller_id: None,
    }
}

fn hangup(reason: HangupReason) -> Action {
    Action::Hangup { reason }
}

/// The answer to a fresh call in opening hours: welcome, then the main menu.
fn assert_flow_start(d: &Decision) {
    assert_eq!(
        d.actions,
        vec![
            Action::Say {
                text: "Welcome to Northside Hospital.".into()
            },
            main_menu_action(),
        ]
    );
    assert_eq!(next_node(d), Some("main-menu"));
    assert_eq!(d.source, Source::Live);
}

/// A call that has reached the main menu.
fn at_menu(w: &World) -> (DecisionRequest, Decision) {
    let first = pbx_call();
    let d = w.decide(&first);
    assert_eq!(next_node(&d), Some("main-menu"));
    (first, d)
}

// ---------------------------------------------------------------------------------------------
// PBX: entry, announcements, time conditions

#[test]
fn call_started_in_opening_hours_plays_welcome_and_waits_at_the_menu() {
    let w = World::new();
    assert_eq!(now().weekday(), Weekday::Wed);
    let d = w.decide(&pbx_call());
    assert_flow_start(&d);
    assert_eq!(d.snapshot_version, VERSION);
    assert!(d.notes.is_empty(), "{:?}", d.notes);
    assert_eq!(
        branches(&d),
        map(&[
            ("digits:0", "switchboard"),
            ("digits:1", "ward"),
            ("digits:2", "appointments"),
            ("digits:3", "pharmacy"),
            ("digits:9", "goodbye"),
            ("invalid", "main-menu"),
            ("no_input", "switchboard"),
        ])
    );
    assert_eq!(
        w.state(&d, now()),
        CallState {
            call_id: CALL.into(),
            number: PBX.into(),
            node: "main-menu".into(),
            entered_at: now().timestamp(),
            issued_at: now().timestamp(),
            steps: 1,
        }
    );
}

#[test]
fn outside_opening_hours_the_closed_branch_ends_in_voicemail() {
    let w = World::new();
    let saturday = at("2026-11-21T10:00:00Z");
    assert_eq!(saturday.weekday(), Weekday::Sat);
    let d = w.decide_at(saturday, &pbx_call());
    assert_eq!(
        d.actions,
        vec![
            Action::Say {
                text: "We are closed.".into()
            },
            Action::Voicemail {
                mailbox: "after-hours".into(),
                greeting: Some(Prompt::Url("https://example.com/after-hours.mp3".into())),
            },
        ]
    );
    assert_eq!(d.next, None);
    // Same weekday, after closing (17:30 local).
    let evening = w.decide_at(at("2026-11-18T16:30:00Z"), &pbx_call());
    assert_eq!(evening.actions, d.actions);
}

/// The time condition's verdict at `now`, through the engine: `open` or `closed` mailbox.
fn branch_at(hours: Vec<WeeklyHours>, holidays: Vec<NaiveDate>, now: DateTime<Utc>) -> String {
    let vm = |mailbox: &str| Node::Voicemail {
        mailbox: mailbox.into(),
        greeting: None,
    };
    let w = World::with_pbx(PbxConfig {
        flow: Flow {
            entry: "tc".into(),
            timezone: "Europe/Stockholm".into(),
            nodes: BTreeMap::from([
                (
                    "tc".to_owned(),
                    Node::TimeCondition {
                        hours,
                        holidays,
                        open: "open".into(),
                        closed: "closed".into(),
                    },
                ),
                ("open".to_owned(), vm("open")),
                ("closed".to_owned(), vm("closed")),
            ]),
        },
        fallback_target: PBX_FALLBACK.into(),
    });
    let d = w.decide_at(now, &pbx_call());
    match d.actions.as_slice() {
        [Action::Voicemail { mailbox, .. }] => mailbox.clone(),
        other => panic!("unexpected actions {other:?}"),
    }
}

#[test]
fn a_holiday_is_closed_all_day_and_the_same_weekday_otherwise_open() {
    let office = || {
        vec![WeeklyHours {
            days: weekdays(),
            open: hm(8, 0),
            close: hm(17, 0),
        }]
    };
    let christmas_eve = NaiveDate::from_ymd_opt(2026, 12, 24).expect("date");
    let holiday = at("2026-12-24T10:00:00Z");
    let week_before = at("2026-12-17T10:00:00Z");
    assert_eq!(holiday.weekday(), Weekday::Thu);
    assert_eq!(week_before.weekday(), Weekday::Thu);
    assert_eq!(branch_at(office(), vec![christmas_eve], holiday), "closed");
    assert_eq!(
        branch_at(office(), vec![christmas_eve], week_before),
        "open"
    );
    assert_eq!(branch_at(office(), Vec::new(), holiday), "open");
    // The holiday is a local date: 23:30 UTC on the 23rd is already the 24th in Stockholm.
    let all_day = vec![WeeklyHours {
        days: vec![Weekday::Wed, Weekday::Thu],
        open: hm(0, 0),
        close: NaiveTime::from_hms_opt(23, 59, 59).expect("time"),
    }];
    let late = at("2026-12-23T23:30:00Z");
    assert_eq!(
        branch_at(all_day.clone(), vec![christmas_eve], late),
        "closed"
    );
    assert_eq!(branch_at(all_day, Vec::new(), late), "open");
}

#[test]
fn opening_hours_follow_stockholm_across_the_october_dst_change() {
    let office = || {
        vec![WeeklyHours {
            days: weekdays(),
            open: hm(8, 0),
            close: hm(17, 0),
        }]
    };
    // 06:30 UTC is 08:30 CEST on the Friday before the change (open) and 07:30 CET on the Monday
    // after it (closed); 07:30 UTC on that Monday is 08:30 CET (open).
    assert_eq!(
        branch_at(office(), Vec::new(), at("2026-10-23T06:30:00Z")),
        "open"
    );
    assert_eq!(
        branch_at(office(), Vec::new(), at("2026-10-26T06:30:00Z")),
        "closed"
    );
    assert_eq!(
        branch_at(office(), Vec::new(), at("2026-10-26T07:30:00Z")),
        "open"
    );
    // On 2026-10-25 clocks go back from 03:00 CEST to 02:00 CET (01:00 UTC): local 02:00–03:00
    // happens twice, and both are inside a Sunday 02:00–03:00 window.
    let night = || {
        vec![WeeklyHours {
            days: vec![Weekday::Sun],
            open: hm(2, 0),
            close: hm(3, 0),
        }]
    };
    assert_eq!(
        branch_at(night(), Vec::new(), at("2026-10-24T23:30:00Z")),
        "closed"
    );
    assert_eq!(
        branch_at(night(), Vec::new(), at("2026-10-25T00:30:00Z")),
        "open"
    );
    assert_eq!(
        branch_at(night(), Vec::new(), at("2026-10-25T01:30:00Z")),
        "open"
    );
    assert_eq!(
        branch_at(night(), Vec::new(), at("2026-10-25T02:30:00Z")),
        "closed"
    );
}

// ---------------------------------------------------------------------------------------------
// PBX: menu

#[test]
fn a_menu_option_rings_the_ring_group_and_carries_the_call_forward() {
    let w = World::new();
    let (first, menu) = at_menu(&w);
    let later = now() + chrono::Duration::seconds(7);
    let d = w.decide_at(later, &digits(&first, &menu, "1"));
    assert_eq!(d.actions, vec![ward_ring()]);
    assert_eq!(next_node(&d), Some("ward"));
    assert_eq!(
        branches(&d),
        map(&[
            ("busy", "ward-voicemail"),
            ("failed", "ward-queue"),
            ("no_answer", "ward-queue"),
        ])
    );
    let st = w.state(&d, later);
    assert_eq!((st.node.as_str(), st.steps), ("ward", 2));
    assert_eq!(
        (st.entered_at, st.issued_at),
        (later.timestamp(), later.timestamp())
    );
    assert!(d.notes.is_empty(), "{:?}", d.notes);
}

#[test]
fn the_finish_key_is_stripped_from_menu_digits() {
    let w = World::new();
    let (first, menu) = at_menu(&w);
    let d = w.decide(&digits(&first, &menu, "1#"));
    assert_eq!(d.actions, vec![ward_ring()]);
}

#[test]
fn invalid_digits_replay_the_menu() {
    let w = World::new();
    let (first, menu) = at_menu(&w);
    let d = w.decide(&digits(&first, &menu, "7"));
    assert_eq!(d.actions, vec![main_menu_action()]);
    assert_eq!(next_node(&d), Some("main-menu"));
    assert_eq!(w.state(&d, now()).steps, 2);
    // And again, from the replayed menu's state.
    let again = w.decide(&digits(&first, &d, "77"));
    assert_eq!(again.actions, vec![main_menu_action()]);
    assert_eq!(w.state(&again, now()).steps, 3);
}

#[test]
fn no_input_goes_to_the_switchboard() {
    let w = World::new();
    let (first, menu) = at_menu(&w);
    let switchboard = vec![connect_one("+46101110000", 30)];
    for entered in ["", "#"] {
        let d = w.decide(&digits(&first, &menu, entered));
        assert_eq!(d.actions, switchboard, "digits {entered:?}");
        assert_eq!(next_node(&d), Some("switchboard"));
    }
    // The platform reporting the menu timed out, without digits, is no input too.
    let d = w.decide(&result(&first, &menu, ActionResult::Timeout));
    assert_eq!(d.actions, switchboard);
}

#[test]
fn an_announcement_then_a_hangup_node_ends_the_call() {
    let w = World::new();
    let (first, menu) = at_menu(&w);
    let d = w.decide(&digits(&first, &menu, "9"));
    assert_eq!(
        d.actions,
        vec![
            Action::Play {
                url: "https://example.com/goodbye.mp3".into()
            },
            hangup(HangupReason::Normal),
        ]
    );
    assert_eq!(d.next, None);
}

// ---------------------------------------------------------------------------------------------
// PBX: ring group, queue, voicemail, forward

#[test]
fn ring_group_results_pick_their_branch() {
    let w = World::new();
    let (first, menu) = at_menu(&w);
    let ringing = w.decide(&digits(&first, &menu, "1"));

    let answered = w.decide(&result(&first, &ringing, ActionResult::Success));
    assert_eq!(answered.actions, vec![hangup(HangupReason::Normal)]);
    assert_eq!(answered.next, None);

    let busy = w.decide(&result(&first, &ringing, ActionResult::Busy));
    assert_eq!(busy.actions, vec![ward_voicemail()]);
    assert_eq!(busy.next, None);

    let enqueue = vec![Action::Enqueue {
        queue: "ward".into(),
        announce_position: true,
        max_wait_secs: 120,
    }];
    for r in [
        ActionResult::NoAnswer,
        ActionResult::Failed,
        ActionResult::Timeout,
    ] {
        let d = w.decide(&result(&first, &ringing, r));
        assert_eq!(d.actions, enqueue, "{r:?}");
        assert_eq!(next_node(&d), Some("ward-queue"));
    }
}

#[test]
fn a_ring_group_without_a_busy_edge_treats_busy_as_no_answer() {
    let w = World::new();
    let (first, menu) = at_menu(&w);
    let ringing = w.decide(&digits(&first, &menu, "2"));
    assert_eq!(
        ringing.actions,
        vec![Action::Connect {
            targets: vec!["+46101110010".into(), "+46101110011".into()],
            strategy: RingStrategy::Sequential,
            ring_timeout_secs: 15,
            caller_id: None,
        }]
    );
    assert_eq!(
        branches(&ringing).get("busy").map(String::as_str),
        Some("appointments-voicemail")
    );
    let d = w.decide(&result(&first, &ringing, ActionResult::Busy));
    assert_eq!(
        d.actions,
        vec![Action::Voicemail {
            mailbox: "appointments".into(),
            greeting: Some(say("Appointments are closed.")),
        }]
    );
    assert_eq!(d.next, None);
}

/// A call waiting in the ward queue since `entered`.
fn in_queue(w: &World, entered: DateTime<Utc>) -> (DecisionRequest, Decision) {
    let first = pbx_call();
    let menu = w.decide_at(entered, &first);
    let ringing = w.decide_at(entered, &digits(&first, &menu, "1"));
    let queued = w.decide_at(entered, &result(&first, &ringing, ActionResult::NoAnswer));
    assert_eq!(next_node(&queued), Some("ward-queue"));
    (first, queued)
}

#[test]
fn queue_ticks_keep_the_caller_waiting_until_max_wait_then_overflow() {
    let w = World::new();
    let entered = now();
    let (first, queued) = in_queue(&w, entered);
    assert_eq!(
        branches(&queued),
        map(&[("failed", "ward-voicemail"), ("timeout", "ward-voicemail")])
    );
    let steps = w.state(&queued, entered).steps;

    // Each tick answers from the previous tick's state; the wait counts from entering the queue.
    let mut prev = queued;
    for (i, secs) in [30, 60, 119].into_iter().enumerate() {
        let t = entered + chrono::Duration::seconds(secs);
        let d = w.decide_at(t, &follow(&first, &prev, Event::QueueTick));
        assert_eq!(d.actions, Vec::<Action>::new(), "tick at {secs} s");
        assert_eq!(next_node(&d), Some("ward-queue"));
        let st = w.state(&d, t);
        assert_eq!(st.entered_at, entered.timestamp());
        assert_eq!(st.issued_at, t.timestamp());
        assert_eq!(st.steps, steps + 1 + i as u32);
        prev = d;
    }
    let t = entered + chrono::Duration::seconds(120);
    let d = w.decide_at(t, &follow(&first, &prev, Event::QueueTick));
    assert_eq!(d.actions, vec![ward_voicemail()]);
    assert_eq!(d.next, None);
}

#[test]
fn queue_results_end_the_call_or_overflow() {
    let w = World::new();
    let (first, queued) = in_queue(&w, now());
    let answered = w.decide(&result(&first, &queued, ActionResult::Success));
    assert_eq!(answered.actions, vec![hangup(HangupReason::Normal)]);
    assert_eq!(answered.next, None);
    let timed_out = w.decide(&result(&first, &queued, ActionResult::Timeout));
    assert_eq!(timed_out.actions, vec![ward_voicemail()]);
}

#[test]
fn a_forward_with_no_answer_waits_and_one_without_ends_the_flow() {
    let w = World::new();
    let (first, menu) = at_menu(&w);
    let fwd = w.decide(&digits(&first, &menu, "0"));
    assert_eq!(fwd.actions, vec![connect_one("+46101110000", 30)]);
    assert_eq!(
        branches(&fwd),
        map(&[
            ("busy", "ward-voicemail"),
            ("failed", "ward-voicemail"),
            ("no_answer", "ward-voicemail"),
        ])
    );
    let unanswered = w.decide(&result(&first, &fwd, ActionResult::NoAnswer));
    assert_eq!(unanswered.actions, vec![ward_voicemail()]);
    let answered = w.decide(&result(&first, &fwd, ActionResult::Success));
    assert_eq!(answered.actions, vec![hangup(HangupReason::Normal)]);

    let pharmacy = w.decide(&digits(&first, &menu, "3"));
    assert_eq!(pharmacy.actions, vec![connect_one("+46101110020", 25)]);
    assert_eq!(pharmacy.next, None);
}

#[test]
fn an_event_after_a_voicemail_or_hangup_node_hangs_up() {
    let w = World::new();
    for node in ["ward-voicemail", "end"] {
        let st = CallState {
            call_id: CALL.into(),
            number: PBX.into(),
            node: node.into(),
            entered_at: now().timestamp(),
            issued_at: now().timestamp(),
            steps: 5,
        };
        let req = DecisionRequest {
            event: Event::ActionResult,
            node: Some(node.into()),
            state: Some(w.sign(&st)),
            result: Some(ActionResult::Success),
            ..pbx_call()
        };
        let d = w.decide(&req);
        assert_eq!(d.actions, vec![hangup(HangupReason::Normal)], "{node}");
        assert_eq!(d.next, None);
    }
}

// ---------------------------------------------------------------------------------------------
// State tokens

fn assert_restarted(d: &Decision, note: &str) {
    assert_flow_start(d);
    assert_eq!(d.notes, vec![format!("{note}; restarting the call flow")]);
}

#[test]
fn a_tampered_token_restarts_the_flow() {
    let w = World::new();
    let (first, menu) = at_menu(&w);
    let mut req = digits(&first, &menu, "1");
    // Claim the call is already in the ward's ring group, keeping the menu's signature.
    let token = req.state.clone().expect("state");
    let (payload, sig) = token.split_once('.').expect("two parts");
    let forged_state = CallState {
        node: "ward".into(),
        ..w.state(&menu, now())
    };
    let forged = w.sign(&forged_state);
    let (forged_payload, _) = forged.split_once('.').expect("two parts");
    assert_ne!(payload, forged_payload);
    req.state = Some(format!("{forged_payload}.{sig}"));
    assert_restarted(&w.decide(&req), "state token signature does not match");

    req.state = Some(TokenKey::new(b"another key").sign(&forged_state));
    assert_restarted(&w.decide(&req), "state token signature does not match");

    req.state = Some("not a token".into());
    assert_restarted(&w.decide(&req), "state token is malformed");
}

#[test]
fn an_expired_token_restarts_the_flow() {
    let w = World::new();
    let (first, menu) = at_menu(&w);
    let req = digits(&first, &menu, "1");
    let just_in_time = now() + chrono::Duration::seconds(MAX_AGE);
    assert_eq!(w.decide_at(just_in_time, &req).actions, vec![ward_ring()]);
    let too_late = just_in_time + chrono::Duration::seconds(1);
    assert_restarted(&w.decide_at(too_late, &req), "state token expired");
}

#[test]
fn another_calls_token_restarts_the_flow() {
    let w = World::new();
    let (first, menu) = at_menu(&w);
    let req = DecisionRequest {
        call_id: "call-2".into(),
        ..digits(&first, &menu, "1")
    };
    let d = w.decide(&req);
    assert_restarted(&d, "state token belongs to another call");
    // The restarted flow is the new call's own.
    let st = w
        .key
        .verify(
            &d.next.as_ref().expect("next").state,
            "call-2",
            now().timestamp(),
            MAX_AGE,
        )
        .expect("verifies for call-2");
    assert_eq!(st.steps, 1);
}

#[test]
fn a_follow_up_without_a_token_restarts_the_flow() {
    let w = World::new();
    let (first, menu) = at_menu(&w);
    let req = DecisionRequest {
        state: None,
        ..digits(&first, &menu, "1")
    };
    let d = w.decide(&req);
    assert_flow_start(&d);
    assert_eq!(
        d.notes,
        vec!["no state token on a follow-up event; restarting the call flow".to_owned()]
    );
}

#[test]
fn a_node_removed_under_a_live_call_restarts_the_flow() {
    let mut w = World::new();
    let (first, menu) = at_menu(&w);
    let ringing = w.decide(&digits(&first, &menu, "1"));
    let cfg = w.routing.pbxes.get_mut(PBX).expect("pbx");
    cfg.flow.nodes.remove("ward");
    cfg.flow.nodes.insert(
        "main-menu".into(),
        Node::Menu {
            prompt: say("For the ward, press 1."),
            max_digits: 1,
            timeout_secs: 5,
            repeats: 2,
            finish_key: Some("#".into()),
            options: BTreeMap::from([("0".to_owned(), "switchboard".to_owned())]),
            invalid: "main-menu".into(),
            no_input: "switchboard".into(),
        },
    );
    let d = w.decide(&result(&first, &ringing, ActionResult::Busy));
    assert_flow_start(&d);
    assert_eq!(
        d.notes,
        vec!["node `ward` no longer exists; flow restarted".to_owned()]
    );
    // The step count carries on from the call, not from 1.
    assert_eq!(w.state(&d, now()).steps, 3);
}

// ---------------------------------------------------------------------------------------------
// Bounds and fallbacks

fn assert_pbx_fallback(d: &Decision, note: &str) {
    assert_eq!(d.actions, vec![connect_one(PBX_FALLBACK, 30)]);
    assert_eq!(d.next, None);
    assert_eq!(d.source, Source::StaticFallback);
    assert_eq!(d.snapshot_version, VERSION);
    assert_eq!(d.notes, vec![note.to_owned()]);
}

#[test]
fn the_step_bound_ends_a_runaway_call_in_the_fallback() {
    let w = World::new();
    let (first, menu) = at_menu(&w);
    let near_limit = CallState {
        steps: 199,
        ..w.state(&menu, now())
    };
    let req = DecisionRequest {
        state: Some(w.sign(&near_limit)),
        ..digits(&first, &menu, "7")
    };
    // Step 200 is still answered; its token, fed back, is over the bound.
    let d = w.decide(&req);
    assert_eq!(d.actions, vec![main_menu_action()]);
    assert_eq!(w.state(&d, now()).steps, 200);
    let over = w.decide(&digits(&first, &d, "7"));
    assert_pbx_fallback(&over, "call exceeded the step limit");
}

#[test]
fn a_deadline_already_past_answers_the_static_fallback() {
    let mut w = World::new();
    w.deadline = Some(Deadline(
        Instant::now()
            .checked_sub(Duration::from_millis(1))
            .unwrap_or_else(Instant::now),
    ));
    assert_pbx_fallback(&w.decide(&pbx_call()), OVER_BUDGET);

    w.routing
        .subscribers
        .insert(SUB.to_owned(), subscriber(MobileRules::default()));
    let d = w.decide(&mobile_call());
    assert_eq!(d.actions, vec![connect_one(SUB_FALLBACK, 30)]);
    assert_eq!(d.source, Source::StaticFallback);
    assert_eq!(d.notes, vec![OVER_BUDGET.to_owned()]);

    // A deadline in the future leaves the answer alone.
    w.deadline = Some(Deadline(Instant::now() + Duration::from_mins(1)));
    assert_flow_start(&w.decide(&pbx_call()));
}

/// Spent after a number of checks: shows where the engine looks at its budget, with no clock.
struct Checks {
    left: std::cell::Cell<u32>,
    seen: std::cell::Cell<u32>,
}

impl Budget for Checks {
    fn spent(&self) -> bool {
        self.seen.set(self.seen.get() + 1);
        let left = self.left.get();
        self.left.set(left.saturating_sub(1));
        left == 0
    }
}

#[test]
fn the_budget_is_checked_between_nodes_and_cuts_a_chain_short() {
    // A chain of announcements: with the budget never spent the answer walks it to the end, and
    // the engine asked once per node.
    let a = |next: &str| Node::Announcement {
        prompt: say("step"),
        next: next.into(),
    };
    let nodes: BTreeMap<String, Node> = (0..5)
        .map(|i| (format!("n{i}"), a(&format!("n{}", i + 1))))
        .chain([(
            "n5".to_owned(),
            Node::Hangup {
                reason: HangupReason::Normal,
            },
        )])
        .collect();
    let w = World::with_pbx(PbxConfig {
        fallback_target: PBX_FALLBACK.into(),
        flow: Flow {
            entry: "n0".into(),
            timezone: "Europe/Stockholm".into(),
            nodes,
        },
    });
    let plenty = Checks {
        left: std::cell::Cell::new(u32::MAX),
        seen: std::cell::Cell::new(0),
    };
    let ctx = Ctx {
        budget: Some(&plenty),
        ..w.ctx(now())
    };
    let whole = decide(&ctx, &pbx_call());
    assert_eq!(whole.source, Source::Live);
    assert_eq!(
        plenty.seen.get(),
        7,
        "once on entry and once before each of the six nodes"
    );
    // Spent after the first two checks: the answer is the static fallback, not half a chain.
    let short = Checks {
        left: std::cell::Cell::new(2),
        seen: std::cell::Cell::new(0),
    };
    let ctx = Ctx {
        budget: Some(&short),
        ..w.ctx(now())
    };
    assert_pbx_fallback(&decide(&ctx, &pbx_call()), OVER_BUDGET);
    assert_eq!(short.seen.get(), 3, "stops at the first spent check");
}

#[test]
fn a_loop_of_announcements_stops_at_the_inline_bound() {
    let a = |next: &str| Node::Announcement {
        prompt: say("again"),
        next: next.into(),
    };
    let w = World::with_pbx(PbxConfig {
        flow: Flow {
            entry: "a".into(),
            timezone: "Europe/Stockholm".into(),
            nodes: BTreeMap::from([("a".to_owned(), a("b")), ("b".to_owned(), a("a"))]),
        },
        fallback_target: PBX_FALLBACK.into(),
    });
    assert_pbx_fallback(
        &w.decide(&pbx_call()),
        "flow evaluated too many nodes without waiting for the caller",
    );
}

#[test]
fn an_edge_to_a_missing_node_answers_the_fallback() {
    let mut cfg = hospital();
    cfg.flow.nodes.remove("main-menu");
    let w = World::with_pbx(cfg);
    assert_pbx_fallback(
        &w.decide(&pbx_call()),
        "flow references missing node `main-menu`",
    );
}

#[test]
fn unknown_numbers_get_the_emergency_target_or_their_call_type_default() {
    let mut w = World::new();
    let unknown_pbx = started(CallType::Pbx, "+46109999999");
    let d = w.decide(&unknown_pbx);
    assert_eq!(d.actions, vec![hangup(HangupReason::Busy)]);
    assert_eq!(d.source, Source::StaticFallback);
    assert_eq!(
        d.notes,
        vec!["no flow configured for this PBX number".to_owned()]
    );

    w.emergency = Some("+46112".into());
    assert_eq!(
        w.decide(&unknown_pbx).actions,
        vec![connect_one("+46112", 30)]
    );

    // static_fallback on its own: configured numbers use their own target first.
    let ctx = w.ctx(now());
    let own = static_fallback(&ctx, &pbx_call(), "why");
    assert_eq!(own.actions, vec![connect_one(PBX_FALLBACK, 30)]);
    assert_eq!(own.notes, vec!["why".to_owned()]);
    // An unknown mobile subscriber is let through, emergency target or not.
    let mobile = static_fallback(&ctx, &started(CallType::Mobile, "+46709999999"), "why");
    assert_eq!(mobile.actions, vec![Action::Continue]);
    assert_eq!(mobile.source, Source::StaticFallback);
}

// ---------------------------------------------------------------------------------------------
// Mobile

#[test]
fn an_unknown_subscriber_and_outbound_calls_continue() {
    let w = World::with_subscriber(MobileRules {
        block: vec![CALLER.into()],
        ..MobileRules::default()
    });
    let unknown = w.decide(&started(CallType::Mobile, "+46709999999"));
    assert_eq!(unknown.actions, vec![Action::Continue]);
    assert_eq!(unknown.source, Source::Live);
    assert_eq!(
        unknown.notes,
        vec!["no rules for this subscriber; call continues".to_owned()]
    );
    let outbound = DecisionRequest {
        direction: Direction::Outbound,
        ..mobile_call()
    };
    let d = w.decide(&outbound);
    assert_eq!(d.actions, vec![Action::Continue]);
    assert_eq!(d.next, None);
}

#[test]
fn blocked_callers_are_rejected_by_number_or_prefix() {
    for pattern in [CALLER, "+4670000*"] {
        let w = World::with_subscriber(MobileRules {
            block: vec![pattern.into()],
            forward_unconditional: Some("+46705550000".into()),
            ..MobileRules::default()
        });
        let d = w.decide(&mobile_call());
        assert_eq!(d.actions, vec![hangup(HangupReason::Reject)], "{pattern}");
        assert_eq!(d.next, None);
        let other = DecisionRequest {
            from: "+46711111111".into(),
            ..mobile_call()
        };
        assert_eq!(
            w.decide(&other).actions,
            vec![connect_one("+46705550000", 30)],
            "{pattern}"
        );
    }
}

#[test]
fn unconditional_forwarding_connects_at_once() {
    let w = World::with_subscriber(MobileRules {
        forward_unconditional: Some("+46705550000".into()),
        forward_busy: Some("+46705550002".into()),
        ..MobileRules::default()
    });
    let d = w.decide(&mobile_call());
    assert_eq!(d.actions, vec![connect_one("+46705550000", 30)]);
    assert_eq!(d.next, None);
}

#[test]
fn no_rules_that_apply_lets_the_call_through_without_a_next_step() {
    let w = World::with_subscriber(MobileRules::default());
    let d = w.decide(&mobile_call());
    assert_eq!(d.actions, vec![Action::Continue]);
    assert_eq!(d.next, None);
    assert!(d.notes.is_empty());
}

#[test]
fn busy_and_no_answer_forwarding_round_trip_through_the_token() {
    let w = World::with_subscriber(MobileRules {
        forward_busy: Some("+46705550002".into()),
        forward_no_answer: Some("+46705550003".into()),
        ..MobileRules::default()
    });
    let first = mobile_call();
    let d = w.decide(&first);
    assert_eq!(d.actions, vec![Action::Continue]);
    assert_eq!(next_node(&d), Some("mobile"));
    assert_eq!(
        branches(&d),
        map(&[("busy", "+46705550002"), ("no_answer", "+46705550003")])
    );
    let st = w.state(&d, now());
    assert_eq!(
        (st.number.as_str(), st.node.as_str(), st.steps),
        (SUB, "mobile", 1)
    );

    let busy = w.decide(&result(&first, &d, ActionResult::Busy));
    assert_eq!(busy.actions, vec![connect_one("+46705550002", 30)]);
    assert_eq!(busy.next, None);
    for r in [ActionResult::NoAnswer, ActionResult::Timeout] {
        let na = w.decide(&result(&first, &d, r));
        assert_eq!(na.actions, vec![connect_one("+46705550003", 30)], "{r:?}");
    }
    let answered = w.decide(&result(&first, &d, ActionResult::Success));
    assert_eq!(answered.actions, vec![hangup(HangupReason::Normal)]);

    // Without a valid token the result is not trusted: the call is decided afresh.
    let tampered = DecisionRequest {
        state: Some("x.y".into()),
        ..result(&first, &d, ActionResult::Busy)
    };
    let again = w.decide(&tampered);
    assert_eq!(again.actions, vec![Action::Continue]);
    assert_eq!(next_node(&again), Some("mobile"));
    assert_eq!(
        again.notes,
        vec!["state token is malformed; restarting the call flow".to_owned()]
    );
}

#[test]
fn only_busy_forwarding_hangs_up_on_no_answer() {
    let w = World::with_subscriber(MobileRules {
        forward_busy: Some("+46705550002".into()),
        ..MobileRules::default()
    });
    let first = mobile_call();
    let d = w.decide(&first);
    assert_eq!(branches(&d), map(&[("busy", "+46705550002")]));
    let na = w.decide(&result(&first, &d, ActionResult::NoAnswer));
    assert_eq!(na.actions, vec![hangup(HangupReason::Normal)]);
}

fn dnd_rules(to_voicemail: bool, mailbox: Option<&str>) -> MobileRules {
    MobileRules {
        forward_unconditional: Some("+46705550000".into()),
        do_not_disturb: Some(DoNotDisturb {
            timezone: "Europe/Stockholm".into(),
            start: hm(22, 0),
            end: hm(7, 0),
            allow: vec!["+46700000042".into()],
            to_voicemail,
        }),
        mailbox: mailbox.map(Into::into),
        ..MobileRules::default()
    }
}

#[test]
fn do_not_disturb_sends_callers_to_voicemail_except_the_allow_list() {
    let w = World::with_subscriber(dnd_rules(true, Some("anna")));
    // 23:30 and 06:30 in Stockholm (CET): inside the window that wraps midnight.
    for t in ["2026-11-18T22:30:00Z", "2026-11-19T05:30:00Z"] {
        let d = w.decide_at(at(t), &mobile_call());
        assert_eq!(
            d.actions,
            vec![Action::Voicemail {
                mailbox: "anna".into(),
                greeting: None
            }],
            "{t}"
        );
        assert_eq!(d.next, None);
        let allowed = DecisionRequest {
            from: "+46700000042".into(),
            ..mobile_call()
        };
        assert_eq!(
            w.decide_at(at(t), &allowed).actions,
            vec![connect_one("+46705550000", 30)],
            "{t}"
        );
    }
    // 07:00 local is outside (the end is exclusive), as is midday.
    for t in ["2026-11-19T06:00:00Z", "2026-11-18T11:00:00Z"] {
        let d = w.decide_at(at(t), &mobile_call());
        assert_eq!(d.actions, vec![connect_one("+46705550000", 30)], "{t}");
    }
}

#[test]
fn do_not_disturb_without_voicemail_answers_busy() {
    for rules in [dnd_rules(false, Some("anna")), dnd_rules(true, None)] {
        let w = World::with_subscriber(rules);
        let d = w.decide_at(at("2026-11-18T22:30:00Z"), &mobile_call());
        assert_eq!(d.actions, vec![hangup(HangupReason::Busy)]);
    }
}

#[test]
fn blocking_wins_over_the_do_not_disturb_allow_list() {
    let mut rules = dnd_rules(true, Some("anna"));
    rules.block = vec!["+46700000042".into()];
    let w = World::with_subscriber(rules);
    let req = DecisionRequest {
        from: "+46700000042".into(),
        ..mobile_call()
    };
    let d = w.decide_at(at("2026-11-18T22:30:00Z"), &req);
    assert_eq!(d.actions, vec![hangup(HangupReason::Reject)]);
}
