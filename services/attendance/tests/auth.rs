//! Who may call what, route by route, over real HTTP and a real PostgreSQL: no token and every
//! kind of bad token → 401 problem+json; staff of another site, the producer on a read, a
//! reader on a write, other services' scopes → 403, and nothing changes; staff of the site,
//! `attendance:admin`, `attendance:ingest` (visit writes), `attendance:read` (visit reads) →
//! 2xx. The stream is authorised by a ticket (tests/feed.rs); the live page is public.

mod common;

use chrono::{Duration, SubsecRound, Utc};
use common::{H, SITE, admin, harness, ingest, reader, staff};
use kit::testing::{bad_tokens, bearer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

struct Route {
    method: Method,
    path: String,
    body: Box<dyn Fn() -> Option<Value>>,
    forbidden: Vec<String>,
    allowed: Vec<String>,
}

fn visit() -> Value {
    json!({"id": Uuid::new_v4(), "visited_at": Utc::now(), "visitor_id": Uuid::new_v4(), "page_path": "/"})
}

fn others() -> Vec<String> {
    vec![
        bearer("staff-2", &["attendance:site-elm"]),
        bearer("someone", &[]),
        bearer("svc", &["streams:admin", "calls:admin", "learning:admin"]),
    ]
}

async fn routes(h: &H) -> Vec<Route> {
    let t0 = Utc::now().trunc_subsecs(6) - Duration::hours(1);
    let a = common::sign_in(&h.http, &h.base, SITE, "ada").await;
    let att = a["id"].as_str().expect("id").to_owned();
    let doomed = common::sign_in(&h.http, &h.base, SITE, "bo").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let visitor = Uuid::new_v4();
    let (s, _) = h
        .send(Method::POST, "/attendance/v1/visits", Some(&ingest()),
              Some(json!({"id": Uuid::new_v4(), "visited_at": Utc::now(), "visitor_id": visitor, "page_path": "/"})))
        .await;
    assert_eq!(s, StatusCode::OK);
    let site_staff = || vec![staff(), admin()];
    let not_site = || [others(), vec![ingest(), reader()]].concat();
    let sign_out_at = a["sign_in_time"].as_str().expect("t").to_owned();
    vec![
        Route {
            method: Method::PUT,
            path: format!("/attendance/v1/sites/{SITE}"),
            body: Box::new(|| Some(json!({"name": "Oak"}))),
            forbidden: [not_site(), vec![staff()]].concat(),
            allowed: vec![admin()],
        },
        Route {
            method: Method::POST,
            path: format!("/attendance/v1/sites/{SITE}/attendance"),
            body: Box::new(|| {
                Some(
                    json!({"id": Uuid::new_v4(), "entity_id": format!("k{}", Uuid::new_v4().simple()), "source": "kiosk"}),
                )
            }),
            forbidden: not_site(),
            allowed: site_staff(),
        },
        Route {
            method: Method::GET,
            path: format!("/attendance/v1/sites/{SITE}/attendance"),
            body: Box::new(|| None),
            forbidden: not_site(),
            allowed: site_staff(),
        },
        Route {
            method: Method::POST,
            path: format!("/attendance/v1/sites/{SITE}/attendance/{att}/sign-out"),
            body: Box::new(move || Some(json!({"sign_out_time": sign_out_at}))),
            forbidden: not_site(),
            allowed: site_staff(),
        },
        Route {
            method: Method::PATCH,
            path: format!("/attendance/v1/sites/{SITE}/attendance/{att}"),
            body: Box::new(move || Some(json!({"sign_in_time": t0}))),
            forbidden: not_site(),
            allowed: site_staff(),
        },
        Route {
            method: Method::DELETE,
            path: format!("/attendance/v1/sites/{SITE}/attendance/{doomed}"),
            body: Box::new(|| None),
            forbidden: not_site(),
            allowed: site_staff(),
        },
        Route {
            method: Method::POST,
            path: format!("/attendance/v1/sites/{SITE}/stream-tickets"),
            body: Box::new(|| None),
            forbidden: not_site(),
            allowed: site_staff(),
        },
        Route {
            method: Method::POST,
            path: "/attendance/v1/visits".into(),
            body: Box::new(|| Some(visit())),
            forbidden: [others(), vec![staff(), reader()]].concat(),
            allowed: vec![ingest(), admin()],
        },
        Route {
            method: Method::POST,
            path: "/attendance/v1/visits/batch".into(),
            body: Box::new(|| Some(json!({"visits": [visit(), visit()]}))),
            forbidden: [others(), vec![staff(), reader()]].concat(),
            allowed: vec![ingest(), admin()],
        },
        Route {
            method: Method::GET,
            path: "/attendance/v1/visits".into(),
            body: Box::new(|| None),
            forbidden: [others(), vec![staff(), ingest()]].concat(),
            allowed: vec![reader(), admin()],
        },
        Route {
            method: Method::GET,
            path: format!("/attendance/v1/visitors/{visitor}"),
            body: Box::new(|| None),
            forbidden: [others(), vec![staff(), ingest()]].concat(),
            allowed: vec![reader(), admin()],
        },
    ]
}

async fn rows(h: &H) -> Vec<i64> {
    let mut v = Vec::new();
    for t in [
        "sites",
        "attendances",
        "outbox",
        "stream_tickets",
        "visits",
        "visitors",
    ] {
        v.push(h.count(t).await);
    }
    v
}

#[tokio::test]
async fn every_route_refuses_missing_and_bad_tokens_and_the_wrong_caller() {
    let h = harness().await;
    let bad = bad_tokens("admin-1", &[attendance::api::SCOPE_ADMIN]);
    for r in routes(&h).await {
        let what = format!("{} {}", r.method, r.path);
        let before = rows(&h).await;
        let (s, p) = h.send(r.method.clone(), &r.path, None, (r.body)()).await;
        assert_eq!(
            (s, &p["status"]),
            (StatusCode::UNAUTHORIZED, &json!(401)),
            "{what}: no token"
        );
        for (kind, token) in &bad {
            let (s, _) = h
                .send(
                    r.method.clone(),
                    &r.path,
                    Some(&format!("Bearer {token}")),
                    (r.body)(),
                )
                .await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: {kind}");
        }
        for caller in &r.forbidden {
            let (s, p) = h
                .send(r.method.clone(), &r.path, Some(caller), (r.body)())
                .await;
            assert_eq!(
                (s, &p["status"]),
                (StatusCode::FORBIDDEN, &json!(403)),
                "{what}: {p}"
            );
        }
        assert_eq!(
            rows(&h).await,
            before,
            "{what}: a refused request changed something"
        );
        for caller in &r.allowed {
            let (s, p) = h
                .send(r.method.clone(), &r.path, Some(caller), (r.body)())
                .await;
            assert!(s.is_success(), "{what}: an allowed caller got {s}: {p}");
        }
    }
}

#[tokio::test]
async fn staff_of_another_site_get_403_even_for_a_site_that_does_not_exist() {
    let h = harness().await;
    let (s, _) = h
        .send(
            Method::POST,
            "/attendance/v1/sites/ghost/attendance",
            Some(&staff()),
            Some(json!({"id": Uuid::new_v4(), "entity_id": "a", "source": "kiosk"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "the site check says nothing about which sites exist"
    );
}

#[tokio::test]
async fn the_live_page_is_public_and_every_operation_states_its_caller() {
    let h = harness().await;
    let res = h
        .http
        .get(format!("{}/attendance/v1/sites/{SITE}/live", h.base))
        .send()
        .await
        .expect("page");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.expect("html").contains("EventSource"));
    let (s, api) = h.send(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let paths = api["paths"].as_object().expect("paths");
    let mut n = 0;
    for (path, ops) in paths.iter().filter(|(p, _)| p.starts_with("/attendance/")) {
        for (method, op) in ops.as_object().expect("ops") {
            let rule = op["x-meridian-caller"].as_str().unwrap_or_default();
            assert!(
                rule.starts_with("bearer:") || rule.starts_with("public:"),
                "{method} {path}: {op}"
            );
            n += 1;
        }
    }
    assert_eq!(n, 13, "every attendance operation");
}
