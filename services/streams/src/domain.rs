//! Pure rules of the stream guard: input validation and the meaning of an admission result. No
//! I/O here (settings are read in `settings`); the decision itself runs in PostgreSQL (see
//! `store`, `streams.admit_v2`), because only the database sees every replica's sessions.

use chrono::{DateTime, Utc};
use kit::Validator;
use uuid::Uuid;

/// Limits a user's `max_streams` may be set to.
pub const LIMIT_RANGE: std::ops::RangeInclusive<i32> = 1..=20;
/// Longest accepted user, device or content id.
pub const MAX_ID_LEN: usize = 128;

/// Checks an opaque external id (user, device, content): 1..=128 characters from a conservative
/// set, so ids are safe in URLs, logs and metrics exemplars.
pub fn check_id(v: &mut Validator, value: &str, field: &str) {
    if value.is_empty() {
        v.push(field, "must not be empty");
    } else if value.len() > MAX_ID_LEN {
        v.push(field, format!("must be at most {MAX_ID_LEN} characters"));
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'))
    {
        v.push(field, "may contain only letters, digits and - _ . : @");
    }
}

/// A live stream session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub session_id: Uuid,
    pub user_id: String,
    pub device_id: String,
    pub content_id: String,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What the admission function decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Admitted(Session),
    /// A retry of a start that already succeeded: the same session, no new slot.
    Replayed(Session),
    /// The user is at `limit`; `active` are the sessions holding the slots.
    Rejected {
        limit: i32,
        active: Vec<Session>,
    },
    /// The Idempotency-Key already names a live session of another device or content.
    KeyReused(Session),
}

impl Admission {
    /// The label of `streams_admissions_total{outcome}`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Admitted(_) => "admitted",
            Self::Replayed(_) => "idempotent_replay",
            Self::Rejected { .. } => "rejected_limit",
            Self::KeyReused(_) => "idempotency_conflict",
        }
    }
}

/// One row returned by `streams.admit_v2`.
#[derive(Debug, Clone)]
pub struct AdmitRow {
    pub outcome: String,
    pub max_streams: i32,
    pub session: Session,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdmitError {
    #[error("admission returned no rows")]
    Empty,
    #[error("admission returned unknown outcome {0:?}")]
    UnknownOutcome(String),
}

/// Interprets the rows of one admission call.
pub fn interpret(rows: Vec<AdmitRow>) -> Result<Admission, AdmitError> {
    let first = rows.first().ok_or(AdmitError::Empty)?;
    match first.outcome.as_str() {
        "admitted" | "idempotent_replay" => {
            let replay = first.outcome == "idempotent_replay";
            let session = rows.into_iter().next().ok_or(AdmitError::Empty)?.session;
            Ok(if replay {
                Admission::Replayed(session)
            } else {
                Admission::Admitted(session)
            })
        }
        "idempotency_conflict" => Ok(Admission::KeyReused(
            rows.into_iter().next().ok_or(AdmitError::Empty)?.session,
        )),
        "rejected_limit" => Ok(Admission::Rejected {
            limit: first.max_streams,
            active: rows.into_iter().map(|r| r.session).collect(),
        }),
        other => Err(AdmitError::UnknownOutcome(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(n: u128) -> Session {
        Session {
            session_id: Uuid::from_u128(n),
            user_id: "u1".into(),
            device_id: format!("d{n}"),
            content_id: "c".into(),
            started_at: DateTime::UNIX_EPOCH,
            expires_at: DateTime::UNIX_EPOCH,
        }
    }

    fn row(outcome: &str, n: u128) -> AdmitRow {
        AdmitRow {
            outcome: outcome.into(),
            max_streams: 3,
            session: session(n),
        }
    }

    #[test]
    fn interprets_each_outcome() {
        assert_eq!(
            interpret(vec![row("admitted", 1)]),
            Ok(Admission::Admitted(session(1)))
        );
        assert_eq!(
            interpret(vec![row("idempotent_replay", 2)]),
            Ok(Admission::Replayed(session(2)))
        );
        let rejected = interpret(vec![
            row("rejected_limit", 1),
            row("rejected_limit", 2),
            row("rejected_limit", 3),
        ])
        .expect("valid");
        assert_eq!(rejected.outcome(), "rejected_limit");
        assert!(
            matches!(rejected, Admission::Rejected { limit: 3, ref active } if active.len() == 3)
        );
        assert_eq!(
            interpret(vec![row("idempotency_conflict", 4)]),
            Ok(Admission::KeyReused(session(4)))
        );
        assert_eq!(interpret(vec![]), Err(AdmitError::Empty));
        assert!(matches!(
            interpret(vec![row("maybe", 1)]),
            Err(AdmitError::UnknownOutcome(_))
        ));
    }

    #[test]
    fn validates_ids() {
        let mut v = Validator::new();
        check_id(&mut v, "user-42@tenant.a:b_c", "user_id");
        assert!(v.finish().is_ok());
        for bad in [
            "",
            "has space",
            "ünïcode",
            &"x".repeat(129),
            "semi;colon",
            "a/b",
        ] {
            let mut v = Validator::new();
            check_id(&mut v, bad, "user_id");
            let err = v.finish().expect_err(bad);
            assert_eq!(err.errors[0].field, "user_id");
        }
    }
}
