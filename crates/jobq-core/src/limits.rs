//! What PostgreSQL stores, written once: every value jobq sends is checked (or, for values the worker
//! produces itself, made storable) here, so every path refuses or adjusts the same inputs the same way.

use chrono::{DateTime, NaiveDate, Utc};
use std::borrow::Cow;

/// The earliest time jobq stores: 0001-01-01T00:00:00Z. PostgreSQL goes further back, but chrono writes the
/// year 0 and earlier years in a form PostgreSQL cannot read.
pub const EARLIEST: DateTime<Utc> = match NaiveDate::from_ymd_opt(1, 1, 1) {
    Some(day) => day.and_time(chrono::NaiveTime::MIN).and_utc(),
    None => DateTime::<Utc>::MIN_UTC,
};

/// The latest time jobq stores: 9999-12-31T23:59:59Z, "practically never". chrono writes later years as
/// `+10000-…`, which PostgreSQL cannot read.
pub const LATEST: DateTime<Utc> = match NaiveDate::from_ymd_opt(9999, 12, 31) {
    Some(day) => match day.and_hms_opt(23, 59, 59) {
        Some(t) => t.and_utc(),
        None => DateTime::<Utc>::MAX_UTC,
    },
    None => DateTime::<Utc>::MAX_UTC,
};

/// `at` moved into [`EARLIEST`]`..=`[`LATEST`]: for times the worker computes itself (a retry's back-off),
/// where a time too far ahead means "practically never", never "now".
pub(crate) fn clamp_time(at: DateTime<Utc>) -> DateTime<Utc> {
    at.clamp(EARLIEST, LATEST)
}

/// `now + delay`, or [`LATEST`] when that is beyond it (any `Duration` is accepted).
pub(crate) fn after(delay: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|d| Utc::now().checked_add_signed(d))
        .map_or(LATEST, clamp_time)
}

/// `text` with every NUL character replaced by U+FFFD: for text the worker stores on its own behalf (a
/// handler's error message), which PostgreSQL's `text` and `jsonb` refuse when it holds a NUL.
pub(crate) fn storable_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_range_is_what_postgres_reads_back() {
        assert_eq!(EARLIEST.to_rfc3339(), "0001-01-01T00:00:00+00:00");
        assert_eq!(LATEST.to_rfc3339(), "9999-12-31T23:59:59+00:00");
        assert_eq!(clamp_time(DateTime::<Utc>::MAX_UTC), LATEST);
        assert_eq!(clamp_time(DateTime::<Utc>::MIN_UTC), EARLIEST);
    }

    #[test]
    fn a_delay_beyond_the_range_is_practically_never() {
        assert_eq!(after(Duration::MAX), LATEST);
        assert_eq!(after(Duration::from_secs(10_000 * 366 * 86_400)), LATEST);
        assert!(after(Duration::from_secs(60)) > Utc::now());
    }

    #[test]
    fn nul_characters_are_replaced() {
        assert_eq!(storable_text("a\0b"), "a\u{FFFD}b");
        assert!(matches!(storable_text("plain"), Cow::Borrowed("plain")));
    }
}
