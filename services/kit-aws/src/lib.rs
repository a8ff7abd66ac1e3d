//! The AWS side of kit, kept out of kit so only binaries that run in AWS build the AWS SDK.
//!
//! In AWS, terraform gives every service `DATABASE_SECRET_ARN` (and `AWS_REGION`) instead of a
//! `DATABASE_URL`: the ARN of a Secrets Manager secret whose JSON is
//!
//! ```json
//! {"username": "streams", "password": "...", "host": "...", "port": 5432,
//!  "dbname": "meridian", "schema": "streams", "sslmode": "verify-full"}
//! ```
//!
//! [`rotating_database_from_env`] reads that secret at start and turns it into sqlx connection
//! options (no URL in between, so no percent-encoding of the password) plus a [`Rotation`] that
//! keeps them current; binaries hand it to `kit::app::run_single_with`. [`database_from_env`]
//! reads it once, for one-shot commands (`meridian migrate`). `sslmode` maps to [`PgSslMode`] (missing: `verify-full`); the CA
//! for `verify-ca`/`verify-full` is the PEM bundle at `DATABASE_SSL_ROOT_CERT` (the RDS bundle),
//! else Mozilla's roots, which do not include the RDS CAs. `schema` is not used: each service's
//! pool sets `search_path` to its own schema.
//!
//! Rotation without restarts: a serving process re-reads the secret every
//! `DATABASE_SECRET_REFRESH_SECS` (default 300) and, sooner, whenever a query fails with SQLSTATE
//! 28P01 (password refused: Aurora's managed master password rotated under the pool; kit reports
//! it through `kit::db::note_error`, and answers the request 503 so the client retries). A
//! changed username/password goes into the pool with `Pool::set_connect_options`: new
//! connections use it, open ones (and the requests on them) carry on, since PostgreSQL checks a
//! password only at connect. Only the credentials are taken from a re-read secret; a changed
//! sslmode applies on restart, and a secret naming another host, port or database changes
//! nothing until a restart (its password is that endpoint's: given to pools on the old one it
//! would lock them out; a warning says so at every read). Neither the password nor the secret's
//! text is ever logged. services/kit-aws/tests/rotation.rs rotates a role's password under load
//! against a `scram-sha-256` server and moto.
//!
//! Environment: `DATABASE_SECRET_ARN`, `AWS_REGION`, `DATABASE_SSL_ROOT_CERT`,
//! `DATABASE_SECRET_REFRESH_SECS`, and the standard
//! AWS SDK variables (credentials come from the ECS task role or EKS Pod Identity;
//! `AWS_ENDPOINT_URL` points the SDK at an emulator in tests).
//!
//! TLS: the SDK's HTTPS client is built here on rustls with ring, the one `CryptoProvider` of
//! the workspace (kube, sqlx and the probe use ring too); the SDK's default client would compile
//! aws-lc-rs in as a second provider.

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_secretsmanager::{Client, error::ProvideErrorMetadata};
use aws_smithy_http_client::tls;
use serde::Deserialize;
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgSslMode},
};

/// The variable naming the database secret.
pub const SECRET_ARN_VAR: &str = "DATABASE_SECRET_ARN";
/// The variable naming the PEM CA bundle for `verify-ca`/`verify-full`.
pub const SSL_ROOT_CERT_VAR: &str = "DATABASE_SSL_ROOT_CERT";
/// The variable setting how often (seconds) a serving process re-reads the secret.
pub const REFRESH_SECS_VAR: &str = "DATABASE_SECRET_REFRESH_SECS";
/// [`REFRESH_SECS_VAR`]'s default: a rotation nobody noticed (no refused connect yet) is picked
/// up within five minutes, at one `GetSecretValue` per process per five minutes.
pub const DEFAULT_REFRESH: Duration = Duration::from_mins(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{SECRET_ARN_VAR}={arn}: cannot read the secret from Secrets Manager: {source}")]
    Fetch {
        arn: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "{SECRET_ARN_VAR}={arn}: the secret has no SecretString (binary secrets are not supported)"
    )]
    NotString { arn: String },
    #[error("{SECRET_ARN_VAR}={arn}: the secret is not the database secret JSON: {reason}")]
    Json { arn: String, reason: String },
    #[error("{SECRET_ARN_VAR}={arn}: field `{field}` of the secret {reason}")]
    Field {
        arn: String,
        field: &'static str,
        reason: String,
    },
    #[error("{SSL_ROOT_CERT_VAR}={}: {reason}", path.display())]
    RootCert { path: PathBuf, reason: String },
    #[error("{name} is not valid unicode")]
    Env { name: &'static str },
    #[error("{REFRESH_SECS_VAR}={value}: expected whole seconds from 1 to 86400")]
    Refresh { value: String },
}

