//! Pure rules: the events, the playlist state they fold into, the commands' decisions, the
//! analytics steps and the rotation rule. No SQL, HTTP, environment or clock reads: the time is
//! always an argument.

pub mod cohort;
pub mod rotation;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest playlist name.
pub const MAX_NAME_LEN: usize = 100;
/// Longest free-text note on a removal.
pub const MAX_NOTE_LEN: usize = 500;
/// Longest id (user, lesson).
pub const MAX_ID_LEN: usize = 64;

/// Why a learner removed a lesson from a playlist.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Mastered,
    TooHard,
    TooEasy,
    Bored,
    NotMyStyle,
    /// Needs a `note`.
    Other,
}

impl Reason {
    pub const ALL: [Reason; 6] = [
        Reason::Mastered,
        Reason::TooHard,
        Reason::TooEasy,
        Reason::Bored,
        Reason::NotMyStyle,
        Reason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Mastered => "mastered",
            Reason::TooHard => "too_hard",
            Reason::TooEasy => "too_easy",
            Reason::Bored => "bored",
            Reason::NotMyStyle => "not_my_style",
            Reason::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Where a share link was posted (the utm_source of the link).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Twitter,
    Facebook,
    Whatsapp,
    CopyLink,
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::Twitter,
        Channel::Facebook,
        Channel::Whatsapp,
        Channel::CopyLink,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Twitter => "twitter",
            Channel::Facebook => "facebook",
            Channel::Whatsapp => "whatsapp",
            Channel::CopyLink => "copy_link",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A domain event: what `playlists.events.payload` holds (`type` is the tag).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    PlaylistCreated {
        playlist_id: Uuid,
        name: String,
        /// The new default playlist (the user's previous default, if any, stops being it).
        default: bool,
    },
    PlaylistRenamed {
        playlist_id: Uuid,
        name: String,
    },
    LessonAdded {
        playlist_id: Uuid,
        lesson_id: String,
        position: u32,
    },
    LessonMoved {
        playlist_id: Uuid,
        lesson_id: String,
        position: u32,
    },
    LessonRemoved {
        playlist_id: Uuid,
        lesson_id: String,
        reason: Reason,
        note: Option<String>,
    },
    PlaylistDeleted {
        playlist_id: Uuid,
        /// The playlist that becomes the default (decided by the command, so a replay needs
        /// no other state).
        next_default: Option<Uuid>,
    },
    ShareCreated {
        playlist_id: Uuid,
        share_id: Uuid,
        /// Hex SHA-256 of the token (the token itself is never stored).
        token_sha256: String,
        channel: Channel,
        expires_at: Option<DateTime<Utc>>,
    },
    ShareRevoked {
        playlist_id: Uuid,
        share_id: Uuid,
    },
    ShareOpened {
        playlist_id: Uuid,
        share_id: Uuid,
        channel: Channel,
    },
    PracticeRecorded {
        session_id: Uuid,
        lesson_id: String,
        accuracy: f32,
        duration_secs: u32,
        at: DateTime<Utc>,
    },
}

impl Event {
    /// The `type` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::PlaylistCreated { .. } => "playlist_created",
            Event::PlaylistRenamed { .. } => "playlist_renamed",
            Event::LessonAdded { .. } => "lesson_added",
            Event::LessonMoved { .. } => "lesson_moved",
            Event::LessonRemoved { .. } => "lesson_removed",
            Event::PlaylistDeleted { .. } => "playlist_deleted",
            Event::ShareCreated { .. } => "share_created",
            Event::ShareRevoked { .. } => "share_revoked",
            Event::ShareOpened { .. } => "share_opened",
            Event::PracticeRecorded { .. } => "practice_recorded",
        }
    }

    /// The `aggregate` column: the playlist, or the practice session.
    pub fn aggregate(&self) -> Uuid {
        match self {
            Event::PlaylistCreated { playlist_id, .. }
            | Event::PlaylistRenamed { playlist_id, .. }
            | Event::LessonAdded { playlist_id, .. }
            | Event::LessonMoved { playlist_id, .. }
            | Event::LessonRemoved { playlist_id, .. }
            | Event::PlaylistDeleted { playlist_id, .. }
            | Event::ShareCreated { playlist_id, .. }
            | Event::ShareRevoked { playlist_id, .. }
            | Event::ShareOpened { playlist_id, .. } => *playlist_id,
            Event::PracticeRecorded { session_id, .. } => *session_id,
        }
    }

    /// What the event says about its user's activity (the retention analytics): a share link
    /// opened by someone else is not the owner's activity.
    pub fn activity(&self) -> Activity {
        match self {
            Event::ShareOpened { .. } => Activity::None,
            Event::PracticeRecorded { .. } => Activity::Practice,
            _ => Activity::PlaylistUse,
        }
    }
}

