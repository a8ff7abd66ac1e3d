//! `GET .../next` over HTTP with a pinned clock and a recorded history: mastered lessons are
//! skipped, the lesson just played is never suggested again at once, "struggling but improving"
//! comes first, and the same clock and history give the same answer.

mod common;

use chrono::Duration;
use common::{USER, harness, learner, t0};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn next(h: &common::H, p: &str) -> Value {
    let (s, b) = h
        .send(
            Method::GET,
            &format!("/playlists/v1/users/{USER}/playlists/{p}/next"),
            Some(&learner()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

#[tokio::test]
async fn mastered_is_skipped_improving_first_and_no_immediate_repeat() {
    let h = harness().await;
    let p = h.playlist(USER, "Rotation").await;
    for l in [
        "drums-funk-1",
        "drums-rock-1",
        "keys-jazz-1",
        "guitar-pop-1",
    ] {
        h.add(USER, &p, l).await;
    }
    let ago = |m: i64| t0() - Duration::minutes(m);
    // drums-funk-1: mastered (mean of the last 3 ≥ 0.9).
    for (a, m) in [(0.91, 2000), (0.94, 1990), (0.97, 1980)] {
        h.session(USER, "drums-funk-1", a, ago(m)).await;
    }
    // drums-rock-1: struggling but improving (twice yesterday, once today).
    for (a, m) in [(0.40, 1500), (0.55, 1400), (0.70, 180)] {
        h.session(USER, "drums-rock-1", a, ago(m)).await;
    }
    // keys-jazz-1: played last (and most today), and falling.
    for (a, m) in [(0.60, 20), (0.50, 10)] {
        h.session(USER, "keys-jazz-1", a, ago(m)).await;
    }
    let n = next(&h, &p).await;
    assert_eq!(n["lesson"]["lesson_id"], "drums-rock-1", "{n}");
    assert_eq!(n["reason"], "struggling_but_improving");
    let skipped = n["skipped"].to_string();
    assert!(
        skipped.contains(r#"{"lesson_id":"drums-funk-1","why":"mastered"}"#),
        "{skipped}"
    );
    assert!(
        skipped.contains(r#"{"lesson_id":"keys-jazz-1","why":"just_played"}"#),
        "{skipped}"
    );
    assert_eq!(
        next(&h, &p).await,
        n,
        "deterministic for the same clock and history"
    );

    // Practise the suggestion: it is just played now, so the new lesson gets its turn.
    h.clock.set(t0() + Duration::minutes(5));
    h.session(USER, "drums-rock-1", 0.75, t0() + Duration::minutes(4))
        .await;
    let n = next(&h, &p).await;
    assert_eq!(
        (n["lesson"]["lesson_id"].clone(), n["reason"].clone()),
        (json!("guitar-pop-1"), json!("not_played_yet")),
        "{n}"
    );
    assert_ne!(
        n["lesson"]["lesson_id"], "drums-rock-1",
        "no immediate repeat"
    );
}

#[tokio::test]
async fn every_lesson_mastered_or_none_answers_without_a_lesson() {
    let h = harness().await;
    let p = h.playlist(USER, "Done").await;
    let n = next(&h, &p).await;
    assert_eq!(
        (n["lesson"].clone(), n["reason"].clone()),
        (Value::Null, json!("empty"))
    );
    h.add(USER, &p, "keys-pop-1").await;
    for m in [30, 20, 10] {
        h.session(USER, "keys-pop-1", 0.95, t0() - Duration::minutes(m))
            .await;
    }
    let n = next(&h, &p).await;
    assert_eq!(
        (n["lesson"].clone(), n["reason"].clone()),
        (Value::Null, json!("all_mastered")),
        "{n}"
    );
}

#[tokio::test]
async fn the_threshold_is_a_setting() {
    let h = common::harness_with(playlists::Settings {
        mastery_threshold: 0.5,
        ..playlists::Settings::default()
    })
    .await;
    let p = h.playlist(USER, "Low bar").await;
    h.add(USER, &p, "keys-pop-1").await;
    h.add(USER, &p, "keys-rock-1").await;
    for m in [30, 20, 10] {
        h.session(
            USER,
            "keys-pop-1",
            0.6,
            t0() - Duration::hours(30) - Duration::minutes(m),
        )
        .await;
    }
    h.session(USER, "keys-rock-1", 0.3, t0() - Duration::minutes(1))
        .await;
    // keys-pop-1 is mastered at 0.5; keys-rock-1 was just played: only it is left.
    let n = next(&h, &p).await;
    assert_eq!(
        (n["lesson"]["lesson_id"].clone(), n["reason"].clone()),
        (json!("keys-rock-1"), json!("only_avoided_left")),
        "{n}"
    );
}

#[tokio::test]
async fn a_long_history_today_is_counted_in_sql_and_loads_a_bounded_slice() {
    let h = harness().await;
    let p = h.playlist(USER, "Long day").await;
    let lessons = ["drums-funk-1", "drums-rock-1", "keys-jazz-1"];
    for l in lessons {
        h.add(USER, &p, l).await;
    }
    let ago = |m: i64| t0() - Duration::minutes(m);
    // drums-funk-1: 30 flat sessions this morning (most repeated today by far).
    for m in 0..30 {
        h.session(USER, "drums-funk-1", 0.5, ago(600 - m)).await;
    }
    // drums-rock-1: twice today, flat, after the funk sessions; keys-jazz-1: played just now.
    h.session(USER, "drums-rock-1", 0.5, ago(300)).await;
    h.session(USER, "drums-rock-1", 0.5, ago(200)).await;
    h.session(USER, "keys-jazz-1", 0.5, ago(1)).await;

    let n = next(&h, &p).await;
    assert_eq!(
        (n["lesson"]["lesson_id"].clone(), n["reason"].clone()),
        (json!("drums-rock-1"), json!("least_recently_played")),
        "{n}"
    );
    let skipped = n["skipped"].to_string();
    assert!(
        skipped.contains(r#"{"lesson_id":"drums-funk-1","why":"most_repeated_today"}"#),
        "{skipped}"
    );

    // The store loads at most window + 1 sessions per lesson (+ the newest on any lesson), and
    // counts today's in SQL. A lesson never played (bass-pop-1) loads nothing, a session after
    // the clock is not read, and the newest session may be on a lesson outside the playlist.
    h.session(USER, "drums-funk-1", 0.5, t0() + Duration::minutes(1))
        .await;
    h.session(USER, "guitar-pop-1", 0.5, t0()).await;
    let mut lessons: Vec<String> = lessons.iter().map(|l| (*l).to_owned()).collect();
    lessons.push("bass-pop-1".into());
    let (sessions, today) = history(&h, &lessons).await;
    assert_eq!(
        sessions
            .iter()
            .filter(|s| s.lesson_id == "drums-funk-1")
            .count(),
        4
    );
    assert_eq!(sessions.len(), 4 + 2 + 1 + 1, "{sessions:?}");
    assert_eq!(sessions[0].lesson_id, "guitar-pop-1");
    assert!(sessions.iter().all(|s| s.at <= t0()));
    assert_eq!(today.get("drums-funk-1"), Some(&30));
    assert_eq!(today.get("drums-rock-1"), Some(&2));
    assert_eq!(today.get("keys-jazz-1"), Some(&1));
    assert_eq!(today.len(), 3, "{today:?}");
    // When the newest session is on a playlist lesson it is loaded once, not twice.
    h.session(USER, "keys-jazz-1", 0.5, t0()).await;
    let (again, _) = history(&h, &lessons).await;
    assert_eq!(again.len(), 4 + 2 + 2, "{again:?}");
    assert_eq!(again[0].lesson_id, "keys-jazz-1");
    // Newest first by (at, id).
    assert!(
        sessions
            .windows(2)
            .all(|w| (w[0].at, w[0].id) >= (w[1].at, w[1].id)),
        "{sessions:?}"
    );
}

#[tokio::test]
async fn sessions_recorded_at_the_same_instant_rank_the_later_recorded_first() {
    let h = harness().await;
    let p = h.playlist(USER, "Ties").await;
    for l in ["drums-funk-1", "drums-rock-1"] {
        h.add(USER, &p, l).await;
    }
    let at = t0() - Duration::minutes(5);
    // Same instant: the one recorded second (the larger UUIDv7) is the one just played, not
    // the one whose lesson id sorts first.
    h.session(USER, "drums-funk-1", 0.5, at).await;
    h.session(USER, "drums-rock-1", 0.5, at).await;
    let n = next(&h, &p).await;
    assert_eq!(n["lesson"]["lesson_id"], "drums-funk-1", "{n}");
    assert!(
        n["skipped"]
            .to_string()
            .contains(r#"{"lesson_id":"drums-rock-1","why":"just_played"}"#),
        "{n}"
    );
    for _ in 0..3 {
        assert_eq!(next(&h, &p).await, n, "stable across calls");
    }
}

/// What the store reads for "next" at t0 (window + 1 = 4 sessions per lesson).
async fn history(
    h: &common::H,
    lessons: &[String],
) -> (
    Vec<playlists::domain::rotation::Session>,
    std::collections::HashMap<String, usize>,
) {
    let mut conn = h.pool.acquire().await.expect("conn");
    playlists::store::rotation_history(
        &mut conn,
        USER,
        lessons,
        4,
        playlists::domain::day_bounds(t0().date_naive()).0,
        t0(),
    )
    .await
    .expect("history")
}
