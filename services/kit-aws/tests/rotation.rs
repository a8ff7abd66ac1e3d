//! Rotation without restarts, end to end: a PostgreSQL that checks passwords (kit's throwaway
//! server, `initdb --auth=scram-sha-256`; never `DATABASE_URL`'s, which may trust every login),
//! the secret in moto's Secrets Manager, and a pool opened from it with a `kit_aws::Rotation`
//! running beside it. The role's password is changed (`ALTER ROLE`) and the secret updated
//! (`PutSecretValue`) as a rotation does it; requests go through the handler path
//! (`?` into `kit::ApiError`), which reports the refused password and answers 503.
//!
//! moto: see tests/secrets.rs (`MOTO_SERVER`, installed by tests/run).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use aws_sdk_secretsmanager::{
    Client,
    config::{Credentials, Region},
};
use kit::{ApiError, pg::PgServer, testing::Moto};
use kit_aws::Rotation;
use sqlx::PgPool;

async fn client(moto: &Moto) -> Client {
    let config = kit_aws::sdk_config_loader()
        .endpoint_url(moto.endpoint())
        .region(Region::new("eu-north-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .load()
        .await;
    Client::new(&config)
}

/// The throwaway scram server, a login role on it, and the secret naming both.
struct Setup {
    server: PgServer,
    // Kept alive for the test: dropping it stops the server.
    _moto: Moto,
    client: Client,
    arn: String,
    role: String,
}

fn secret_json(server: &PgServer, role: &str, password: &str) -> String {
    let url = kit::db::connect_options(server.url()).expect("throwaway url");
    serde_json::json!({
        "username": role,
        "password": password,
        "host": url.get_host(),
        "port": url.get_port(),
        "dbname": "postgres",
        "sslmode": "disable",
    })
    .to_string()
}

impl Setup {
    async fn new(password: &str) -> Self {
        let server = PgServer::ensure(None)
            .await
            .unwrap_or_else(|e| panic!("throwaway PostgreSQL: {e}"));
        let role = format!("rot_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let moto = Moto::start();
        let client = client(&moto).await;
        let setup = Self {
            arn: String::new(),
            server,
            _moto: moto,
            client,
            role,
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            r#"CREATE ROLE "{}" LOGIN PASSWORD '{password}'"#,
            setup.role
        )))
        .execute(&setup.admin().await)
        .await
        .expect("create role");
        let out = setup
            .client
            .create_secret()
            .name(format!("meridian/test/{}", setup.role))
            .secret_string(secret_json(&setup.server, &setup.role, password))
            .send()
            .await
            .expect("CreateSecret on moto");
        Self {
            arn: out.arn().expect("an ARN").to_owned(),
            ..setup
        }
    }

    async fn admin(&self) -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(self.server.url())
            .await
            .expect("admin connection")
    }

    /// What a rotation does: the database first, then the secret.
    async fn rotate(&self, password: &str) {
        let admin = self.admin().await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            r#"ALTER ROLE "{}" PASSWORD '{password}'"#,
            self.role
        )))
        .execute(&admin)
        .await
        .expect("alter role");
        admin.close().await;
        self.client
            .put_secret_value()
            .secret_id(&self.arn)
            .secret_string(secret_json(&self.server, &self.role, password))
            .send()
            .await
            .expect("PutSecretValue on moto");
    }

    /// A pool from the secret with its rotation (not yet running). Connections live
    /// `lifetime`, so the pool keeps opening new ones under load.
    async fn pool(&self, interval: Duration, lifetime: Duration) -> (PgPool, Arc<Rotation>) {
        let (rotation, options) = Rotation::read(self.client.clone(), &self.arn, None)
            .await
            .unwrap_or_else(|e| panic!("read the secret: {e}"));
        let settings = kit::db::PoolSettings {
            max_connections: 4,
            acquire_timeout: Duration::from_secs(5),
            max_lifetime: lifetime,
        };
        let pool = kit::db::pool_with(options, "public", &settings);
        (pool, Arc::new(rotation.with_interval(interval)))
    }
}

/// One request as a handler makes it: the query's error goes through `?` into `ApiError`.
async fn request(pool: &PgPool) -> Result<String, ApiError> {
    Ok(sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(pool)
        .await?)
}

