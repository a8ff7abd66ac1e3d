//! `DATABASE_SECRET_ARN` end to end against a real Secrets Manager API (moto's server) and a
//! real PostgreSQL (kit's `TestDb`: `DATABASE_URL`'s server, or a throwaway one).
//!
//! moto comes from PyPI (`pip install 'moto[server]'`); tests/run installs it into
//! `${MERIDIAN_CACHE:-$HOME/.cache/meridian}/moto-venv` and exports `MOTO_SERVER`
//! (`kit::testing::Moto` starts it). Without it these tests fail with the install command; they
//! never skip.

use aws_sdk_secretsmanager::{
    Client,
    config::{Credentials, Region},
};
use kit::testing::{Moto, TestDb};

/// A Secrets Manager client for `moto`: dummy credentials and region set on the config builder
/// (not in the process environment), through kit-aws's HTTPS client stack.
async fn client(moto: &Moto) -> Client {
    let config = kit_aws::sdk_config_loader()
        .endpoint_url(moto.endpoint())
        .region(Region::new("eu-north-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .load()
        .await;
    Client::new(&config)
}

async fn create_secret(client: &Client, name: &str, json: &serde_json::Value) -> String {
    let out = client
        .create_secret()
        .name(name)
        .secret_string(json.to_string())
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "CreateSecret on moto: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            )
        });
    out.arn().expect("CreateSecret returns an ARN").to_owned()
}

/// A login role with `password` on the test server, dropped by the caller via [`drop_role`].
async fn create_role(db: &TestDb, role: &str, password: &str) {
    let admin = db.pool("public");
    let quoted_password = password.replace('\'', "''");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"CREATE ROLE "{role}" LOGIN PASSWORD '{quoted_password}'"#
    )))
    .execute(&admin)
    .await
    .unwrap_or_else(|e| panic!("create role {role}: {e}"));
    admin.close().await;
}

async fn drop_role(db: &TestDb, role: &str) {
    let admin = db.pool("public");
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"DROP ROLE IF EXISTS "{role}""#
    )))
    .execute(&admin)
    .await;
    admin.close().await;
}

/// The terraform secret shape (terraform/modules/secrets) pointing at `db`'s database.
fn secret_json(db: &TestDb, username: &str, password: &str) -> serde_json::Value {
    let server = kit::db::connect_options(db.url()).expect("TestDb url");
    serde_json::json!({
        "username": username,
        "password": password,
        "host": server.get_host(),
        "port": server.get_port(),
        "dbname": server.get_database().expect("TestDb url names its database"),
        "schema": "streams",
        "sslmode": "disable",
    })
}

async fn connects_with(db: &TestDb, moto: &Moto, username: &str, password: &str) {
    create_role(db, username, password).await;
    let client = client(moto).await;
    let name = format!("meridian/test/{}", uuid::Uuid::new_v4().simple());
    let arn = create_secret(&client, &name, &secret_json(db, username, password)).await;

    let options = kit_aws::database_from_secret(&client, &arn, None)
        .await
        .unwrap_or_else(|e| panic!("resolve {arn}: {e}"));
    let pool = kit::db::pool_with(options, "kit_aws_test", &kit::db::PoolSettings::default());
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("SELECT 1 through the secret's options: {e}"));
    assert_eq!(one, 1);
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(user, username, "connected as the secret's user");
    pool.close().await;
    drop_role(db, username).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_resolves_to_a_working_pool() {
    let moto = Moto::start();
    let db = TestDb::new().await;
    let role = format!("kitaws_{}", uuid::Uuid::new_v4().simple());
    connects_with(
        &db,
        &moto,
        &role,
        "plain-password-40-chars-long-aaaaaaaaaaa",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_characters_in_credentials_survive() {
    let moto = Moto::start();
    let db = TestDb::new().await;
    // Characters that break a naively built postgres:// URL: @ : / % ? # and a quote.
    let role = format!(
        "kit@aws:{}/x%",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    connects_with(&db, &moto, &role, "p@ss:w/o%rd?#'x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_secret_names_the_arn() {
    let moto = Moto::start();
    let client = client(&moto).await;
    let arn = "arn:aws:secretsmanager:eu-north-1:123456789012:secret:meridian/nope-AbCdEf";
    let err = kit_aws::database_from_secret(&client, arn, None)
        .await
        .expect_err("a missing secret must fail")
        .to_string();
    assert!(err.contains("DATABASE_SECRET_ARN"), "{err}");
    assert!(err.contains(arn), "{err}");
    assert!(err.contains("ResourceNotFound"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_without_password_names_the_field() {
    let moto = Moto::start();
    let client = client(&moto).await;
    let name = format!("meridian/test/{}", uuid::Uuid::new_v4().simple());
    let json = serde_json::json!({
        "username": "streams",
        "host": "127.0.0.1",
        "port": 5432,
        "dbname": "postgres",
        "schema": "streams",
        "sslmode": "verify-full",
    });
    let arn = create_secret(&client, &name, &json).await;
    let err = kit_aws::database_from_secret(&client, &arn, None)
        .await
        .expect_err("a secret without a password must fail")
        .to_string();
    assert!(
        err.contains("`password`") && err.contains("missing"),
        "{err}"
    );
    assert!(err.contains(&arn), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_that_is_not_json_is_rejected_without_echoing_it() {
    let moto = Moto::start();
    let client = client(&moto).await;
    let name = format!("meridian/test/{}", uuid::Uuid::new_v4().simple());
    let out = client
        .create_secret()
        .name(&name)
        .secret_string("postgres://u:hunter2@h/d")
        .send()
        .await
        .expect("CreateSecret");
    let arn = out.arn().unwrap().to_owned();
    let err = kit_aws::database_from_secret(&client, &arn, None)
        .await
        .expect_err("a URL is not the secret JSON")
        .to_string();
    assert!(err.contains("not the database secret JSON"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}
