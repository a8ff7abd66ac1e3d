//! Configuration from environment variables (12-factor), with documented defaults.
//!
//! Every accessor names the variable in its error so a bad deployment fails at start with a
//! message an operator can act on, instead of a panic deep inside a handler.

use std::{fmt, str::FromStr, time::Duration};

/// A variable was set to something that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for environment variable {name}={value:?}: {reason}")]
pub struct ConfigError {
    pub name: String,
    pub value: String,
    pub reason: String,
}

/// Reads `name`, or returns `default` when it is unset or empty.
pub fn var_or<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    Ok(var_opt(name)?.unwrap_or(default))
}

/// A switch: `1` on, `0` or unset off; anything else is an error naming the variable (so
/// `true` or `2` cannot silently mean off).
pub fn flag(name: &str) -> Result<bool, ConfigError> {
    match std::env::var(name).as_deref().map(str::trim) {
        Err(_) | Ok("" | "0") => Ok(false),
        Ok("1") => Ok(true),
        Ok(other) => Err(ConfigError {
            name: name.into(),
            value: other.chars().take(40).collect(),
            reason: "must be 0 or 1".into(),
        }),
    }
}

/// Reads `name` if it is set and non-empty.
pub fn var_opt<T>(name: &str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    parse_var(name, std::env::var(name))
}

/// The parsing half of [`var_opt`], apart from the process environment so it can be tested
/// (edition 2024 makes `set_var` unsafe, and this workspace forbids unsafe code).
fn parse_var<T>(
    name: &str,
    raw: Result<String, std::env::VarError>,
) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match raw {
        Ok(raw) if raw.trim().is_empty() => Ok(None),
        Ok(raw) => raw
            .trim()
            .parse()
            .map(Some)
            .map_err(|e: T::Err| ConfigError {
                name: name.to_owned(),
                value: raw,
                reason: e.to_string(),
            }),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(raw)) => Err(ConfigError {
            name: name.to_owned(),
            // Never echoed: the variable may hold a secret.
            value: format!("<{} bytes, not shown>", raw.len()),
            reason: "not valid UTF-8".to_owned(),
        }),
    }
}

/// Reads a duration given in milliseconds (`*_MS` variables).
pub fn millis_or(name: &str, default: Duration) -> Result<Duration, ConfigError> {
    Ok(var_opt::<u64>(name)?.map_or(default, Duration::from_millis))
}

/// Reads a duration given in whole seconds (`*_SECS` variables).
pub fn secs_or(name: &str, default: Duration) -> Result<Duration, ConfigError> {
    Ok(var_opt::<u64>(name)?.map_or(default, Duration::from_secs))
}

/// `${XDG_STATE_HOME:-$HOME/.local/state}/meridian`: where a process keeps what must outlive a
/// restart on this machine (the calls snapshot file, the dev keys). `None` when neither variable
/// holds an absolute path (the XDG specification says relative ones are to be ignored).
pub fn state_dir() -> Option<std::path::PathBuf> {
    state_dir_from(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
}

fn state_dir_from(
    xdg_state_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<std::path::PathBuf> {
    let absolute =
        |v: std::ffi::OsString| Some(std::path::PathBuf::from(v)).filter(|p| p.is_absolute());
    let base = xdg_state_home
        .and_then(absolute)
        .or_else(|| home.and_then(absolute).map(|h| h.join(".local/state")))?;
    Some(base.join("meridian"))
}

/// Log output format: `json` for machines (the default), `pretty` for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Json,
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" | "text" => Ok(Self::Pretty),
            other => Err(format!("expected `json` or `pretty`, got `{other}`")),
        }
    }
}

