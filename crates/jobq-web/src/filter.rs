//! The jobs filter as a query string (and hidden form fields): read it, check it, write it back.

use crate::error::PageError;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use jobq_core::{JobFilter, JobId, Status};
use std::collections::HashMap;

/// The filter's fields, as the query string names them; `after` and `limit` are the page.
pub(crate) const FIELDS: [&str; 7] = [
    "queue",
    "task",
    "status",
    "created_since",
    "created_until",
    "finished_since",
    "finished_until",
];

/// A filter as the user typed it (kept to show it back in the form) and as jobq reads it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    /// The raw values of [`FIELDS`] that were not empty.
    pub(crate) raw: Vec<(&'static str, String)>,
    pub(crate) filter: JobFilter,
}

impl Filter {
    /// Reads the filter fields of `params`; an unreadable value is a 400 naming the field.
    pub(crate) fn parse(params: &HashMap<String, String>) -> Result<Self, PageError> {
        let now = Utc::now();
        let mut out = Filter::default();
        for field in FIELDS {
            let Some(value) = params
                .get(field)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
            else {
                continue;
            };
            out.raw.push((field, value.to_owned()));
            let f = &mut out.filter;
            match field {
                "queue" => f.queue = Some(value.to_owned()),
                "task" => f.task = Some(value.to_owned()),
                "status" => {
                    f.status = Some(value.parse::<Status>().map_err(|e| {
                        PageError::bad_input(format!("status: {}", strip_prefix(&e)))
                    })?)
                }
                _ => {
                    let at = parse_time(value, now)
                        .map_err(|e| PageError::bad_input(format!("{field}: {e}")))?;
                    match field {
                        "created_since" => f.created_since = Some(at),
                        "created_until" => f.created_until = Some(at),
                        "finished_since" => f.finished_since = Some(at),
                        _ => f.finished_until = Some(at),
                    }
                }
            }
        }
        jobq_core::limits::check_filter(&out.filter)
            .map_err(|e| PageError::bad_input(strip_prefix(&e)))?;
        Ok(out)
    }

    /// The value the user gave for `field`, or "".
    pub(crate) fn value(&self, field: &str) -> &str {
        self.raw
            .iter()
            .find(|(f, _)| *f == field)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The filter as a query string (without `?`), with `extra` pairs after it.
    pub(crate) fn query(&self, extra: &[(&str, &str)]) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.raw {
            q.append_pair(k, v);
        }
        for (k, v) in extra {
            q.append_pair(k, v);
        }
        q.finish()
    }
}

/// An error's message without jobq's "invalid input: " prefix.
fn strip_prefix(e: &jobq_core::Error) -> String {
    let text = e.to_string();
    text.strip_prefix("invalid input: ")
        .map(str::to_owned)
        .unwrap_or(text)
}

/// A time: a duration ago (`90s`, `1h`, `7d`), RFC 3339, or `YYYY-MM-DD[ HH:MM[:SS]]` / the
/// `YYYY-MM-DDTHH:MM` of an HTML `datetime-local` input, read as UTC.
pub(crate) fn parse_time(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(ago) = humantime::parse_duration(value) {
        return chrono::Duration::from_std(ago)
            .ok()
            .and_then(|ago| now.checked_sub_signed(ago))
            .filter(|at| *at >= jobq_core::limits::EARLIEST)
            .ok_or_else(|| format!("{value} ago is before any time jobq stores"));
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(at.to_utc());
    }
    for format in [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(at) = NaiveDateTime::parse_from_str(value, format) {
            return Ok(at.and_utc());
        }
    }
    if let Ok(day) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(format!(
        "{value:?} is neither a duration ago (1h, 7d) nor a time (2026-01-31T12:00:00Z, 2026-01-31 12:00)"
    ))
}

/// A job id from a path or form: a positive integer.
pub(crate) fn parse_id(value: &str) -> Result<JobId, PageError> {
    match value.trim().parse::<i64>() {
        Ok(id) if id > 0 => Ok(JobId(id)),
        _ => Err(PageError::bad_input(format!(
            "job id {value:?} is not a positive integer"
        ))),
    }
}

/// The page: `after` (the last id of the previous page) and `limit` (1..=MAX_PAGE_SIZE).
pub(crate) fn parse_page(
    params: &HashMap<String, String>,
    default_limit: u32,
) -> Result<(Option<JobId>, u32), PageError> {
    let after = match params
        .get("after")
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    {
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|id| *id >= 0)
                .map(JobId)
                .ok_or_else(|| {
                    PageError::bad_input(format!("after: {v:?} is not a job id (a whole number)"))
                })?,
        ),
        None => None,
    };
    let limit = match params
        .get("limit")
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    {
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=crate::MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| {
                PageError::bad_input(format!(
                    "limit: {v:?} is not a number from 1 to {}",
                    crate::MAX_PAGE_SIZE
                ))
            })?,
        None => default_limit,
    };
    Ok((after, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_and_writes_filters() {
        let f = Filter::parse(&params(&[
            ("queue", "emails"),
            ("status", "failed"),
            ("created_since", "1h"),
            ("finished_until", "2026-01-31 12:00"),
            ("task", ""),
        ]))
        .unwrap();
        assert_eq!(f.filter.queue.as_deref(), Some("emails"));
        assert_eq!(f.filter.status, Some(Status::Failed));
        assert!(f.filter.created_since.is_some());
        assert_eq!(
            f.filter.finished_until.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-01-31T12:00:00+00:00")
        );
        assert_eq!(f.filter.task, None);
        assert_eq!(
            f.query(&[("after", "5")]),
            "queue=emails&status=failed&created_since=1h&finished_until=2026-01-31+12%3A00&after=5"
        );
        for bad in [
            ("status", "lost"),
            ("created_since", "yesterday"),
            ("queue", "a\0b"),
            ("finished_since", "0001-01-01T00:00:00+01:00"),
            ("created_until", "99999999999h"),
        ] {
            assert!(Filter::parse(&params(&[bad])).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_pages_and_ids() {
        assert_eq!(parse_page(&params(&[]), 50).unwrap(), (None, 50));
        assert_eq!(
            parse_page(&params(&[("after", "7"), ("limit", "10")]), 50).unwrap(),
            (Some(JobId(7)), 10)
        );
        for bad in [
            ("after", "x"),
            ("limit", "0"),
            ("limit", "100000"),
            ("after", "-1"),
        ] {
            assert!(parse_page(&params(&[bad]), 50).is_err(), "{bad:?}");
        }
        assert_eq!(parse_id("12").unwrap(), JobId(12));
        assert!(parse_id("0").is_err());
        assert!(parse_id("9999999999999999999999").is_err());
        assert!(parse_id("<b>").is_err());
    }
}
