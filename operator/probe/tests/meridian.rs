//! The probe against the real meridian services on loopback (their real routers, kit's app
//! stack with its token verifier, a migrated PostgreSQL from `DATABASE_URL` or a throwaway one):
//! the health route and the sessions list pass a realistic SLO with the token the pipeline's
//! probe carries (`streams:sessions`); the same routes fail a threshold no real service can meet,
//! which proves the verdict comes from the measurement and not from a constant; and without a
//! token, or with one lacking the scope, the sessions list fails on 401/403.
//!
//! The hot routes, with the cycles `buildkite/slo.yaml` gates them with: streams' start + stop
//! and calls' signed decision (sample data loaded, provider `slo-probe`) pass, and fail when a
//! step's expected status is not met, when the token is refused and when the signature is.

use std::time::Duration;

use kit::testing::{TestDb, app_for, spawn_app};
use probe::plan::run_plan;
use probe::signing::WebhookSecret;
use probe::slo::{ServiceSlo, SloFile};
use probe::{BearerToken, ProbeConfig, Thresholds};

async fn spawn_streams(db: &TestDb) -> String {
    let pool = db.service_pool(&streams::SERVICE).await;
    spawn_app(app_for(
        &streams::SERVICE,
        streams::start_with(kit::Ctx::routes_only(pool), streams::Settings::default()),
    ))
    .await
}

const SESSIONS: &str = "/streams/v1/users/probe/sessions";

