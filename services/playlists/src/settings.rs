//! The service's settings, from the environment (12-factor), validated at start.

use kit::config::ConfigError;

/// Service settings, from the environment:
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `PLAYLISTS_MAX_SIZE` | 20 | lessons one playlist may hold |
/// | `PLAYLISTS_MAX_PER_USER` | 50 | playlists one user may have |
/// | `PLAYLISTS_MASTERY_THRESHOLD` | 0.9 | mean accuracy at which a lesson counts as mastered |
/// | `PLAYLISTS_MASTERY_SESSIONS` | 3 | recent sessions that mean is taken over |
/// | `PLAYLISTS_SHARE_MAX_DAYS` | 365 | the longest expiry a share link may be given |
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub max_size: usize,
    pub max_per_user: usize,
    pub mastery_threshold: f32,
    pub mastery_sessions: usize,
    pub share_max_days: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_size: 20,
            max_per_user: 50,
            mastery_threshold: 0.9,
            mastery_sessions: 3,
            share_max_days: 365,
        }
    }
}

impl Settings {
    /// The settings of a running service. Playlists has no secrets (share tokens are random
    /// and only their hashes are stored), so development mode changes nothing.
    pub fn from_env_with(_dev: bool) -> Result<Self, ConfigError> {
        let d = Self::default();
        let s = Self {
            max_size: kit::config::var_or("PLAYLISTS_MAX_SIZE", d.max_size)?,
            max_per_user: kit::config::var_or("PLAYLISTS_MAX_PER_USER", d.max_per_user)?,
            mastery_threshold: kit::config::var_or(
                "PLAYLISTS_MASTERY_THRESHOLD",
                d.mastery_threshold,
            )?,
            mastery_sessions: kit::config::var_or(
                "PLAYLISTS_MASTERY_SESSIONS",
                d.mastery_sessions,
            )?,
            share_max_days: kit::config::var_or("PLAYLISTS_SHARE_MAX_DAYS", d.share_max_days)?,
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
        if !(1..=500).contains(&self.max_size) {
            return bad(
                "PLAYLISTS_MAX_SIZE",
                self.max_size.to_string(),
                "must be between 1 and 500",
            );
        }
        if !(1..=1000).contains(&self.max_per_user) {
            return bad(
                "PLAYLISTS_MAX_PER_USER",
                self.max_per_user.to_string(),
                "must be between 1 and 1000",
            );
        }
        if !(self.mastery_threshold > 0.0 && self.mastery_threshold <= 1.0) {
            return bad(
                "PLAYLISTS_MASTERY_THRESHOLD",
                self.mastery_threshold.to_string(),
                "must be above 0 and at most 1",
            );
        }
        if !(1..=50).contains(&self.mastery_sessions) {
            return bad(
                "PLAYLISTS_MASTERY_SESSIONS",
                self.mastery_sessions.to_string(),
                "must be between 1 and 50",
            );
        }
        if !(1..=3650).contains(&self.share_max_days) {
            return bad(
                "PLAYLISTS_SHARE_MAX_DAYS",
                self.share_max_days.to_string(),
                "must be between 1 and 3650",
            );
        }
        Ok(())
    }

    pub fn rule(&self) -> crate::domain::rotation::Rule {
        crate::domain::rotation::Rule {
            threshold: self.mastery_threshold,
            window: self.mastery_sessions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_reject_what_cannot_work() {
        assert!(Settings::default().validate().is_ok());
        let s = Settings {
            max_size: 0,
            ..Settings::default()
        };
        assert_eq!(s.validate().expect_err("0").name, "PLAYLISTS_MAX_SIZE");
        let s = Settings {
            mastery_threshold: 1.5,
            ..Settings::default()
        };
        assert_eq!(
            s.validate().expect_err("1.5").name,
            "PLAYLISTS_MASTERY_THRESHOLD"
        );
        let s = Settings {
            mastery_sessions: 0,
            ..Settings::default()
        };
        assert_eq!(
            s.validate().expect_err("0").name,
            "PLAYLISTS_MASTERY_SESSIONS"
        );
    }
}