/// The database secret's JSON, as terraform writes it (terraform/modules/secrets). `Debug` never
/// shows the password.
#[derive(Clone, Deserialize)]
pub struct DatabaseSecret {
    username: Option<String>,
    password: Option<String>,
    host: Option<String>,
    port: Option<Port>,
    dbname: Option<String>,
    #[serde(default)]
    sslmode: Option<String>,
}

/// `port` is a JSON number from terraform's `jsonencode`; a string is accepted too (secrets
/// written by hand or by RDS rotation lambdas).
#[derive(Clone, Deserialize)]
#[serde(untagged)]
enum Port {
    Number(u64),
    Text(String),
}

impl fmt::Debug for DatabaseSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSecret")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("host", &self.host)
            .field(
                "port",
                &self.port.as_ref().map(|p| match p {
                    Port::Number(n) => n.to_string(),
                    Port::Text(s) => s.clone(),
                }),
            )
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .finish()
    }
}

impl DatabaseSecret {
    /// Parses the secret string; `arn` only names the secret in errors.
    pub fn parse(arn: &str, json: &str) -> Result<Self, Error> {
        // serde_json's messages quote no values for type errors, but a syntax error near the
        // password could; report only the position.
        serde_json::from_str(json).map_err(|e| Error::Json {
            arn: arn.to_owned(),
            reason: format!(
                "{} at line {} column {} (expected an object with username, password, host, \
                 port, dbname, sslmode)",
                match e.classify() {
                    serde_json::error::Category::Data => "wrong type",
                    serde_json::error::Category::Syntax => "invalid JSON",
                    serde_json::error::Category::Eof => "truncated JSON",
                    serde_json::error::Category::Io => "unreadable",
                },
                e.line(),
                e.column()
            ),
        })
    }

    /// Connection options for this secret. `root_cert` is `DATABASE_SSL_ROOT_CERT`.
    pub fn connect_options(
        &self,
        arn: &str,
        root_cert: Option<&Path>,
    ) -> Result<PgConnectOptions, Error> {
        let field = |field: &'static str, reason: &str| Error::Field {
            arn: arn.to_owned(),
            field,
            reason: reason.to_owned(),
        };
        let required = |value: &Option<String>, name: &'static str| -> Result<String, Error> {
            match value.as_deref() {
                None => Err(field(name, "is missing")),
                Some("") => Err(field(name, "is empty")),
                Some(v) => Ok(v.to_owned()),
            }
        };
        let username = required(&self.username, "username")?;
        let password = required(&self.password, "password")?;
        let host = required(&self.host, "host")?;
        let dbname = required(&self.dbname, "dbname")?;
        let port = match &self.port {
            None => return Err(field("port", "is missing")),
            Some(Port::Number(n)) => u16::try_from(*n).ok(),
            Some(Port::Text(s)) => s.trim().parse::<u16>().ok(),
        }
        .filter(|p| *p != 0)
        .ok_or_else(|| field("port", "is not a TCP port (1-65535)"))?;
        let sslmode = self.sslmode.as_deref().unwrap_or("verify-full");
        let mode = PgSslMode::from_str(sslmode).map_err(|_| {
            field(
                "sslmode",
                &format!(
                    "is `{sslmode}`; expected disable, allow, prefer, require, verify-ca or \
                     verify-full"
                ),
            )
        })?;
        // new_without_pgpass still reads PG* variables; everything that matters is set below.
        let mut options = PgConnectOptions::new_without_pgpass()
            .host(&host)
            .port(port)
            .username(&username)
            .password(&password)
            .database(&dbname)
            .ssl_mode(mode);
        if let Some(path) = root_cert {
            let pem = std::fs::read(path).map_err(|e| Error::RootCert {
                path: path.to_owned(),
                reason: format!("cannot read the CA bundle: {e}"),
            })?;
            if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                return Err(Error::RootCert {
                    path: path.to_owned(),
                    reason: "not a PEM certificate bundle".into(),
                });
            }
            options = options.ssl_root_cert_from_pem(pem);
        } else if matches!(mode, PgSslMode::VerifyCa | PgSslMode::VerifyFull) {
            tracing::warn!(
                sslmode,
                "{SSL_ROOT_CERT_VAR} is unset: the server certificate is checked against \
                 Mozilla's roots, which do not include the RDS CAs"
            );
        }
        Ok(options)
    }
}

