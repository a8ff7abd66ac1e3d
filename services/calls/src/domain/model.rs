//! Routing configuration: per-subscriber mobile rules and per-number PBX flow graphs.
//!
//! These types are both the admin API's request bodies and what the in-memory snapshot holds, so
//! what is validated on write is exactly what the hot path reads.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveTime, Weekday};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What to play: a recording URL or text to speak.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Prompt {
    /// URL of a recording the telephony platform fetches: `http(s)://`, at most 2,048 characters.
    Url(String),
    /// Text to speak (text-to-speech): at most 1,000 characters; line breaks allowed.
    Say(String),
}

/// Weekly opening hours: on `days`, from `open` until `close` (local time of the flow).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeeklyHours {
    #[schemars(with = "Vec<String>")]
    pub days: Vec<Weekday>,
    /// `HH:MM`, inclusive.
    #[schemars(with = "String")]
    pub open: NaiveTime,
    /// `HH:MM`, exclusive; `24:00` is written `23:59:59`.
    #[schemars(with = "String")]
    pub close: NaiveTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RingStrategy {
    Simultaneous,
    Sequential,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HangupReason {
    /// Normal end of call.
    Normal,
    /// Busy tone.
    Busy,
    /// Reject (the caller hears the network's rejection).
    Reject,
}

/// One node of a PBX flow graph. Edges are node ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Node {
    /// Plays a prompt, then continues at `next`.
    Announcement { prompt: Prompt, next: String },
    /// Asks for digits. `options` maps the entered digits to a node; anything else goes to
    /// `invalid`, silence (after `repeats` replays) to `no_input`.
    Menu {
        prompt: Prompt,
        #[serde(default = "one")]
        max_digits: u8,
        #[serde(default = "five")]
        timeout_secs: u16,
        #[serde(default = "two")]
        repeats: u8,
        #[serde(default)]
        finish_key: Option<String>,
        options: BTreeMap<String, String>,
        invalid: String,
        no_input: String,
    },
    /// Rings members; `no_answer` when nobody answers (or all are busy and `busy` is unset).
    RingGroup {
        members: Vec<String>,
        strategy: RingStrategy,
        #[serde(default = "twenty")]
        member_timeout_secs: u16,
        #[serde(default)]
        caller_id: Option<String>,
        no_answer: String,
        #[serde(default)]
        busy: Option<String>,
    },
    /// Branches on opening hours in `timezone` (IANA) and holiday dates.
    TimeCondition {
        hours: Vec<WeeklyHours>,
        #[serde(default)]
        holidays: Vec<NaiveDate>,
        open: String,
        closed: String,
    },
    /// Queues the caller; after `max_wait_secs` without an agent, continues at `overflow`.
    Queue {
        queue: String,
        #[serde(default = "yes")]
        announce_position: bool,
        max_wait_secs: u32,
        overflow: String,
    },
    /// Leaves a message. Ends the flow.
    Voicemail {
        mailbox: String,
        #[serde(default)]
        greeting: Option<Prompt>,
    },
    /// Connects to one number. Ends the flow unless `no_answer` is set.
    Forward {
        target: String,
        #[serde(default = "twenty")]
        timeout_secs: u16,
        #[serde(default)]
        no_answer: Option<String>,
    },
    /// Ends the call.
    Hangup { reason: HangupReason },
}

fn one() -> u8 {
    1
}
fn two() -> u8 {
    2
}
fn five() -> u16 {
    5
}
fn twenty() -> u16 {
    20
}
fn yes() -> bool {
    true
}

/// A PBX number's call flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    /// Node every call starts at.
    pub entry: String,
    /// IANA time zone for time conditions, e.g. `Europe/Stockholm`.
    pub timezone: String,
    /// At most 1,000 nodes, keyed by id (1..=64 characters, no control characters). The other
    /// caps are listed in docs/calls.md ("Validation caps").
    pub nodes: BTreeMap<String, Node>,
}

/// Admin body for a PBX number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PbxConfig {
    pub flow: Flow,
    /// Where calls go when the service cannot decide in time (watchdog) or the flow is broken.
    pub fallback_target: String,
}

/// Do-not-disturb hours of a mobile subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DoNotDisturb {
    pub timezone: String,
    #[schemars(with = "String")]
    pub start: NaiveTime,
    #[schemars(with = "String")]
    pub end: NaiveTime,
    /// Callers that always get through.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Send callers to voicemail during DND (else they hear busy).
    #[serde(default)]
    pub to_voicemail: bool,
}

/// Call handling rules of a mobile subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MobileRules {
    /// Caller numbers (or prefixes ending in `*`) that are rejected.
    #[serde(default)]
    pub block: Vec<String>,
    #[serde(default)]
    pub forward_unconditional: Option<String>,
    #[serde(default)]
    pub forward_busy: Option<String>,
    #[serde(default)]
    pub forward_no_answer: Option<String>,
    #[serde(default)]
    pub do_not_disturb: Option<DoNotDisturb>,
    /// Voicemail box used by DND.
    #[serde(default)]
    pub mailbox: Option<String>,
}

/// Admin body for a mobile subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriberConfig {
    pub rules: MobileRules,
    /// Where calls go when the service cannot decide in time.
    pub fallback_target: String,
}
