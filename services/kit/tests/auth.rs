//! Bearer-token identity through real HTTP: every kind of bad token is refused with the same
//! 401, scopes and subjects reach handlers, the OpenAPI document states each route's caller,
//! and a key rotated in at the issuer is trusted without a restart (and without a fetch per
//! request).

use std::{sync::Arc, time::Duration};

use aide::axum::{ApiRouter, routing::get_with};
use kit::{
    Caller,
    app::{HttpSettings, Mounted},
    auth::{Authenticator, local::LocalIssuer},
    health::Health,
    testing::{JwksServer, bad_tokens, bearer, issuer, spawn_app},
};
use reqwest::{Client, StatusCode};
use serde_json::Value;

async fn whoami(caller: Caller) -> kit::ApiResult<axum::Json<Value>> {
    Ok(axum::Json(
        serde_json::json!({ "sub": &*caller.sub, "scopes": caller.scopes() }),
    ))
}

async fn admin_only(caller: Caller) -> kit::ApiResult<kit::NoContent> {
    caller.require_scope("things:admin")?;
    Ok(kit::NoContent)
}

async fn open() -> &'static str {
    "ok"
}

fn router() -> ApiRouter {
    ApiRouter::new()
        .api_route(
            "/things/v1/whoami",
            get_with(whoami, |op| {
                kit::auth::requires(op, Some("anyone signed in"), &[])
            }),
        )
        .api_route(
            "/things/v1/admin",
            get_with(admin_only, |op| {
                kit::auth::requires(op, None, &["things:admin"])
            }),
        )
        .api_route(
            "/things/v1/open",
            get_with(open, |op| kit::auth::public(op, "a test route")),
        )
}

async fn serve(auth: Arc<Authenticator>) -> String {
    let app = kit::app::build(
        "things",
        vec![Mounted {
            name: "things",
            router: router(),
        }],
        Health::default(),
        &HttpSettings {
            auth,
            ..HttpSettings::default()
        },
    );
    spawn_app(app).await
}

async fn get(base: &str, path: &str, auth: Option<&str>) -> reqwest::Response {
    let mut req = Client::new().get(format!("{base}{path}"));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.expect("send")
}