/// The shared AWS configuration from the environment (region, credentials, `AWS_ENDPOINT_URL`)
/// with the ring-based HTTPS client.
pub async fn sdk_config() -> SdkConfig {
    sdk_config_loader().load().await
}

/// [`sdk_config`]'s loader, for callers that override parts of it (tests set the endpoint,
/// region and dummy credentials here instead of in the process environment).
pub fn sdk_config_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(https_client())
}

/// The SDK's HTTPS client on rustls with ring and the platform's trust store.
pub fn https_client() -> aws_sdk_secretsmanager::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// Reads the database secret `arn` and returns its connection options.
pub async fn database_from_secret(
    client: &Client,
    arn: &str,
    root_cert: Option<&Path>,
) -> Result<PgConnectOptions, Error> {
    let options = read_secret(client, arn)
        .await?
        .connect_options(arn, root_cert)?;
    tracing::info!(
        secret = arn,
        host = options.get_host(),
        port = options.get_port(),
        "database credentials read from Secrets Manager"
    );
    Ok(options)
}

async fn read_secret(client: &Client, arn: &str) -> Result<DatabaseSecret, Error> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            // A service error's code and message say it all (the raw response is noise); other
            // failures (no credentials, no network) need the whole cause chain.
            let detail = match e.as_service_error() {
                Some(service) => format!(
                    "{}: {}",
                    service.code().unwrap_or("error"),
                    service.message().unwrap_or("(no message)")
                ),
                None => aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
            };
            Error::Fetch {
                arn: arn.to_owned(),
                source: detail.into(),
            }
        })?;
    let json = out.secret_string().ok_or_else(|| Error::NotString {
        arn: arn.to_owned(),
    })?;
    DatabaseSecret::parse(arn, json)
}

/// The username and password a pool connects with, compared on every re-read.
#[derive(PartialEq, Eq)]
struct Login {
    username: Option<String>,
    password: Option<String>,
}

impl Login {
    fn of(secret: &DatabaseSecret) -> Self {
        Self {
            username: secret.username.clone(),
            password: secret.password.clone(),
        }
    }
}

/// Keeps pools on the secret's current credentials: re-reads it on a timer and after a refused
/// password ([`Rotation::run`]), and hands a changed username/password to every pool for its
/// new connections ([`Rotation::refresh`]).
pub struct Rotation {
    client: Client,
    arn: String,
    root_cert: Option<PathBuf>,
    interval: Duration,
    // Never shown: `Rotation` has no Debug, and nothing formats this.
    current: Mutex<Login>,
    rotations: AtomicU64,
    reads: AtomicU64,
}

impl Rotation {
    /// Reads the secret `arn` (as [`database_from_secret`]) and returns the rotation that keeps
    /// it current with the options to open the pool with. The interval is [`DEFAULT_REFRESH`].
    pub async fn read(
        client: Client,
        arn: impl Into<String>,
        root_cert: Option<PathBuf>,
    ) -> Result<(Self, PgConnectOptions), Error> {
        let arn = arn.into();
        let secret = read_secret(&client, &arn).await?;
        let options = secret.connect_options(&arn, root_cert.as_deref())?;
        tracing::info!(
            secret = arn,
            host = options.get_host(),
            port = options.get_port(),
            "database credentials read from Secrets Manager"
        );
        let rotation = Self {
            client,
            arn,
            root_cert,
            interval: DEFAULT_REFRESH,
            current: Mutex::new(Login::of(&secret)),
            rotations: AtomicU64::new(0),
            reads: AtomicU64::new(1),
        };
        Ok((rotation, options))
    }

