//! Settings of the call-control service, from the environment.

use std::{path::PathBuf, time::Duration};

use kit::config::{ConfigError, millis_or, var_opt, var_or};

use crate::{
    domain::{token::TokenKey, validate},
    webhook::WebhookKeys,
};

/// | variable | default | meaning |
/// |---|---|---|
/// | `CALLS_TOKEN_KEY` | — (required; `MERIDIAN_DEV=1`: a local dev key) | HMAC key of state tokens (>= 32 characters); the same in every replica and region |
/// | `CALLS_TOKEN_KEY_ALSO_ACCEPT` | — | a second key whose tokens are accepted (never signed with): key rotation |
/// | `CALLS_WEBHOOK_SECRETS` | — (required; `MERIDIAN_DEV=1`: provider `dev` with a local secret) | `provider:secret,...` signing the decision webhook (secrets >= 32 characters; a provider may be listed twice while its secret rotates) |
/// | `CALLS_TOKEN_MAX_AGE_SECS` | 14400 | a call step older than this restarts the flow |
/// | `CALLS_REFRESH_INTERVAL_MS` | 2000 | periodic snapshot check (NOTIFY is immediate) |
/// | `CALLS_STALE_AFTER_MS` | 6000 | unconfirmed longer than this, answers say `source: snapshot` |
/// | `CALLS_SNAPSHOT_PATH` | `${XDG_STATE_HOME:-$HOME/.local/state}/meridian/calls/snapshot.json` | file snapshot for cold starts (directories created 0700, file 0600) |
/// | `CALLS_DECISION_BUDGET_MS` | 500 | watchdog: slower decisions answer the static fallback |
/// | `CALLS_EMERGENCY_TARGET` | — | last-resort number when a PBX has no configuration at all |
/// | `CALLS_LOG_QUEUE` | 10000 | call-step records buffered while the database is slow |
/// | `CALLS_STEP_RETENTION_DAYS` | 90 | call steps older than this are deleted; 0 keeps them forever |
#[derive(Debug, Clone)]
pub struct Settings {
    pub token_key: TokenKey,
    /// Who may call the decision webhook (see [`crate::webhook`]).
    pub webhook_keys: WebhookKeys,
    /// Development fallbacks taken by [`from_env`](Self::from_env), logged loudly at start
    /// (after logging is up, so they are seen).
    pub dev_notes: Vec<String>,
    pub token_max_age_secs: i64,
    pub refresh_interval: Duration,
    pub stale_after: Duration,
    pub snapshot_path: Option<PathBuf>,
    pub decision_budget: Duration,
    pub emergency_target: Option<String>,
    pub log_queue: usize,
    /// `None`: keep call steps forever.
    pub step_retention: Option<chrono::Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        // A random key per process: nothing outside this process can forge its tokens. Tests and
        // the OpenAPI command use it; a service reads its shared key from the environment.
        let key = kit::secret::random32().unwrap_or_else(|e| panic!("{e}"));
        Self {
            token_key: TokenKey::new(key),
            webhook_keys: WebhookKeys::default(),
            dev_notes: Vec::new(),
            token_max_age_secs: 4 * 3600,
            refresh_interval: Duration::from_secs(2),
            stale_after: Duration::from_secs(6),
            snapshot_path: crate::snapshot::default_path(),
            decision_budget: Duration::from_millis(500),
            emergency_target: None,
            log_queue: 10_000,
            step_retention: Some(chrono::Duration::days(90)),
        }
    }
}

