//! Who may call what, route by route, over real HTTP and a real PostgreSQL with the real files
//! imported: no token and every kind of bad token → 401 (problem+json); another learner, a
//! reader on a write, tokens with other services' scopes → 403, and nothing changes; the
//! learner themself, `learning:read` (reads) and `learning:admin` → 2xx. The curriculum and
//! assessment routes take any verified caller; health is public.

mod common;

use common::{Body, H, ITEM, LESSON, ME, OTHER, PAPER, harness};
use kit::testing::{bad_tokens, bearer};
use learning::api::{SCOPE_ADMIN, SCOPE_READ};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Route {
    method: Method,
    path: String,
    forbidden: Vec<String>,
    allowed: Vec<String>,
}

fn body_for(method: &Method) -> Body<'static> {
    if method == Method::PATCH {
        Body::Json(json!({ "metadata": { "probe": true } }))
    } else {
        Body::None
    }
}

fn routes() -> Vec<Route> {
    let stranger = || {
        vec![
            bearer(OTHER, &[]),
            // Other services' rights are not learning's.
            bearer(OTHER, &["streams:admin", "calls:admin"]),
        ]
    };
    let readers = || {
        vec![
            bearer(ME, &[]),
            bearer("support", &[SCOPE_READ]),
            bearer("admin", &[SCOPE_ADMIN]),
        ]
    };
    let anyone = || {
        vec![
            bearer(ME, &[]),
            bearer(OTHER, &[]),
            bearer("some-service", &["streams:sessions"]),
        ]
    };
    vec![
        Route {
            method: Method::GET,
            path: format!("/learning/v1/users/{ME}"),
            forbidden: stranger(),
            allowed: readers(),
        },
        Route {
            method: Method::GET,
            path: format!("/learning/v1/users/{ME}/activity"),
            forbidden: stranger(),
            allowed: readers(),
        },
        Route {
            method: Method::PATCH,
            path: format!("/learning/v1/users/{ME}"),
            // learning:read never writes.
            forbidden: [stranger(), vec![bearer("support", &[SCOPE_READ])]].concat(),
            allowed: vec![bearer(ME, &[]), bearer("admin", &[SCOPE_ADMIN])],
        },
        Route {
            method: Method::GET,
            path: format!("/learning/v1/lessons/{LESSON}"),
            forbidden: vec![],
            allowed: anyone(),
        },
        Route {
            method: Method::GET,
            path: format!("/learning/v1/papers/{PAPER}"),
            forbidden: vec![],
            allowed: anyone(),
        },
        Route {
            method: Method::GET,
            path: format!("/learning/v1/items/{ITEM}"),
            forbidden: vec![],
            allowed: anyone(),
        },
    ]
}

async fn assert_problem(res: reqwest::Response, status: StatusCode, what: &str) {
    assert_eq!(res.status(), status, "{what}");
    assert_eq!(
        res.headers()["content-type"],
        "application/problem+json",
        "{what}"
    );
    let p: Value = res.json().await.expect("problem body");
    assert_eq!(p["status"], status.as_u16(), "{what}: {p}");
}

#[tokio::test]
async fn every_route_refuses_missing_and_bad_tokens_and_the_wrong_caller() {
    let h: H = harness().await;
    let bad = bad_tokens(ME, &[SCOPE_READ, SCOPE_ADMIN]);
    for r in routes() {
        let what = format!("{} {}", r.method, r.path);
        let before = h.profiles().await;
        let res = h
            .send(r.method.clone(), &r.path, None, body_for(&r.method))
            .await;
        assert!(res.headers().contains_key("www-authenticate"), "{what}");
        assert_problem(res, StatusCode::UNAUTHORIZED, &format!("{what}: no token")).await;
        for (kind, token) in &bad {
            let res = h
                .send(
                    r.method.clone(),
                    &r.path,
                    Some(&format!("Bearer {token}")),
                    body_for(&r.method),
                )
                .await;
            assert_problem(res, StatusCode::UNAUTHORIZED, &format!("{what}: {kind}")).await;
        }
        for caller in &r.forbidden {
            let res = h
                .send(r.method.clone(), &r.path, Some(caller), body_for(&r.method))
                .await;
            assert_problem(res, StatusCode::FORBIDDEN, &what).await;
        }
        assert_eq!(
            h.profiles().await,
            before,
            "{what}: a refused request changed something"
        );
        for caller in &r.allowed {
            let res = h
                .send(r.method.clone(), &r.path, Some(caller), body_for(&r.method))
                .await;
            assert_eq!(res.status(), StatusCode::OK, "{what}: an allowed caller");
        }
    }
}

#[tokio::test]
async fn another_learner_gets_403_even_for_a_user_that_does_not_exist() {
    // The ownership check comes before the lookup: a 403 says nothing about who exists.
    let h = harness().await;
    let other = bearer(OTHER, &[]);
    for (method, path) in [
        (Method::GET, "/learning/v1/users/nobody-at-all"),
        (Method::GET, "/learning/v1/users/nobody-at-all/activity"),
        (Method::PATCH, "/learning/v1/users/nobody-at-all"),
    ] {
        let res = h
            .send(method.clone(), path, Some(&other), body_for(&method))
            .await;
        assert_problem(res, StatusCode::FORBIDDEN, path).await;
    }
    let (status, p) = h
        .get(
            "/learning/v1/users/nobody-at-all",
            &bearer("admin", &[SCOPE_ADMIN]),
        )
        .await;
    assert_eq!(status, 404, "{p}");
}

#[tokio::test]
async fn health_is_public_and_documented_as_such() {
    let h = harness().await;
    let res = h
        .send(Method::GET, "/learning/v1/health", None, Body::None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.expect("json");
    assert_eq!(
        (v["status"].as_str(), v["database"].as_str()),
        (Some("ok"), Some("ok"))
    );

    let api: Value = h
        .http
        .get(format!("{}/openapi.json", h.base))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    let op = &api["paths"]["/learning/v1/health"]["get"];
    assert!(
        op["x-meridian-caller"]
            .as_str()
            .is_some_and(|r| r.starts_with("public:")),
        "{op}"
    );
    let patch = &api["paths"]["/learning/v1/users/{user_id}"]["patch"];
    let rule = patch["x-meridian-caller"].as_str().unwrap_or_default();
    assert!(
        rule.contains(SCOPE_ADMIN) && !rule.contains(SCOPE_READ),
        "{rule}"
    );
}
