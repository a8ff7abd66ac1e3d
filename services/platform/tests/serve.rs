//! `meridian serve` as a newcomer runs it: the real binary, no DATABASE_URL (so it starts its own
//! throwaway PostgreSQL), then the kit endpoints, a service route, bad JSON, and SIGTERM.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

#[tokio::test]
async fn serve_without_database_url_runs_everything_and_stops_cleanly() {
    let port = kit::testing::free_port();
    // Its own state directory: the dev keys this run creates are this test's alone.
    let state = std::env::temp_dir().join(format!("meridian-serve-test-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["serve", "--port", &port.to_string()])
        .env("XDG_STATE_HOME", &state)
        .env_remove("DATABASE_URL")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn meridian");
    let stdout = child.stdout.take().expect("stdout");
    // Collect log lines in the background; the throwaway server's URL is logged at start.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "meridian did not become ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );

    // The README's commands: `meridian token` mints tokens the running server accepts.
    let token = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
            .arg("token")
            .args(args)
            .env("XDG_STATE_HOME", &state)
            .output()
            .expect("meridian token");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("Bearer {}", String::from_utf8_lossy(&out.stdout).trim())
    };
    let e2e = token(&["--sub", "e2e"]);
    let family = token(&["--sub", "family-plan-user", "--ttl", "15m"]);
    let other_key = {
        let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(["token", "--sub", "e2e"])
            .env("XDG_STATE_HOME", state.join("elsewhere"))
            .output()
            .expect("meridian token");
        format!("Bearer {}", String::from_utf8_lossy(&out.stdout).trim())
    };
    let jwks: serde_json::Value = http
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    assert_eq!(jwks["keys"][0]["kty"], "OKP", "{jwks}");
    let anonymous = http
        .get(format!("{base}/streams/v1/users/e2e/sessions"))
        .send()
        .await
        .expect("anonymous");
    assert_eq!(anonymous.status(), 401);
    let forged = http
        .get(format!("{base}/streams/v1/users/e2e/sessions"))
        .header("authorization", &other_key)
        .send()
        .await
        .expect("forged");
    assert_eq!(forged.status(), 401, "a token from another dev key");

    // Sample data was loaded.
    let limit: serde_json::Value = http
        .get(format!("{base}/streams/v1/users/family-plan-user/limit"))
        .header("authorization", &family)
        .send()
        .await
        .expect("limit")
        .json()
        .await
        .expect("json");
    assert_eq!(limit["max_streams"], 5);
    // ... and attendance's: a sample site with today's sign-ins, for its staff.
    let oak_staff = token(&[
        "--sub",
        "oak-staff",
        "--scope",
        "attendance:site-oak-primary",
    ]);
    let day: serde_json::Value = http
        .get(format!(
            "{base}/attendance/v1/sites/oak-primary/attendance?limit=100"
        ))
        .header("authorization", &oak_staff)
        .send()
        .await
        .expect("attendance")
        .json()
        .await
        .expect("json");
    assert!(
        day["items"].as_array().is_some_and(|a| !a.is_empty()),
        "{day}"
    );

    // ... and playlists': alice's sample playlist with a practice history, so "what next"
    // has an answer, and the analytics over the generated learners.
    let alice = token(&["--sub", "alice"]);
    let lists: serde_json::Value = http
        .get(format!("{base}/playlists/v1/users/alice/playlists"))
        .header("authorization", &alice)
        .send()
        .await
        .expect("playlists")
        .json()
        .await
        .expect("json");
    let playlist = lists["items"][0]["id"].as_str().expect("a sample playlist");
    let next: serde_json::Value = http
        .get(format!(
            "{base}/playlists/v1/users/alice/playlists/{playlist}/next"
        ))
        .header("authorization", &alice)
        .send()
        .await
        .expect("next")
        .json()
        .await
        .expect("json");
    // drums-rock-1 (improving) unless the clock is just past midnight UTC.
    assert!(next["lesson"]["lesson_id"].is_string(), "{next}");
    assert!(next["skipped"].to_string().contains("mastered"), "{next}");
    let analyst = token(&["--sub", "data-team", "--scope", "playlists:analytics"]);
    let removals: serde_json::Value = http
        .get(format!("{base}/playlists/v1/analytics/removals"))
        .header("authorization", &analyst)
        .send()
        .await
        .expect("removals")
        .json()
        .await
        .expect("json");
    assert!(removals["total"].as_i64() > Some(0), "{removals}");

    let started = http
        .post(format!("{base}/streams/v1/users/e2e/sessions"))
        .header("authorization", &e2e)
        .json(&serde_json::json!({ "device_id": "tv", "content_id": "film" }))
        .send()
        .await
        .expect("start");
    assert_eq!(started.status(), 201);

    let bad = http
        .post(format!("{base}/streams/v1/users/e2e/sessions"))
        .header("authorization", &e2e)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("bad");
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.headers()["content-type"], "application/problem+json");

    // Call control answers for the sample hospital PBX from its snapshot, to a request signed
    // with `meridian sign-decision` (the README's line).
    let body = r#"{"request_id":"r1","call_id":"c1","call_type":"pbx","direction":"inbound","from":"+46700000001","to":"+46101110099","event":"call_started"}"#;
    let signed = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["sign-decision", body])
        .env("XDG_STATE_HOME", &state)
        .output()
        .expect("meridian sign-decision");
    let line = String::from_utf8_lossy(&signed.stdout).trim().to_owned();
    let (name, value) = line.split_once(": ").expect("a header line");
    let unsigned = http
        .post(format!("{base}/calls/v1/decisions"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("unsigned");
    assert_eq!(unsigned.status(), 401);
    let decision: serde_json::Value = http
        .post(format!("{base}/calls/v1/decisions"))
        .header("content-type", "application/json")
        .header(name, value)
        .body(body)
        .send()
        .await
        .expect("decision")
        .json()
        .await
        .expect("json");
    assert_eq!(decision["source"], "live", "{decision}");
    assert!(
        !decision["actions"].as_array().expect("actions").is_empty(),
        "{decision}"
    );

    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            "http_requests_total{service=\"streams\",route=\"/streams/v1/users/{user_id}/sessions\""
        ),
        "{metrics}"
    );
    assert!(metrics.contains("http_request_duration_seconds_bucket{service=\"streams\""));

    let doc: serde_json::Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .expect("doc")
        .json()
        .await
        .expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/streams/v1/users/{user_id}/sessions"]["post"].is_object());
    assert_eq!(
        dangling_refs(&doc),
        Vec::<String>::new(),
        "served /openapi.json"
    );

    let logs: Vec<String> = rx.try_iter().collect();
    let pg_url = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| {
            v["url"]
                .as_str()
                .filter(|u| u.starts_with("postgres://"))
                .map(str::to_owned)
        })
        .expect("the throwaway PostgreSQL URL is logged");
    let pg_port: u16 = pg_url
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("port in url");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(exit.success(), "meridian exits 0 on SIGTERM: {exit:?}");
    // The throwaway server is gone with it.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", pg_port)).is_err(),
        "PostgreSQL on {pg_port} still running"
    );
    // The dev key is private to its owner.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(state.join("meridian/dev-signing-key"))
            .expect("dev key")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let _ = std::fs::remove_dir_all(&state);
}