impl Settings {
    /// Reads the environment. Outside `MERIDIAN_DEV=1`, `CALLS_TOKEN_KEY` and
    /// `CALLS_WEBHOOK_SECRETS` are required: a missing one is an error naming it.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_with(kit::auth::dev_mode())
    }

    /// [`from_env`](Self::from_env) with dev mode decided by the caller.
    pub fn from_env_with(dev: bool) -> Result<Self, ConfigError> {
        let d = Self::default();
        let mut dev_notes = Vec::new();
        let key = |name: &str| match var_opt::<String>(name)? {
            Some(k) if k.len() >= 32 => Ok(Some(k)),
            Some(_) => Err(ConfigError {
                name: name.into(),
                value: "***".into(),
                reason: "must be at least 32 characters".into(),
            }),
            None => Ok(None),
        };
        let token_key = match key("CALLS_TOKEN_KEY")? {
            Some(k) => TokenKey::new(k),
            None if dev => {
                let path = kit::auth::dev::state_dir().join("calls-token-key");
                let seed = kit::auth::dev::load_or_create_secret(&path)
                    .map_err(|reason| required("CALLS_TOKEN_KEY", reason))?;
                dev_notes.push(format!(
                    "CALLS_TOKEN_KEY unset: using the local dev key in {}",
                    path.display()
                ));
                TokenKey::new(seed)
            }
            None => {
                return Err(required(
                    "CALLS_TOKEN_KEY",
                    "required: the HMAC key of call state tokens (at least 32 characters, the \
                     same in every replica and region); only MERIDIAN_DEV=1 runs without one"
                        .into(),
                ));
            }
        };
        let token_key = match key("CALLS_TOKEN_KEY_ALSO_ACCEPT")? {
            Some(k) => token_key.also_accepting(k),
            None => token_key,
        };
        let webhook_keys = match var_opt::<String>("CALLS_WEBHOOK_SECRETS")? {
            Some(spec) => WebhookKeys::parse(&spec).map_err(|reason| ConfigError {
                name: "CALLS_WEBHOOK_SECRETS".into(),
                value: "***".into(),
                reason,
            })?,
            None if dev => {
                let path = kit::auth::dev::state_dir().join("calls-webhook-secret");
                let secret = kit::auth::dev::load_or_create_secret(&path)
                    .map_err(|reason| required("CALLS_WEBHOOK_SECRETS", reason))?;
                dev_notes.push(format!(
                    "CALLS_WEBHOOK_SECRETS unset: provider `dev` signs with the local secret in {} \
                     (meridian sign-decision)",
                    path.display()
                ));
                WebhookKeys::new([(DEV_PROVIDER, &secret[..])])
                    .map_err(|reason| required("CALLS_WEBHOOK_SECRETS", reason))?
            }
            None => {
                return Err(required(
                    "CALLS_WEBHOOK_SECRETS",
                    "required: provider:secret pairs that sign the decision webhook; only \
                     MERIDIAN_DEV=1 runs without them"
                        .into(),
                ));
            }
        };
        let emergency_target: Option<String> = var_opt("CALLS_EMERGENCY_TARGET")?;
        if let Some(t) = &emergency_target
            && !validate::is_target(t)
        {
            return Err(ConfigError {
                name: "CALLS_EMERGENCY_TARGET".into(),
                value: t.clone(),
                reason: "must be an E.164 number or sip: URI".into(),
            });
        }
        Ok(Self {
            token_key,
            webhook_keys,
            dev_notes,
            token_max_age_secs: var_or("CALLS_TOKEN_MAX_AGE_SECS", d.token_max_age_secs)?,
            refresh_interval: millis_or("CALLS_REFRESH_INTERVAL_MS", d.refresh_interval)?,
            stale_after: millis_or("CALLS_STALE_AFTER_MS", d.stale_after)?,
            snapshot_path: var_opt::<PathBuf>("CALLS_SNAPSHOT_PATH")?.or(d.snapshot_path),
            decision_budget: millis_or("CALLS_DECISION_BUDGET_MS", d.decision_budget)?,
            emergency_target,
            log_queue: var_or("CALLS_LOG_QUEUE", d.log_queue)?,
            step_retention: match var_opt::<u32>("CALLS_STEP_RETENTION_DAYS")? {
                Some(0) => None,
                Some(days) => Some(chrono::Duration::days(i64::from(days))),
                None => d.step_retention,
            },
        })
    }
}

/// The webhook provider name of the local dev secret.
pub const DEV_PROVIDER: &str = "dev";

fn required(name: &str, reason: String) -> ConfigError {
    ConfigError {
        name: name.into(),
        value: String::new(),
        reason,
    }
}
