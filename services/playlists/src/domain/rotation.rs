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
//! Ties break by playlist position. Sessions are ordered newest first by (`at`, `id`), the
//! order the store reads them in, so two sessions at the same instant always rank the same way.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

/// One practice session of the user (any lesson), as the rule reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Breaks ties between sessions at the same instant: the larger ranks newer, as the store
    /// sorts, so the order is fixed for a given history (ids the API assigns are UUIDv7, so
    /// there the one recorded later on a replica; generated ids are random).
    pub id: uuid::Uuid,
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
/// user's) at `now`. `today`, when given, is each lesson's count of sessions on the clock's UTC
/// day up to `now` (the store counts them in SQL and loads only the newest `window + 1` per
/// lesson); without it they are counted in `sessions`.
// One caller (the store's std HashMap): a hasher parameter would only make `None` need a type.
#[allow(clippy::implicit_hasher)]
pub fn next(
    lessons: &[String],
    sessions: &[Session],
    today: Option<&HashMap<String, usize>>,
    now: DateTime<Utc>,
    rule: Rule,
) -> Choice {
    if lessons.is_empty() {
        return Choice {
            index: None,
            why: Why::Empty,
            skipped: Vec::new(),
            explanation: "the playlist is empty: add a lesson".into(),
        };
    }
    let mut sorted: Vec<&Session> = sessions.iter().filter(|s| s.at <= now).collect();
    // Newest first by (at, id), as the store sorts, so the order never depends on the input's.
    sorted.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.id.cmp(&a.id)));
    let just_played = sorted.first().map(|s| s.lesson_id.as_str());
    let day = now.date_naive();
    let stats: Vec<Stats> = lessons
        .iter()
        .map(|l| {
            let mine: Vec<&&Session> = sorted.iter().filter(|s| &s.lesson_id == l).collect();
            Stats {
                recent: mine.iter().map(|s| s.accuracy).collect(),
                last_at: mine.first().map(|s| s.at),
                today: today.map_or_else(
                    || mine.iter().filter(|s| s.at.date_naive() == day).count(),
                    |t| t.get(l).copied().unwrap_or(0),
                ),
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
            // Newer sessions get larger ids, as the store's (at, id) order expects of a tie.
            id: uuid::Uuid::from_u128((1_000_000 - i128::from(mins_ago)).unsigned_abs()),
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
        let c = next(&ls(&["a", "b", "c", "d"]), &history, None, now(), RULE);
        assert_eq!((c.index, c.why), (Some(1), Why::StrugglingButImproving));
        assert!(c.skipped.contains(&(0, Skip::Mastered)));
        assert!(c.skipped.contains(&(2, Skip::JustPlayed)));
    }

    #[test]
    fn never_an_immediate_repeat_even_when_improving() {
        let history = [s("b", 0.40, 30), s("b", 0.60, 1)];
        let c = next(&ls(&["b", "c"]), &history, None, now(), RULE);
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
        let c = next(&ls(&["a", "b", "c", "d"]), &history, None, now(), RULE);
        assert_eq!((c.index, c.why), (Some(2), Why::LeastRecentlyPlayed));
        assert!(c.skipped.contains(&(0, Skip::MostRepeatedToday)));
    }

    #[test]
    fn only_avoided_left_and_all_mastered_and_empty() {
        let c = next(&ls(&["a"]), &[s("a", 0.5, 1)], None, now(), RULE);
        assert_eq!((c.index, c.why), (Some(0), Why::OnlyAvoidedLeft));
        let m = [s("a", 0.9, 3), s("a", 0.9, 2), s("a", 0.9, 1)];
        let c = next(&ls(&["a"]), &m, None, now(), RULE);
        assert_eq!((c.index, c.why), (None, Why::AllMastered));
        let c = next(&[], &m, None, now(), RULE);
        assert_eq!(c.why, Why::Empty);
    }

    #[test]
    fn sessions_after_the_clock_are_ignored_and_input_order_does_not_matter() {
        let mut h = vec![s("a", 0.3, 20), s("a", 0.6, 10), s("b", 0.9, -60)];
        let c1 = next(&ls(&["a", "b"]), &h, None, now(), RULE);
        h.reverse();
        let c2 = next(&ls(&["a", "b"]), &h, None, now(), RULE);
        assert_eq!(c1, c2);
        // b's future session does not count, so a was just played and b is new.
        assert_eq!((c1.index, c1.why), (Some(1), Why::NotPlayedYet));
    }

    fn at_once(lesson: &str, acc: f32, id: u128) -> Session {
        Session {
            id: uuid::Uuid::from_u128(id),
            lesson_id: lesson.into(),
            accuracy: acc,
            // Yesterday: not counted as repeated today.
            at: now() - Duration::days(1),
        }
    }

    #[test]
    fn sessions_at_the_same_instant_rank_by_id_whatever_the_input_order() {
        // a and b at the same instant: b's larger id makes it the one just played.
        let mut h = vec![at_once("a", 0.5, 1), at_once("b", 0.5, 2)];
        for _ in 0..2 {
            let c = next(&ls(&["a", "b"]), &h, None, now(), RULE);
            assert_eq!((c.index, c.why), (Some(0), Why::LeastRecentlyPlayed));
            assert!(c.skipped.contains(&(1, Skip::JustPlayed)));
            h.reverse();
        }
        // Two sessions of c at one instant: the larger id is the latest (0.6, rising from 0.3).
        let mut h = vec![at_once("c", 0.3, 10), at_once("c", 0.6, 11), s("d", 0.5, 1)];
        for _ in 0..2 {
            let c = next(&ls(&["c", "d", "e"]), &h, None, now(), RULE);
            assert_eq!((c.index, c.why), (Some(0), Why::StrugglingButImproving));
            h.reverse();
        }
    }

    #[test]
    fn todays_counts_from_the_store_replace_counting_the_loaded_sessions() {
        // Only a's newest session is loaded, but the store counted 5 today: a is most repeated.
        let h = [s("a", 0.5, 50), s("b", 0.5, 40), s("c", 0.5, 1)];
        let today: HashMap<String, usize> = [("a".to_owned(), 5), ("b".to_owned(), 1)].into();
        let c = next(&ls(&["a", "b", "c"]), &h, Some(&today), now(), RULE);
        assert_eq!((c.index, c.why), (Some(1), Why::LeastRecentlyPlayed));
        assert!(c.skipped.contains(&(0, Skip::MostRepeatedToday)));
        // Counted from the loaded sessions instead, a was played once today and least recently.
        let c = next(&ls(&["a", "b", "c"]), &h, None, now(), RULE);
        assert_eq!((c.index, c.why), (Some(0), Why::LeastRecentlyPlayed));
        assert!(!c.skipped.contains(&(0, Skip::MostRepeatedToday)));
    }
    #[test]
    fn counts_given_from_the_full_history_choose_as_counting_it_does() {
        let histories = [
            vec![
                s("a", 0.5, 300),
                s("a", 0.5, 200),
                s("a", 0.5, 100),
                s("b", 0.5, 50),
            ],
            vec![
                s("a", 0.3, 60 * 30),
                s("b", 0.4, 20),
                s("b", 0.6, 10),
                s("c", 0.5, 5),
            ],
            vec![
                s("c", 0.5, 30),
                s("c", 0.5, 20),
                s("b", 0.5, 10),
                s("b", 0.5, 9),
            ],
        ];
        for h in &histories {
            let mut today: HashMap<String, usize> = HashMap::new();
            for x in h.iter().filter(|x| x.at.date_naive() == now().date_naive()) {
                *today.entry(x.lesson_id.clone()).or_default() += 1;
            }
            let lessons = ls(&["a", "b", "c", "d"]);
            assert_eq!(
                next(&lessons, h, Some(&today), now(), RULE),
                next(&lessons, h, None, now(), RULE),
                "{h:?}"
            );
        }
    }
}
