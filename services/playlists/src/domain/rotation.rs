//! "What next": the lesson to practise next from a playlist, deterministic for a given clock
//! and history (docs/playlists.md, "The rotation rule").
//!
//! 1. **Skip mastered**: at least `window` sessions on the lesson and the mean accuracy of the
//!    most recent `window` at or above `threshold`.
//! 2. **Avoid** the lesson the user just played (their latest session, on any lesson) and the
//!    most-repeated lesson(s) today (UTC day of the clock) among those not mastered, when that
//!    maximum is 2 or more.
//! 3. Among the rest, **prefer "struggling but improving"**: at least 2 sessions, the latest
//!    below the threshold and above the mean of the (up to `window`) sessions before it; the
//!    largest rise first.
//! 4. Then lessons never played (in playlist order): a new lesson gets its turn.
//! 5. Then the least recently played.
//! 6. If every candidate was avoided, the avoided ones are allowed again (most-repeated before
//!    just-played), so a playlist that is not all mastered always answers.
//!
//! Ties break by playlist position.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

/// One practice session of the user (any lesson), as the rule reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub lesson_id: String,
    pub accuracy: f32,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub threshold: f32,
    pub window: usize,
}

/// Why this lesson was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    StrugglingButImproving,
    NotPlayedYet,
    LeastRecentlyPlayed,
    /// Only avoided lessons were left (just played or most repeated today).
    OnlyAvoidedLeft,
    /// Nothing to suggest: every lesson is mastered.
    AllMastered,
    /// Nothing to suggest: the playlist is empty.
    Empty,
}

/// Why a lesson was not picked first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    Mastered,
    JustPlayed,
    MostRepeatedToday,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Index into the playlist's lessons.
    pub index: Option<usize>,
    pub why: Why,
    /// The lessons set aside, with why (playlist order).
    pub skipped: Vec<(usize, Skip)>,
    /// Human-readable explanation.
    pub explanation: String,
}

struct Stats {
    /// Accuracies newest first.
    recent: Vec<f32>,
    last_at: Option<DateTime<Utc>>,
    today: usize,
}

fn mean(xs: &[f32]) -> f32 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f32>() / xs.len() as f32
    }
}

