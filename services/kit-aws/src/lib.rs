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
//! [`database_from_env`] reads that secret once at start and turns it into sqlx connection
//! options (no URL in between, so no percent-encoding of the password); binaries hand it to
//! `kit::app::run_single_with`. `sslmode` maps to [`PgSslMode`] (missing: `verify-full`); the CA
//! for `verify-ca`/`verify-full` is the PEM bundle at `DATABASE_SSL_ROOT_CERT` (the RDS bundle),
//! else Mozilla's roots, which do not include the RDS CAs. `schema` is not used: each service's
//! pool sets `search_path` to its own schema.
//!
//! Rotation: the secret is read at start only. A rotated password takes effect when the task or
//! pod restarts (ECS/EKS restart it when its readiness fails); re-reading on authentication
//! failure is not implemented (sqlx 0.9 has `Pool::set_connect_options`, the hook it would use).
//!
//! Environment: `DATABASE_SECRET_ARN`, `AWS_REGION`, `DATABASE_SSL_ROOT_CERT`, and the standard
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
};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_secretsmanager::{Client, error::ProvideErrorMetadata};
use aws_smithy_http_client::tls;
use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// The variable naming the database secret.
pub const SECRET_ARN_VAR: &str = "DATABASE_SECRET_ARN";
/// The variable naming the PEM CA bundle for `verify-ca`/`verify-full`.
pub const SSL_ROOT_CERT_VAR: &str = "DATABASE_SSL_ROOT_CERT";

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
    let options = DatabaseSecret::parse(arn, json)?.connect_options(arn, root_cert)?;
    tracing::info!(
        secret = arn,
        host = options.get_host(),
        port = options.get_port(),
        "database credentials read from Secrets Manager"
    );
    Ok(options)
}

/// `DATABASE_SECRET_ARN` resolved through Secrets Manager, or `None` when it is unset (the
/// caller then falls back to its own default). Pass it to `kit::app::run_single_with`.
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
