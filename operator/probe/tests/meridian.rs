//! The probe against the real meridian streams service on loopback (its real router, kit's app
//! stack, a migrated PostgreSQL from `DATABASE_URL` or a throwaway one): the health route and the
//! sessions list pass a realistic SLO; the same routes fail a threshold no real service can meet,
//! which proves the verdict comes from the measurement and not from a constant.

use std::time::Duration;

use kit::testing::{TestDb, app_for, spawn_app};
use probe::{ProbeConfig, Thresholds};

async fn spawn_streams(db: &TestDb) -> String {
    let pool = db.service_pool(&streams::SERVICE).await;
    spawn_app(app_for(
        &streams::SERVICE,
        streams::router(pool.clone(), streams::Settings::default()),
        pool,
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_passes_and_breaches_against_streams() {
    let db = TestDb::new().await;
    let base = spawn_streams(&db).await;
    let slo = Thresholds {
        p99_ms: 500.0,
        max_error_rate: 0.0,
    };
    for path in ["/healthz", "/streams/v1/users/probe/sessions"] {
        let config = ProbeConfig {
            url: format!("{base}{path}"),
            requests: 100,
            concurrency: 4,
            timeout: Duration::from_secs(5),
        };
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
    let config = ProbeConfig::new(format!("{base}/streams/v1/nope"), 10);
    let v = probe::run(&config, slo).await.unwrap();
    assert!(!v.passed);
    assert_eq!(v.measurement.http_errors, 10);
}
