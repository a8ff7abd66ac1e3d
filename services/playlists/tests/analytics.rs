//! The projections: rebuilt from the log they give the same analytics as the live path, and on
//! a generated log of ≥ 100k events the endpoints recover what the generator planted (the
//! removal-reason mix, shares and opens by channel, the retention difference).

#![allow(clippy::many_single_char_names)]

mod common;

use chrono::{Duration, NaiveDate};
use common::{USER, analyst, harness};
use playlists::{
    domain::{Channel, Reason},
    generate::{self, Planted, Spec},
};
use reqwest::{Method, StatusCode};
use serde_json::Value;

#[tokio::test]
async fn rebuild_replays_the_log_into_identical_read_models() {
    let h = harness().await;
    let p = h.playlist(USER, "A").await;
    let q = h.playlist("bo", "B").await;
    for l in ["drums-funk-1", "drums-rock-1", "keys-jazz-1", "bass-pop-1"] {
        h.add(USER, &p, l).await;
        h.add("bo", &q, l).await;
    }
    h.remove(USER, &p, "drums-rock-1", "too_hard").await;
    h.remove("bo", &q, "drums-rock-1", "bored").await;
    h.remove("bo", &q, "keys-jazz-1", "other").await;
    // bo's default moves to a new playlist: q's version moves with it, live and replayed.
    let (s, b2) = h
        .send(
            Method::POST,
            "/playlists/v1/users/bo/playlists",
            Some(&common::other_learner()),
            Some(serde_json::json!({"name": "B2", "default": true})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b2}");
    h.session(USER, "drums-funk-1", 0.5, common::t0() - Duration::hours(1))
        .await;
    let (_, token) = h.share(USER, &p, "twitter").await;
    for _ in 0..2 {
        let (s, _) = h
            .send(
                Method::GET,
                &format!("/playlists/v1/shared/{token}"),
                None,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    // A later week: ada is retained.
    h.clock.set(common::t0() + Duration::weeks(2));
    h.session(USER, "drums-funk-1", 0.6, common::t0() + Duration::weeks(2))
        .await;
    let r = h.playlist(USER, "Later").await;
    let (s, _) = h
        .send(
            Method::DELETE,
            &format!("/playlists/v1/users/{USER}/playlists/{p}"),
            Some(&common::learner()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    let live = h.analytics().await;
    let views = snapshot(&h).await;
    assert_eq!(live.0["total"], 3);
    let report = playlists::rebuild::rebuild(&h.pool).await.expect("rebuild");
    assert_eq!(report.events, h.events().await as u64);
    assert_eq!(
        h.analytics().await,
        live,
        "identical analytics after the replay"
    );
    assert_eq!(
        snapshot(&h).await,
        views,
        "identical read models after the replay"
    );
    // The default moved to the remaining playlist and is still there.
    let (_, b) = h
        .send(
            Method::GET,
            &format!("/playlists/v1/users/{USER}/playlists/{r}"),
            Some(&common::learner()),
            None,
        )
        .await;
    assert_eq!(b["is_default"], true);
}

/// Every read model's rows, as text, in a fixed order.
async fn snapshot(h: &common::H) -> Vec<String> {
    let mut out = Vec::new();
    for (t, order) in [
        ("playlists", "id"),
        ("playlist_items", "playlist_id, position"),
        ("practice_sessions", "id"),
        ("shares", "id"),
        ("removal_counts", "day, lesson_id, reason"),
        ("removal_counts_month", "month, lesson_id, reason"),
        ("share_counts", "day, channel"),
        ("user_cohorts", "user_id"),
        ("cohort_counts", "cohort_week, engaged"),
    ] {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT t::text FROM playlists.{t} t {} ORDER BY {order}",
            if t == "cohort_counts" {
                "WHERE users > 0"
            } else {
                ""
            }
        )))
        .fetch_all(&h.pool)
        .await
        .expect("rows");
        out.push(format!("{t}: {}", rows.join("\n")));
    }
    out
}

fn count_of(list: &Value, key: &str, name: &str, field: &str) -> i64 {
    list.as_array()
        .expect("list")
        .iter()
        .find(|r| r[key] == name)
        .and_then(|r| r[field].as_i64())
        .unwrap_or(0)
}

/// A generated log over the sample catalogue with the default planted answers.
fn spec(start: NaiveDate, users: u32, weeks: u32, seed: u64) -> Spec {
    Spec {
        users,
        weeks,
        start,
        seed,
        lessons: playlists::sample_catalogue()
            .into_iter()
            .map(|l| l.id)
            .collect(),
        planted: Planted::default(),
        prefix: "gen-".into(),
    }
}

#[tokio::test]
async fn a_generated_log_of_100k_events_yields_the_planted_answers() {
    let h = harness().await;
    let start = NaiveDate::from_ymd_opt(2025, 9, 1).expect("a Monday");
    let spec = spec(start, 7_000, 12, 2026);
    let tally = generate::insert(&h.pool, &spec).await.expect("generate");
    assert!(tally.events >= 100_000, "{} events", tally.events);
    assert_eq!(h.events().await as u64, tally.events);
    playlists::rebuild::rebuild(&h.pool).await.expect("rebuild");
    let (removals, shares, retention) = h.analytics().await;

    // Removal reasons: exactly the planted counts, overall and per lesson...
    let overall = &removals["overall"];
    let total: i64 = tally.removals.values().sum();
    assert_eq!(removals["total"], total);
    for r in Reason::ALL {
        assert_eq!(
            count_of(overall, "reason", r.as_str(), "count"),
            tally.removals.get(&r).copied().unwrap_or(0),
            "{r:?}"
        );
    }
    // ... and the mix within sampling error of the planted probabilities.
    for (r, p) in &spec.planted.reasons {
        let share = count_of(overall, "reason", r.as_str(), "count") as f64 / total as f64;
        assert!((share - p).abs() < 0.02, "{r:?}: {share} vs {p}");
    }
    let mut cursor: Option<String> = None;
    let mut lessons_seen = 0;
    loop {
        let path = format!(
            "/playlists/v1/analytics/removals?from=2025-01-01&to=2026-12-31&limit=10{}",
            cursor
                .as_ref()
                .map(|c| format!("&cursor={c}"))
                .unwrap_or_default()
        );
        let (s, page) = h.send(Method::GET, &path, Some(&analyst()), None).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        for l in page["lessons"]["items"].as_array().expect("items") {
            let id = l["lesson_id"].as_str().expect("id");
            let planted = &tally.removals_by_lesson[id];
            for r in Reason::ALL {
                assert_eq!(
                    count_of(&l["reasons"], "reason", r.as_str(), "count"),
                    planted.get(&r).copied().unwrap_or(0),
                    "{id} {r:?}"
                );
            }
            lessons_seen += 1;
        }
        match page["lessons"]["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(lessons_seen, tally.removals_by_lesson.len());

    // Shares and opens by channel.
    for c in Channel::ALL {
        let (s, o) = tally.shares.get(&c).copied().unwrap_or_default();
        assert_eq!(
            count_of(&shares["channels"], "channel", c.as_str(), "shares"),
            s,
            "{c:?}"
        );
        assert_eq!(
            count_of(&shares["channels"], "channel", c.as_str(), "opens"),
            o,
            "{c:?}"
        );
    }

    // Retention per cohort: the planted counts exactly, and the planted difference recovered.
    let cohorts = retention["cohorts"].as_array().expect("cohorts");
    assert_eq!(cohorts.len(), 12);
    for c in cohorts {
        let week: NaiveDate = c["week"].as_str().expect("week").parse().expect("date");
        for (engaged, group) in [(true, "playlist_users"), (false, "other_users")] {
            let (u, r) = tally
                .cohorts
                .get(&(week, engaged))
                .copied()
                .unwrap_or_default();
            assert_eq!(
                (c[group]["users"].as_i64(), c[group]["retained"].as_i64()),
                (Some(u), Some(r)),
                "{week} {group}"
            );
        }
        assert_eq!(c["complete"], true);
    }
    let planted = spec.planted.retention_engaged - spec.planted.retention_other;
    let d = retention["difference"].as_f64().expect("difference");
    assert!(
        (d - planted).abs() < 0.04,
        "difference {d} vs planted {planted}"
    );
    let ci = retention["difference_ci95"].as_array().expect("ci");
    assert!(
        ci[0].as_f64() < Some(planted) && ci[1].as_f64() > Some(planted),
        "{ci:?}"
    );
    let engaged_share = retention["playlist_users"]["users"].as_f64().expect("n")
        / (retention["playlist_users"]["users"].as_f64().expect("n")
            + retention["other_users"]["users"].as_f64().expect("n"));
    assert!(
        (engaged_share - spec.planted.engaged).abs() < 0.03,
        "{engaged_share}"
    );
    assert!(
        retention["note"]
            .as_str()
            .expect("note")
            .contains("correlation")
    );
}

#[tokio::test]
async fn a_rebuild_during_a_stream_of_commands_neither_deadlocks_nor_fails_one() {
    let h = harness().await;
    let users = ["ada", "bo", "cy", "di"];
    let mut playlists = Vec::new();
    for u in users {
        let p = h.playlist(u, "Stream").await;
        h.add(u, &p, "keys-jazz-1").await;
        playlists.push(p);
    }
    let (_, token) = h.share(USER, &playlists[0], "copy_link").await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (u, p) in users.into_iter().zip(playlists.clone()) {
        let (http, base, done) = (h.http.clone(), h.base.clone(), done.clone());
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let auth = kit::testing::bearer(u, &[]);
            let analytics = analyst();
            let url = format!("{base}/playlists/v1/users/{u}/playlists/{p}");
            let mut failures = Vec::new();
            for _ in 0..12 {
                let r = http
                    .post(format!("{url}/lessons"))
                    .header("authorization", &auth)
                    .json(&serde_json::json!({"lesson_id": "drums-funk-1"}))
                    .send()
                    .await
                    .expect("add");
                let (s, b): (_, Value) = (r.status(), r.json().await.unwrap_or_default());
                if s != StatusCode::CREATED {
                    failures.push(format!("add {s} {b}"));
                    continue;
                }
                let version = b["version"].as_i64().unwrap_or_default();
                let r = http
                    .put(format!("{url}/lessons/drums-funk-1/position"))
                    .header("authorization", &auth)
                    .header("if-match", format!("\"{version}\""))
                    .json(&serde_json::json!({"position": 0}))
                    .send()
                    .await
                    .expect("move");
                if r.status() != StatusCode::OK {
                    failures.push(format!("move {}", r.status()));
                }
                let r = http
                    .delete(format!("{url}/lessons/drums-funk-1?reason=bored"))
                    .header("authorization", &auth)
                    .send()
                    .await
                    .expect("remove");
                if r.status() != StatusCode::OK {
                    failures.push(format!("remove {}", r.status()));
                }
                let r = http
                    .get(format!("{base}/playlists/v1/shared/{token}"))
                    .send()
                    .await
                    .expect("open");
                if r.status() != StatusCode::OK {
                    failures.push(format!("open {}", r.status()));
                }
                let r = http
                    .get(&url)
                    .header("authorization", &auth)
                    .send()
                    .await
                    .expect("read");
                if r.status() != StatusCode::OK {
                    failures.push(format!("read {}", r.status()));
                }
                // The analytics read the counters the rebuild truncates and refills.
                for what in ["removals", "shares", "retention"] {
                    let r = http
                        .get(format!(
                            "{base}/playlists/v1/analytics/{what}?from=2025-01-06&to=2026-03-31"
                        ))
                        .header("authorization", &analytics)
                        .send()
                        .await
                        .expect("analytics");
                    if r.status() != StatusCode::OK {
                        failures.push(format!("analytics/{what} {}", r.status()));
                    }
                }
            }
            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            failures
        }));
    }
    let mut rebuilds = 0;
    while done.load(std::sync::atomic::Ordering::SeqCst) < users.len() || rebuilds < 2 {
        playlists::rebuild::rebuild(&h.pool)
            .await
            .unwrap_or_else(|e| panic!("rebuild {rebuilds}: {e}"));
        rebuilds += 1;
    }
    for t in tasks {
        let failures = t.await.expect("task");
        assert!(failures.is_empty(), "{failures:?}");
    }
    // 4 × 12 × (add, move, remove, open) after the setup, each once.
    let per_type = |t: &'static str| {
        let pool = h.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM playlists.events WHERE type = $1")
                .bind(t)
                .fetch_one(&pool)
                .await
                .expect("count")
        }
    };
    assert_eq!(per_type("lesson_moved").await, 48);
    assert_eq!(per_type("lesson_removed").await, 48);
    assert_eq!(per_type("share_opened").await, 48);
    // And the read models are still the log's.
    let live = snapshot(&h).await;
    playlists::rebuild::rebuild(&h.pool).await.expect("rebuild");
    assert_eq!(snapshot(&h).await, live);
    assert!(rebuilds >= 2);
}

