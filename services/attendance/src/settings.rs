//! The service's settings, from the environment (12-factor), validated at start.

use std::time::Duration;

use kit::config::ConfigError;

/// Service settings, from the environment:
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `ATTENDANCE_VISITS_RETENTION_DAYS` | 90 | visits older than this are deleted (and refused) |
/// | `ATTENDANCE_SWEEP_INTERVAL_SECS` | 60 | how often the retention sweep runs |
/// | `ATTENDANCE_SWEEP_BATCH` | 5000 | visits deleted per sweep statement |
/// | `ATTENDANCE_TICKET_TTL_SECS` | 60 | how long a stream ticket may open a stream |
/// | `ATTENDANCE_HEARTBEAT_SECS` | 15 | SSE heartbeat comment interval (below the ALB idle timeout) |
/// | `ATTENDANCE_SUBSCRIBER_BUFFER` | 256 | events queued per subscriber before it is dropped |
/// | `ATTENDANCE_MAX_SUBSCRIBERS` | 5000 | streams one replica serves at once |
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub visits_retention: Duration,
    pub sweep_interval: Duration,
    pub sweep_batch: i64,
    pub ticket_ttl: Duration,
    pub heartbeat: Duration,
    pub subscriber_buffer: usize,
    pub max_subscribers: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            visits_retention: Duration::from_hours(90 * 24),
            sweep_interval: Duration::from_mins(1),
            sweep_batch: 5000,
            ticket_ttl: Duration::from_mins(1),
            heartbeat: Duration::from_secs(15),
            subscriber_buffer: 256,
            max_subscribers: 5000,
        }
    }
}

impl Settings {
    /// The settings of a running service. Attendance has no secrets (stream tickets live in the
    /// database), so development mode changes nothing.
    pub fn from_env_with(_dev: bool) -> Result<Self, ConfigError> {
        let d = Self::default();
        let days: u64 = kit::config::var_or(
            "ATTENDANCE_VISITS_RETENTION_DAYS",
            d.visits_retention.as_secs() / 86_400,
        )?;
        let s = Self {
            visits_retention: Duration::from_secs(days.saturating_mul(86_400)),
            sweep_interval: kit::config::secs_or(
                "ATTENDANCE_SWEEP_INTERVAL_SECS",
                d.sweep_interval,
            )?,
            sweep_batch: kit::config::var_or("ATTENDANCE_SWEEP_BATCH", d.sweep_batch)?,
            ticket_ttl: kit::config::secs_or("ATTENDANCE_TICKET_TTL_SECS", d.ticket_ttl)?,
            heartbeat: kit::config::secs_or("ATTENDANCE_HEARTBEAT_SECS", d.heartbeat)?,
            subscriber_buffer: kit::config::var_or(
                "ATTENDANCE_SUBSCRIBER_BUFFER",
                d.subscriber_buffer,
            )?,
            max_subscribers: kit::config::var_or("ATTENDANCE_MAX_SUBSCRIBERS", d.max_subscribers)?,
        };
        s.validate()?;
        Ok(s)
    }

    /// Rejects settings under which the service could not work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |name: &str, value: String, reason: &str| {
            Err(ConfigError {
                name: name.into(),
                value,
                reason: reason.into(),
            })
        };
        let days = self.visits_retention.as_secs() / 86_400;
        if !(1..=3650).contains(&days) {
            return bad(
                "ATTENDANCE_VISITS_RETENTION_DAYS",
                days.to_string(),
                "must be between 1 and 3650",
            );
        }
        if !(1..=100_000).contains(&self.sweep_batch) {
            return bad(
                "ATTENDANCE_SWEEP_BATCH",
                self.sweep_batch.to_string(),
                "must be between 1 and 100000",
            );
        }
        if self.ticket_ttl.is_zero() || self.ticket_ttl > Duration::from_hours(1) {
            return bad(
                "ATTENDANCE_TICKET_TTL_SECS",
                self.ticket_ttl.as_secs().to_string(),
                "must be between 1 and 3600",
            );
        }
        if self.heartbeat.is_zero() {
            return bad(
                "ATTENDANCE_HEARTBEAT_SECS",
                "0".into(),
                "must be above 0 (a silent stream is cut by the load balancer)",
            );
        }
        if !(1..=65_536).contains(&self.subscriber_buffer) {
            return bad(
                "ATTENDANCE_SUBSCRIBER_BUFFER",
                self.subscriber_buffer.to_string(),
                "must be between 1 and 65536",
            );
        }
        if !(1..=100_000).contains(&self.max_subscribers) {
            return bad(
                "ATTENDANCE_MAX_SUBSCRIBERS",
                self.max_subscribers.to_string(),
                "must be between 1 and 100000",
            );
        }
        Ok(())
    }

    /// The retention window as a chrono duration (for the cut-off instant).
    pub fn retention(&self) -> chrono::Duration {
        chrono::Duration::seconds(
            i64::try_from(self.visits_retention.as_secs()).unwrap_or(i64::MAX / 2),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_reject_what_cannot_work() {
        assert!(Settings::default().validate().is_ok());
        let s = Settings {
            subscriber_buffer: 0,
            ..Settings::default()
        };
        assert_eq!(
            s.validate().expect_err("buffer 0").name,
            "ATTENDANCE_SUBSCRIBER_BUFFER"
        );
        let s = Settings {
            heartbeat: Duration::ZERO,
            ..Settings::default()
        };
        assert_eq!(
            s.validate().expect_err("no heartbeat").name,
            "ATTENDANCE_HEARTBEAT_SECS"
        );
        let s = Settings {
            visits_retention: Duration::ZERO,
            ..Settings::default()
        };
        assert_eq!(
            s.validate().expect_err("no retention").name,
            "ATTENDANCE_VISITS_RETENTION_DAYS"
        );
    }
}
