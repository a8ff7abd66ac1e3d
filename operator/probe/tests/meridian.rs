//! The probe against the real meridian streams service on loopback (its real router, kit's app
//! stack with its token verifier, a migrated PostgreSQL from `DATABASE_URL` or a throwaway one):
//! the health route and the sessions list pass a realistic SLO with the token the pipeline's
//! probe carries (`streams:sessions`); the same routes fail a threshold no real service can meet,
//! which proves the verdict comes from the measurement and not from a constant; and without a
//! token, or with one lacking the scope, the sessions list fails on 401/403.

use std::time::Duration;

use kit::testing::{TestDb, app_for, spawn_app};
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
