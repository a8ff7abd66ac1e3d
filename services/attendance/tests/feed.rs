//! The live feed over real HTTP, a real PostgreSQL and its LISTEN/NOTIFY: subscribers see
//! create/update/delete in commit order; a reconnect with Last-Event-ID gets exactly what it
//! missed; two replicas on one database (the subscriber on B sees writes through A); a
//! subscriber that does not read is dropped at its queue's bound; heartbeats; tickets.

// Tests name their sites' rows a, b and their harness h.
#![allow(clippy::many_single_char_names)]

mod common;

use std::time::Duration;

use common::{SITE, SseReader, admin, harness, harness_with, instance, send, sign_in, staff};
use reqwest::{Client, Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn three_subscribers_get_every_change_in_commit_order() {
    let h = harness().await;
    let ticket = h.ticket(SITE).await;
    let mut subs = Vec::new();
    for _ in 0..3 {
        let mut r = SseReader::open(&h.base, SITE, &ticket, None).await;
        let snap = r.next().await.expect("snapshot");
        assert_eq!(snap.event, "snapshot");
        subs.push(r);
    }
    let a = sign_in(&h.http, &h.base, SITE, "ada").await;
    let b = sign_in(&h.http, &h.base, SITE, "bo").await;
    let (s, _) = h
        .send(
            Method::POST,
            &format!(
                "/attendance/v1/sites/{SITE}/attendance/{}/sign-out",
                a["id"].as_str().expect("id")
            ),
            Some(&staff()),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = h
        .send(
            Method::DELETE,
            &format!(
                "/attendance/v1/sites/{SITE}/attendance/{}",
                b["id"].as_str().expect("id")
            ),
            Some(&staff()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // Another site's change is not this stream's.
    sign_in(&h.http, &h.base, common::OTHER_SITE, "cyd").await;
    let expected = [
        ("created", a["id"].clone()),
        ("created", b["id"].clone()),
        ("updated", a["id"].clone()),
        ("destroyed", b["id"].clone()),
    ];
    for r in &mut subs {
        let mut last = 0_i64;
        for (kind, id) in &expected {
            let e = r.next().await.expect("event");
            assert_eq!((e.event.as_str(), &e.data["id"]), (*kind, id));
            let n: i64 =
                e.id.as_deref()
                    .and_then(|i| i.parse().ok())
                    .expect("numeric id");
            assert!(n > last, "ids increase in commit order");
            last = n;
        }
    }
}

#[tokio::test]
async fn reconnect_with_last_event_id_gets_exactly_the_missed_events() {
    let h = harness().await;
    let ticket = h.ticket(SITE).await;
    let mut r = SseReader::open(&h.base, SITE, &ticket, None).await;
    r.next().await.expect("snapshot");
    sign_in(&h.http, &h.base, SITE, "c1").await;
    let seen = r.next().await.expect("first event");
    drop(r); // the connection is gone
    let mut missed = Vec::new();
    for c in ["c2", "c3", "c4"] {
        missed.push(sign_in(&h.http, &h.base, SITE, c).await["id"].clone());
    }
    let mut r = SseReader::open(&h.base, SITE, &ticket, seen.id.as_deref()).await;
    for id in &missed {
        let e = r.next().await.expect("missed event");
        assert_eq!((e.event.as_str(), &e.data["id"]), ("created", id));
    }
    // And then live, with nothing repeated.
    let live = sign_in(&h.http, &h.base, SITE, "c5").await;
    let e = r.next().await.expect("live event");
    assert_eq!(e.data["id"], live["id"]);
}

#[tokio::test]
async fn a_subscriber_on_replica_b_sees_writes_through_replica_a() {
    let h = harness().await; // replica A
    let (_pool_b, base_b) = instance(&h.db, attendance::Settings::default()).await;
    let ticket = h.ticket(SITE).await; // a ticket from A opens a stream on B
    let mut r = SseReader::open(&base_b, SITE, &ticket, None).await;
    r.next().await.expect("snapshot");
    let a = sign_in(&h.http, &h.base, SITE, "ada").await;
    let e = r.next().await.expect("event through A");
    assert_eq!((e.event.as_str(), &e.data["id"]), ("created", &a["id"]));
}

#[tokio::test]
async fn snapshot_holds_the_day_and_heartbeats_flow() {
    let h = harness_with(attendance::Settings {
        heartbeat: Duration::from_millis(200),
        ..attendance::Settings::default()
    })
    .await;
    let a = sign_in(&h.http, &h.base, SITE, "ada").await;
    let ticket = h.ticket(SITE).await;
    let mut r = SseReader::open(&h.base, SITE, &ticket, None).await;
    let snap = r.next().await.expect("snapshot");
    assert_eq!(snap.data["attendances"][0]["id"], a["id"], "{snap:?}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let b = sign_in(&h.http, &h.base, SITE, "bo").await;
    let e = r.next().await.expect("event");
    assert_eq!(e.data["id"], b["id"], "{e:?}");
    assert!(
        r.comments >= 2,
        "heartbeat comments while idle: {}",
        r.comments
    );
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_is_dropped_at_its_bound() {
    let db = kit::testing::TestDb::new().await;
    let pool = db.service_pool(&attendance::SERVICE).await;
    attendance::store::upsert_site(&pool, SITE, "Oak")
        .await
        .expect("site");
    let (hub, _task) = attendance::feed::Hub::spawn(pool.clone(), 4);
    let mut slow = hub.subscribe(SITE).await.expect("subscribe");
    let mut fast = hub.subscribe(SITE).await.expect("subscribe");
    let now = chrono::Utc::now();
    let mut got_fast = 0;
    for i in 0..10 {
        let n = attendance::store::NewSignIn {
            id: uuid::Uuid::new_v4(),
            site_id: SITE,
            entity_id: &format!("c{i}"),
            source: "app",
            at: now,
        };
        attendance::store::sign_in(&pool, &n, now)
            .await
            .expect("sign in");
        // The fast subscriber reads as events come.
        let e = tokio::time::timeout(Duration::from_secs(5), fast.recv())
            .await
            .expect("in time");
        assert!(e.is_some());
        got_fast += 1;
    }
    assert_eq!(got_fast, 10);
    // The slow one holds its 4 queued events, then its queue is closed: it was dropped.
    let mut queued = 0;
    while let Some(_e) = slow.recv().await {
        queued += 1;
    }
    assert_eq!(queued, 4, "exactly the bound was queued before the drop");
    assert_eq!(hub.subscribers(), 1, "only the reader remains");
}

#[tokio::test]
async fn stream_tickets_are_checked() {
    let h = harness().await;
    let http = Client::new();
    let url = |t: &str| {
        format!(
            "{}/attendance/v1/sites/{SITE}/attendance/stream?ticket={t}",
            h.base
        )
    };
    // No ticket, a forged one, another site's.
    let res = http
        .get(format!(
            "{}/attendance/v1/sites/{SITE}/attendance/stream",
            h.base
        ))
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = http.get(url("forged")).send().await.expect("req");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let other = h.ticket(common::OTHER_SITE).await;
    let res = http.get(url(&other)).send().await.expect("req");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // An expired ticket.
    sqlx::query("UPDATE attendance.stream_tickets SET expires_at = now() - interval '1 second'")
        .execute(&h.pool)
        .await
        .expect("expire");
    let res = http.get(url(&other)).send().await.expect("req");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Staff of another site cannot get this site's ticket.
    let (s, _) = send(
        &h.http,
        &h.base,
        Method::POST,
        &format!("/attendance/v1/sites/{SITE}/stream-tickets"),
        Some(&kit::testing::bearer("staff-2", &["attendance:site-elm"])),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = send(
        &h.http,
        &h.base,
        Method::POST,
        &format!("/attendance/v1/sites/{SITE}/stream-tickets"),
        Some(&admin()),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT ticket_sha256 FROM attendance.stream_tickets LIMIT 1")
            .fetch_one(&h.pool)
            .await
            .expect("ticket");
    assert_eq!(stored.len(), 32, "only the hash is stored");
}

/// Opens `site`'s stream; the response (its status and headers are read, its body is not).
async fn open_raw(base: &str, site: &str, ticket: &str) -> reqwest::Response {
    Client::new()
        .get(format!(
            "{base}/attendance/v1/sites/{site}/attendance/stream?ticket={ticket}"
        ))
        .send()
        .await
        .expect("stream request")
}

#[tokio::test]
async fn streams_beyond_the_maximum_get_503_and_a_closed_stream_frees_its_slot() {
    let h = harness_with(attendance::Settings {
        max_subscribers: 2,
        // Short heartbeats: the server notices a closed connection at its next write.
        heartbeat: Duration::from_millis(100),
        ..attendance::Settings::default()
    })
    .await;
    let ticket = h.ticket(SITE).await;
    // Eight opened at the same instant: exactly two get a stream (the slot is reserved
    // atomically; a check of a count updated later would let several through).
    let opens = (0..8).map(|_| open_raw(&h.base, SITE, &ticket));
    let mut open = Vec::new();
    let mut refused = 0;
    for res in futures_util::future::join_all(opens).await {
        match res.status() {
            StatusCode::OK => open.push(res),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(
                    res.headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok()),
                    Some("application/problem+json")
                );
                refused += 1;
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!((open.len(), refused), (2, 6));
    // A third one while two are open: 503 problem+json.
    let res = open_raw(&h.base, SITE, &ticket).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = res.json().await.expect("problem json");
    assert_eq!(body["status"], 503, "{body}");
    // Close one: its slot comes back, and exactly one new stream fits.
    drop(open.pop());
    let mut reopened = None;
    for _ in 0..50 {
        let res = open_raw(&h.base, SITE, &ticket).await;
        if res.status() == StatusCode::OK {
            reopened = Some(res);
            break;
        }
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "a closed stream's slot was not freed");
    let res = open_raw(&h.base, SITE, &ticket).await;
    assert_eq!(
        res.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "still two at most"
    );
}

#[tokio::test]
async fn a_stream_ends_cleanly_at_its_maximum_lifetime() {
    let h = harness_with(attendance::Settings {
        stream_max: Duration::from_secs(1),
        heartbeat: Duration::from_millis(200),
        max_subscribers: 1,
        ..attendance::Settings::default()
    })
    .await;
    let ticket = h.ticket(SITE).await;
    let started = std::time::Instant::now();
    let mut r = SseReader::open(&h.base, SITE, &ticket, None).await;
    assert_eq!(r.next().await.expect("snapshot").event, "snapshot");
    assert!(r.next().await.is_none(), "the stream ends");
    let lived = started.elapsed();
    assert!(
        lived >= Duration::from_secs(1) && lived < Duration::from_secs(5),
        "{lived:?}"
    );
    // Its slot is free again (max 1): a new stream opens.
    let res = open_raw(&h.base, SITE, &ticket).await;
    assert_eq!(res.status(), StatusCode::OK);
}