    /// Sets how often the secret is re-read when nothing failed.
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How many times a changed username/password was handed to the pools.
    pub fn rotations(&self) -> u64 {
        self.rotations.load(Ordering::Relaxed)
    }

    /// How many times the secret was read (the first read included).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Re-reads the secret; when its username or password changed, every pool in `pools` opens
    /// its next connections with them. Returns whether they changed. A secret that no longer
    /// parses (or lacks a field) is an error and the pools keep what they have; one that names
    /// another host, port or database changes nothing either (it applies on restart: a warning
    /// says so at every read).
    pub async fn refresh(&self, pools: &[PgPool]) -> Result<bool, Error> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let secret = read_secret(&self.client, &self.arn).await?;
        // Validates every field as the first read did, so a half-written secret changes nothing.
        let read = secret.connect_options(&self.arn, self.root_cert.as_deref())?;
        // A secret that now names another endpoint (a restore into a new cluster, a move) takes
        // effect on restart only; its password belongs to that endpoint, so handing it to pools
        // that still connect to the old one would lock them out (28P01 on every new
        // connection). The pools keep their login until the process restarts.
        if let Some(pool) = pools.iter().find(|p| {
            let o = p.connect_options();
            o.get_host() != read.get_host()
                || o.get_port() != read.get_port()
                || o.get_database() != read.get_database()
        }) {
            let o = pool.connect_options();
            tracing::warn!(
                secret = self.arn,
                pool_host = o.get_host(),
                secret_host = read.get_host(),
                pool_port = o.get_port(),
                secret_port = read.get_port(),
                "the database secret names another endpoint: it applies on restart, and its \
                 credentials are not used until then"
            );
            return Ok(false);
        }
        let login = Login::of(&secret);
        {
            let mut current = self
                .current
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *current == login {
                return Ok(false);
            }
            let (Some(username), Some(password)) = (&login.username, &login.password) else {
                // connect_options above rejected a missing username or password.
                return Ok(false);
            };
            for pool in pools {
                // The pool's own options (application_name, search_path, TLS) stay; only the
                // login changes. Connections already open are left alone.
                let options = (*pool.connect_options())
                    .clone()
                    .username(username)
                    .password(password);
                pool.set_connect_options(options);
            }
            *current = login;
        }
        self.rotations.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            secret = self.arn,
            "database credentials rotated in Secrets Manager: new connections use them"
        );
        Ok(true)
    }

    /// Runs until dropped (aborted): re-reads every interval, and at once after a refused
    /// password (`kit::db::auth_failed_since`). After a refusal the secret may not be updated yet (a
    /// rotation changes the database first, then the secret), so an unchanged secret is read
    /// again after 100, 200, 400, 800 and 1600 ms; a refusal that outlasts that (a secret that
    /// is simply wrong) waits a second before the next round: at most a few reads a second.
    pub async fn run(self: Arc<Self>, pools: Vec<PgPool>) {
        let mut seen = kit::db::auth_failures();
        loop {
            let after_failure = tokio::select! {
                () = tokio::time::sleep(self.interval) => false,
                _ = kit::db::auth_failed_since(seen) => true,
            };
            let mut pause = Duration::from_millis(100);
            let mut left = if after_failure { 6 } else { 1 };
            loop {
                left -= 1;
                match self.refresh(&pools).await {
                    Ok(true) => break,
                    Ok(false) if left == 0 => {
                        if after_failure {
                            tracing::warn!(
                                secret = self.arn,
                                "the database refused the password and the secret has not \
                                 changed; re-reading on the next refusal"
                            );
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "re-reading the database secret failed; the pool keeps its credentials");
                        if left == 0 {
                            break;
                        }
                    }
                }
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            // Refusals during the round were of the credentials it just replaced (or found
            // current): only a later one starts the next round.
            seen = kit::db::auth_failures();
        }
    }
}

/// What `kit::app::run_single_with` runs beside a serving process's pool.
impl kit::db::CredentialSource for Rotation {
    fn keep_current(
        self: Box<Self>,
        pools: Vec<PgPool>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(Arc::new(*self).run(pools))
    }
}