/// Picks the next lesson of `lessons` (playlist order) from `sessions` (any order; only the
/// user's) at `now`.
pub fn next(lessons: &[String], sessions: &[Session], now: DateTime<Utc>, rule: Rule) -> Choice {
    if lessons.is_empty() {
        return Choice {
            index: None,
            why: Why::Empty,
            skipped: Vec::new(),
            explanation: "the playlist is empty: add a lesson".into(),
        };
    }
    let mut sorted: Vec<&Session> = sessions.iter().filter(|s| s.at <= now).collect();
    // Newest first; equal instants by lesson id so the order never depends on the input's.
    sorted.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.lesson_id.cmp(&b.lesson_id)));
    let just_played = sorted.first().map(|s| s.lesson_id.as_str());
    let today = now.date_naive();
    let stats: Vec<Stats> = lessons
        .iter()
        .map(|l| {
            let mine: Vec<&&Session> = sorted.iter().filter(|s| &s.lesson_id == l).collect();
            Stats {
                recent: mine.iter().map(|s| s.accuracy).collect(),
                last_at: mine.first().map(|s| s.at),
                today: mine.iter().filter(|s| s.at.date_naive() == today).count(),
            }
        })
        .collect();
    let w = rule.window.max(1);
    // A tolerance for f32 means (three sessions at exactly the threshold are mastered).
    let mastered: Vec<bool> = stats
        .iter()
        .map(|s| s.recent.len() >= w && mean(&s.recent[..w]) >= rule.threshold - 1e-6)
        .collect();
    // The most plays today among the lessons still in the running.
    let max_today = stats
        .iter()
        .zip(&mastered)
        .filter(|(_, m)| !**m)
        .map(|(s, _)| s.today)
        .max()
        .unwrap_or(0);
    let mut skipped = Vec::new();
    let mut open = Vec::new();
    let mut avoided = Vec::new();
    for (i, (l, s)) in lessons.iter().zip(&stats).enumerate() {
        if mastered[i] {
            skipped.push((i, Skip::Mastered));
        } else if Some(l.as_str()) == just_played {
            skipped.push((i, Skip::JustPlayed));
            avoided.push((i, 1));
        } else if max_today >= 2 && s.today == max_today {
            skipped.push((i, Skip::MostRepeatedToday));
            avoided.push((i, 0));
        } else {
            open.push(i);
        }
    }
    let name = |i: usize| lessons[i].as_str();
    // Rising and below the threshold: the rise, else None.
    let rise = |s: &Stats| -> Option<f32> {
        let (&last, before) = s.recent.split_first()?;
        if before.is_empty() || last >= rule.threshold {
            return None;
        }
        let prev = mean(&before[..before.len().min(rule.window.max(1))]);
        (last > prev).then_some(last - prev)
    };
    let improving = open
        .iter()
        .filter_map(|&i| rise(&stats[i]).map(|r| (i, r)))
        .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(&a.0)));
    if let Some((i, r)) = improving {
        return Choice {
            index: Some(i),
            why: Why::StrugglingButImproving,
            explanation: format!(
                "{} is improving (latest accuracy {:.0}%, up {:.0} points) but not mastered yet",
                name(i),
                stats[i].recent[0] * 100.0,
                r * 100.0
            ),
            skipped,
        };
    }
    if let Some(&i) = open.iter().find(|&&i| stats[i].recent.is_empty()) {
        return Choice {
            index: Some(i),
            why: Why::NotPlayedYet,
            explanation: format!("{} has not been played yet", name(i)),
            skipped,
        };
    }
    if let Some(&i) = open.iter().min_by_key(|&&i| (stats[i].last_at, i)) {
        return Choice {
            index: Some(i),
            why: Why::LeastRecentlyPlayed,
            explanation: format!("{} is the least recently played", name(i)),
            skipped,
        };
    }
    if let Some(&(i, _)) = avoided.iter().min_by_key(|(i, rank)| (*rank, *i)) {
        return Choice {
            index: Some(i),
            why: Why::OnlyAvoidedLeft,
            explanation: format!(
                "only lessons played just now or most today are left; {} it is",
                name(i)
            ),
            skipped,
        };
    }
    Choice {
        index: None,
        why: Why::AllMastered,
        explanation: "every lesson in the playlist is mastered: add a new one".into(),
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    const RULE: Rule = Rule {
        threshold: 0.9,
        window: 3,
    };

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 4, 18, 0, 0).unwrap()
    }

    fn s(lesson: &str, acc: f32, mins_ago: i64) -> Session {
        Session {
            lesson_id: lesson.into(),
            accuracy: acc,
            at: now() - Duration::minutes(mins_ago),
        }
    }

    fn ls(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn mastered_is_skipped_and_improving_preferred() {
        let history = [
            s("a", 0.95, 3000),
            s("a", 0.92, 2900),
            s("a", 0.91, 2800), // mastered
            s("b", 0.40, 2000),
            s("b", 0.60, 1000), // improving, +20
            s("c", 0.50, 500),
            s("c", 0.40, 400), // falling
        ];
        let c = next(&ls(&["a", "b", "c", "d"]), &history, now(), RULE);
        assert_eq!((c.index, c.why), (Some(1), Why::StrugglingButImproving));
        assert!(c.skipped.contains(&(0, Skip::Mastered)));
        assert!(c.skipped.contains(&(2, Skip::JustPlayed)));
    }

    #[test]
    fn never_an_immediate_repeat_even_when_improving() {
        let history = [s("b", 0.40, 30), s("b", 0.60, 1)];
        let c = next(&ls(&["b", "c"]), &history, now(), RULE);
        assert_eq!((c.index, c.why), (Some(1), Why::NotPlayedYet));
    }

    #[test]
    fn most_repeated_today_is_avoided_then_least_recent() {
        let history = [
            s("a", 0.5, 300),
            s("a", 0.5, 200),
            s("a", 0.5, 100),
            s("b", 0.5, 50),
            s("c", 0.5, 60 * 30), // yesterday
            s("d", 0.5, 10),
        ];
        // a: 3 today (most repeated), d: just played, b and c flat; c played longest ago.
        let c = next(&ls(&["a", "b", "c", "d"]), &history, now(), RULE);
        assert_eq!((c.index, c.why), (Some(2), Why::LeastRecentlyPlayed));
        assert!(c.skipped.contains(&(0, Skip::MostRepeatedToday)));
    }

    #[test]
    fn only_avoided_left_and_all_mastered_and_empty() {
        let c = next(&ls(&["a"]), &[s("a", 0.5, 1)], now(), RULE);
        assert_eq!((c.index, c.why), (Some(0), Why::OnlyAvoidedLeft));
        let m = [s("a", 0.9, 3), s("a", 0.9, 2), s("a", 0.9, 1)];
        let c = next(&ls(&["a"]), &m, now(), RULE);
        assert_eq!((c.index, c.why), (None, Why::AllMastered));
        let c = next(&[], &m, now(), RULE);
        assert_eq!(c.why, Why::Empty);
    }

    #[test]
    fn sessions_after_the_clock_are_ignored_and_input_order_does_not_matter() {
        let mut h = vec![s("a", 0.3, 20), s("a", 0.6, 10), s("b", 0.9, -60)];
        let c1 = next(&ls(&["a", "b"]), &h, now(), RULE);
        h.reverse();
        let c2 = next(&ls(&["a", "b"]), &h, now(), RULE);
        assert_eq!(c1, c2);
        // b's future session does not count, so a was just played and b is new.
        assert_eq!((c1.index, c1.why), (Some(1), Why::NotPlayedYet));
    }
}
