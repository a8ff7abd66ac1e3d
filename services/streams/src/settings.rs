//! The service's settings, from the environment (12-factor), validated at start.

use std::time::Duration;

use kit::config::ConfigError;

use crate::domain::LIMIT_RANGE;

/// Service settings, from the environment:
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `STREAMS_DEFAULT_LIMIT` | 3 | concurrent streams per user without an override |
/// | `STREAMS_LEASE_TTL_SECS` | 90 | a session without a heartbeat for this long stops counting |
/// | `STREAMS_HEARTBEAT_INTERVAL_SECS` | 30 | how often clients are told to heartbeat |
/// | `STREAMS_SWEEP_INTERVAL_SECS` | 10 | how often expired leases are deleted |
/// | `STREAMS_SWEEP_BATCH` | 1000 | rows deleted per sweeper statement |
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub default_limit: i32,
    pub lease_ttl: Duration,
    pub heartbeat_interval: Duration,
    pub sweep_interval: Duration,
    pub sweep_batch: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            default_limit: 3,
            lease_ttl: Duration::from_secs(90),
            heartbeat_interval: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(10),
            sweep_batch: 1000,
        }
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let s = Self {
            default_limit: kit::config::var_or("STREAMS_DEFAULT_LIMIT", d.default_limit)?,
            lease_ttl: kit::config::secs_or("STREAMS_LEASE_TTL_SECS", d.lease_ttl)?,
            heartbeat_interval: kit::config::secs_or(
                "STREAMS_HEARTBEAT_INTERVAL_SECS",
                d.heartbeat_interval,
            )?,
            sweep_interval: kit::config::secs_or("STREAMS_SWEEP_INTERVAL_SECS", d.sweep_interval)?,
            sweep_batch: kit::config::var_or("STREAMS_SWEEP_BATCH", d.sweep_batch)?,
        };
        s.validate()?;
        Ok(s)
    }

    /// Rejects settings under which the guard could not work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |name: &str, value: String, reason: &str| {
            Err(ConfigError {
                name: name.into(),
                value,
                reason: reason.into(),
            })
        };
        if !LIMIT_RANGE.contains(&self.default_limit) {
            return bad(
                "STREAMS_DEFAULT_LIMIT",
                self.default_limit.to_string(),
                "must be between 1 and 20",
            );
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.lease_ttl {
            return bad(
                "STREAMS_HEARTBEAT_INTERVAL_SECS",
                self.heartbeat_interval.as_secs().to_string(),
                "must be above 0 and below STREAMS_LEASE_TTL_SECS, or live streams would expire",
            );
        }
        if self.sweep_batch < 1 {
            return bad(
                "STREAMS_SWEEP_BATCH",
                self.sweep_batch.to_string(),
                "must be at least 1",
            );
        }
        Ok(())
    }

    pub fn lease_ttl_ms(&self) -> i64 {
        i64::try_from(self.lease_ttl.as_millis()).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_reject_heartbeat_not_below_ttl() {
        let s = Settings {
            heartbeat_interval: Duration::from_secs(90),
            ..Settings::default()
        };
        let err = s.validate().expect_err("heartbeat == ttl");
        assert_eq!(err.name, "STREAMS_HEARTBEAT_INTERVAL_SECS");
        let s = Settings {
            default_limit: 0,
            ..Settings::default()
        };
        assert_eq!(
            s.validate().expect_err("limit 0").name,
            "STREAMS_DEFAULT_LIMIT"
        );
        assert!(Settings::default().validate().is_ok());
    }
}
