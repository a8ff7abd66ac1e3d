//! Times and days outside the years 1970..=9999 (analytics `from`/`to`, a cursor's time, a
//! session's `at`, a share's `expires_at`) are 400 problem+json naming the field: before, a far
//! `to` without `from` panicked (`to - 90 days` overflowed) and dates before 4713 BC reached
//! PostgreSQL and answered 500.

mod common;

use chrono::{DateTime, TimeZone, Utc};
use common::{USER, analyst, harness, learner};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

fn assert_field(s: StatusCode, b: &Value, field: &str, what: &str) {
    assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {b}");
    assert_eq!(
        b["type"].as_str().map(|t| t.contains("validation")),
        Some(true),
        "{what}: {b}"
    );
    assert_eq!(b["errors"][0]["field"], field, "{what}: {b}");
}

#[tokio::test]
async fn analytics_dates_outside_the_years_are_400_naming_the_field() {
    let h = harness().await;
    for route in ["removals", "shares", "retention"] {
        for (query, field) in [
            ("to=-262143-01-01", "to"),
            ("to=%2B262142-12-31", "to"),
            ("to=-4800-01-01", "to"),
            ("to=10000-01-01", "to"),
            ("from=-262143-01-01&to=2026-03-01", "from"),
            ("from=-4800-01-01&to=2026-03-01", "from"),
            ("from=1969-12-31&to=2026-03-01", "from"),
            ("from=2026-01-01&to=%2B10000-01-01", "to"),
        ] {
            let path = format!("/playlists/v1/analytics/{route}?{query}");
            let (s, b) = h.send(Method::GET, &path, Some(&analyst()), None).await;
            assert_field(s, &b, field, &path);
        }
        // The ends of the years are accepted.
        let path = format!("/playlists/v1/analytics/{route}?from=1970-01-01&to=1970-01-02");
        let (s, b) = h.send(Method::GET, &path, Some(&analyst()), None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
        let path = format!("/playlists/v1/analytics/{route}?to=9999-12-31");
        let (s, b) = h.send(Method::GET, &path, Some(&analyst()), None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
    }
}

#[tokio::test]
async fn a_forged_cursor_with_an_extreme_time_is_400_naming_the_cursor() {
    let h = harness().await;
    let p = h.playlist(USER, "P").await;
    let times: Vec<DateTime<Utc>> = vec![
        Utc.with_ymd_and_hms(-4800, 1, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(1969, 12, 31, 23, 59, 59).unwrap(),
        Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap(),
        DateTime::<Utc>::MIN_UTC,
    ];
    for t in times {
        let cursor = kit::pagination::encode_cursor(&(t, Uuid::nil()));
        for list in [
            format!("/playlists/v1/users/{USER}/playlists"),
            format!("/playlists/v1/users/{USER}/sessions"),
            format!("/playlists/v1/users/{USER}/playlists/{p}/shares"),
        ] {
            let path = format!("{list}?cursor={cursor}");
            let (s, b) = h.send(Method::GET, &path, Some(&learner()), None).await;
            assert_field(s, &b, "cursor", &format!("{path} ({t})"));
        }
    }
}

#[tokio::test]
async fn a_session_at_and_a_share_expiry_outside_the_years_are_400_naming_the_field() {
    let h = harness().await;
    let p = h.playlist(USER, "P").await;
    for at in [
        "-4800-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "+10000-01-01T00:00:00Z",
    ] {
        let (s, b) = h
            .send(
                Method::POST,
                &format!("/playlists/v1/users/{USER}/sessions"),
                Some(&learner()),
                Some(json!({"lesson_id": "drums-funk-1", "accuracy": 0.5,
                            "duration_secs": 60, "at": at})),
            )
            .await;
        assert_field(s, &b, "at", at);
        let (s, b) = h
            .send(
                Method::POST,
                &format!("/playlists/v1/users/{USER}/playlists/{p}/shares"),
                Some(&learner()),
                Some(json!({"channel": "twitter", "expires_at": at})),
            )
            .await;
        assert_field(s, &b, "expires_at", at);
    }
    assert_eq!(h.events().await, 1, "only the playlist's creation");
}
