//! Commands over HTTP and a real PostgreSQL: each appends exactly one event (in the
//! transaction that updates the read models), a retry with the Idempotency-Key answers the
//! first answer and appends nothing, and every refusal (409, 400, 412, 428) writes nothing.

#![allow(clippy::many_single_char_names)]

mod common;

use common::{H, USER, harness, harness_with, learner};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn lessons(p: &Value) -> Vec<&str> {
    p["lessons"]
        .as_array()
        .expect("lessons")
        .iter()
        .map(|l| l["lesson_id"].as_str().expect("id"))
        .collect()
}

fn base(p: &str) -> String {
    format!("/playlists/v1/users/{USER}/playlists/{p}")
}

#[tokio::test]
async fn every_command_appends_one_event_and_the_view_follows() {
    let h = harness().await;
    let p = h.playlist(USER, "Warm-up").await;
    assert_eq!(h.events().await, 1);
    for l in ["drums-funk-1", "drums-rock-1", "keys-jazz-1"] {
        h.add(USER, &p, l).await;
    }
    assert_eq!(h.events().await, 4);
    let r = h
        .req(Method::GET, &base(&p), Some(&learner()), None, &[])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["version"], 4);
    assert_eq!(r.headers["etag"], "\"4\"");
    assert_eq!(
        r.body["is_default"], true,
        "the first playlist is the default"
    );
    let r = h
        .req(
            Method::PUT,
            &format!("{}/lessons/keys-jazz-1/position", base(&p)),
            Some(&learner()),
            Some(json!({"position": 0})),
            &[("if-match", "\"4\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        lessons(&r.body),
        ["keys-jazz-1", "drums-funk-1", "drums-rock-1"]
    );
    assert_eq!(r.headers["etag"], "\"5\"");
    let (s, b) = h
        .send(
            Method::PATCH,
            &base(&p),
            Some(&learner()),
            Some(json!({"name": "Evening"})),
        )
        .await;
    assert_eq!((s, &b["name"]), (StatusCode::OK, &json!("Evening")));
    h.remove(USER, &p, "drums-funk-1", "too_hard").await;
    assert_eq!(h.events().await, 7);
    let kinds: Vec<String> = sqlx::query_scalar("SELECT type FROM playlists.events ORDER BY id")
        .fetch_all(&h.pool)
        .await
        .expect("types");
    assert_eq!(
        kinds,
        [
            "playlist_created",
            "lesson_added",
            "lesson_added",
            "lesson_added",
            "lesson_moved",
            "playlist_renamed",
            "lesson_removed"
        ]
    );
    let (s, _) = h
        .send(Method::DELETE, &base(&p), Some(&learner()), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(h.events().await, 8);
    let (s, _) = h.send(Method::GET, &base(&p), Some(&learner()), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(h.count("playlist_items").await, 0);
}

#[tokio::test]
async fn duplicate_add_is_409_and_a_full_playlist_is_409() {
    let h = harness_with(playlists::Settings {
        max_size: 2,
        ..playlists::Settings::default()
    })
    .await;
    let p = h.playlist(USER, "Two").await;
    h.add(USER, &p, "drums-funk-1").await;
    let before = h.events().await;
    let (s, b) = h
        .send(
            Method::POST,
            &format!("{}/lessons", base(&p)),
            Some(&learner()),
            Some(json!({"lesson_id": "drums-funk-1"})),
        )
        .await;
    assert_eq!(
        (s, &b["type"]),
        (
            StatusCode::CONFLICT,
            &json!("https://meridian.dev/problems/already-in-playlist")
        )
    );
    h.add(USER, &p, "drums-rock-1").await;
    let (s, b) = h
        .send(
            Method::POST,
            &format!("{}/lessons", base(&p)),
            Some(&learner()),
            Some(json!({"lesson_id": "keys-jazz-1"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["type"]
            .as_str()
            .unwrap_or_default()
            .ends_with("playlist-full")
    );
    assert_eq!(
        h.events().await,
        before + 1,
        "only the second add was recorded"
    );
}

#[tokio::test]
async fn remove_needs_a_reason_and_other_needs_a_note() {
    let h = harness().await;
    let p = h.playlist(USER, "R").await;
    h.add(USER, &p, "drums-funk-1").await;
    let before = h.events().await;
    for (query, field) in [
        ("", "reason"),
        ("?reason=", "reason"),
        ("?reason=meh", "reason"),
        ("?reason=other", "note"),
        ("?reason=other&note=%20", "note"),
        ("?reason=bored&colour=red", "colour"),
    ] {
        let (s, b) = h
            .send(
                Method::DELETE,
                &format!("{}/lessons/drums-funk-1{query}", base(&p)),
                Some(&learner()),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {b}");
        assert_eq!(b["errors"][0]["field"], field, "{query}: {b}");
    }
    assert_eq!(h.events().await, before, "no refused removal was recorded");
    let (s, b) = h
        .send(
            Method::DELETE,
            &format!(
                "{}/lessons/drums-funk-1?reason=other&note=wrong%20key",
                base(&p)
            ),
            Some(&learner()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _) = h
        .send(
            Method::DELETE,
            &format!("{}/lessons/drums-funk-1?reason=bored", base(&p)),
            Some(&learner()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "not in the playlist any more");
}

#[tokio::test]
async fn reorder_with_a_stale_version_is_412_and_without_one_428() {
    let h = harness().await;
    let p = h.playlist(USER, "Order").await;
    for l in ["drums-funk-1", "drums-rock-1"] {
        h.add(USER, &p, l).await;
    }
    // Two tabs read version 3; one moves, the other's move is refused.
    let path = format!("{}/lessons/drums-rock-1/position", base(&p));
    let r = h
        .req(
            Method::PUT,
            &path,
            Some(&learner()),
            Some(json!({"position": 0})),
            &[("if-match", "\"3\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let before = h.events().await;
    let r = h
        .req(
            Method::PUT,
            &path,
            Some(&learner()),
            Some(json!({"position": 1})),
            &[("if-match", "\"3\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.body);
    assert_eq!(r.body["current_version"], 4);
    let r = h
        .req(
            Method::PUT,
            &path,
            Some(&learner()),
            Some(json!({"position": 1})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_REQUIRED, "{}", r.body);
    let r = h
        .req(
            Method::PUT,
            &path,
            Some(&learner()),
            Some(json!({"position": 1})),
            &[("if-match", "four")],
        )
        .await;
    assert_eq!(
        (r.status, &r.body["errors"][0]["field"]),
        (StatusCode::BAD_REQUEST, &json!("If-Match"))
    );
    let r = h
        .req(
            Method::PUT,
            &path,
            Some(&learner()),
            Some(json!({"position": 2})),
            &[("if-match", "4")],
        )
        .await;
    assert_eq!(
        (r.status, &r.body["errors"][0]["field"]),
        (StatusCode::BAD_REQUEST, &json!("position"))
    );
    // If-Match is checked on the other commands too when sent.
    let r = h
        .req(
            Method::PATCH,
            &base(&p),
            Some(&learner()),
            Some(json!({"name": "x"})),
            &[("if-match", "\"3\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(h.events().await, before);
}

#[tokio::test]
async fn retries_with_an_idempotency_key_answer_the_first_answer_and_append_nothing() {
    let h = harness().await;
    let create = |key: &'static str, name: &'static str| {
        let h = &h;
        async move {
            h.req(
                Method::POST,
                &format!("/playlists/v1/users/{USER}/playlists"),
                Some(&learner()),
                Some(json!({"name": name})),
                &[("idempotency-key", key)],
            )
            .await
        }
    };
    let first = create("k-1", "Once").await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = create("k-1", "Once").await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(h.events().await, 1);
    assert_eq!(h.count("playlists").await, 1);
    let reused = create("k-1", "Another").await;
    assert_eq!(
        reused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reused.body
    );
    let p = first.body["id"].as_str().expect("id").to_owned();
    // A retried add is a replay, not a 409 duplicate.
    let add = || async {
        h.req(
            Method::POST,
            &format!("{}/lessons", base(&p)),
            Some(&learner()),
            Some(json!({"lesson_id": "bass-funk-1"})),
            &[("idempotency-key", "add-1")],
        )
        .await
    };
    let a1 = add().await;
    let a2 = add().await;
    assert_eq!(
        (a1.status, a2.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_eq!(a1.body, a2.body);
    // A retried move is a replay, not a 412 (its If-Match is stale after the first).
    let version = a1.body["version"].to_string();
    let mv = || async {
        h.req(
            Method::PUT,
            &format!("{}/lessons/bass-funk-1/position", base(&p)),
            Some(&learner()),
            Some(json!({"position": 0})),
            &[("idempotency-key", "mv-1"), ("if-match", version.as_str())],
        )
        .await
    };
    let m1 = mv().await;
    let m2 = mv().await;
    assert_eq!(
        (m1.status, m2.status),
        (StatusCode::OK, StatusCode::OK),
        "{}",
        m2.body
    );
    assert_eq!(m1.body, m2.body);
    assert_eq!(m2.headers["idempotent-replayed"], "true");
    // A retried rename answers the first answer (the same version).
    let rename = || async {
        h.req(
            Method::PATCH,
            &base(&p),
            Some(&learner()),
            Some(json!({"name": "Renamed"})),
            &[("idempotency-key", "rn-1")],
        )
        .await
    };
    let r1 = rename().await;
    let r2 = rename().await;
    assert_eq!((r1.status, r2.status), (StatusCode::OK, StatusCode::OK));
    assert_eq!(r1.body, r2.body);
    assert_eq!(r2.headers["idempotent-replayed"], "true");
    // A retried share: the same share (its token is shown once: null in the replay).
    let share = || async {
        h.req(
            Method::POST,
            &format!("{}/shares", base(&p)),
            Some(&learner()),
            Some(json!({"channel": "facebook"})),
            &[("idempotency-key", "sh-1")],
        )
        .await
    };
    let sh1 = share().await;
    let sh2 = share().await;
    assert_eq!(
        (sh1.status, sh2.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_eq!(sh1.body["id"], sh2.body["id"]);
    assert_eq!(sh2.body["token"], json!(null));
    assert_eq!(sh2.headers["idempotent-replayed"], "true");
    let share_id = sh1.body["id"].as_str().expect("share id").to_owned();
    let revoke = || async {
        h.req(
            Method::DELETE,
            &format!("{}/shares/{share_id}", base(&p)),
            Some(&learner()),
            None,
            &[("idempotency-key", "rv-1")],
        )
        .await
    };
    let v1 = revoke().await;
    let v2 = revoke().await;
    assert_eq!(
        (v1.status, v2.status),
        (StatusCode::NO_CONTENT, StatusCode::NO_CONTENT)
    );
    assert_eq!(v2.headers["idempotent-replayed"], "true");
    // A key reused on another route is 422 (the documented answer), and records nothing.
    let events = h.events().await;
    let other_route = h
        .req(
            Method::PATCH,
            &base(&p),
            Some(&learner()),
            Some(json!({"name": "Renamed"})),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(
        other_route.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        other_route.body
    );
    assert_eq!(
        other_route.body["type"]
            .as_str()
            .map(|t| t.contains("idempotency-key-reused")),
        Some(true),
        "{}",
        other_route.body
    );
    assert_eq!(h.events().await, events);
    // Keys are per user: another user's same key is their own new request, never a replay of
    // (or a refusal because of) the first user's.
    let theirs = h
        .req(
            Method::POST,
            "/playlists/v1/users/bo/playlists",
            Some(&common::other_learner()),
            Some(json!({"name": "Once"})),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.body);
    assert!(theirs.headers.get("idempotent-replayed").is_none());
    assert_ne!(theirs.body["id"], first.body["id"]);
    // Removal, session and delete too.
    let rm = || async {
        h.req(
            Method::DELETE,
            &format!("{}/lessons/bass-funk-1?reason=mastered", base(&p)),
            Some(&learner()),
            None,
            &[("idempotency-key", "rm-1")],
        )
        .await
    };
    assert_eq!(rm().await.status, StatusCode::OK);
    assert_eq!(rm().await.status, StatusCode::OK);
    let sess = || async {
        h.req(
            Method::POST,
            &format!("/playlists/v1/users/{USER}/sessions"),
            Some(&learner()),
            Some(json!({"lesson_id": "bass-funk-1", "accuracy": 0.5, "duration_secs": 60})),
            &[("idempotency-key", "s-1")],
        )
        .await
    };
    let s1 = sess().await;
    assert_eq!(s1.body, sess().await.body);
    let del = || async {
        h.req(
            Method::DELETE,
            &base(&p),
            Some(&learner()),
            None,
            &[("idempotency-key", "d-1")],
        )
        .await
    };
    assert_eq!(del().await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        del().await.status,
        StatusCode::NO_CONTENT,
        "a replay, not a 404"
    );
    let kinds: Vec<(String, i64)> =
        sqlx::query_as("SELECT type, count(*) FROM playlists.events GROUP BY type ORDER BY type")
            .fetch_all(&h.pool)
            .await
            .expect("kinds");
    let expect: Vec<(String, i64)> = [
        ("lesson_added", 1),
        ("lesson_moved", 1),
        ("lesson_removed", 1),
        ("playlist_created", 2),
        ("playlist_deleted", 1),
        ("playlist_renamed", 1),
        ("practice_recorded", 1),
        ("share_created", 1),
        ("share_revoked", 1),
    ]
    .iter()
    .map(|(k, n)| ((*k).to_owned(), *n))
    .collect();
    assert_eq!(kinds, expect, "exactly one event per command");
}

#[tokio::test]
async fn one_default_per_user_and_deleting_it_hands_it_on() {
    let h = harness().await;
    let a = h.playlist(USER, "A").await;
    let b = h.playlist(USER, "B").await;
    let (s, c) = h
        .send(
            Method::POST,
            &format!("/playlists/v1/users/{USER}/playlists"),
            Some(&learner()),
            Some(json!({"name": "C", "default": true})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let c = c["id"].as_str().expect("id").to_owned();
    let defaults = |h: &H| {
        let pool = h.pool.clone();
        async move {
            sqlx::query_scalar::<_, uuid::Uuid>(
                "SELECT id FROM playlists.playlists WHERE is_default",
            )
            .fetch_all(&pool)
            .await
            .expect("defaults")
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(defaults(&h).await, std::slice::from_ref(&c));
    let (s, _) = h
        .send(Method::DELETE, &base(&c), Some(&learner()), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        defaults(&h).await,
        std::slice::from_ref(&a),
        "the oldest remaining"
    );
    // The list pages by cursor.
    let (s, page) = h
        .send(
            Method::GET,
            &format!("/playlists/v1/users/{USER}/playlists?limit=1"),
            Some(&learner()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["items"][0]["id"], json!(a));
    let cursor = page["next_cursor"].as_str().expect("more");
    let (_, page) = h
        .send(
            Method::GET,
            &format!("/playlists/v1/users/{USER}/playlists?limit=1&cursor={cursor}"),
            Some(&learner()),
            None,
        )
        .await;
    assert_eq!(page["items"][0]["id"], json!(b));
    assert!(page.get("next_cursor").is_none());
}

/// The playlist's ETag and whether it is the default.
async fn etag(h: &H, p: &str) -> (String, bool) {
    let r = h
        .req(Method::GET, &base(p), Some(&learner()), None, &[])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let tag = r.headers["etag"].to_str().expect("etag").to_owned();
    (tag, r.body["is_default"].as_bool().expect("is_default"))
}

#[tokio::test]
async fn a_playlist_the_default_leaves_or_reaches_gets_a_new_etag_live_and_rebuilt() {
    let h = harness().await;
    let a = h.playlist(USER, "A").await;
    let (a1, default) = etag(&h, &a).await;
    assert!(default, "the first playlist is the default");
    let (s, b) = h
        .send(
            Method::POST,
            &format!("/playlists/v1/users/{USER}/playlists"),
            Some(&learner()),
            Some(json!({"name": "B", "default": true})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let b = b["id"].as_str().expect("id").to_owned();
    let (a2, default) = etag(&h, &a).await;
    assert!(!default);
    assert_ne!(a2, a1, "A's representation changed, so its ETag did");
    // An edit based on the view that still said "default" is refused.
    let r = h
        .req(
            Method::PATCH,
            &base(&a),
            Some(&learner()),
            Some(json!({"name": "stale"})),
            &[("if-match", &a1)],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.body);
    let r = h
        .req(
            Method::PATCH,
            &base(&a),
            Some(&learner()),
            Some(json!({"name": "A, renamed"})),
            &[("if-match", &a2)],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the current ETag is accepted: {}",
        r.body
    );
    let (a2, _) = etag(&h, &a).await;
    // Deleting B hands the default back to A: a new ETag again.
    let (s, _) = h
        .send(Method::DELETE, &base(&b), Some(&learner()), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (a3, default) = etag(&h, &a).await;
    assert!(default);
    assert!(a3 != a2 && a3 != a1, "{a1} {a2} {a3}");
    // The rebuild folds the same versions.
    playlists::rebuild::rebuild(&h.pool).await.expect("rebuild");
    assert_eq!(etag(&h, &a).await, (a3, true));
}

#[tokio::test]
async fn bad_input_is_rejected_naming_the_field_and_writes_nothing() {
    let h = harness().await;
    let p = h.playlist(USER, "P").await;
    let before = h.events().await;
    let users = format!("/playlists/v1/users/{USER}");
    let cases: Vec<(Method, String, Value, &str)> = vec![
        (
            Method::POST,
            format!("{users}/playlists"),
            json!({"name": ""}),
            "name",
        ),
        (
            Method::POST,
            format!("{users}/playlists"),
            json!({"name": "a\u{0}b"}),
            "name",
        ),
        (
            Method::POST,
            format!("{users}/playlists"),
            json!({"name": "x".repeat(101)}),
            "name",
        ),
        (
            Method::POST,
            format!("{users}/playlists"),
            json!({"name": "a", "colour": 1}),
            "colour",
        ),
        (
            Method::POST,
            format!("{users}/playlists"),
            json!({}),
            "name",
        ),
        (
            Method::POST,
            format!("{}/lessons", base(&p)),
            json!({"lesson_id": "nope"}),
            "lesson_id",
        ),
        (
            Method::POST,
            format!("{}/lessons", base(&p)),
            json!({"lesson_id": "a b"}),
            "lesson_id",
        ),
        (
            Method::POST,
            format!("{}/lessons", base(&p)),
            json!({"lesson_id": "drums-funk-1", "position": 5}),
            "position",
        ),
        (
            Method::POST,
            format!("{}/lessons", base(&p)),
            json!({"lesson_id": "drums-funk-1", "position": -1}),
            "position",
        ),
        (Method::PATCH, base(&p), json!({"name": "   "}), "name"),
        (
            Method::POST,
            format!("{users}/sessions"),
            json!({"lesson_id": "drums-funk-1", "accuracy": 1.5, "duration_secs": 60}),
            "accuracy",
        ),
        (
            Method::POST,
            format!("{users}/sessions"),
            json!({"lesson_id": "drums-funk-1", "accuracy": 0.5, "duration_secs": 0}),
            "duration_secs",
        ),
        (
            Method::POST,
            format!("{users}/sessions"),
            json!({"lesson_id": "drums-funk-1", "accuracy": 0.5, "duration_secs": 9, "at": "2020-01-01T00:00:00Z"}),
            "at",
        ),
        (
            Method::POST,
            format!("{}/shares", base(&p)),
            json!({"channel": "myspace"}),
            "channel",
        ),
        (
            Method::POST,
            format!("{}/shares", base(&p)),
            json!({"channel": "twitter", "expires_at": "2020-01-01T00:00:00Z"}),
            "expires_at",
        ),
    ];
    for (method, path, body, field) in cases {
        let (s, b) = h
            .send(method.clone(), &path, Some(&learner()), Some(body.clone()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {path} {body}: {b}");
        assert_eq!(
            b["errors"][0]["field"], field,
            "{method} {path} {body}: {b}"
        );
    }
    for (path, field) in [
        (format!("{users}/playlists?limit=0"), "limit"),
        (format!("{users}/playlists?cursor=zz"), "cursor"),
        (
            "/playlists/v1/users/ada/playlists/not-a-uuid".to_owned(),
            "playlist_id",
        ),
        (
            "/playlists/v1/lessons?instrument=a%20b".to_owned(),
            "instrument",
        ),
    ] {
        let (s, b) = h.send(Method::GET, &path, Some(&learner()), None).await;
        assert_eq!(
            (s, &b["errors"][0]["field"]),
            (StatusCode::BAD_REQUEST, &json!(field)),
            "{path}: {b}"
        );
    }
    assert_eq!(h.events().await, before, "nothing was recorded");
    assert_eq!(h.count("idempotency").await, 0);
}