/// What `meridian openapi` prints (every service's routes, no database needed).
fn openapi_document() -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("openapi")
        .env("RUST_LOG", "off")
        .output()
        .expect("meridian openapi");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    doc
}

/// The `$ref`s of an OpenAPI document that point at nothing in it.
fn dangling_refs(doc: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, refs: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(r)) = map.get("$ref") {
                    refs.push(r.clone());
                }
                map.values().for_each(|v| walk(v, refs));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, refs)),
            _ => {}
        }
    }
    let mut refs = Vec::new();
    walk(doc, &mut refs);
    assert!(!refs.is_empty(), "the document references its schemas");
    refs.sort();
    refs.dedup();
    refs.retain(|r| {
        r.strip_prefix("#/")
            .is_none_or(|path| doc.pointer(&format!("/{path}")).is_none())
    });
    refs
}

/// Every request and response schema an operation names is in the document: a client generated
/// from `meridian openapi` must not meet a `$ref` to nothing.
#[test]
fn every_schema_reference_resolves() {
    let doc = openapi_document();
    assert_eq!(dangling_refs(&doc), Vec::<String>::new());
}

/// Every operation of every service states who may call it, and the statement matches its
/// security requirement: a bearer rule carries the bearer scheme, a public one carries none
/// (or, for webhooks, the signature scheme). A route added without a caller fails here.
#[test]
fn every_operation_states_its_caller() {
    let doc = openapi_document();
    let schemes = &doc["components"]["securitySchemes"];
    assert!(schemes["bearer"].is_object() && schemes["webhook-signature"].is_object());
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            seen += 1;
            let rule = op["x-meridian-caller"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} does not state its caller"));
            let names: Vec<&str> = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_object())
                .flat_map(|r| r.keys().map(String::as_str))
                .collect();
            if rule.starts_with("bearer:") {
                assert_eq!(names, ["bearer"], "{method} {path}");
                assert!(
                    op["responses"]["401"].is_object(),
                    "{method} {path}: no 401"
                );
            } else {
                assert!(rule.starts_with("public:"), "{method} {path}: {rule}");
                assert!(
                    names.is_empty() || names == ["webhook-signature"],
                    "{method} {path}: {names:?}"
                );
            }
        }
    }
    assert!(seen >= 15, "only {seen} operations documented");
}
