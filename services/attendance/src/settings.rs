//! The service's settings, from the environment (12-factor), validated at start.

use std::time::Duration;

use kit::config::ConfigError;

/// Service settings, from the environment:
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `ATTENDANCE_VISITS_RETENTION_DAYS` | 90 | visits older than this are deleted (and refused) |
/// | `ATTENDANCE_OUTBOX_RETENTION_DAYS` | 7 | feed events older than this are deleted (a resume with `Last-Event-ID` reaches back at most a stream's life plus a ticket's) |
/// | `ATTENDANCE_SWEEP_INTERVAL_SECS` | 60 | how often the retention sweep runs |
/// | `ATTENDANCE_SWEEP_BATCH` | 5000 | visits deleted per sweep statement |
/// | `ATTENDANCE_TICKET_TTL_SECS` | 60 | how long a stream ticket may open a stream |
/// | `ATTENDANCE_HEARTBEAT_SECS` | 15 | SSE heartbeat comment interval (below the ALB idle timeout) |
/// | `ATTENDANCE_SUBSCRIBER_BUFFER` | 256 | events queued per subscriber before it is dropped |
/// | `ATTENDANCE_MAX_SUBSCRIBERS` | 2000 | streams one replica serves at once (at most half of `HTTP_MAX_CONNECTIONS`) |
/// | `ATTENDANCE_STREAM_MAX_SECS` | 3600 | how long one stream runs before the server ends it |
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub visits_retention: Duration,
    pub outbox_retention: Duration,
    pub sweep_interval: Duration,
    pub sweep_batch: i64,
    pub ticket_ttl: Duration,
    pub heartbeat: Duration,
    pub subscriber_buffer: usize,
    pub max_subscribers: usize,
    /// A stream ends (cleanly) this long after it opened; the client reconnects with a ticket.
    pub stream_max: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            visits_retention: Duration::from_hours(90 * 24),
            outbox_retention: Duration::from_hours(7 * 24),
            sweep_interval: Duration::from_mins(1),
            sweep_batch: 5000,
            ticket_ttl: Duration::from_mins(1),
            heartbeat: Duration::from_secs(15),
            subscriber_buffer: 256,
            max_subscribers: 2000,
            stream_max: Duration::from_hours(1),
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
        let outbox_days: u64 = kit::config::var_or(
            "ATTENDANCE_OUTBOX_RETENTION_DAYS",
            d.outbox_retention.as_secs() / 86_400,
        )?;
        let s = Self {
            visits_retention: Duration::from_secs(days.saturating_mul(86_400)),
            outbox_retention: Duration::from_secs(outbox_days.saturating_mul(86_400)),
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
            stream_max: kit::config::secs_or("ATTENDANCE_STREAM_MAX_SECS", d.stream_max)?,
        };
        // The connection cap as the kit's server reads it (`HTTP_MAX_CONNECTIONS`).
        let max_connections = kit::server::Limits::from_env()?.max_connections;
        s.validate(max_connections)?;
        Ok(s)
    }

    /// Rejects settings under which the service could not work, given the server's connection
    /// cap (`kit::server::Limits::max_connections`): streams may take at most half of it, so
    /// open streams can never fill every connection and starve `/healthz`, `/readyz` and the
    /// API's other requests.
    pub fn validate(&self, max_connections: usize) -> Result<(), ConfigError> {
        let bad = |name: &str, value: String, reason: &str| {
            Err(ConfigError {
                name: name.into(),
                value,
                reason: reason.into(),
            })
        };
        for (name, window) in [
            ("ATTENDANCE_VISITS_RETENTION_DAYS", self.visits_retention),
            ("ATTENDANCE_OUTBOX_RETENTION_DAYS", self.outbox_retention),
        ] {
            let days = window.as_secs() / 86_400;
            if !(1..=3650).contains(&days) {
                return bad(name, days.to_string(), "must be between 1 and 3650");
            }
        }
        let outbox_days = self.outbox_retention.as_secs() / 86_400;
        if self.outbox_retention <= self.stream_max + self.ticket_ttl {
            return bad(
                "ATTENDANCE_OUTBOX_RETENTION_DAYS",
                outbox_days.to_string(),
                "must outlast ATTENDANCE_STREAM_MAX_SECS plus ATTENDANCE_TICKET_TTL_SECS \
                 (a resume reads the events since its last one)",
            );
        }
        if self.sweep_interval.is_zero() {
            return bad(
                "ATTENDANCE_SWEEP_INTERVAL_SECS",
                "0".into(),
                "must be at least 1",
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
        let half = max_connections / 2;
        if self.max_subscribers > half {
            return bad(
                "ATTENDANCE_MAX_SUBSCRIBERS",
                self.max_subscribers.to_string(),
                &format!(
                    "must be at most half of HTTP_MAX_CONNECTIONS ({max_connections}), i.e. \
                     {half}: streams must leave connections for health checks and requests"
                ),
            );
        }
        if self.stream_max.is_zero() || self.stream_max > Duration::from_hours(24) {
            return bad(
                "ATTENDANCE_STREAM_MAX_SECS",
                self.stream_max.as_secs().to_string(),
                "must be between 1 and 86400",
            );
        }
        Ok(())
    }

    /// The outbox's retention window as a chrono duration (for its cut-off instant).
    pub fn outbox_retention(&self) -> chrono::Duration {
        chrono_of(self.outbox_retention)
    }

    /// The visits' retention window as a chrono duration (for the cut-off instant).
    pub fn retention(&self) -> chrono::Duration {
        chrono_of(self.visits_retention)
    }
}

/// A validated window (at most 3650 days) as a chrono duration.
fn chrono_of(d: Duration) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kit's default `HTTP_MAX_CONNECTIONS`.
    const CAP: usize = 4096;

    #[test]
    fn settings_reject_what_cannot_work() {
        assert!(Settings::default().validate(CAP).is_ok());
        assert_eq!(
            kit::server::Limits::default().max_connections,
            CAP,
            "the default subscriber cap is checked against kit's default connection cap"
        );
        let s = Settings {
            subscriber_buffer: 0,
            ..Settings::default()
        };
        assert_eq!(
            s.validate(CAP).expect_err("buffer 0").name,
            "ATTENDANCE_SUBSCRIBER_BUFFER"
        );
        let s = Settings {
            heartbeat: Duration::ZERO,
            ..Settings::default()
        };
        assert_eq!(
            s.validate(CAP).expect_err("no heartbeat").name,
            "ATTENDANCE_HEARTBEAT_SECS"
        );
        let s = Settings {
            visits_retention: Duration::ZERO,
            ..Settings::default()
        };
        assert_eq!(
            s.validate(CAP).expect_err("no retention").name,
            "ATTENDANCE_VISITS_RETENTION_DAYS"
        );
    }

    #[test]
    fn a_zero_sweep_interval_is_refused() {
        let s = Settings {
            sweep_interval: Duration::ZERO,
            ..Settings::default()
        };
        assert_eq!(
            s.validate(CAP).expect_err("interval 0").name,
            "ATTENDANCE_SWEEP_INTERVAL_SECS"
        );
    }

    #[test]
    fn the_outbox_retention_must_outlast_a_stream_and_its_ticket() {
        let with = |days: u64, stream_hours: u64| Settings {
            outbox_retention: Duration::from_hours(days * 24),
            stream_max: Duration::from_hours(stream_hours),
            ..Settings::default()
        };
        assert!(with(1, 1).validate(CAP).is_ok());
        for (days, hours) in [(0, 1), (3651, 1), (1, 24)] {
            assert_eq!(
                with(days, hours).validate(CAP).expect_err("refused").name,
                "ATTENDANCE_OUTBOX_RETENTION_DAYS",
                "{days} days, streams of {hours} h"
            );
        }
    }

    #[test]
    fn streams_may_take_at_most_half_the_connections() {
        let at = |n: usize, cap: usize| {
            Settings {
                max_subscribers: n,
                ..Settings::default()
            }
            .validate(cap)
        };
        assert!(at(2048, CAP).is_ok());
        assert_eq!(
            at(2049, CAP).expect_err("above half").name,
            "ATTENDANCE_MAX_SUBSCRIBERS"
        );
        // The old default, 5000, was above the whole cap.
        assert!(at(5000, CAP).is_err());
        // A smaller connection cap lowers the bound: the default no longer fits under 1000.
        assert!(at(Settings::default().max_subscribers, 1000).is_err());
        assert!(at(500, 1000).is_ok());
    }

    #[test]
    fn stream_lifetime_is_bounded() {
        for bad in [Duration::ZERO, Duration::from_hours(25)] {
            let s = Settings {
                stream_max: bad,
                ..Settings::default()
            };
            assert_eq!(
                s.validate(CAP).expect_err("stream max").name,
                "ATTENDANCE_STREAM_MAX_SECS"
            );
        }
    }
}
