//! The webhook contract's types: what the telephony platform sends (a [`DecisionRequest`]) and
//! what it gets back (a [`Decision`]), plus the routing snapshot the engine reads.

use std::collections::{BTreeMap, HashMap};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::model::{HangupReason, PbxConfig, Prompt, RingStrategy, SubscriberConfig};

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
