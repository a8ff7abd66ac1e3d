//! Collects every validation failure of a request, so one answer lists all of them.
//!
//! Text fields reject control characters (Unicode category Cc: the C0 range with NUL, DEL, and
//! the C1 range): they have no business in identifiers, names or numbers, they break log lines and
//! terminals, and PostgreSQL refuses NUL outright (a NUL that reaches a query is a 500, or a
//! rejected COPY batch). Fields that deliberately hold several lines of prose use
//! [`Validator::multiline_text`], which allows tab, line feed and carriage return and nothing else.

use crate::error::{ApiError, FieldError};

/// Which whitespace controls a text field admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// No control characters at all.
    Single,
    /// Tab, line feed and carriage return; no other control character.
    Multi,
}

/// Why `value` is not acceptable text of 1..=`max` characters, or `None` if it is. The message
/// never quotes the value (it may be huge or hostile); a control character is named by its code
/// point and position.
pub fn text_problem(value: &str, max: usize, lines: Lines) -> Option<String> {
    // Bytes bound characters from above: only a long value needs counting, and counting stops
    // at the first character past the limit.
    if value.len() > max && value.chars().nth(max).is_some() {
        return Some(format!("must be at most {max} characters"));
    }
    if let Some((at, c)) = value.chars().enumerate().find(|&(_, c)| {
        c.is_control() && !(lines == Lines::Multi && matches!(c, '\t' | '\n' | '\r'))
    }) {
        return Some(format!(
            "must not contain control characters (U+{:04X} at character {at})",
            u32::from(c)
        ));
    }
    if value.trim().is_empty() {
        return Some("must not be blank".to_owned());
    }
    None
}

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

    /// A non-blank, single-line string of at most `max` characters, without control characters.
    pub fn text(&mut self, value: &str, field: &str, max: usize) -> &mut Self {
        self.text_with(value, field, max, Lines::Single)
    }

    /// Like [`text`](Self::text), but tabs and line breaks are allowed (prose, spoken prompts).
    pub fn multiline_text(&mut self, value: &str, field: &str, max: usize) -> &mut Self {
        self.text_with(value, field, max, Lines::Multi)
    }

    fn text_with(&mut self, value: &str, field: &str, max: usize, lines: Lines) -> &mut Self {
        if let Some(message) = text_problem(value, max, lines) {
            self.errors.push(FieldError::new(field, message));
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

    fn fields(v: &mut Validator) -> Vec<String> {
        v.finish()
            .err()
            .map(|e| e.errors.into_iter().map(|e| e.field).collect())
            .unwrap_or_default()
    }

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

    #[test]
    fn text_rejects_every_control_character() {
        // C0 (NUL, tab, newline, escape), DEL and C1 (U+0080, U+009B CSI, U+009F).
        for c in [
            '\0', '\u{1}', '\t', '\n', '\r', '\u{1b}', '\u{7f}', '\u{80}', '\u{9b}', '\u{9f}',
        ] {
            let value = format!("call{c}42");
            let mut v = Validator::new();
            v.text(&value, "call_id", 128);
            assert_eq!(
                fields(&mut v),
                ["call_id"],
                "U+{:04X} accepted",
                u32::from(c)
            );
        }
        let err = Validator::new()
            .text("a\0b", "call_id", 128)
            .finish()
            .expect_err("NUL");
        assert_eq!(
            err.errors[0].message,
            "must not contain control characters (U+0000 at character 1)"
        );
    }

    #[test]
    fn text_accepts_ordinary_unicode() {
        // Letters outside ASCII, symbols, a space, and U+00A0 (the first printable after C1).
        let mut v = Validator::new();
        v.text("Sjukhuset Östra – växel ☎ +46\u{a0}10", "name", 64);
        assert!(v.finish().is_ok());
    }

    #[test]
    fn multiline_text_allows_line_breaks_and_tabs_only() {
        let mut ok = Validator::new();
        ok.multiline_text("Welcome.\r\nPress 1\tfor the ward.", "prompt", 100);
        assert!(ok.finish().is_ok());
        for c in ['\0', '\u{7}', '\u{b}', '\u{c}', '\u{1b}', '\u{85}'] {
            let value = format!("Welcome{c}");
            let mut v = Validator::new();
            v.multiline_text(&value, "prompt", 100);
            assert_eq!(
                fields(&mut v),
                ["prompt"],
                "U+{:04X} accepted",
                u32::from(c)
            );
        }
    }

    #[test]
    fn text_counts_characters_not_bytes() {
        // Four characters of two bytes each: within a limit of 4 although 8 bytes long.
        assert_eq!(text_problem("åäöü", 4, Lines::Single), None);
        assert_eq!(
            text_problem("åäöüé", 4, Lines::Single).as_deref(),
            Some("must be at most 4 characters")
        );
        assert_eq!(
            text_problem(&"x".repeat(2_000_000), 128, Lines::Single).as_deref(),
            Some("must be at most 128 characters")
        );
        assert_eq!(
            text_problem(" \t", 10, Lines::Multi).as_deref(),
            Some("must not be blank")
        );
    }
}
