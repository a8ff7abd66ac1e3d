//! Who may call what, route by route: no token and every kind of bad token → 401; another
//! learner, an analyst on a learner's route, a learner on analytics, other services' scopes →
//! 403, and nothing changes; the learner in the path and `playlists:admin` (analytics:
//! `playlists:analytics`) → 2xx. The catalogue and a shared playlist are public by design.

mod common;

use common::{H, USER, admin, analyst, harness, learner, other_learner};
use kit::testing::{bad_tokens, bearer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Route {
    method: Method,
    path: String,
    body: Option<Value>,
    forbidden: Vec<String>,
    allowed: Vec<String>,
}

fn others() -> Vec<String> {
    vec![
        other_learner(),
        bearer(
            "slo-probe-client",
            &["playlists:user-bo", "playlists:user-"],
        ),
        bearer("someone", &[]),
        bearer(
            "svc",
            &[
                "streams:admin",
                "calls:admin",
                "learning:admin",
                "attendance:admin",
            ],
        ),
    ]
}

async fn routes(h: &H) -> Vec<Route> {
    let p = h.playlist(USER, "Auth").await;
    for l in ["drums-funk-1", "drums-rock-1", "keys-jazz-1", "keys-pop-1"] {
        h.add(USER, &p, l).await;
    }
    let doomed = h.playlist(USER, "Doomed").await;
    let doomed2 = h.playlist(USER, "Doomed too").await;
    let (share, _) = h.share(USER, &p, "twitter").await;
    let u = format!("/playlists/v1/users/{USER}");
    let pl = format!("{u}/playlists/{p}");
    let owner = || vec![learner(), admin()];
    let not_owner = || [others(), vec![analyst()]].concat();
    let analysts = || vec![analyst(), admin()];
    let not_analysts = || [others(), vec![learner()]].concat();
    let mut v = vec![
        Route {
            method: Method::POST,
            path: format!("{u}/playlists"),
            body: Some(json!({"name": "n"})),
            forbidden: not_owner(),
            allowed: owner(),
        },
        Route {
            method: Method::GET,
            path: format!("{u}/playlists"),
            body: None,
            forbidden: not_owner(),
            allowed: owner(),
        },
        Route {
            method: Method::GET,
            path: pl.clone(),
            body: None,
            forbidden: not_owner(),
            allowed: owner(),
        },
        Route {
            method: Method::PATCH,
            path: pl.clone(),
            body: Some(json!({"name": "m"})),
            forbidden: not_owner(),
            allowed: owner(),
        },
        Route {
            method: Method::DELETE,
            path: format!("{u}/playlists/{doomed}"),
            body: None,
            forbidden: not_owner(),
            allowed: vec![learner()],
        },
        Route {
            method: Method::DELETE,
            path: format!("{u}/playlists/{doomed2}"),
            body: None,
            forbidden: not_owner(),
            allowed: vec![admin()],
        },
        Route {
            method: Method::GET,
            path: format!("{pl}/next"),
            body: None,
            forbidden: not_owner(),
            allowed: owner(),
        },
        Route {
            method: Method::POST,
            path: format!("{pl}/shares"),
            body: Some(json!({"channel": "whatsapp"})),
            forbidden: not_owner(),
            allowed: owner(),
        },
        Route {
            method: Method::GET,
            path: format!("{pl}/shares"),
            body: None,
            forbidden: not_owner(),
            allowed: owner(),
        },
        Route {
            method: Method::DELETE,
            path: format!("{pl}/shares/{share}"),
            body: None,
            forbidden: not_owner(),
            allowed: owner(),
        },
        Route {
            method: Method::POST,
            path: format!("{u}/sessions"),
            body: Some(json!({"lesson_id": "drums-funk-1", "accuracy": 0.5, "duration_secs": 60})),
            forbidden: not_owner(),
            allowed: owner(),
        },
        Route {
            method: Method::GET,
            path: format!("{u}/sessions"),
            body: None,
            forbidden: not_owner(),
            allowed: owner(),
        },
        Route {
            method: Method::GET,
            path: "/playlists/v1/analytics/removals".into(),
            body: None,
            forbidden: not_analysts(),
            allowed: analysts(),
        },
        Route {
            method: Method::GET,
            path: "/playlists/v1/analytics/shares".into(),
            body: None,
            forbidden: not_analysts(),
            allowed: analysts(),
        },
        Route {
            method: Method::GET,
            path: "/playlists/v1/analytics/retention".into(),
            body: None,
            forbidden: not_analysts(),
            allowed: analysts(),
        },
    ];
    // A reorder needs If-Match: every call to it sends the playlist's current ETag
    // (see `if_match`), so a refusal is the caller's and not a 428.
    v.push(Route {
        method: Method::PUT,
        path: format!("{pl}/lessons/drums-funk-1/position"),
        body: Some(json!({"position": 3})),
        forbidden: not_owner(),
        allowed: owner(),
    });
    // Add/remove alternate so both allowed callers succeed.
    v.push(Route {
        method: Method::POST,
        path: format!("{pl}/lessons"),
        body: Some(json!({"lesson_id": "bass-rock-1"})),
        forbidden: not_owner(),
        allowed: vec![learner()],
    });
    v.push(Route {
        method: Method::DELETE,
        path: format!("{pl}/lessons/bass-rock-1?reason=bored"),
        body: None,
        forbidden: not_owner(),
        allowed: vec![admin()],
    });
    v
}

/// The If-Match a route needs: the reorder's playlist's current version (read as admin).
async fn if_match(h: &H, r: &Route) -> Option<String> {
    let playlist = r
        .path
        .strip_suffix("/position")?
        .split("/lessons/")
        .next()?;
    let (s, b) = h.send(Method::GET, playlist, Some(&admin()), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    Some(format!("\"{}\"", b["version"]))
}

/// Sends `r` as `auth`, with If-Match when the route needs it.
async fn call(h: &H, r: &Route, auth: Option<&str>) -> (StatusCode, Value) {
    let tag = if_match(h, r).await;
    let headers: Vec<(&str, &str)> = tag.iter().map(|t| ("if-match", t.as_str())).collect();
    let res = h
        .req(r.method.clone(), &r.path, auth, r.body.clone(), &headers)
        .await;
    (res.status, res.body)
}

async fn rows(h: &H) -> Vec<i64> {
    let mut v = Vec::new();
    for t in [
        "events",
        "playlists",
        "playlist_items",
        "shares",
        "practice_sessions",
        "idempotency",
    ] {
        v.push(h.count(t).await);
    }
    v
}

#[tokio::test]
async fn every_route_refuses_missing_and_bad_tokens_and_the_wrong_caller() {
    let h = harness().await;
    let bad = bad_tokens(USER, &[]);
    for r in routes(&h).await {
        let what = format!("{} {}", r.method, r.path);
        let before = rows(&h).await;
        let (s, p) = call(&h, &r, None).await;
        assert_eq!(
            (s, &p["status"]),
            (StatusCode::UNAUTHORIZED, &json!(401)),
            "{what}: no token"
        );
        for (kind, token) in &bad {
            let (s, _) = call(&h, &r, Some(&format!("Bearer {token}"))).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: {kind}");
        }
        for caller in &r.forbidden {
            let (s, p) = call(&h, &r, Some(caller)).await;
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
            let (s, p) = call(&h, &r, Some(caller)).await;
            assert!(s.is_success(), "{what}: an allowed caller got {s}: {p}");
        }
    }
}

#[tokio::test]
async fn a_user_scope_acts_for_that_one_user() {
    let h = harness().await;
    let probe = bearer("1example-client-id", &["playlists:user-slo-probe"]);
    let (s, b) = h
        .send(
            Method::POST,
            "/playlists/v1/users/slo-probe/playlists",
            Some(&probe),
            Some(json!({"name": "gate"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, _) = h
        .send(
            Method::GET,
            &format!("/playlists/v1/users/{USER}/playlists"),
            Some(&probe),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_learner_cannot_reach_another_learners_playlist_through_their_own_path() {
    let h = harness().await;
    let theirs = h.playlist("bo", "Bo's").await;
    // ada's own path, bo's playlist id: not found (never "forbidden", which would confirm it).
    let (s, _) = h
        .send(
            Method::GET,
            &format!("/playlists/v1/users/{USER}/playlists/{theirs}"),
            Some(&learner()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = h
        .send(
            Method::POST,
            &format!("/playlists/v1/users/{USER}/playlists/{theirs}/lessons"),
            Some(&learner()),
            Some(json!({"lesson_id": "drums-funk-1"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn public_routes_are_public_and_every_operation_states_its_caller() {
    let h = harness().await;
    let (s, b) = h
        .send(Method::GET, "/playlists/v1/lessons?limit=5", None, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["items"].as_array().map(Vec::len), Some(5));
    let (s, api) = h.send(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let paths = api["paths"].as_object().expect("paths");
    let mut n = 0;
    for (path, ops) in paths.iter().filter(|(p, _)| p.starts_with("/playlists/")) {
        for (method, op) in ops.as_object().expect("ops") {
            let rule = op["x-meridian-caller"].as_str().unwrap_or_default();
            assert!(
                rule.starts_with("bearer:") || rule.starts_with("public:"),
                "{method} {path}: {op}"
            );
            n += 1;
        }
    }
    assert_eq!(n, 19, "every playlists operation");
    let put = &paths["/playlists/v1/users/{user_id}/playlists/{playlist_id}/lessons/{lesson_id}/position"]
        ["put"];
    let params = put["parameters"].to_string();
    assert!(
        params.contains("If-Match") && params.contains("Idempotency-Key"),
        "{params}"
    );
}
