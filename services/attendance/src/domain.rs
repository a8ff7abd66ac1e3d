//! Pure rules: identifiers, the time rules of an attendance, visit bounds and the event names.
//! No SQL, HTTP, environment or clock reads (the caller passes `now`).

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use kit::Validator;

pub const MAX_ID_LEN: usize = 64;
pub const MAX_NAME_LEN: usize = 200;
pub const MAX_SOURCE_LEN: usize = 32;
pub const MAX_PAGE_PATH_LEN: usize = 512;
/// Visits per batch request.
pub const MAX_BATCH: usize = 1000;
/// How far in the future a client clock may be (visits, sign-ins).
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

/// A site or child identifier: 1..=64 of letters, digits and `- _ . :`.
pub fn check_id(v: &mut Validator, value: &str, field: &str) {
    if value.is_empty() {
        v.push(field, "must not be empty");
    } else if value.len() > MAX_ID_LEN {
        v.push(field, format!("must be at most {MAX_ID_LEN} characters"));
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        v.push(field, "may contain only letters, digits and - _ . :");
    }
}

/// Where a sign-in came from (`kiosk`, `app`, `staff`, ...): a short lowercase word.
pub fn check_source(v: &mut Validator, value: &str) {
    if value.is_empty() || value.len() > MAX_SOURCE_LEN {
        v.push("source", format!("must be 1..={MAX_SOURCE_LEN} characters"));
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        v.push("source", "may contain only a-z, 0-9, - and _");
    }
}

/// The years a time input may name (every time, `day`, the cursor): PostgreSQL's
/// `timestamptz` and chrono disagree beyond these, and nothing attendance or visits record
/// lies outside them.
pub const MIN_YEAR: i32 = 1970;
pub const MAX_YEAR: i32 = 9999;

fn year_message() -> String {
    format!("must be between the years {MIN_YEAR} and {MAX_YEAR}")
}

/// `at` lies within [`MIN_YEAR`]..=[`MAX_YEAR`]; whether it does (the caller skips further
/// checks of a time that does not).
pub fn check_time(v: &mut Validator, at: DateTime<Utc>, field: &str) -> bool {
    let ok = (MIN_YEAR..=MAX_YEAR).contains(&at.year());
    if !ok {
        v.push(field, year_message());
    }
    ok
}

/// A calendar day within [`MIN_YEAR`]..=[`MAX_YEAR`].
pub fn check_day(v: &mut Validator, day: NaiveDate, field: &str) -> bool {
    let ok = (MIN_YEAR..=MAX_YEAR).contains(&day.year());
    if !ok {
        v.push(field, year_message());
    }
    ok
}

/// `at` is not later than `now` plus the allowed clock skew.
pub fn check_not_future(v: &mut Validator, at: DateTime<Utc>, now: DateTime<Utc>, field: &str) {
    if at > now + CLOCK_SKEW {
        v.push(field, "is in the future");
    }
}

/// The two times of an attendance: a sign-out never precedes its sign-in.
pub fn check_order(v: &mut Validator, sign_in: DateTime<Utc>, sign_out: Option<DateTime<Utc>>) {
    if let Some(out) = sign_out
        && out < sign_in
    {
        v.push("sign_out_time", "is before sign_in_time");
    }
}

/// A page path: starts with `/`, single line, bounded.
pub fn check_page_path(v: &mut Validator, value: &str, field: &str) {
    if value.starts_with('/') {
        v.text(value, field, MAX_PAGE_PATH_LEN);
    } else {
        v.push(field, "must start with /");
    }
}

/// A visit's time: within retention (an older one would be deleted at once, and a retried one
/// re-inserted after its first copy was swept) and not in the future.
pub fn check_visit_time(
    v: &mut Validator,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    retention: Duration,
    field: &str,
) {
    if !check_time(v, at, field) {
        return;
    }
    if at < now - retention {
        v.push(field, "is older than the visits retention");
    }
    check_not_future(v, at, now, field);
}

/// The UTC instants `[start, end)` of a calendar day; `None` for the last day chrono can
/// represent (its end is not representable). Inputs pass [`check_day`] first.
pub fn day_bounds(day: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let start = day.and_hms_opt(0, 0, 0)?.and_utc();
    Some((start, start.checked_add_signed(Duration::days(1))?))
}

/// Outbox event types, as the stream names them (`event:` lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Created,
    Updated,
    Destroyed,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Destroyed => "destroyed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(f: impl FnOnce(&mut Validator)) -> usize {
        let mut v = Validator::new();
        f(&mut v);
        v.finish().err().map_or(0, |e| e.errors.len())
    }

    #[test]
    fn ids_and_sources() {
        assert_eq!(errors(|v| check_id(v, "site-1", "site_id")), 0);
        assert_eq!(errors(|v| check_id(v, "", "site_id")), 1);
        assert_eq!(errors(|v| check_id(v, "a b", "site_id")), 1);
        assert_eq!(errors(|v| check_id(v, &"x".repeat(65), "site_id")), 1);
        assert_eq!(errors(|v| check_source(v, "kiosk")), 0);
        assert_eq!(errors(|v| check_source(v, "Kiosk")), 1);
    }

    #[test]
    fn sign_out_never_precedes_sign_in() {
        let t = DateTime::parse_from_rfc3339("2026-12-02T08:00:00Z")
            .expect("time")
            .to_utc();
        assert_eq!(errors(|v| check_order(v, t, Some(t))), 0);
        assert_eq!(errors(|v| check_order(v, t, None)), 0);
        assert_eq!(
            errors(|v| check_order(v, t, Some(t - Duration::seconds(1)))),
            1
        );
    }

    #[test]
    fn times_and_days_outside_the_years_are_refused() {
        // What a client can send: chrono parses all of these, PostgreSQL stores not all.
        for (text, ok) in [
            ("1970-01-01T00:00:00Z", true),
            ("9999-12-31T23:59:59Z", true),
            ("1969-12-31T23:59:59Z", false),
            ("-5000-01-01T00:00:00Z", false),
            ("+10000-01-01T00:00:00Z", false),
            ("+262142-12-31T00:00:00Z", false),
        ] {
            let at: DateTime<Utc> = text.parse().expect(text);
            assert_eq!(
                errors(|v| assert_eq!(check_time(v, at, "t"), ok)),
                usize::from(!ok),
                "{text}"
            );
            assert_eq!(
                errors(|v| {
                    check_day(v, at.date_naive(), "day");
                }),
                usize::from(!ok),
                "{text}"
            );
        }
        assert!(
            day_bounds(NaiveDate::MAX).is_none(),
            "no panic at chrono's last day"
        );
        let (start, end) =
            day_bounds(NaiveDate::from_ymd_opt(2026, 12, 2).expect("day")).expect("bounds");
        assert_eq!(end - start, Duration::days(1));
    }

    #[test]
    fn visit_times_inside_retention_only() {
        let now = Utc::now();
        let r = Duration::days(90);
        assert_eq!(errors(|v| check_visit_time(v, now, now, r, "t")), 0);
        assert_eq!(
            errors(|v| check_visit_time(v, now - Duration::days(91), now, r, "t")),
            1
        );
        assert_eq!(
            errors(|v| check_visit_time(v, now + Duration::hours(1), now, r, "t")),
            1
        );
        assert_eq!(errors(|v| check_page_path(v, "/a", "p")), 0);
        assert_eq!(errors(|v| check_page_path(v, "a", "p")), 1);
        assert_eq!(errors(|v| check_page_path(v, "/a\nb", "p")), 1);
    }
}
