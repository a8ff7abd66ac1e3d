//! Source timestamps: RFC 3339 with `Z` or a numeric offset (`+00:00`), with or without
//! fractional seconds, as the Firebase export writes them.

use chrono::{DateTime, SecondsFormat, Utc};

/// How a timestamp was written (counted in the report: the real file mixes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Zulu,
    Offset,
}

/// Parses a source timestamp to UTC, truncated to microseconds (PostgreSQL's precision, so the
/// stored value and its content hash agree). `None` for anything else (a malformed timestamp).
pub fn parse(s: &str) -> Option<(DateTime<Utc>, Form)> {
    // Bounded before parsing: the longest RFC 3339 form with nanoseconds is 35 bytes.
    if s.len() > 40 {
        return None;
    }
    let dt = DateTime::parse_from_rfc3339(s).ok()?;
    let form = if s.ends_with('Z') || s.ends_with('z') {
        Form::Zulu
    } else {
        Form::Offset
    };
    let utc = dt.with_timezone(&Utc);
    let micros = utc.timestamp_micros();
    let utc = DateTime::from_timestamp_micros(micros)?;
    // PostgreSQL's timestamptz range ends at 294276 AD; chrono's 262143: both are far beyond any
    // real attempt, but year 0 and below are refused as malformed.
    if utc.timestamp() < -62_135_596_800 {
        return None;
    }
    Some((utc, form))
}

/// The one text form staged for PostgreSQL (microseconds, `Z`).
pub fn format(dt: &DateTime<Utc>) -> String {
    dt.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_real_forms_parse_to_the_same_instant() {
        let (a, fa) = parse("2025-09-15T07:53:09.441000+00:00").expect("offset");
        let (b, fb) = parse("2025-09-15T07:53:09.441Z").expect("zulu");
        assert_eq!(a, b);
        assert_eq!((fa, fb), (Form::Offset, Form::Zulu));
        assert!(parse("2025-09-16T22:01:43Z").is_some());
        assert_eq!(format(&a), "2025-09-15T07:53:09.441000Z");
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for s in [
            "",
            "yesterday",
            "2025-13-01T00:00:00Z",
            "2025-09-15",
            "2025-09-15T07:53:09",
            "1757922789",
            "2025-09-15T07:53:09.441000+00:00 and more text that goes on",
        ] {
            assert!(parse(s).is_none(), "{s:?}");
        }
    }
}
