//! Collects every validation failure of a request, so one answer lists all of them.

use crate::error::{ApiError, FieldError};

#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `message` for `field` unless `ok` holds.
    pub fn check(&mut self, ok: bool, field: &str, message: impl Into<String>) -> &mut Self {
        if !ok {
            self.errors.push(FieldError::new(field, message));
        }
        self
    }

    /// A non-blank string of at most `max` characters.
    pub fn text(&mut self, value: &str, field: &str, max: usize) -> &mut Self {
        if value.trim().is_empty() {
            self.errors
                .push(FieldError::new(field, "must not be blank"));
        } else if value.chars().count() > max {
            self.errors.push(FieldError::new(
                field,
                format!("must be at most {max} characters"),
            ));
        }
        self
    }

    /// An integer within `range`.
    pub fn range<T>(
        &mut self,
        value: T,
        field: &str,
        range: std::ops::RangeInclusive<T>,
    ) -> &mut Self
    where
        T: PartialOrd + std::fmt::Display + Copy,
    {
        if !range.contains(&value) {
            self.errors.push(FieldError::new(
                field,
                format!(
                    "must be between {} and {}, got {value}",
                    range.start(),
                    range.end()
                ),
            ));
        }
        self
    }

    pub fn push(&mut self, field: &str, message: impl Into<String>) -> &mut Self {
        self.errors.push(FieldError::new(field, message));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Ok(())` when nothing failed, else one validation problem listing every failure.
    pub fn finish(&mut self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(std::mem::take(&mut self.errors)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_failure() {
        let err = Validator::new()
            .text("  ", "name", 10)
            .text("abcdefghijkl", "title", 10)
            .range(0, "limit", 1..=20)
            .range(5, "ok", 1..=20)
            .finish()
            .expect_err("three failures");
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "title", "limit"]);
        assert!(Validator::new().range(20, "limit", 1..=20).finish().is_ok());
    }
}
