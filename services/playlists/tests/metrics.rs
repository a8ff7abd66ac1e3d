//! `playlists_events_total` counts events that are in the log: a command (or a share open) whose
//! transaction rolls back after it recorded its event counts nothing.

mod common;

use common::{USER, harness, learner};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn events_total(h: &common::H, kind: &str) -> u64 {
    let text = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    text.lines()
        .filter(|l| l.starts_with("playlists_events_total{"))
        .filter(|l| l.contains(&format!("type=\"{kind}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Makes every insert into `table` fail, so a transaction fails after its event was recorded.
async fn break_table(h: &common::H, table: &str) {
    for sql in [
        "CREATE OR REPLACE FUNCTION playlists.refuse() RETURNS trigger LANGUAGE plpgsql AS
         $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
            .to_owned(),
        format!(
            "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON playlists.{table}
             FOR EACH ROW EXECUTE FUNCTION playlists.refuse()"
        ),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&h.pool)
            .await
            .expect("trigger");
    }
}

async fn mend_table(h: &common::H, table: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP TRIGGER refuse ON playlists.{table}"
    )))
    .execute(&h.pool)
    .await
    .expect("drop trigger");
}

#[tokio::test]
async fn events_are_counted_after_their_commit_only() {
    let h = harness().await;
    let playlist = h.playlist(USER, "Counted").await;
    assert_eq!(events_total(&h, "playlist_created").await, 1);

    // The event is appended and projected, then remembering the answer fails: rolled back.
    break_table(&h, "idempotency").await;
    let res = h
        .req(
            Method::POST,
            &format!("/playlists/v1/users/{USER}/playlists"),
            Some(&learner()),
            Some(json!({"name": "Lost"})),
            &[("idempotency-key", "lost-1")],
        )
        .await;
    assert!(res.status.is_server_error(), "{} {}", res.status, res.body);
    mend_table(&h, "idempotency").await;
    assert_eq!(h.events().await, 1, "nothing committed");
    assert_eq!(events_total(&h, "playlist_created").await, 1);

    // A share open whose day counter fails: rolled back, not counted.
    let (_, token) = h.share(USER, &playlist, "twitter").await;
    let open = format!("/playlists/v1/shared/{token}");
    let (status, _) = h.send(Method::GET, &open, None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events_total(&h, "share_opened").await, 1);
    break_table(&h, "share_counts").await;
    let (status, body) = h.send(Method::GET, &open, None, None).await;
    assert!(status.is_server_error(), "{status} {body}");
    mend_table(&h, "share_counts").await;
    assert_eq!(events_total(&h, "share_opened").await, 1);
    let (status, _) = h.send(Method::GET, &open, None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events_total(&h, "share_opened").await, 2);
}