/// A client honouring the 503: one retry after a pause.
async fn request_with_one_retry(pool: &PgPool, retries: &AtomicUsize) -> Result<String, String> {
    match request(pool).await {
        Ok(user) => Ok(user),
        Err(first) => {
            assert_eq!(
                first.status.as_u16(),
                503,
                "a refused password is a retryable 503, not a 500"
            );
            retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(500)).await;
            request(pool)
                .await
                .map_err(|e| format!("failed again after one retry: {} {:?}", e.status, e.detail))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_rotated_mid_load_fails_no_request_twice_and_no_transaction() {
    let setup = Setup::new("first-password-aaaaaaaaaaaaaaaa").await;
    // The server checks passwords: the test could not pass on a trusting one.
    let wrong = format!(
        "postgres://{}:not-the-password@{}:{}/postgres",
        setup.role,
        kit::db::connect_options(setup.server.url())
            .unwrap()
            .get_host(),
        kit::db::connect_options(setup.server.url())
            .unwrap()
            .get_port()
    );
    let err = sqlx::PgPool::connect(&wrong)
        .await
        .expect_err("a wrong password must be refused");
    assert!(kit::db::is_auth_failure(&err), "{err}");

    // The timer alone would not pick the rotation up within the test: the refusals must.
    let (pool, rotation) = setup
        .pool(Duration::from_hours(1), Duration::from_millis(150))
        .await;
    let watcher = tokio::spawn(rotation.clone().run(vec![pool.clone()]));

    // A transaction open across the rotation: PostgreSQL checked its password at connect, so
    // it carries on.
    let mut in_flight = pool.begin().await.expect("begin before the rotation");
    sqlx::query("SELECT 1")
        .execute(&mut *in_flight)
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let retries = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..6 {
        let (pool, stop, retries) = (pool.clone(), stop.clone(), retries.clone());
        workers.push(tokio::spawn(async move {
            let mut done = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let user = request_with_one_retry(&pool, &retries)
                    .await
                    .unwrap_or_else(|e| panic!("request {done}: {e}"));
                assert!(user.starts_with("rot_"), "{user}");
                done += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            done
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    setup.rotate("second-password-bbbbbbbbbbbbbbb").await;
    // Long enough for every pre-rotation connection to expire (150 ms) many times over.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        total += w.await.expect("a worker panicked");
    }

    sqlx::query("SELECT 2")
        .execute(&mut *in_flight)
        .await
        .expect("the transaction opened before the rotation still works");
    in_flight.commit().await.expect("and commits");

    assert_eq!(rotation.rotations(), 1, "the new password was applied once");
    assert!(total > 100, "load ran: {total} requests");
    // Every connection now is new (lifetime 150 ms), so this proves the pool uses the new
    // password; drop the idle ones to be sure the next request connects afresh.
    pool.close().await;
    let (fresh, _) = setup
        .pool(Duration::from_hours(1), Duration::from_mins(1))
        .await;
    assert!(request(&fresh).await.is_ok(), "the secret has the new one");
    eprintln!(
        "{total} requests across the rotation, {} needed their one retry, {} secret reads",
        retries.load(Ordering::Relaxed),
        rotation.reads()
    );
    watcher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_rereads_the_secret_before_the_timer() {
    let setup = Setup::new("first-password-cccccccccccccccc").await;
    let (pool, rotation) = setup
        .pool(Duration::from_hours(1), Duration::from_mins(1))
        .await;
    let watcher = tokio::spawn(rotation.clone().run(vec![pool.clone()]));
    assert!(request(&pool).await.is_ok());
    // Closing the pool's connection forces the next request to connect (with the old password).
    pool.close().await;
    let (pool, rotation) = setup
        .pool(Duration::from_hours(1), Duration::from_mins(1))
        .await;
    watcher.abort();
    let watcher = tokio::spawn(rotation.clone().run(vec![pool.clone()]));
    setup.rotate("second-password-ddddddddddddddd").await;
    assert_eq!(rotation.reads(), 1, "read once at start, nothing since");

    let refused = request(&pool)
        .await
        .expect_err("the pool still has the old password");
    assert_eq!(refused.status.as_u16(), 503);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while rotation.rotations() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refusal did not re-read the secret within 5 s (timer: 1 h); reads: {}",
            rotation.reads()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rotation.reads() >= 2);
    assert_eq!(
        request(&pool)
            .await
            .expect("connects with the new password"),
        setup.role
    );
    watcher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timer_picks_up_a_rotation_nobody_tripped_over() {
    let setup = Setup::new("first-password-eeeeeeeeeeeeeeee").await;
    let (pool, rotation) = setup
        .pool(Duration::from_millis(300), Duration::from_mins(1))
        .await;
    let watcher = tokio::spawn(rotation.clone().run(vec![pool.clone()]));
    setup.rotate("second-password-fffffffffffffff").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while rotation.rotations() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the 300 ms timer did not re-read the secret within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // No request was refused: the first one connects with the new password.
    assert_eq!(request(&pool).await.expect("first try"), setup.role);
    watcher.abort();
}

/// A secret moved to another endpoint (the restore procedure: a new cluster, its own password)
/// changes nothing until a restart: the pools keep their login for the host they connect to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_naming_another_host_keeps_the_login_until_a_restart() {
    let setup = Setup::new("first-password-gggggggggggggggg").await;
    let (pool, rotation) = setup
        .pool(Duration::from_hours(1), Duration::from_millis(50))
        .await;
    assert_eq!(request(&pool).await.expect("before"), setup.role);
    let mut moved: serde_json::Value = serde_json::from_str(&secret_json(
        &setup.server,
        &setup.role,
        "the-restored-clusters-password-h",
    ))
    .expect("json");
    moved["host"] = "restored.cluster.example".into();
    setup
        .client
        .put_secret_value()
        .secret_id(&setup.arn)
        .secret_string(moved.to_string())
        .send()
        .await
        .expect("PutSecretValue on moto");
    assert!(
        !rotation
            .refresh(std::slice::from_ref(&pool))
            .await
            .expect("refresh"),
        "a moved endpoint's password must not reach pools on the old one"
    );
    assert_eq!(rotation.rotations(), 0);
    assert_eq!(rotation.reads(), 2);
    // New connections (50 ms lifetime) still log in with the first password.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        assert_eq!(request(&pool).await.expect("after"), setup.role);
    }
    assert_eq!(
        pool.connect_options().get_host(),
        kit::db::connect_options(setup.server.url())
            .expect("url")
            .get_host()
    );
}
