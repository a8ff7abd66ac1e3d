//! The service's settings, from the environment (12-factor), validated at start.

use kit::config::ConfigError;

/// Service settings, from the environment:
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `LEARNING_IMPORT_MAX_FILE_BYTES` | 8 GiB | a larger input file is refused before it is read |
/// | `LEARNING_IMPORT_MAX_RECORD_BYTES` | 16 MiB | one top-level record (an attempt, a practice bank) larger than this stops the file |
/// | `LEARNING_IMPORT_BATCH_ROWS` | 10000 | rows per COPY chunk (bounds the importer's memory) |
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    pub import: ImportLimits,
}

/// The importer's bounds: every input it reads is capped (a file, one record in it, one text
/// field), and its memory is bounded by the chunk size, not by the input.
#[derive(Debug, Clone, Copy)]
pub struct ImportLimits {
    /// A larger input file is refused before it is read.
    pub max_file_bytes: u64,
    /// One top-level record (an attempt, a practice bank, a paper set) larger than this stops the
    /// file: the parser holds one record at a time, so this bounds its memory.
    pub max_record_bytes: u64,
    /// One text field (question text, an answer) longer than this skips its row, with a reason.
    pub max_text_bytes: usize,
    /// Rows per COPY chunk.
    pub batch_rows: usize,
}

impl Default for ImportLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 8 << 30,
            max_record_bytes: 16 << 20,
            max_text_bytes: 256 << 10,
            batch_rows: 10_000,
        }
    }
}

impl ImportLimits {
    /// `(variable, value, reason)` of the first bad limit.
    pub fn validate(&self) -> Result<(), (&'static str, String, &'static str)> {
        if self.batch_rows == 0 || self.batch_rows > 1_000_000 {
            return Err((
                "LEARNING_IMPORT_BATCH_ROWS",
                self.batch_rows.to_string(),
                "must be between 1 and 1000000",
            ));
        }
        if self.max_record_bytes < 1024 {
            return Err((
                "LEARNING_IMPORT_MAX_RECORD_BYTES",
                self.max_record_bytes.to_string(),
                "must be at least 1024",
            ));
        }
        if self.max_file_bytes < 2 {
            return Err((
                "LEARNING_IMPORT_MAX_FILE_BYTES",
                self.max_file_bytes.to_string(),
                "must be at least 2",
            ));
        }
        Ok(())
    }
}

impl Settings {
    /// No setting of this service differs in development mode (it has no secrets).
    pub fn from_env_with(_dev: bool) -> Result<Self, ConfigError> {
        let d = Self::default();
        let s = Self {
            import: ImportLimits {
                max_file_bytes: kit::config::var_or(
                    "LEARNING_IMPORT_MAX_FILE_BYTES",
                    d.import.max_file_bytes,
                )?,
                max_record_bytes: kit::config::var_or(
                    "LEARNING_IMPORT_MAX_RECORD_BYTES",
                    d.import.max_record_bytes,
                )?,
                batch_rows: kit::config::var_or("LEARNING_IMPORT_BATCH_ROWS", d.import.batch_rows)?,
                ..d.import
            },
        };
        s.validate()?;
        Ok(s)
    }

    /// Rejects settings under which the importer could not work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.import
            .validate()
            .map_err(|(name, value, reason)| ConfigError {
                name: name.into(),
                value,
                reason: reason.into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_reject_zero_batch_and_tiny_records() {
        let mut s = Settings::default();
        assert!(s.validate().is_ok());
        s.import.batch_rows = 0;
        assert_eq!(
            s.validate().expect_err("batch 0").name,
            "LEARNING_IMPORT_BATCH_ROWS"
        );
        let mut s = Settings::default();
        s.import.max_record_bytes = 10;
        assert_eq!(
            s.validate().expect_err("record cap").name,
            "LEARNING_IMPORT_MAX_RECORD_BYTES"
        );
    }
}