/// The activity an event stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    None,
    /// Active, without the playlist feature.
    Practice,
    /// Active, using playlists.
    PlaylistUse,
}

/// One stored event (a row of `playlists.events`).
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub id: i64,
    pub user_id: String,
    pub occurred_at: DateTime<Utc>,
    pub event: Event,
}

/// One lesson of a playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub lesson_id: String,
    pub added_at: DateTime<Utc>,
}

/// A playlist as the events fold it (the read model's row and its items, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Playlist {
    pub id: Uuid,
    pub user_id: String,
    pub name: String,
    pub is_default: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub items: Vec<Item>,
}

impl Playlist {
    pub fn position(&self, lesson_id: &str) -> Option<usize> {
        self.items.iter().position(|i| i.lesson_id == lesson_id)
    }
}

/// The default flag of `p` moved by another playlist's event (a new default created, the
/// default deleted and `p` named next): its representation changed, so its version (the ETag)
/// and `updated_at` move too, and an edit sent with the ETag read before gets 412. The live
/// projection (`store::apply`) does the same in SQL.
#[must_use]
pub fn set_default(mut p: Playlist, is_default: bool, at: DateTime<Utc>) -> Playlist {
    if p.is_default != is_default {
        p.is_default = is_default;
        p.version += 1;
        p.updated_at = at;
    }
    p
}

/// Folds one event into its playlist. `None` is "no such playlist" (before its creation, after
/// its deletion). Events of other aggregates, and share/practice events, leave it as it is
/// (sharing does not change the playlist's version). The default flag of *other* playlists is
/// the caller's concern ([`Event::PlaylistCreated`] with `default`, [`Event::PlaylistDeleted`]
/// with `next_default`).
pub fn apply(
    state: Option<Playlist>,
    user_id: &str,
    at: DateTime<Utc>,
    e: &Event,
) -> Option<Playlist> {
    let bump = |mut p: Playlist| {
        p.version += 1;
        p.updated_at = at;
        p
    };
    match (state, e) {
        (
            None,
            Event::PlaylistCreated {
                playlist_id,
                name,
                default,
            },
        ) => Some(Playlist {
            id: *playlist_id,
            user_id: user_id.to_owned(),
            name: name.clone(),
            is_default: *default,
            version: 1,
            created_at: at,
            updated_at: at,
            items: Vec::new(),
        }),
        (Some(mut p), Event::PlaylistRenamed { name, .. }) => {
            p.name.clone_from(name);
            Some(bump(p))
        }
        (
            Some(mut p),
            Event::LessonAdded {
                lesson_id,
                position,
                ..
            },
        ) => {
            let at_pos = (*position as usize).min(p.items.len());
            p.items.insert(
                at_pos,
                Item {
                    lesson_id: lesson_id.clone(),
                    added_at: at,
                },
            );
            Some(bump(p))
        }
        (
            Some(mut p),
            Event::LessonMoved {
                lesson_id,
                position,
                ..
            },
        ) => {
            if let Some(from) = p.position(lesson_id) {
                let item = p.items.remove(from);
                let to = (*position as usize).min(p.items.len());
                p.items.insert(to, item);
            }
            Some(bump(p))
        }
        (Some(mut p), Event::LessonRemoved { lesson_id, .. }) => {
            p.items.retain(|i| &i.lesson_id != lesson_id);
            Some(bump(p))
        }
        (Some(_), Event::PlaylistDeleted { .. }) => None,
        (state, _) => state,
    }
}