/// `DATABASE_SECRET_ARN` resolved through Secrets Manager with its [`Rotation`] (every
/// `DATABASE_SECRET_REFRESH_SECS`, and after a refused password), or `None` when it is unset.
/// Pass it to `kit::app::run_single_with`.
pub async fn rotating_database_from_env() -> Result<Option<kit::db::Database>, Error> {
    let Some(arn) = env_opt(SECRET_ARN_VAR)? else {
        return Ok(None);
    };
    let interval = match env_opt(REFRESH_SECS_VAR)? {
        None => DEFAULT_REFRESH,
        Some(v) => match v.parse::<u64>() {
            Ok(secs @ 1..=86_400) => Duration::from_secs(secs),
            _ => return Err(Error::Refresh { value: v }),
        },
    };
    let root_cert = env_opt(SSL_ROOT_CERT_VAR)?.map(PathBuf::from);
    let client = Client::new(&sdk_config().await);
    let (rotation, options) = Rotation::read(client, arn, root_cert).await?;
    Ok(Some(kit::db::Database {
        options,
        credentials: Some(Box::new(rotation.with_interval(interval))),
    }))
}

/// `DATABASE_SECRET_ARN` resolved through Secrets Manager once, or `None` when it is unset (the
/// caller then falls back to its own default). For one-shot commands (`meridian migrate`); a
/// serving process takes [`rotating_database_from_env`].
pub async fn database_from_env() -> Result<Option<PgConnectOptions>, Error> {
    let Some(arn) = env_opt(SECRET_ARN_VAR)? else {
        return Ok(None);
    };
    let root_cert = env_opt(SSL_ROOT_CERT_VAR)?.map(PathBuf::from);
    let client = Client::new(&sdk_config().await);
    database_from_secret(&client, &arn, root_cert.as_deref())
        .await
        .map(Some)
}

fn env_opt(name: &'static str) -> Result<Option<String>, Error> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v.trim().to_owned())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::Env { name }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:eu-north-1:1:secret:x";

    #[test]
    fn debug_redacts_the_password() {
        let s = DatabaseSecret::parse(
            ARN,
            r#"{"username":"u","password":"hunter2","host":"h","port":5432,"dbname":"d"}"#,
        )
        .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn syntax_errors_do_not_echo_the_secret() {
        let err = DatabaseSecret::parse(ARN, r#"{"password":"hunter2"#).unwrap_err();
        let shown = err.to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains(ARN), "{shown}");
    }

    #[test]
    fn sslmode_maps_and_defaults_to_verify_full() {
        let base = r#""username":"u","password":"p","host":"h","port":"5433","dbname":"d""#;
        let opts = DatabaseSecret::parse(ARN, &format!("{{{base}}}"))
            .unwrap()
            .connect_options(ARN, None)
            .unwrap();
        assert!(matches!(opts.get_ssl_mode(), PgSslMode::VerifyFull));
        assert_eq!(opts.get_port(), 5433);
        let opts = DatabaseSecret::parse(ARN, &format!(r#"{{{base},"sslmode":"require"}}"#))
            .unwrap()
            .connect_options(ARN, None)
            .unwrap();
        assert!(matches!(opts.get_ssl_mode(), PgSslMode::Require));
        let err = DatabaseSecret::parse(ARN, &format!(r#"{{{base},"sslmode":"strict"}}"#))
            .unwrap()
            .connect_options(ARN, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`sslmode`") && err.contains("strict"), "{err}");
    }

    #[test]
    fn bad_port_and_root_cert_are_named() {
        let s = DatabaseSecret::parse(
            ARN,
            r#"{"username":"u","password":"p","host":"h","port":70000,"dbname":"d"}"#,
        )
        .unwrap();
        let err = s.connect_options(ARN, None).unwrap_err().to_string();
        assert!(err.contains("`port`"), "{err}");
        let s = DatabaseSecret::parse(
            ARN,
            r#"{"username":"u","password":"p","host":"h","port":5432,"dbname":"d"}"#,
        )
        .unwrap();
        let err = s
            .connect_options(ARN, Some(Path::new("/nonexistent/rds.pem")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("DATABASE_SSL_ROOT_CERT=/nonexistent/rds.pem"),
            "{err}"
        );
    }
}
