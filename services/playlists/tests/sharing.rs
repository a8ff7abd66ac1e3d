//! Share links: an unguessable token of which only the hash is stored, a public read-only view
//! without private data, opens counted, revoked → 404, expired → 410.

mod common;

use chrono::Duration;
use common::{USER, analyst, harness, learner};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_shared_playlist_is_public_counts_opens_and_shows_nothing_private() {
    let h = harness().await;
    let p = h.playlist(USER, "Funk practice").await;
    for l in ["drums-funk-1", "bass-funk-1"] {
        h.add(USER, &p, l).await;
    }
    h.session(
        USER,
        "drums-funk-1",
        0.77,
        common::t0() - Duration::minutes(5),
    )
    .await;
    let (s, created) = h
        .send(
            Method::POST,
            &format!("/playlists/v1/users/{USER}/playlists/{p}/shares"),
            Some(&learner()),
            Some(json!({"channel": "whatsapp"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().expect("token").to_owned();
    assert!(token.len() >= 43, "256 random bits, base64url");
    assert_eq!(
        created["path"],
        json!(format!("/playlists/v1/shared/{token}?utm_source=whatsapp"))
    );
    // Only the hash is stored: the token appears in no table and no event.
    let found: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM playlists.events WHERE payload::text LIKE '%' || $1 || '%')
              + (SELECT count(*) FROM playlists.shares WHERE encode(token_sha256, 'escape') LIKE '%' || $1 || '%')
              + (SELECT count(*) FROM playlists.idempotency WHERE body::text LIKE '%' || $1 || '%')",
    )
    .bind(&token)
    .fetch_one(&h.pool)
    .await
    .expect("search");
    assert_eq!(found, 0);
    for _ in 0..3 {
        let (s, view) = h
            .send(
                Method::GET,
                &format!("/playlists/v1/shared/{token}"),
                None,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{view}");
        assert_eq!(view["name"], "Funk practice");
        assert_eq!(view["lessons"].as_array().map(Vec::len), Some(2));
        let text = view.to_string();
        for private in [USER, "accuracy", "user_id", "0.77", &p] {
            assert!(!text.contains(private), "{private} in {text}");
        }
    }
    let (_, list) = h
        .send(
            Method::GET,
            &format!("/playlists/v1/users/{USER}/playlists/{p}/shares"),
            Some(&learner()),
            None,
        )
        .await;
    assert_eq!(list["items"][0]["opens"], 3);
    assert_eq!(list["items"][0]["channel"], "whatsapp");
    assert!(
        !list.to_string().contains(&token),
        "the token is shown once"
    );
    let (_, stats) = h
        .send(
            Method::GET,
            "/playlists/v1/analytics/shares?from=2026-03-01&to=2026-03-31",
            Some(&analyst()),
            None,
        )
        .await;
    let whatsapp = stats["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .find(|c| c["channel"] == "whatsapp")
        .expect("whatsapp")
        .clone();
    assert_eq!(
        (whatsapp["shares"].clone(), whatsapp["opens"].clone()),
        (json!(1), json!(3))
    );
    assert_eq!(stats["shares"], 1);
    let opened: i64 =
        sqlx::query_scalar("SELECT count(*) FROM playlists.events WHERE type = 'share_opened'")
            .fetch_one(&h.pool)
            .await
            .expect("opens");
    assert_eq!(opened, 3, "an event per open");
}

#[tokio::test]
async fn revoked_is_404_expired_is_410_unknown_is_404() {
    let h = harness().await;
    let p = h.playlist(USER, "P").await;
    let (id, token) = h.share(USER, &p, "twitter").await;
    let path = format!("/playlists/v1/shared/{token}");
    let (s, _) = h.send(Method::GET, &path, None, None).await;
    assert_eq!(s, StatusCode::OK);
    let revoke = format!("/playlists/v1/users/{USER}/playlists/{p}/shares/{id}");
    let (s, _) = h
        .send(Method::DELETE, &revoke, Some(&learner()), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let events = h.events().await;
    let (s, _) = h
        .send(Method::DELETE, &revoke, Some(&learner()), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "revoking again is a no-op");
    assert_eq!(h.events().await, events);
    let (s, b) = h.send(Method::GET, &path, None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, _) = h
        .send(Method::GET, "/playlists/v1/shared/not-a-token", None, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let expires = common::t0() + Duration::hours(1);
    let (s, b) = h
        .send(
            Method::POST,
            &format!("/playlists/v1/users/{USER}/playlists/{p}/shares"),
            Some(&learner()),
            Some(json!({"channel": "facebook", "expires_at": expires})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let path = format!(
        "/playlists/v1/shared/{}",
        b["token"].as_str().expect("token")
    );
    let (s, _) = h.send(Method::GET, &path, None, None).await;
    assert_eq!(s, StatusCode::OK);
    h.clock.set(expires + Duration::seconds(1));
    let (s, b) = h.send(Method::GET, &path, None, None).await;
    assert_eq!(s, StatusCode::GONE, "{b}");
    // A deleted playlist's links are gone too.
    let (_, token) = h.share(USER, &p, "copy_link").await;
    let (s, _) = h
        .send(
            Method::DELETE,
            &format!("/playlists/v1/users/{USER}/playlists/{p}"),
            Some(&learner()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = h
        .send(
            Method::GET,
            &format!("/playlists/v1/shared/{token}"),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// Rows of any table of the service's schema with `needle` in any column (as text).
async fn rows_containing(h: &common::H, needle: &str) -> Vec<String> {
    let cols: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = 'playlists' ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&h.pool)
    .await
    .expect("columns");
    assert!(cols.iter().any(|(t, _)| t == "idempotency"));
    assert!(cols.iter().any(|(t, _)| t == "events"));
    let mut found = Vec::new();
    for (table, column) in cols {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            r#"SELECT count(*) FROM playlists."{table}" WHERE "{column}"::text LIKE '%' || $1 || '%'"#
        )))
        .bind(needle)
        .fetch_one(&h.pool)
        .await
        .expect("search");
        if n > 0 {
            found.push(format!("{table}.{column}"));
        }
    }
    found
}

#[tokio::test]
async fn a_share_created_with_an_idempotency_key_stores_no_token_and_a_replay_shows_none() {
    let h = harness().await;
    let p = h.playlist(USER, "Keyed").await;
    let path = format!("/playlists/v1/users/{USER}/playlists/{p}/shares");
    let body = json!({"channel": "twitter"});
    let key = [("idempotency-key", "share-1")];
    let first = h
        .req(
            Method::POST,
            &path,
            Some(&learner()),
            Some(body.clone()),
            &key,
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let token = first.body["token"].as_str().expect("token").to_owned();
    assert!(first.body["path"].as_str().expect("path").contains(&token));
    assert!(first.body.get("detail").is_none(), "{}", first.body);
    assert_eq!(h.count("idempotency").await, 1, "the answer is remembered");
    // Neither the token nor the path (which carries it) is stored anywhere.
    assert_eq!(rows_containing(&h, &token).await, Vec::<String>::new());
    let events = h.events().await;
    let again = h
        .req(Method::POST, &path, Some(&learner()), Some(body), &key)
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    assert_eq!(
        again
            .headers
            .get("idempotent-replayed")
            .map(reqwest::header::HeaderValue::as_bytes),
        Some(&b"true"[..])
    );
    assert_eq!(again.body["id"], first.body["id"], "the same share");
    assert_eq!(again.body["channel"], "twitter");
    assert_eq!(again.body["token"], json!(null));
    assert_eq!(again.body["path"], json!(null));
    assert!(
        again.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("shown once") && d.contains("revoke")),
        "{}",
        again.body
    );
    assert!(!again.body.to_string().contains(&token));
    assert_eq!(h.events().await, events, "a replay appends nothing");
    assert_eq!(h.count("shares").await, 1);
    // The link itself still works.
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

#[tokio::test]
async fn thirty_concurrent_opens_with_four_connections_all_answer_and_take_no_owner_lock() {
    let pools = kit::db::PoolSettings {
        max_connections: 4,
        ..kit::db::PoolSettings::default()
    };
    let h = common::harness_pool(playlists::Settings::default(), pools).await;
    let p = h.playlist(USER, "Popular").await;
    for l in ["drums-funk-1", "bass-funk-1"] {
        h.add(USER, &p, l).await;
    }
    let (_, token) = h.share(USER, &p, "twitter").await;
    let open = format!("/playlists/v1/shared/{token}");
    let started = std::time::Instant::now();
    let opens: Vec<_> = (0..30)
        .map(|_| {
            let (http, url) = (h.http.clone(), format!("{}{open}", h.base));
            tokio::spawn(async move {
                let r = http.get(url).send().await.expect("open");
                let status = r.status();
                (status, r.text().await.unwrap_or_default())
            })
        })
        .collect();
    for o in opens {
        let (s, b) = tokio::time::timeout(std::time::Duration::from_secs(10), o)
            .await
            .expect("an open answers within 10 s")
            .expect("task");
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "30 opens took {:?}",
        started.elapsed()
    );
    let (_, list) = h
        .send(
            Method::GET,
            &format!("/playlists/v1/users/{USER}/playlists/{p}/shares"),
            Some(&learner()),
            None,
        )
        .await;
    assert_eq!(list["items"][0]["opens"], 30, "{list}");
    let day_opens: i64 =
        sqlx::query_scalar("SELECT sum(opens)::bigint FROM playlists.share_counts")
            .fetch_one(&h.pool)
            .await
            .expect("counter");
    assert_eq!(day_opens, 30);

    // A command of the owner's in flight (their advisory lock and the playlist's row lock held,
    // on a connection of another pool) delays neither an open nor the owner's plain reads.
    let other = h.db.pool(playlists::SERVICE.schema);
    let mut held = other.begin().await.expect("begin");
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('playlists:' || $1, 0))")
        .bind(USER)
        .execute(&mut *held)
        .await
        .expect("user lock");
    sqlx::query("SELECT 1 FROM playlists.playlists WHERE id = $1::uuid FOR UPDATE")
        .bind(&p)
        .execute(&mut *held)
        .await
        .expect("row lock");
    let base = format!("/playlists/v1/users/{USER}/playlists/{p}");
    for (path, auth) in [
        (open.clone(), None),
        (base.clone(), Some(learner())),
        (format!("{base}/next"), Some(learner())),
        (format!("{base}/shares"), Some(learner())),
    ] {
        let (s, b) = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            h.send(Method::GET, &path, auth.as_deref(), None),
        )
        .await
        .unwrap_or_else(|_| panic!("{path} waited for the owner's locks"));
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
    }
    held.rollback().await.expect("rollback");
}