/// Why a command is refused (the API maps each to its status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 412: the client's If-Match is not the current version.
    Stale { current: i64 },
    /// 409: the lesson is in the playlist already.
    Duplicate,
    /// 409: the playlist holds `max` lessons.
    Full { max: usize },
    /// 404: the lesson is not in the playlist.
    NotInPlaylist,
    /// 400 naming the field.
    Invalid {
        field: &'static str,
        message: String,
    },
    /// 409: the user has `max` playlists.
    TooManyPlaylists { max: usize },
}

/// The If-Match check every playlist command makes when the client sends one.
pub fn check_version(p: &Playlist, if_match: Option<i64>) -> Result<(), Refusal> {
    match if_match {
        Some(v) if v != p.version => Err(Refusal::Stale { current: p.version }),
        _ => Ok(()),
    }
}

/// Adding `lesson_id` at `position` (the end by default).
pub fn decide_add(
    p: &Playlist,
    lesson_id: &str,
    position: Option<u32>,
    max_size: usize,
) -> Result<Event, Refusal> {
    if p.position(lesson_id).is_some() {
        return Err(Refusal::Duplicate);
    }
    if p.items.len() >= max_size {
        return Err(Refusal::Full { max: max_size });
    }
    let len = p.items.len() as u32;
    let position = position.unwrap_or(len);
    if position > len {
        return Err(Refusal::Invalid {
            field: "position",
            message: format!("must be 0..={len} (the playlist holds {len} lessons)"),
        });
    }
    Ok(Event::LessonAdded {
        playlist_id: p.id,
        lesson_id: lesson_id.to_owned(),
        position,
    })
}

/// Moving `lesson_id` to `position` (0-based).
pub fn decide_move(p: &Playlist, lesson_id: &str, position: u32) -> Result<Event, Refusal> {
    if p.position(lesson_id).is_none() {
        return Err(Refusal::NotInPlaylist);
    }
    let last = p.items.len().saturating_sub(1) as u32;
    if position > last {
        return Err(Refusal::Invalid {
            field: "position",
            message: format!("must be 0..={last}"),
        });
    }
    Ok(Event::LessonMoved {
        playlist_id: p.id,
        lesson_id: lesson_id.to_owned(),
        position,
    })
}

/// Removing `lesson_id`, with its reason (`other` needs a note).
pub fn decide_remove(
    p: &Playlist,
    lesson_id: &str,
    reason: Reason,
    note: Option<&str>,
) -> Result<Event, Refusal> {
    if p.position(lesson_id).is_none() {
        return Err(Refusal::NotInPlaylist);
    }
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    if reason == Reason::Other && note.is_none() {
        return Err(Refusal::Invalid {
            field: "note",
            message: "is required when the reason is `other`".into(),
        });
    }
    Ok(Event::LessonRemoved {
        playlist_id: p.id,
        lesson_id: lesson_id.to_owned(),
        reason,
        note: note.map(str::to_owned),
    })
}

/// Deleting `p`; when it was the default, the oldest remaining playlist (`others`, in creation
/// order) becomes the default.
pub fn decide_delete(p: &Playlist, others_oldest_first: &[Uuid]) -> Event {
    let next_default = if p.is_default {
        others_oldest_first.iter().find(|id| **id != p.id).copied()
    } else {
        None
    };
    Event::PlaylistDeleted {
        playlist_id: p.id,
        next_default,
    }
}

/// The UTC day of an instant (the removal and share counters' key).
pub fn day(at: DateTime<Utc>) -> NaiveDate {
    at.date_naive()
}

