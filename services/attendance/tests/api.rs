//! The API over real HTTP and a real PostgreSQL: sign-in/out/correct/delete with their rules,
//! retries, the day list, bad input (problem+json naming the field, nothing stored), visits
//! ingestion (single, batch, idempotent by id, visitor upserted) and keyset pages.

mod common;

use chrono::{Duration, SubsecRound, Utc};
use common::{OTHER_SITE, SITE, admin, harness, ingest, reader, staff};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

fn sign_in_path(site: &str) -> String {
    format!("/attendance/v1/sites/{site}/attendance")
}

#[tokio::test]
async fn sign_in_out_correct_delete_with_retries() {
    let h = harness().await;
    let id = Uuid::new_v4();
    let t0 = Utc::now().trunc_subsecs(6) - Duration::hours(2);
    let body = json!({"id": id, "entity_id": "ada", "source": "kiosk", "sign_in_time": t0});
    let (s, first) = h
        .send(
            Method::POST,
            &sign_in_path(SITE),
            Some(&staff()),
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(first["entity_id"], "ada");
    // The retry replays the first attempt.
    let (s, again) = h
        .send(
            Method::POST,
            &sign_in_path(SITE),
            Some(&staff()),
            Some(body),
        )
        .await;
    assert_eq!((s, &again), (StatusCode::OK, &first));
    // A second sign-in of the same child (new id) is refused while the first is open.
    let (s, b) = h
        .send(
            Method::POST,
            &sign_in_path(SITE),
            Some(&staff()),
            Some(json!({"id": Uuid::new_v4(), "entity_id": "ada", "source": "kiosk"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["open_attendance_id"], json!(id));
    // The same child at another site is another attendance.
    let (s, _) = h
        .send(
            Method::POST,
            &sign_in_path(OTHER_SITE),
            Some(&admin()),
            Some(json!({"id": Uuid::new_v4(), "entity_id": "ada", "source": "kiosk"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);

    let out = format!("/attendance/v1/sites/{SITE}/attendance/{id}/sign-out");
    let t1 = t0 + Duration::hours(1);
    let (s, b) = h
        .send(
            Method::POST,
            &out,
            Some(&staff()),
            Some(json!({"sign_out_time": t1})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["sign_out_time"]
            .as_str()
            .map(|t| t.parse::<chrono::DateTime<Utc>>().ok()),
        Some(Some(t1))
    );
    let (s, _) = h
        .send(
            Method::POST,
            &out,
            Some(&staff()),
            Some(json!({"sign_out_time": t1})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "a retried sign-out answers again");
    let (s, b) = h
        .send(
            Method::POST,
            &out,
            Some(&staff()),
            Some(json!({"sign_out_time": t1 + Duration::minutes(5)})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");

    // Corrections keep the order rule.
    let one = format!("/attendance/v1/sites/{SITE}/attendance/{id}");
    let (s, b) = h
        .send(
            Method::PATCH,
            &one,
            Some(&staff()),
            Some(json!({"sign_in_time": t1 + Duration::minutes(1)})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = h
        .send(
            Method::PATCH,
            &one,
            Some(&staff()),
            Some(json!({"sign_in_time": t0 - Duration::minutes(10)})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let events_before = h.count("outbox").await;
    let (s, _) = h
        .send(
            Method::PATCH,
            &one,
            Some(&staff()),
            Some(json!({"sign_in_time": t0 - Duration::minutes(10)})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        h.count("outbox").await,
        events_before,
        "an unchanged correction emits nothing"
    );

    // Without an id, the Idempotency-Key makes the retry safe.
    for expected in [StatusCode::CREATED, StatusCode::OK] {
        let res = h
            .http
            .post(format!("{}{}", h.base, sign_in_path(SITE)))
            .header("authorization", staff())
            .header("idempotency-key", "kiosk-7-0001")
            .json(&json!({"entity_id": "eli", "source": "kiosk"}))
            .send()
            .await
            .expect("sign in");
        assert_eq!(res.status(), expected);
    }

    // The day's list holds it; delete is idempotent.
    let day = (t0 - Duration::minutes(10)).date_naive();
    let (s, b) = h
        .send(
            Method::GET,
            &format!("{}?day={day}", sign_in_path(SITE)),
            Some(&staff()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(
        b["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|a| a["id"] == json!(id))
    );
    for _ in 0..2 {
        let (s, _) = h.send(Method::DELETE, &one, Some(&staff()), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    let types: Vec<String> =
        sqlx::query_scalar("SELECT type FROM attendance.outbox WHERE aggregate = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&h.pool)
            .await
            .expect("events");
    assert_eq!(types, ["created", "updated", "updated", "destroyed"]);
}

#[tokio::test]
async fn day_list_pages_by_keyset() {
    let h = harness().await;
    let t0 = Utc::now() - Duration::hours(3);
    for i in 0..7 {
        let (s, _) = h
            .send(
                Method::POST,
                &sign_in_path(SITE),
                Some(&admin()),
                Some(
                    json!({"id": Uuid::new_v4(), "entity_id": format!("c{i}"), "source": "app",
                              "sign_in_time": t0 + Duration::minutes(i)}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("{}?day={}&limit=3", sign_in_path(SITE), t0.date_naive());
        if let Some(c) = &cursor {
            path = format!("{path}&cursor={c}");
        }
        let (s, b) = h.send(Method::GET, &path, Some(&staff()), None).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        for a in b["items"].as_array().expect("items") {
            seen.push(a["entity_id"].as_str().expect("entity").to_owned());
        }
        match b["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    // Days may straddle midnight UTC when the test runs just after it: compare what was seen.
    let expected: Vec<String> = (0..7)
        .map(|i| format!("c{i}"))
        .filter(|c| seen.contains(c))
        .collect();
    assert_eq!(seen, expected, "in sign-in order, each once");
    assert!(!seen.is_empty());
}

#[tokio::test]
async fn bad_input_is_rejected_and_writes_nothing() {
    let h = harness().await;
    let open = Uuid::new_v4();
    let t0 = Utc::now() - Duration::hours(1);
    let (s, _) = h
        .send(
            Method::POST,
            &sign_in_path(SITE),
            Some(&staff()),
            Some(json!({"id": open, "entity_id": "bo", "source": "kiosk", "sign_in_time": t0})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let before = (
        h.count("attendances").await,
        h.count("outbox").await,
        h.count("visits").await,
    );
    let future = Utc::now() + Duration::hours(1);
    let out = format!("/attendance/v1/sites/{SITE}/attendance/{open}/sign-out");
    let cases: Vec<(&str, Method, String, Value, StatusCode, &str)> = vec![
        (
            "sign-out before sign-in",
            Method::POST,
            out.clone(),
            json!({"sign_out_time": t0 - Duration::minutes(1)}),
            StatusCode::BAD_REQUEST,
            "sign_out_time",
        ),
        (
            "sign-out in the future",
            Method::POST,
            out.clone(),
            json!({"sign_out_time": future}),
            StatusCode::BAD_REQUEST,
            "sign_out_time",
        ),
        (
            "malformed sign-out time",
            Method::POST,
            out.clone(),
            json!({"sign_out_time": "yesterday"}),
            StatusCode::BAD_REQUEST,
            "sign_out_time",
        ),
        (
            "malformed sign-in time",
            Method::POST,
            sign_in_path(SITE),
            json!({"id": Uuid::new_v4(), "entity_id": "cyd", "source": "kiosk", "sign_in_time": "2026-13-40T99:00:00Z"}),
            StatusCode::BAD_REQUEST,
            "sign_in_time",
        ),
        (
            "sign-in in the future",
            Method::POST,
            sign_in_path(SITE),
            json!({"id": Uuid::new_v4(), "entity_id": "cyd", "source": "kiosk", "sign_in_time": future}),
            StatusCode::BAD_REQUEST,
            "sign_in_time",
        ),
        (
            "bad child id",
            Method::POST,
            sign_in_path(SITE),
            json!({"id": Uuid::new_v4(), "entity_id": "a b", "source": "kiosk"}),
            StatusCode::BAD_REQUEST,
            "entity_id",
        ),
        (
            "bad source",
            Method::POST,
            sign_in_path(SITE),
            json!({"id": Uuid::new_v4(), "entity_id": "cyd", "source": "KIOSK\u{7}"}),
            StatusCode::BAD_REQUEST,
            "source",
        ),
        (
            "unknown field",
            Method::POST,
            sign_in_path(SITE),
            json!({"id": Uuid::new_v4(), "entity_id": "cyd", "source": "kiosk", "extra": 1}),
            StatusCode::BAD_REQUEST,
            "extra",
        ),
        (
            "correction without times",
            Method::PATCH,
            format!("/attendance/v1/sites/{SITE}/attendance/{open}"),
            json!({}),
            StatusCode::BAD_REQUEST,
            "sign_in_time",
        ),
        (
            "correction out of order",
            Method::PATCH,
            format!("/attendance/v1/sites/{SITE}/attendance/{open}"),
            json!({"sign_in_time": t0, "sign_out_time": t0 - Duration::seconds(1)}),
            StatusCode::BAD_REQUEST,
            "sign_out_time",
        ),
        (
            "visit page path",
            Method::POST,
            "/attendance/v1/visits".into(),
            json!({"id": Uuid::new_v4(), "visited_at": Utc::now(), "visitor_id": Uuid::new_v4(), "page_path": "no-slash"}),
            StatusCode::BAD_REQUEST,
            "page_path",
        ),
        (
            "visit too old",
            Method::POST,
            "/attendance/v1/visits".into(),
            json!({"id": Uuid::new_v4(), "visited_at": Utc::now() - Duration::days(400), "visitor_id": Uuid::new_v4(), "page_path": "/"}),
            StatusCode::BAD_REQUEST,
            "visited_at",
        ),
        (
            "visit malformed time",
            Method::POST,
            "/attendance/v1/visits".into(),
            json!({"id": Uuid::new_v4(), "visited_at": "soon", "visitor_id": Uuid::new_v4(), "page_path": "/"}),
            StatusCode::BAD_REQUEST,
            "visited_at",
        ),
        (
            "empty batch",
            Method::POST,
            "/attendance/v1/visits/batch".into(),
            json!({"visits": []}),
            StatusCode::BAD_REQUEST,
            "visits",
        ),
        (
            "one bad visit spoils the batch",
            Method::POST,
            "/attendance/v1/visits/batch".into(),
            json!({"visits": [
             {"id": Uuid::new_v4(), "visited_at": Utc::now(), "visitor_id": Uuid::new_v4(), "page_path": "/ok"},
             {"id": Uuid::new_v4(), "visited_at": Utc::now(), "visitor_id": Uuid::new_v4(), "page_path": "/a\nb"}]}),
            StatusCode::BAD_REQUEST,
            "visits[1].page_path",
        ),
    ];
    for (name, method, path, body, status, field) in cases {
        let auth = if path.contains("/visits") {
            ingest()
        } else {
            staff()
        };
        let (s, b) = h.send(method, &path, Some(&auth), Some(body)).await;
        assert_eq!(s, status, "{name}: {b}");
        let fields: Vec<&str> = b["errors"]
            .as_array()
            .map(|e| e.iter().filter_map(|x| x["field"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            fields.iter().any(|f| f.contains(field)),
            "{name}: {field} not named in {b}"
        );
    }
    // A batch over 1,000 visits.
    let visits: Vec<Value> = (0..1001)
        .map(|_| json!({"id": Uuid::new_v4(), "visited_at": Utc::now(), "visitor_id": Uuid::new_v4(), "page_path": "/"}))
        .collect();
    let (s, b) = h
        .send(
            Method::POST,
            "/attendance/v1/visits/batch",
            Some(&ingest()),
            Some(json!({"visits": visits})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    // Unknown site, unknown attendance.
    let (s, b) = h
        .send(
            Method::POST,
            &sign_in_path("nowhere"),
            Some(&admin()),
            Some(json!({"id": Uuid::new_v4(), "entity_id": "cyd", "source": "kiosk"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, _) = h
        .send(
            Method::POST,
            &format!(
                "/attendance/v1/sites/{SITE}/attendance/{}/sign-out",
                Uuid::new_v4()
            ),
            Some(&staff()),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        (
            h.count("attendances").await,
            h.count("outbox").await,
            h.count("visits").await
        ),
        before,
        "nothing stored"
    );
    let (s, b) = h
        .send(
            Method::GET,
            "/attendance/v1/visits?limit=0",
            Some(&reader()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
}

#[tokio::test]
async fn visits_ingest_is_idempotent_and_upserts_visitors() {
    let h = harness().await;
    let visitor = Uuid::new_v4();
    let now = Utc::now();
    let visits: Vec<Value> = (0..250)
        .map(|i| json!({"id": Uuid::new_v4(), "visited_at": now - Duration::seconds(i), "visitor_id": visitor,
                        "page_path": format!("/p/{i}")}))
        .collect();
    let (s, b) = h
        .send(
            Method::POST,
            "/attendance/v1/visits/batch",
            Some(&ingest()),
            Some(json!({"visits": visits.clone()})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["received"].as_u64(), b["inserted"].as_u64()),
        (Some(250), Some(250))
    );
    // The retried batch stores nothing more and does not count the visitor twice.
    let (s, b) = h
        .send(
            Method::POST,
            "/attendance/v1/visits/batch",
            Some(&ingest()),
            Some(json!({"visits": visits.clone()})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["inserted"].as_u64(), Some(0));
    let (s, b) = h
        .send(
            Method::POST,
            "/attendance/v1/visits",
            Some(&ingest()),
            Some(visits[0].clone()),
        )
        .await;
    assert_eq!((s, b["inserted"].as_u64()), (StatusCode::OK, Some(0)));
    assert_eq!(h.count("visits").await, 250);

    let (s, b) = h
        .send(
            Method::GET,
            &format!("/attendance/v1/visitors/{visitor}?limit=100"),
            Some(&reader()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["visitor"]["visits"], 250);
    // Page through the visitor's visits and through /visits: each visit once, newest first.
    for first in [
        format!("/attendance/v1/visitors/{visitor}?limit=100"),
        format!("/attendance/v1/visits?visitor_id={visitor}&limit=100"),
        "/attendance/v1/visits?limit=100".to_owned(),
    ] {
        let mut ids = Vec::new();
        let mut path = first.clone();
        loop {
            let (s, b) = h.send(Method::GET, &path, Some(&reader()), None).await;
            assert_eq!(s, StatusCode::OK, "{b}");
            let page = if b.get("visits").is_some() {
                &b["visits"]
            } else {
                &b
            };
            for v in page["items"].as_array().expect("items") {
                assert_eq!(
                    v["visitor"]["id"],
                    json!(visitor),
                    "each visit carries its visitor"
                );
                ids.push(v["id"].as_str().expect("id").to_owned());
            }
            match page["next_cursor"].as_str() {
                Some(c) => path = format!("{first}&cursor={c}"),
                None => break,
            }
        }
        let expected: Vec<String> = visits
            .iter()
            .map(|v| v["id"].as_str().expect("id").to_owned())
            .collect();
        assert_eq!(ids, expected, "{first}");
    }
    // A time range: the 10 visits of the seconds (now-20, now-10].
    let from = (now - Duration::seconds(19)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let to = (now - Duration::seconds(9)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (s, b) = h
        .send(
            Method::GET,
            &format!("/attendance/v1/visits?from={from}&to={to}"),
            Some(&reader()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["items"].as_array().map(Vec::len), Some(10), "{b}");
}

#[tokio::test]
async fn a_retried_sign_out_without_a_time_replays_the_stored_row() {
    let h = harness().await;
    let id = Uuid::new_v4();
    let (s, _) = h
        .send(
            Method::POST,
            &sign_in_path(SITE),
            Some(&staff()),
            Some(json!({"id": id, "entity_id": "ada", "source": "kiosk",
                        "sign_in_time": Utc::now() - Duration::hours(1)})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let out = format!("/attendance/v1/sites/{SITE}/attendance/{id}/sign-out");
    let (s, first) = h
        .send(Method::POST, &out, Some(&staff()), Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let events = h.count("outbox").await;
    // The answer was lost; the kiosk retries later, again without a time: the stored row.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (s, again) = h
        .send(Method::POST, &out, Some(&staff()), Some(json!({})))
        .await;
    assert_eq!((s, &again), (StatusCode::OK, &first));
    assert_eq!(h.count("outbox").await, events, "a replay emits nothing");
    // The stored time given explicitly is a retry too; another explicit time is 409.
    let (s, b) = h
        .send(
            Method::POST,
            &out,
            Some(&staff()),
            Some(json!({"sign_out_time": first["sign_out_time"]})),
        )
        .await;
    assert_eq!((s, &b), (StatusCode::OK, &first));
    let (s, b) = h
        .send(
            Method::POST,
            &out,
            Some(&staff()),
            Some(json!({"sign_out_time": Utc::now() - Duration::minutes(1)})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(
        b["type"]
            .as_str()
            .map(|t| t.ends_with("already-signed-out")),
        Some(true),
        "{b}"
    );
    assert_eq!(h.count("outbox").await, events);
}

#[tokio::test]
async fn times_outside_the_years_1970_to_9999_are_400_naming_the_field() {
    let h = harness().await;
    let open = Uuid::new_v4();
    let (s, _) = h
        .send(
            Method::POST,
            &sign_in_path(SITE),
            Some(&staff()),
            Some(json!({"id": open, "entity_id": "bo", "source": "kiosk",
                        "sign_in_time": Utc::now() - Duration::hours(1)})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let before = (
        h.count("attendances").await,
        h.count("outbox").await,
        h.count("visits").await,
    );
    let out = format!("/attendance/v1/sites/{SITE}/attendance/{open}/sign-out");
    let one = format!("/attendance/v1/sites/{SITE}/attendance/{open}");
    let visit = |at: &str| json!({"id": Uuid::new_v4(), "visited_at": at, "visitor_id": Uuid::new_v4(), "page_path": "/"});
    // Far past (PostgreSQL refuses years before 4713 BC), just before 1970, far future (chrono's
    // last year); the URL forms with `+` escaped.
    for (past, future) in [
        ("-5000-01-01T00:00:00Z", "+262142-12-31T00:00:00Z"),
        ("1969-12-31T23:59:59Z", "+10000-01-01T00:00:00Z"),
    ] {
        let cases: Vec<(&str, Method, String, Option<Value>, &str)> = vec![
            (
                "sign-in",
                Method::POST,
                sign_in_path(SITE),
                Some(
                    json!({"id": Uuid::new_v4(), "entity_id": "cyd", "source": "kiosk", "sign_in_time": past}),
                ),
                "sign_in_time",
            ),
            (
                "sign-out",
                Method::POST,
                out.clone(),
                Some(json!({"sign_out_time": past})),
                "sign_out_time",
            ),
            (
                "sign-out future",
                Method::POST,
                out.clone(),
                Some(json!({"sign_out_time": future})),
                "sign_out_time",
            ),
            (
                "correct in",
                Method::PATCH,
                one.clone(),
                Some(json!({"sign_in_time": past})),
                "sign_in_time",
            ),
            (
                "correct out",
                Method::PATCH,
                one.clone(),
                Some(json!({"sign_out_time": future})),
                "sign_out_time",
            ),
            (
                "visit",
                Method::POST,
                "/attendance/v1/visits".into(),
                Some(visit(past)),
                "visited_at",
            ),
            (
                "visit batch",
                Method::POST,
                "/attendance/v1/visits/batch".into(),
                Some(json!({"visits": [visit(future)]})),
                "visits[0].visited_at",
            ),
            (
                "visits from",
                Method::GET,
                format!("/attendance/v1/visits?from={}", past.replace('+', "%2B")),
                None,
                "from",
            ),
            (
                "visits to",
                Method::GET,
                format!("/attendance/v1/visits?to={}", future.replace('+', "%2B")),
                None,
                "to",
            ),
            (
                "day",
                Method::GET,
                format!(
                    "{}?day={}",
                    sign_in_path(SITE),
                    future
                        .split('T')
                        .next()
                        .unwrap_or_default()
                        .replace('+', "%2B")
                ),
                None,
                "day",
            ),
        ];
        for (name, method, path, body, field) in cases {
            let auth = if path.contains("/visits") {
                if method == Method::GET {
                    reader()
                } else {
                    ingest()
                }
            } else {
                staff()
            };
            let (s, b) = h.send(method, &path, Some(&auth), body).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{name} {past}/{future}: {b}");
            let fields: Vec<&str> = b["errors"]
                .as_array()
                .map(|e| e.iter().filter_map(|x| x["field"].as_str()).collect())
                .unwrap_or_default();
            assert!(fields.contains(&field), "{name}: {field} not named in {b}");
        }
    }
    // The day the review found panicking (chrono's last day: its end overflowed), and the day
    // before 1970.
    for day in ["%2B262142-12-31", "1969-12-31", "-5000-01-01"] {
        let (s, b) = h
            .send(
                Method::GET,
                &format!("{}?day={day}", sign_in_path(SITE)),
                Some(&staff()),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{day}: {b}");
        assert_eq!(b["errors"][0]["field"], "day", "{b}");
    }
    // A hand-made cursor with such a time.
    use base64::Engine;
    let cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!(["-5000-01-01T00:00:00Z", Uuid::nil()]).to_string());
    for path in [
        format!("/attendance/v1/visits?cursor={cursor}"),
        format!("/attendance/v1/visitors/{}?cursor={cursor}", Uuid::new_v4()),
        format!("{}?cursor={cursor}", sign_in_path(SITE)),
    ] {
        let auth = if path.contains("/visit") {
            reader()
        } else {
            staff()
        };
        let (s, b) = h.send(Method::GET, &path, Some(&auth), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {b}");
        assert_eq!(b["errors"][0]["field"], "cursor", "{b}");
    }
    // The bounds themselves are accepted.
    let (s, b) = h
        .send(
            Method::GET,
            "/attendance/v1/visits?from=1970-01-01T00:00:00Z&to=9999-12-31T23:59:59Z",
            Some(&reader()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (
            h.count("attendances").await,
            h.count("outbox").await,
            h.count("visits").await
        ),
        before,
        "nothing stored"
    );
}