#[tokio::test]
async fn every_bad_token_is_refused_with_the_same_401() {
    let base = serve(issuer().authenticator()).await;
    let res = get(&base, "/things/v1/whoami", None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap_or_default()
            .starts_with("Bearer")
    );
    let first: Value = res.json().await.expect("problem");
    let mut cases = bad_tokens("alice", &["things:admin"]);
    cases.push(("basic scheme", String::new()));
    for (what, token) in cases {
        let header = if what == "basic scheme" {
            "Basic YWxpY2U6cHc=".to_owned()
        } else {
            format!("Bearer {token}")
        };
        let res = get(&base, "/things/v1/whoami", Some(&header)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
        let body: Value = res.json().await.expect("problem");
        assert_eq!(
            body, first,
            "{what}: the answer never says which check failed"
        );
    }
}

#[tokio::test]
async fn subject_and_scopes_reach_the_handler_and_scopes_are_enforced() {
    let base = serve(issuer().authenticator()).await;
    let res = get(
        &base,
        "/things/v1/whoami",
        Some(&bearer("alice", &["a", "b"])),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(
        body,
        serde_json::json!({ "sub": "alice", "scopes": ["a", "b"] })
    );

    let res = get(&base, "/things/v1/admin", Some(&bearer("alice", &["a"]))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = get(
        &base,
        "/things/v1/admin",
        Some(&bearer("ops", &["things:admin"])),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = get(&base, "/things/v1/open", None).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_application_without_a_verifier_refuses_everyone() {
    // HttpSettings::default(): nothing configured, so nothing is trusted (fail closed).
    let base = serve(HttpSettings::default().auth).await;
    let res = get(&base, "/things/v1/whoami", Some(&bearer("alice", &[]))).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_openapi_document_states_every_routes_caller() {
    let base = serve(issuer().authenticator()).await;
    let doc: Value = get(&base, "/openapi.json", None)
        .await
        .json()
        .await
        .expect("doc");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let admin = &doc["paths"]["/things/v1/admin"]["get"];
    assert_eq!(
        admin["security"],
        serde_json::json!([{ "bearer": ["things:admin"] }])
    );
    assert!(
        admin["x-meridian-caller"]
            .as_str()
            .unwrap_or_default()
            .contains("things:admin")
    );
    assert!(admin["responses"]["401"].is_object() && admin["responses"]["403"].is_object());
    let open = &doc["paths"]["/things/v1/open"]["get"];
    assert!(
        open["x-meridian-caller"]
            .as_str()
            .unwrap_or_default()
            .starts_with("public")
    );
}

/// An application whose verifier fetches `issuer`'s keys from a JWKS server the test controls.
async fn remote_app(issuer: &LocalIssuer, min_refresh: Duration) -> (JwksServer, String) {
    let jwks = JwksServer::start(&issuer.jwks()).await;
    let auth = Authenticator::remote(&settings_for(issuer, &jwks.url, min_refresh))
        .await
        .expect("remote");
    (jwks, serve(auth).await)
}

fn settings_for(
    issuer: &LocalIssuer,
    jwks_url: &str,
    min_refresh: Duration,
) -> kit::auth::AuthSettings {
    kit::auth::AuthSettings {
        jwks_url: jwks_url.to_owned(),
        min_refresh,
        ..issuer.settings()
    }
}

#[tokio::test]
async fn a_key_rotated_in_at_the_issuer_is_trusted_without_a_restart() {
    let old = issuer();
    let new = LocalIssuer::generate(&old.issuer, &old.audience).expect("new key");
    let (jwks, base) = remote_app(old, Duration::ZERO).await;
    let old_token = format!("Bearer {}", old.token("alice", &[], Duration::from_mins(1)));
    let new_token = format!("Bearer {}", new.token("alice", &[], Duration::from_mins(1)));

    assert_eq!(
        get(&base, "/things/v1/whoami", Some(&old_token))
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&base, "/things/v1/whoami", Some(&new_token))
            .await
            .status(),
        401,
        "the new key is not published yet"
    );
    // The issuer publishes the new key beside the old one.
    let mut both = old.jwks();
    both.keys.extend(new.jwks().keys);
    jwks.set(&both);
    assert_eq!(
        get(&base, "/things/v1/whoami", Some(&new_token))
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&base, "/things/v1/whoami", Some(&old_token))
            .await
            .status(),
        200
    );

    // Known keys never cost a fetch.
    let fetched = jwks.fetches();
    for _ in 0..20 {
        assert_eq!(
            get(&base, "/things/v1/whoami", Some(&new_token))
                .await
                .status(),
            200
        );
    }
    assert_eq!(
        jwks.fetches(),
        fetched,
        "verification fetched the JWKS per request"
    );
}

#[tokio::test]
async fn unknown_kids_cannot_make_the_service_hammer_the_issuer() {
    let good = issuer();
    let (jwks, base) = remote_app(good, Duration::from_hours(1)).await;
    assert_eq!(jwks.fetches(), 1, "one fetch at start");
    for _ in 0..30 {
        let stranger = LocalIssuer::generate(&good.issuer, &good.audience).expect("key");
        let t = format!(
            "Bearer {}",
            stranger.token("x", &[], Duration::from_mins(1))
        );
        assert_eq!(
            get(&base, "/things/v1/whoami", Some(&t)).await.status(),
            401
        );
    }
    assert!(
        jwks.fetches() <= 2,
        "unknown kids triggered {} fetches; at most one per min_refresh",
        jwks.fetches()
    );
}

#[tokio::test]
async fn an_unreachable_issuer_at_start_is_not_fatal_and_trusts_nothing() {
    let good = issuer();
    // Nothing listens on port 9 of loopback: the first fetch fails.
    let dead = settings_for(good, "http://127.0.0.1:9/jwks", Duration::ZERO);
    let auth = Authenticator::remote(&dead).await.expect("starts anyway");
    assert_eq!(auth.key_count(), 0);
    let base = serve(auth).await;
    let t = bearer("alice", &[]);
    assert_eq!(
        get(&base, "/things/v1/whoami", Some(&t)).await.status(),
        401
    );
}

#[tokio::test]
async fn a_verified_token_is_remembered_only_until_it_expires() {
    let issuer = issuer();
    let settings = kit::auth::AuthSettings {
        leeway: Duration::ZERO,
        ..issuer.settings()
    };
    let auth = Authenticator::with_jwks(&settings, &issuer.jwks());
    let token = issuer.token("alice", &["a"], Duration::from_secs(1));
    for _ in 0..3 {
        let caller = auth.verify(&token).await.expect("fresh");
        assert_eq!(
            (&*caller.sub, caller.scopes()),
            ("alice", &["a".to_owned()][..])
        );
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        auth.verify(&token).await,
        Err(kit::auth::Refusal::Expired),
        "a remembered token must still expire"
    );
}

#[tokio::test]
async fn a_key_withdrawn_at_the_issuer_stops_its_remembered_tokens() {
    let old = issuer();
    let new = LocalIssuer::generate(&old.issuer, &old.audience).expect("new key");
    let (jwks, base) = remote_app(old, Duration::ZERO).await;
    let old_token = format!("Bearer {}", old.token("alice", &[], Duration::from_mins(1)));
    assert_eq!(
        get(&base, "/things/v1/whoami", Some(&old_token))
            .await
            .status(),
        200
    );
    // The issuer withdraws the old key (compromised): the next refresh, here triggered by a
    // token naming the new key, must also forget what the old key vouched for.
    jwks.set(&new.jwks());
    let new_token = format!("Bearer {}", new.token("bob", &[], Duration::from_mins(1)));
    assert_eq!(
        get(&base, "/things/v1/whoami", Some(&new_token))
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&base, "/things/v1/whoami", Some(&old_token))
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn an_issuer_withdrawing_every_key_stops_every_token() {
    let good = issuer();
    let (jwks, base) = remote_app(good, Duration::ZERO).await;
    let known = bearer("alice", &[]);
    assert_eq!(
        get(&base, "/things/v1/whoami", Some(&known)).await.status(),
        200
    );
    // The issuer publishes an empty set (every key revoked); a token naming an unknown kid
    // makes us fetch it. Fail closed: the remembered token stops too.
    jwks.set(&kit::auth::PublicKeys { keys: Vec::new() });
    let stranger = LocalIssuer::generate(&good.issuer, &good.audience).expect("key");
    let t = format!(
        "Bearer {}",
        stranger.token("x", &[], Duration::from_mins(1))
    );
    let fetched = jwks.fetches();
    assert_eq!(
        get(&base, "/things/v1/whoami", Some(&t)).await.status(),
        401
    );
    assert_eq!(
        jwks.fetches(),
        fetched + 1,
        "the unknown kid caused a fetch"
    );
    assert_eq!(
        get(&base, "/things/v1/whoami", Some(&known)).await.status(),
        401
    );
}
