//! The engagement-vs-retention step: one user's cohort state and the counter deltas one event
//! causes. The live path applies the deltas to `cohort_counts`; the rebuild folds the states in
//! memory and counts them. A test proves both give the same counters.
//!
//! - A user's cohort is the ISO week (Monday, UTC) of their first activity event.
//! - *Engaged*: they used playlists (any playlist or share command) in their cohort week.
//! - *Retained*: they were active (a practice session or a playlist command) in any of the
//!   weeks N+1..N+4.
//!
//! Events are applied in log order; an event dated before the user's cohort week (a late,
//! back-dated write) changes nothing.

use chrono::{Duration, NaiveDate};

use super::Activity;

/// Weeks after the cohort week that count as retention.
pub const RETENTION_WEEKS: i64 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserCohort {
    pub cohort_week: NaiveDate,
    pub engaged: bool,
    pub retained: bool,
}

/// A change to the `(cohort_week, engaged)` counter row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    pub cohort_week: NaiveDate,
    pub engaged: bool,
    pub users: i64,
    pub retained: i64,
}

/// The user's state after an event of `activity` in `week`, and the counter deltas.
pub fn step(
    state: Option<UserCohort>,
    week: NaiveDate,
    activity: Activity,
) -> (Option<UserCohort>, Vec<Delta>) {
    if activity == Activity::None {
        return (state, Vec::new());
    }
    let uses = activity == Activity::PlaylistUse;
    let Some(s) = state else {
        let s = UserCohort {
            cohort_week: week,
            engaged: uses,
            retained: false,
        };
        let d = Delta {
            cohort_week: week,
            engaged: uses,
            users: 1,
            retained: 0,
        };
        return (Some(s), vec![d]);
    };
    let mut n = s;
    let mut deltas = Vec::new();
    if week == s.cohort_week && uses && !s.engaged {
        n.engaged = true;
        let r = i64::from(s.retained);
        deltas.push(Delta {
            cohort_week: s.cohort_week,
            engaged: false,
            users: -1,
            retained: -r,
        });
        deltas.push(Delta {
            cohort_week: s.cohort_week,
            engaged: true,
            users: 1,
            retained: r,
        });
    }
    if !n.retained
        && week > s.cohort_week
        && week <= s.cohort_week + Duration::weeks(RETENTION_WEEKS)
    {
        n.retained = true;
        deltas.push(Delta {
            cohort_week: s.cohort_week,
            engaged: n.engaged,
            users: 0,
            retained: 1,
        });
    }
    (Some(n), deltas)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(n: i64) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 2).unwrap() + Duration::weeks(n)
    }

    #[test]
    fn first_event_fixes_the_cohort_and_later_weeks_retain() {
        let (s, d) = step(None, w(0), Activity::Practice);
        assert_eq!(
            d,
            [Delta {
                cohort_week: w(0),
                engaged: false,
                users: 1,
                retained: 0
            }]
        );
        let (s, d) = step(s, w(0), Activity::PlaylistUse);
        assert_eq!(d.len(), 2, "moves the user to the engaged row");
        let (s, d) = step(s, w(4), Activity::Practice);
        assert_eq!(
            d,
            [Delta {
                cohort_week: w(0),
                engaged: true,
                users: 0,
                retained: 1
            }]
        );
        let (s2, d) = step(s, w(4), Activity::Practice);
        assert!(d.is_empty());
        assert_eq!(s2, s);
    }

    #[test]
    fn week_five_and_later_playlist_use_do_not_count() {
        let (s, _) = step(None, w(0), Activity::Practice);
        let (s, d) = step(s, w(5), Activity::PlaylistUse);
        assert!(d.is_empty());
        assert_eq!(
            s.unwrap(),
            UserCohort {
                cohort_week: w(0),
                engaged: false,
                retained: false
            }
        );
        let (_, d) = step(s, w(0), Activity::None);
        assert!(d.is_empty());
    }
}
