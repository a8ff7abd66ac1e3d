//! Settings of the call-control service, from the environment.

use std::{path::PathBuf, time::Duration};

use kit::config::{ConfigError, millis_or, var_opt, var_or};

use crate::domain::{token::TokenKey, validate};

/// | variable | default | meaning |
/// |---|---|---|
/// | `CALLS_TOKEN_KEY` | dev key (warns) | HMAC key of state tokens; the same in every replica and region |
/// | `CALLS_TOKEN_KEY_ALSO_ACCEPT` | — | a second key whose tokens are accepted (never signed with): key rotation |
/// | `CALLS_TOKEN_MAX_AGE_SECS` | 14400 | a call step older than this restarts the flow |
/// | `CALLS_REFRESH_INTERVAL_MS` | 2000 | periodic snapshot check (NOTIFY is immediate) |
/// | `CALLS_STALE_AFTER_MS` | 6000 | unconfirmed longer than this, answers say `source: snapshot` |
/// | `CALLS_SNAPSHOT_PATH` | `$TMPDIR/meridian-calls-snapshot.json` | file snapshot for cold starts |
/// | `CALLS_DECISION_BUDGET_MS` | 500 | watchdog: slower decisions answer the static fallback |
/// | `CALLS_EMERGENCY_TARGET` | — | last-resort number when a PBX has no configuration at all |
/// | `CALLS_LOG_QUEUE` | 10000 | call-step records buffered while the database is slow |
/// | `CALLS_STEP_RETENTION_DAYS` | 90 | call steps older than this are deleted; 0 keeps them forever |
#[derive(Debug, Clone)]
pub struct Settings {
    pub token_key: TokenKey,
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
        Self {
            token_key: TokenKey::new(b"meridian-dev-only-token-key"),
            token_max_age_secs: 4 * 3600,
            refresh_interval: Duration::from_secs(2),
            stale_after: Duration::from_secs(6),
            snapshot_path: Some(std::env::temp_dir().join("meridian-calls-snapshot.json")),
            decision_budget: Duration::from_millis(500),
            emergency_target: None,
            log_queue: 10_000,
            step_retention: Some(chrono::Duration::days(90)),
        }
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
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
            None => {
                tracing::warn!(
                    "CALLS_TOKEN_KEY unset: using the development key (never in production)"
                );
                d.token_key
            }
        };
        let token_key = match key("CALLS_TOKEN_KEY_ALSO_ACCEPT")? {
            Some(k) => token_key.also_accepting(k),
            None => token_key,
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