fn config(url: String, token: Option<String>) -> ProbeConfig {
    ProbeConfig {
        url,
        requests: 100,
        concurrency: 4,
        timeout: Duration::from_secs(5),
        bearer_token: token.map(|t| BearerToken::new(&t).expect("a JWT is a bearer token")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_passes_and_breaches_against_streams() {
    let db = TestDb::new().await;
    let base = spawn_streams(&db).await;
    let slo = Thresholds {
        p99_ms: 500.0,
        max_error_rate: 0.0,
    };
    // What the pipeline's probe identity carries: the service scope that acts for users.
    let token = kit::testing::token("slo-probe", &["streams:sessions"]);
    for path in ["/healthz", SESSIONS] {
        let config = config(format!("{base}{path}"), Some(token.clone()));
        let v = probe::run(&config, slo).await.unwrap();
        assert!(v.passed, "{path}: {}", v.summary());
        assert_eq!(v.measurement.errors, 0, "{path}");

        // A microsecond p99 is below any real HTTP round trip: the same run must breach.
        let strict = Thresholds {
            p99_ms: 0.001,
            ..slo
        };
        let v = probe::run(&config, strict).await.unwrap();
        assert!(!v.passed, "{path}: {}", v.summary());
    }

    // A route that does not exist answers 404: every request is an error.
    let config404 = config(format!("{base}/streams/v1/nope"), Some(token));
    let v = probe::run(&config404, slo).await.unwrap();
    assert!(!v.passed);
    assert_eq!(v.measurement.http_errors, 100);
    assert_eq!(v.measurement.auth_errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_right_token_the_sessions_list_fails_on_401_and_403() {
    let db = TestDb::new().await;
    let base = spawn_streams(&db).await;
    let lenient = Thresholds {
        p99_ms: 10_000.0,
        max_error_rate: 0.99,
    };
    let url = format!("{base}{SESSIONS}");
    // 401 without a token, 403 for a valid one that is neither the user nor the service scope.
    let cases = [
        ("no token", None),
        ("alice's token", Some(kit::testing::token("alice", &[]))),
    ];
    for (name, token) in cases {
        let v = probe::run(&config(url.clone(), token), lenient)
            .await
            .unwrap();
        assert!(!v.passed, "{name}: {}", v.summary());
        assert_eq!(v.measurement.auth_errors, 100, "{name}: {}", v.summary());
    }
}

/// The repository's slo.yaml entry for `service`, sized for a test.
fn from_slo_yaml(service: &str) -> ServiceSlo {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../buildkite/slo.yaml");
    let file = SloFile::load(std::path::Path::new(path)).expect("buildkite/slo.yaml");
    let mut slo = file.service(service).expect("in slo.yaml").clone();
    slo.requests = 200;
    slo.concurrency = 4;
    slo
}

/// What these tests judge is the routes' behaviour, not their speed (a debug build on a shared
/// machine): slo.yaml's error budget, with a wide latency budget.
fn error_budget(slo: &ServiceSlo) -> Thresholds {
    Thresholds {
        p99_ms: 2000.0,
        ..slo.thresholds
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_start_stop_cycle_passes_on_the_real_routes_and_fails_on_a_wrong_status() {
    let db = TestDb::new().await;
    let base = spawn_streams(&db).await;
    let token = BearerToken::new(&kit::testing::token("slo-probe", &["streams:sessions"])).unwrap();
    let slo = from_slo_yaml("streams");
    let mut plan = slo.plan(&base).unwrap();
    plan.bearer_token = Some(token.clone());
    let v = run_plan(&plan, error_budget(&slo)).await.unwrap();
    assert!(v.verdict.passed, "{}", v.summary());
    assert_eq!(v.cycles, 100);
    assert_eq!(
        v.steps[0].statuses.get(&201),
        Some(&100),
        "{:?}",
        v.steps[0]
    );
    assert_eq!(
        v.steps[1].statuses.get(&204),
        Some(&100),
        "{:?}",
        v.steps[1]
    );
    // Every session was stopped: nothing is left running for the probe's users.
    let pool = db.service_pool(&streams::SERVICE).await;
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(live, 0);

    // A start answers 201; a cycle expecting 200 fails on it and does not stop the stream. (The
    // next start of that user and device replays the live session with a 200, which this wrong
    // expectation then takes, so not every start fails.)
    let mut wrong = slo.clone();
    wrong.steps[0].expect_status = Some(200);
    let mut plan = wrong.plan(&base).unwrap();
    plan.bearer_token = Some(token);
    let v = run_plan(&plan, error_budget(&slo)).await.unwrap();
    assert!(!v.verdict.passed, "{}", v.summary());
    assert!(v.steps[0].errors > 0);
    assert_eq!(
        v.steps[0].errors, v.steps[0].statuses[&201],
        "{:?}",
        v.steps[0]
    );
    assert_eq!(v.steps[1].skipped, v.steps[0].errors);
    assert!(v.summary().contains("(expected 200)"), "{}", v.summary());

    // A token the service does not accept: every start is a 401, named as such.
    let mut plan = slo.plan(&base).unwrap();
    plan.bearer_token = Some(BearerToken::new("not.a.token").unwrap());
    let v = run_plan(&plan, error_budget(&slo)).await.unwrap();
    assert!(!v.verdict.passed);
    assert_eq!(v.steps[0].auth_errors, v.steps[0].requests);
    assert!(
        v.summary().contains("answered 401/403: token"),
        "{}",
        v.summary()
    );
}

/// A secret as CALLS_WEBHOOK_SECRETS carries it (64 hex digits).
fn webhook_secret() -> String {
    kit::secret::hex(&kit::secret::random32().unwrap())
}

async fn spawn_calls(db: &TestDb, provider_secret: &str) -> String {
    let pool = db.service_pool(&calls::SERVICE).await;
    // The sample hospital switchboard the decision body calls (what `meridian serve` loads).
    calls::load_sample_data(&pool).await.unwrap();
    let dir = std::env::temp_dir().join(format!("probe-calls-{}", webhook_secret()));
    let settings = calls::Settings {
        snapshot_path: Some(dir.join("snapshot.json")),
        webhook_keys: calls::webhook::WebhookKeys::new([("slo-probe", provider_secret.as_bytes())])
            .unwrap(),
        ..calls::Settings::default()
    };
    let c = calls::start_with(kit::Ctx::new(pool, true), settings).await;
    spawn_app(app_for(&calls::SERVICE, c.parts)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_signed_decision_passes_on_the_real_webhook_and_fails_on_a_wrong_status_or_secret() {
    let db = TestDb::new().await;
    let secret = webhook_secret();
    let base = spawn_calls(&db, &secret).await;
    let slo = from_slo_yaml("calls");
    let mut plan = slo.plan(&base).unwrap();
    plan.webhook_secret = Some(WebhookSecret::new(&secret).unwrap());
    let v = run_plan(&plan, error_budget(&slo)).await.unwrap();
    assert!(v.verdict.passed, "{}", v.summary());
    assert_eq!(
        v.steps[0].statuses.get(&200),
        Some(&200),
        "{:?}",
        v.steps[0]
    );
    assert_eq!(v.steps[0].bad_answers, 0, "answered from the live routing");

    // The webhook answers 200; a step expecting 201 fails on every request.
    let mut wrong = slo.clone();
    wrong.steps[0].expect_status = Some(201);
    let mut plan = wrong.plan(&base).unwrap();
    plan.webhook_secret = Some(WebhookSecret::new(&secret).unwrap());
    let v = run_plan(&plan, error_budget(&slo)).await.unwrap();
    assert!(!v.verdict.passed);
    assert_eq!(v.steps[0].errors, 200);
    assert!(
        v.summary().contains("answered 200 ×200 (expected 201)"),
        "{}",
        v.summary()
    );

    // A number without a flow answers 200 from the static fallback: the expected JSON fails it.
    let mut unconfigured = slo.clone();
    let body = unconfigured.steps[0].body.take().unwrap();
    unconfigured.steps[0].body = Some(body.replace("+46101110099", "+46101119999"));
    let mut plan = unconfigured.plan(&base).unwrap();
    plan.webhook_secret = Some(WebhookSecret::new(&secret).unwrap());
    let v = run_plan(&plan, error_budget(&slo)).await.unwrap();
    assert!(!v.verdict.passed);
    assert_eq!(v.steps[0].bad_answers, 200, "{}", v.summary());

    // Another secret than the service's: every decision is refused (401), said to be the signature.
    let mut plan = slo.plan(&base).unwrap();
    plan.webhook_secret = Some(WebhookSecret::new(&webhook_secret()).unwrap());
    let v = run_plan(&plan, error_budget(&slo)).await.unwrap();
    assert!(!v.verdict.passed);
    assert_eq!(v.steps[0].auth_errors, 200);
    assert!(
        v.summary().contains("to a signed request"),
        "{}",
        v.summary()
    );
}