/// Settings every service process reads. Service-specific settings live in each service crate.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `PORT` | 8080 | TCP port to listen on (all interfaces) |
/// | `LOG_FORMAT` | json | `json` or `pretty` |
/// | `RUST_LOG` | info | tracing filter |
/// | `DATABASE_URL` | — | PostgreSQL URL; per-service binaries need it or `DATABASE_SECRET_ARN` |
/// | `DATABASE_SECRET_ARN` | — | AWS: Secrets Manager secret with the database credentials (JSON `username`, `password`, `host`, `port`, `dbname`, `sslmode`), read at start when `DATABASE_URL` is unset (`kit-aws`) |
/// | `DATABASE_SECRET_REFRESH_SECS` | 300 | a serving per-service binary re-reads that secret this often, and at once after a refused password (SQLSTATE 28P01); a changed password goes to new connections, no restart (`kit_aws::Rotation`) |
/// | `AWS_REGION` | — | AWS region of that secret (set by terraform) |
/// | `AWS_ENDPOINT_URL` | — | AWS API endpoint override (tests: a moto server); never set in AWS |
/// | `DATABASE_SSL_ROOT_CERT` | — | PEM CA bundle for the secret's `sslmode` `verify-ca`/`verify-full` (the RDS bundle); unset: Mozilla's roots |
/// | `MIGRATE_ON_START` | 0 | 1 = a per-service binary applies its migrations at start (where no migration Job runs: the ECS countries); 0 = it only checks the schema holds every migration it ships (a newer schema is fine) and refuses to start otherwise, naming `<service> migrate` |
/// | `DB_MAX_CONNECTIONS` | 10 | pool size per service |
/// | `DB_ACQUIRE_TIMEOUT_MS` | 2000 | how long a request waits for a pooled connection |
/// | `DB_MAX_LIFETIME_SECS` | 1800 | a pooled connection older than this is replaced (re-resolving the endpoint after a failover) |
/// | `SHUTDOWN_GRACE_SECS` | 20 | how long SIGTERM waits for in-flight requests |
/// | `REQUEST_TIMEOUT_MS` | 10000 | upper bound for one request |
/// | `HTTP_HEADER_READ_TIMEOUT_MS` | 10000 | a whole request head must arrive within this of the connection's accept, or of the first byte of a kept-alive connection's next request; else the connection is closed |
/// | `HTTP_IDLE_TIMEOUT_SECS` | 130 | how long a kept-alive connection may wait for its next request; keep it above the load balancer's idle timeout (ALB: 120 s) |
/// | `HTTP_MAX_CONNECTIONS` | 4096 | open connections per process; more are closed on accept (the soft open-file limit is raised to fit, up to the hard limit) |
/// | `HTTP_MAX_IN_FLIGHT` | 256 | requests handled at once per process; more are answered 503 problem+json with `Retry-After: 1` (`/healthz` and `/metrics` never are) |
/// | `FAULT_DELAY_MS` | — | fault injection for gate tests: delay matching requests (never in production) |
/// | `FAULT_PATH_PREFIX` | `/` | which paths `FAULT_DELAY_MS` delays |
#[derive(Clone)]
pub struct CommonConfig {
    pub port: u16,
    pub log_format: LogFormat,
    pub database_url: Option<String>,
    pub db_max_connections: u32,
    pub db_acquire_timeout: Duration,
    pub db_max_lifetime: Duration,
    pub shutdown_grace: Duration,
    pub request_timeout: Duration,
    /// `(path prefix, delay)` when fault injection is on.
    pub fault_delay: Option<(String, Duration)>,
    /// Connection timeouts and limits, load shedding (`HTTP_*`; see [`crate::server`]).
    pub http_limits: crate::server::Limits,
}

impl CommonConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let db_max_connections: u32 = var_or("DB_MAX_CONNECTIONS", 10)?;
        if db_max_connections == 0 {
            return Err(ConfigError {
                name: "DB_MAX_CONNECTIONS".into(),
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(Self {
            port: var_or("PORT", 8080)?,
            log_format: var_or("LOG_FORMAT", LogFormat::Json)?,
            database_url: var_opt("DATABASE_URL")?,
            db_max_connections,
            db_acquire_timeout: millis_or("DB_ACQUIRE_TIMEOUT_MS", Duration::from_secs(2))?,
            db_max_lifetime: secs_or("DB_MAX_LIFETIME_SECS", Duration::from_mins(30))?,
            shutdown_grace: secs_or("SHUTDOWN_GRACE_SECS", Duration::from_secs(20))?,
            request_timeout: millis_or("REQUEST_TIMEOUT_MS", Duration::from_secs(10))?,
            fault_delay: var_opt::<u64>("FAULT_DELAY_MS")?.map(|ms| {
                let prefix = var_opt::<String>("FAULT_PATH_PREFIX").ok().flatten();
                (
                    prefix.unwrap_or_else(|| "/".to_owned()),
                    Duration::from_millis(ms),
                )
            }),
            http_limits: crate::server::Limits::from_env()?,
        })
    }
}

// The database URL may carry a password: never print it.
impl fmt::Debug for CommonConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommonConfig")
            .field("port", &self.port)
            .field("log_format", &self.log_format)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|u| redact_url(u)),
            )
            .field("db_max_connections", &self.db_max_connections)
            .field("db_acquire_timeout", &self.db_acquire_timeout)
            .field("db_max_lifetime", &self.db_max_lifetime)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("request_timeout", &self.request_timeout)
            .field("fault_delay", &self.fault_delay)
            .field("http_limits", &self.http_limits)
            .finish()
    }
}

/// Replaces the password of a `scheme://user:password@host/...` URL with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_directory_follows_xdg_and_ignores_relative_paths() {
        let p =
            |x: Option<&str>, h: Option<&str>| state_dir_from(x.map(Into::into), h.map(Into::into));
        let path = |s: &str| Some(std::path::PathBuf::from(s));
        assert_eq!(p(Some("/state"), Some("/home/a")), path("/state/meridian"));
        assert_eq!(
            p(None, Some("/home/a")),
            path("/home/a/.local/state/meridian")
        );
        assert_eq!(
            p(Some("state"), Some("/home/a")),
            path("/home/a/.local/state/meridian")
        );
        assert_eq!(p(Some(""), Some("")), None);
        assert_eq!(p(None, None), None);
    }

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn log_format_parses_and_rejects() {
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("pretty".parse::<LogFormat>(), Ok(LogFormat::Pretty));
        assert!("xml".parse::<LogFormat>().is_err());
    }

    #[test]
    fn bad_value_names_the_variable_and_empty_means_unset() {
        let err = parse_var::<u16>("PORT", Ok("80a".into())).expect_err("80a is no port");
        let msg = err.to_string();
        assert!(msg.contains("PORT") && msg.contains("80a"), "{msg}");
        assert_eq!(parse_var::<u16>("PORT", Ok("  ".into())).ok(), Some(None));
        assert_eq!(
            parse_var::<u16>("PORT", Ok(" 9090 ".into())).ok(),
            Some(Some(9090))
        );
        assert_eq!(
            parse_var::<u16>("PORT", Err(std::env::VarError::NotPresent)).ok(),
            Some(None)
        );
    }
}
