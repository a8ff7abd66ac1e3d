//! The retention sweep against a real PostgreSQL: visits and visitors older than the visits
//! window go, feed events (the outbox) older than their shorter window go, expired tickets go,
//! and everything newer stays. The sweep is run with a clock moved forward.

mod common;

use std::sync::Arc;

use chrono::{Duration, Utc};
use common::{SITE, SseReader, harness, ingest, sign_in};
use kit::clock::PinnedClock;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn the_sweep_deletes_only_what_is_older_than_its_window() {
    let h = harness().await;
    let settings = attendance::Settings::default();
    let now = Utc::now();
    let (s, b) = h
        .send(
            Method::POST,
            "/attendance/v1/visits",
            Some(&ingest()),
            Some(serde_json::json!({
                "id": uuid::Uuid::new_v4(),
                "visited_at": now - Duration::hours(1),
                "visitor_id": uuid::Uuid::new_v4(),
                "page_path": "/home",
            })),
        )
        .await;
    assert!(s == StatusCode::CREATED || s == StatusCode::OK, "{s} {b}");
    sign_in(&h.http, &h.base, SITE, "child-1").await;
    h.ticket(SITE).await;
    let outbox_before = h.count("outbox").await;
    assert!(outbox_before >= 1);
    let sweep = |days: i64| {
        let (pool, clock) = (
            h.pool.clone(),
            Arc::new(PinnedClock::new(now + Duration::days(days))),
        );
        async move {
            attendance::sweeper::sweep_once(&pool, &settings, clock.as_ref())
                .await
                .expect("sweep")
        }
    };

    // A day later: only the expired ticket goes.
    sweep(1).await;
    assert_eq!(h.count("stream_tickets").await, 0);
    assert_eq!(h.count("outbox").await, outbox_before);
    assert_eq!(h.count("visits").await, 1);

    // Six days later the feed's events are inside their 7 days; eight days later they are past
    // them (visits, 90 days, stay).
    sweep(6).await;
    assert_eq!(h.count("outbox").await, outbox_before);
    sweep(8).await;
    assert_eq!(h.count("outbox").await, 0);
    assert_eq!(h.count("visits").await, 1);
    assert_eq!(h.count("visitors").await, 1);
    let horizon = attendance::store::swept_through(&h.pool)
        .await
        .expect("horizon");
    assert!(horizon >= outbox_before, "{horizon}");

    // A resume from before the horizon may have lost events: it gets a snapshot, not a backlog
    // with a silent gap. A resume from the horizon on gets exactly what came after.
    let created = sign_in(&h.http, &h.base, SITE, "child-2").await;
    let ticket = h.ticket(SITE).await;
    let mut r = SseReader::open(&h.base, SITE, &ticket, Some("0")).await;
    let first = r.next().await.expect("an event");
    assert_eq!(first.event, "snapshot", "{first:?}");
    assert_eq!(
        first.data["attendances"].as_array().map(Vec::len),
        Some(2),
        "{first:?}"
    );
    let horizon_id = horizon.to_string();
    let mut r = SseReader::open(&h.base, SITE, &ticket, Some(&horizon_id)).await;
    let first = r.next().await.expect("an event");
    assert_eq!(first.event, "created", "{first:?}");
    assert_eq!(first.data["id"], created["id"], "{first:?}");

    // Ninety-one days later: the visit and its visitor go too.
    sweep(91).await;
    assert_eq!(h.count("visits").await, 0);
    assert_eq!(h.count("visitors").await, 0);
    // Attendance itself is the record: never swept.
    assert_eq!(h.count("attendances").await, 2);
}
