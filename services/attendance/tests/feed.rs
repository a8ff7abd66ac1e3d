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