/// Removals per reason and per lesson over `[from, to]`, counted in the log itself.
async fn removals_in_the_log(
    h: &common::H,
    from: NaiveDate,
    to: NaiveDate,
) -> std::collections::BTreeMap<(String, String), i64> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT payload->>'lesson_id', payload->>'reason', count(*) FROM playlists.events
         WHERE type = 'lesson_removed'
           AND (occurred_at AT TIME ZONE 'UTC')::date BETWEEN $1 AND $2
         GROUP BY 1, 2",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&h.pool)
    .await
    .expect("log");
    rows.into_iter().map(|(l, r, n)| ((l, r), n)).collect()
}

#[tokio::test]
async fn removals_over_whole_partial_and_no_months_equal_the_log_live_and_rebuilt() {
    let h = harness().await;
    let start = NaiveDate::from_ymd_opt(2025, 9, 1).expect("a Monday");
    let spec = spec(start, 600, 14, 7);
    generate::insert(&h.pool, &spec).await.expect("generate");
    playlists::rebuild::rebuild(&h.pool).await.expect("rebuild");
    // Live removals on top, through the API (store::apply adds them to both tables): the last
    // second of a month and the first of the next (UTC), so a bucket off by any offset shows.
    let p = h.playlist(USER, "Live").await;
    for (day, hms, lesson) in [
        ((10, 31), (23, 59, 59), "drums-funk-1"),
        ((11, 1), (0, 0, 0), "drums-rock-1"),
    ] {
        let at = NaiveDate::from_ymd_opt(2025, day.0, day.1)
            .expect("day")
            .and_hms_opt(hms.0, hms.1, hms.2)
            .expect("time")
            .and_utc();
        h.clock.set(at);
        h.add(USER, &p, lesson).await;
        h.remove(USER, &p, lesson, "too_easy").await;
    }
    let d = |m, day| NaiveDate::from_ymd_opt(2025, m, day).expect("date");
    let ranges = [
        (d(9, 1), d(12, 31)),  // whole months only
        (d(9, 3), d(11, 20)),  // partial, whole, partial
        (d(10, 31), d(11, 1)), // two days across a boundary, no whole month
        (d(10, 5), d(10, 25)), // inside one month
        (d(10, 1), d(10, 31)), // exactly one month
    ];
    for (from, to) in ranges {
        let want = removals_in_the_log(&h, from, to).await;
        assert!(!want.is_empty(), "{from}..{to} has removals");
        let got = playlists::store::removals(&h.pool, from, to, None, 1000)
            .await
            .expect("removals");
        let got_lessons: std::collections::BTreeMap<(String, String), i64> = got
            .lessons
            .iter()
            .map(|(l, _, r, n)| ((l.clone(), r.clone()), *n))
            .collect();
        assert_eq!(got_lessons, want, "{from}..{to} per lesson");
        let mut want_overall = std::collections::BTreeMap::<String, i64>::new();
        for ((_, r), n) in &want {
            *want_overall.entry(r.clone()).or_default() += n;
        }
        let got_overall: std::collections::BTreeMap<String, i64> =
            got.overall.iter().cloned().collect();
        assert_eq!(got_overall, want_overall, "{from}..{to} overall");
        // Paged two lessons at a time by cursor, the pages add up to the same.
        let (mut paged, mut after) = (std::collections::BTreeMap::new(), None::<String>);
        loop {
            let page = playlists::store::removals(&h.pool, from, to, after.as_ref(), 2)
                .await
                .expect("page");
            let ids: std::collections::BTreeSet<&String> =
                page.lessons.iter().map(|(l, ..)| l).collect();
            assert!(ids.len() <= 2, "{ids:?}");
            for (l, _, r, n) in &page.lessons {
                assert!(
                    paged.insert((l.clone(), r.clone()), *n).is_none(),
                    "{l} twice"
                );
            }
            match ids.last() {
                Some(last) if ids.len() == 2 => after = Some((*last).clone()),
                _ => break,
            }
        }
        assert_eq!(paged, want, "{from}..{to} paged");
    }
    // The rebuild (monthly rows summed from the daily ones) answers the same.
    let before = playlists::store::removals(&h.pool, d(9, 3), d(11, 20), None, 1000)
        .await
        .expect("removals");
    playlists::rebuild::rebuild(&h.pool).await.expect("rebuild");
    let after = playlists::store::removals(&h.pool, d(9, 3), d(11, 20), None, 1000)
        .await
        .expect("removals");
    assert_eq!(
        (before.overall, before.lessons),
        (after.overall, after.lessons)
    );
}