/// The first day of `d`'s month (the key of the monthly removal counts).
pub fn month_start(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

/// The whole calendar months inside the inclusive day range `[from, to]`, as the half-open
/// `[first, end)` of their first days; `None` when no month fits whole. The analytics read
/// these months' rollups and only the days outside them day by day.
pub fn whole_months(from: NaiveDate, to: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
    let first = if from.day() == 1 {
        from
    } else {
        month_start(from).checked_add_months(chrono::Months::new(1))?
    };
    // The first day of the month after the last whole one: `to + 1` if it starts a month.
    let end = month_start(to.succ_opt()?);
    (first < end).then_some((first, end))
}

/// The Monday of an instant's ISO week, UTC (the cohort key).
pub fn week(at: DateTime<Utc>) -> NaiveDate {
    week_of(at.date_naive())
}

/// The Monday of a day's week (the day itself in the first, partial week of chrono's range:
/// checked arithmetic, never a panic).
pub fn week_of(d: NaiveDate) -> NaiveDate {
    d.checked_sub_signed(Duration::days(i64::from(
        d.weekday().num_days_from_monday(),
    )))
    .unwrap_or(d)
}

/// `[start, end)` of a UTC day (the end saturates at chrono's last instant).
pub fn day_bounds(d: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let end = start
        .checked_add_signed(Duration::days(1))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    (start, end)
}

/// The years a time or day input may name (analytics `from`/`to`, a cursor's time, a
/// session's `at`, a share's `expires_at`): PostgreSQL refuses dates before 4713 BC (a 500)
/// and chrono's arithmetic overflows near its ends (a panic), so anything outside is a 400.
pub const MIN_YEAR: i32 = 1970;
pub const MAX_YEAR: i32 = 9999;

/// Whether `d` lies in the years [`MIN_YEAR`]..=[`MAX_YEAR`].
pub fn day_in_years(d: NaiveDate) -> bool {
    (MIN_YEAR..=MAX_YEAR).contains(&d.year())
}

/// Whether `at` lies in the years [`MIN_YEAR`]..=[`MAX_YEAR`] (UTC).
pub fn time_in_years(at: DateTime<Utc>) -> bool {
    day_in_years(at.date_naive())
}

/// The message of a time outside the years.
pub fn years_message() -> String {
    format!("must be between the years {MIN_YEAR} and {MAX_YEAR}")
}

/// Letters, digits and `- _ . :`, 1..=64 (user and lesson ids).
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: u32) -> DateTime<Utc> {
        chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 3, 2, h, 0, 0).unwrap()
    }

    #[test]
    fn days_at_the_ends_of_chrono_do_not_panic_and_fall_outside_the_years() {
        for d in [NaiveDate::MIN, NaiveDate::MAX] {
            let _ = week_of(d);
            let _ = day_bounds(d);
            assert!(!day_in_years(d));
        }
        assert_eq!(week_of(NaiveDate::MIN), NaiveDate::MIN);
        let ok = |y| NaiveDate::from_ymd_opt(y, 1, 1).unwrap();
        assert!(day_in_years(ok(1970)) && day_in_years(ok(9999)));
        assert!(!day_in_years(ok(1969)) && !day_in_years(ok(10_000)));
        assert!(time_in_years(t(0)));
    }

    fn playlist(lessons: &[&str]) -> Playlist {
        let id = Uuid::nil();
        let mut p = apply(
            None,
            "u",
            t(0),
            &Event::PlaylistCreated {
                playlist_id: id,
                name: "p".into(),
                default: true,
            },
        );
        for l in lessons {
            let e = decide_add(p.as_ref().unwrap(), l, None, 20).unwrap();
            p = apply(p, "u", t(1), &e);
        }
        p.unwrap()
    }

    fn order(p: &Playlist) -> Vec<&str> {
        p.items.iter().map(|i| i.lesson_id.as_str()).collect()
    }

    #[test]
    fn add_move_remove_fold_in_order_and_bump_the_version() {
        let p = playlist(&["a", "b", "c"]);
        assert_eq!((order(&p), p.version), (vec!["a", "b", "c"], 4));
        let e = decide_move(&p, "c", 0).unwrap();
        let p = apply(Some(p), "u", t(2), &e).unwrap();
        assert_eq!(order(&p), ["c", "a", "b"]);
        let e = decide_move(&p, "c", 2).unwrap();
        let p = apply(Some(p), "u", t(2), &e).unwrap();
        assert_eq!(order(&p), ["a", "b", "c"]);
        let e = decide_remove(&p, "b", Reason::Bored, None).unwrap();
        let p = apply(Some(p), "u", t(3), &e).unwrap();
        assert_eq!((order(&p), p.version), (vec!["a", "c"], 7));
        let e = decide_add(&p, "z", Some(1), 20).unwrap();
        let p = apply(Some(p), "u", t(3), &e).unwrap();
        assert_eq!(order(&p), ["a", "z", "c"]);
    }

    #[test]
    fn refusals() {
        let p = playlist(&["a", "b"]);
        assert_eq!(decide_add(&p, "a", None, 20), Err(Refusal::Duplicate));
        assert_eq!(decide_add(&p, "c", None, 2), Err(Refusal::Full { max: 2 }));
        assert!(matches!(
            decide_add(&p, "c", Some(3), 20),
            Err(Refusal::Invalid {
                field: "position",
                ..
            })
        ));
        assert_eq!(decide_move(&p, "x", 0), Err(Refusal::NotInPlaylist));
        assert!(matches!(
            decide_move(&p, "a", 2),
            Err(Refusal::Invalid {
                field: "position",
                ..
            })
        ));
        assert!(matches!(
            decide_remove(&p, "a", Reason::Other, Some("  ")),
            Err(Refusal::Invalid { field: "note", .. })
        ));
        assert_eq!(
            check_version(&p, Some(1)),
            Err(Refusal::Stale { current: 3 })
        );
        assert_eq!(check_version(&p, Some(3)), Ok(()));
        assert_eq!(check_version(&p, None), Ok(()));
    }

    #[test]
    fn deleting_the_default_hands_it_to_the_oldest_other() {
        let p = playlist(&[]);
        let other = Uuid::from_u128(7);
        assert_eq!(
            decide_delete(&p, &[p.id, other]),
            Event::PlaylistDeleted {
                playlist_id: p.id,
                next_default: Some(other)
            }
        );
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2026-03-02 is a Monday.
        assert_eq!(week(t(5)), NaiveDate::from_ymd_opt(2026, 3, 2).unwrap());
        let sunday = t(5) + Duration::days(6);
        assert_eq!(week(sunday), NaiveDate::from_ymd_opt(2026, 3, 2).unwrap());
        assert_eq!(
            week(sunday + Duration::days(1)),
            NaiveDate::from_ymd_opt(2026, 3, 9).unwrap()
        );
    }

    #[test]
    fn events_round_trip_through_json_with_their_type() {
        let e = Event::LessonRemoved {
            playlist_id: Uuid::nil(),
            lesson_id: "a".into(),
            reason: Reason::NotMyStyle,
            note: None,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], e.kind());
        assert_eq!(v["reason"], "not_my_style");
        assert_eq!(serde_json::from_value::<Event>(v).unwrap(), e);
    }
    #[test]
    fn whole_months_of_a_day_range() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).expect("date");
        // Jan 6 .. Feb 2 of the next year: Feb .. Jan whole (Feb 1 2026 would need Feb whole).
        assert_eq!(
            whole_months(d(2025, 1, 6), d(2026, 2, 2)),
            Some((d(2025, 2, 1), d(2026, 2, 1)))
        );
        // A range that is exactly one month, and one that ends on a month's last day.
        assert_eq!(
            whole_months(d(2025, 3, 1), d(2025, 3, 31)),
            Some((d(2025, 3, 1), d(2025, 4, 1)))
        );
        assert_eq!(
            whole_months(d(2024, 1, 15), d(2024, 2, 29)),
            Some((d(2024, 2, 1), d(2024, 3, 1)))
        );
        // No whole month: inside one month, or across a boundary without a full month.
        assert_eq!(whole_months(d(2025, 3, 2), d(2025, 3, 31)), None);
        assert_eq!(whole_months(d(2025, 3, 15), d(2025, 4, 14)), None);
        assert_eq!(whole_months(d(2025, 3, 1), d(2025, 3, 30)), None);
        // The ends of the accepted years.
        assert_eq!(
            whole_months(d(9999, 12, 1), d(9999, 12, 31)),
            Some((d(9999, 12, 1), d(10000, 1, 1)))
        );
        assert_eq!(month_start(d(2025, 2, 28)), d(2025, 2, 1));
    }
}
