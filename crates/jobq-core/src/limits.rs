//! What PostgreSQL stores, written once: every value jobq sends is checked (or, for values the worker
//! produces itself, made storable) here, so every path refuses or adjusts the same inputs the same way.
//!
//! A value the server would refuse aborts the caller's whole transaction, so jobq refuses it first, with
//! [`Error::InvalidInput`] naming the field and the limit, before any SQL is sent:
//!
//! | value | limit | what the server would do |
//! | --- | --- | --- |
//! | task, queue, lock and queueing-lock names | at most [`MAX_NAME_BYTES`] bytes of UTF-8, no NUL | a btree index entry holds at most 2,704 bytes; `text` holds no NUL |
//! | a schedule (`scheduled_at`, `Defer::at`, `Defer::after`) | [`EARLIEST`]`..=`[`LATEST`] | chrono writes the year 0, earlier years and years past 9999 in forms PostgreSQL cannot read |
//! | the arguments | no NUL in any string or key; arrays and objects nested at most [`MAX_ARGS_DEPTH`] deep | `jsonb` holds no `\u0000`; it stores deeper values, but serde_json reads 128 levels by default |
//! | a trace context (`JobOptions::trace_context`, `Defer::trace_context`) | a W3C `traceparent` of version 00 ([`check_trace_context`]) | it would store anything; a worker could not link to it |
//!
//! Reading is the other way round: rows are read whatever their depth (serde_json's recursion limit off,
//! serde_stacker growing the stack), so one job written by something else cannot make listing fail for
//! every job.

use crate::{Error, JobFilter, NewJob};
use chrono::{DateTime, NaiveDate, Utc};
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::fmt::Write;

/// The longest task, queue, lock or queueing-lock name, in bytes of UTF-8.
///
/// Names are indexed by btree, whose entries hold at most 2,704 bytes (`(queue, priority, id)`,
/// `(lock, priority, id)`, `(queueing_lock)`, `(lock)`); 1,000 bytes keeps every entry well inside that
/// whatever the characters, and is also the longest queue name sent as a NOTIFY payload.
pub const MAX_NAME_BYTES: usize = 1_000;

/// How deep arrays and objects may nest in a job's arguments: `[]` and `{}` are 1 deep, `[[1]]` 2.
///
/// Deferral refuses deeper arguments; reading accepts any depth the server stored (rows written by
/// something other than jobq).
pub const MAX_ARGS_DEPTH: usize = 100;

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
#[cfg(feature = "worker")]
pub(crate) fn storable_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Checks a task, queue, lock or queueing-lock name: at most [`MAX_NAME_BYTES`] bytes and no NUL.
/// `field` names it in the error.
pub fn check_name(field: &str, name: &str) -> Result<(), Error> {
    if name.contains('\0') {
        return Err(refused(field, NUL));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(refused(
            field,
            &format!(
                "is {} bytes long, more than the limit of {MAX_NAME_BYTES} bytes \
                 (jobq_core::limits::MAX_NAME_BYTES)",
                name.len()
            ),
        ));
    }
    Ok(())
}

/// Checks a schedule: within [`EARLIEST`]`..=`[`LATEST`]. `field` names it in the error.
pub fn check_time(field: &str, at: DateTime<Utc>) -> Result<(), Error> {
    if (EARLIEST..=LATEST).contains(&at) {
        return Ok(());
    }
    Err(refused(
        field,
        &format!(
            "{} is outside {}..={} (jobq_core::limits::EARLIEST..=LATEST)",
            at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            EARLIEST.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            LATEST.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ),
    ))
}

/// `now + delay` for a schedule the caller asked for: refused when it is past [`LATEST`].
pub fn check_delay(delay: std::time::Duration) -> Result<DateTime<Utc>, Error> {
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|d| Utc::now().checked_add_signed(d))
        .filter(|at| *at <= LATEST)
        .ok_or_else(|| {
            refused(
                "delay",
                &format!(
                    "{delay:?} from now is past {} (jobq_core::limits::LATEST)",
                    LATEST.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            )
        })
}

/// Checks a job's arguments: no NUL in any string or object key, arrays and objects nested at most
/// [`MAX_ARGS_DEPTH`] deep. The error names the place as a JSON pointer (`/items/3/name`).
pub fn check_args(args: &serde_json::Value) -> Result<(), Error> {
    let mut path = Vec::new();
    check_value(args, 0, &mut path)
        .map_err(|problem| Error::InvalidInput(format!("args{}", problem.describe(&path))))
}

/// What is wrong in the arguments; the path to it is left in `check_value`'s `path`.
enum ArgsProblem {
    Nul { key: bool },
    TooDeep,
}

impl ArgsProblem {
    fn describe(&self, path: &[Cow<'_, str>]) -> String {
        let mut pointer = String::new();
        for segment in path {
            let _ = write!(
                pointer,
                "/{}",
                segment.replace('~', "~0").replace('/', "~1")
            );
        }
        let at = if pointer.is_empty() { "/" } else { &pointer };
        match self {
            Self::Nul { key: true } => format!(": the key at {at:?} {NUL}"),
            Self::Nul { key: false } => format!(": the string at {at:?} {NUL}"),
            Self::TooDeep => format!(
                " nest arrays and objects more than {MAX_ARGS_DEPTH} deep, the limit \
                 (jobq_core::limits::MAX_ARGS_DEPTH)"
            ),
        }
    }
}

/// Walks `value`, which sits `depth` containers deep, and leaves in `path` where a problem is. The
/// recursion stops at [`MAX_ARGS_DEPTH`], so it is bounded whatever the value.
fn check_value<'a>(
    value: &'a serde_json::Value,
    depth: usize,
    path: &mut Vec<Cow<'a, str>>,
) -> Result<(), ArgsProblem> {
    use serde_json::Value;
    let inner = depth + 1;
    match value {
        Value::String(s) if s.contains('\0') => Err(ArgsProblem::Nul { key: false }),
        Value::Array(items) => {
            if inner > MAX_ARGS_DEPTH {
                return Err(ArgsProblem::TooDeep);
            }
            for (i, item) in items.iter().enumerate() {
                path.push(Cow::Owned(i.to_string()));
                check_value(item, inner, path)?;
                path.pop();
            }
            Ok(())
        }
        Value::Object(map) => {
            if inner > MAX_ARGS_DEPTH {
                return Err(ArgsProblem::TooDeep);
            }
            for (key, item) in map {
                path.push(Cow::Borrowed(key));
                if key.contains('\0') {
                    return Err(ArgsProblem::Nul { key: true });
                }
                check_value(item, inner, path)?;
                path.pop();
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// How long a W3C `traceparent` of version 00 is: `00-`, 32 hex digits of trace id, `-`, 16 of parent (span)
/// id, `-`, 2 of flags.
pub const TRACE_CONTEXT_LEN: usize = 55;

/// A W3C `traceparent` taken apart: the trace id, the parent (span) id and the trace flags.
#[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))] // the worker's link reads the parts
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceParent {
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
    pub(crate) flags: u8,
}

impl TraceParent {
    /// Reads a `traceparent` of version 00 as the W3C Trace Context spec writes it: `00-`, the trace id as
    /// 32 lowercase hex digits, `-`, the parent id as 16, `-`, the flags as 2; neither id all zeros. `None`
    /// otherwise (other versions too: jobq writes and stores version 00 only).
    pub(crate) fn parse(header: &str) -> Option<Self> {
        fn hex(field: &str) -> Option<u128> {
            field
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                .then(|| u128::from_str_radix(field, 16).ok())
                .flatten()
        }
        if header.len() != TRACE_CONTEXT_LEN || !header.is_ascii() {
            return None;
        }
        let mut fields = header.split('-');
        let (version, trace, span, flags) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        if fields.next().is_some()
            || version != "00"
            || trace.len() != 32
            || span.len() != 16
            || flags.len() != 2
        {
            return None;
        }
        let parsed = Self {
            trace_id: hex(trace)?,
            span_id: u64::try_from(hex(span)?).ok()?,
            flags: u8::try_from(hex(flags)?).ok()?,
        };
        (parsed.trace_id != 0 && parsed.span_id != 0).then_some(parsed)
    }
}

impl std::fmt::Display for TraceParent {
    /// The `traceparent` header: `00-<trace id>-<parent id>-<flags>`, in lowercase hex.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

/// Checks a trace context given for a job: a W3C `traceparent` header of version 00,
/// `00-<trace id: 32 hex>-<parent id: 16 hex>-<flags: 2 hex>` ([`TRACE_CONTEXT_LEN`] characters), the hex
/// digits lowercase and neither id all zeros, as the W3C Trace Context spec defines it.
///
/// ```
/// use jobq_core::limits::check_trace_context;
/// check_trace_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert!(check_trace_context("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_err());
/// ```
pub fn check_trace_context(traceparent: &str) -> Result<(), Error> {
    match TraceParent::parse(traceparent) {
        Some(_) => Ok(()),
        None => {
            // The value itself, unless it is long (a mistake such as a whole header map).
            let shown: String = traceparent.chars().take(2 * TRACE_CONTEXT_LEN).collect();
            let more = if shown.len() < traceparent.len() {
                "…"
            } else {
                ""
            };
            Err(refused(
                "trace_context",
                &format!(
                    "{shown:?}{more} is not a W3C traceparent of version 00: \
                     00-<trace id: 32 hex digits>-<parent id: 16 hex digits>-<flags: 2 hex digits>, \
                     lowercase, neither id all zeros"
                ),
            ))
        }
    }
}

/// Checks everything a deferral sends: a non-empty task name, every name, the schedule, the trace context
/// and the arguments. Single and batch deferrals both use it (and so can a periodic job, before its first tick).
pub fn check_job(job: &NewJob) -> Result<(), Error> {
    if job.task.is_empty() {
        return Err(refused("task", "is empty; a job needs a task name"));
    }
    check_name("task", &job.task)?;
    let options = &job.options;
    let names = [
        ("queue", &options.queue),
        ("lock", &options.lock),
        ("queueing_lock", &options.queueing_lock),
    ];
    for (field, name) in names {
        if let Some(name) = name {
            check_name(field, name)?;
        }
    }
    if let Some(at) = options.scheduled_at {
        check_time("scheduled_at", at)?;
    }
    if let Some(traceparent) = &options.trace_context {
        check_trace_context(traceparent)?;
    }
    check_args(&job.args)
}

/// Checks a batch: each job as [`check_job`] does, the error naming the job's place in the batch.
pub fn check_batch(jobs: &[NewJob]) -> Result<(), Error> {
    for (i, job) in jobs.iter().enumerate() {
        check_job(job).map_err(|e| match e {
            Error::InvalidInput(m) => Error::InvalidInput(format!("job {i} of the batch: {m}")),
            other => other,
        })?;
    }
    Ok(())
}

/// Checks a list filter: its names hold no NUL (the server would refuse the whole statement), its times lie
/// within [`EARLIEST`]`..=`[`LATEST`]. Longer names than [`MAX_NAME_BYTES`] are allowed, so jobs stored
/// before the limit can still be found.
pub fn check_filter(filter: &JobFilter) -> Result<(), Error> {
    let names = [
        ("filter queue", &filter.queue),
        ("filter task", &filter.task),
        ("filter lock", &filter.lock),
        ("filter queueing_lock", &filter.queueing_lock),
    ];
    if let Some((field, _)) = names
        .into_iter()
        .find(|(_, name)| name.as_ref().is_some_and(|n| n.contains('\0')))
    {
        return Err(refused(field, NUL));
    }
    let times = [
        ("filter created_since", filter.created_since),
        ("filter created_until", filter.created_until),
        ("filter finished_since", filter.finished_since),
        ("filter finished_until", filter.finished_until),
    ];
    for (field, at) in times {
        if let Some(at) = at {
            check_time(field, at)?;
        }
    }
    Ok(())
}

/// How many jobs one batch of a bulk operation (`Jobq::retry_matching`, `cancel_matching`,
/// `delete_matching`) or of pruning touches when the filter sets no `limit`.
pub const BULK_BATCH: u32 = 1_000;

/// The most jobs one batch of a bulk operation may touch: each batch holds its rows' locks until the
/// transaction ends, so a batch stays short.
pub const MAX_BULK_BATCH: u32 = 10_000;

/// Checks the filter of a bulk operation: [`check_filter`], and a batch size (`limit`) of
/// 1..=[`MAX_BULK_BATCH`]. Returns the batch size, [`BULK_BATCH`] when the filter sets none.
pub fn check_bulk_filter(filter: &JobFilter) -> Result<u32, Error> {
    check_filter(filter)?;
    match filter.limit {
        None => Ok(BULK_BATCH),
        Some(n) if (1..=MAX_BULK_BATCH).contains(&n) => Ok(n),
        Some(n) => Err(refused(
            "batch size (filter limit)",
            &format!("{n} is outside 1..={MAX_BULK_BATCH} (jobq_core::limits::MAX_BULK_BATCH)"),
        )),
    }
}

/// Reads one row of JSON whatever its nesting: serde_json's recursion limit (128) is off, and
/// serde_stacker moves deserialization to a fresh heap-allocated stack segment when the current one
/// runs low, so a deep row neither fails nor overflows the stack.
///
/// A `serde_json::Value` is dropped, printed and compared recursively, so one nested thousands deep
/// (which only another writer can store: deferral refuses more than [`MAX_ARGS_DEPTH`]) still takes
/// stack to drop in the caller's code.
pub(crate) fn read_json<T: DeserializeOwned>(row: &str) -> Result<T, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(row);
    de.disable_recursion_limit();
    let value = T::deserialize(serde_stacker::Deserializer::new(&mut de))?;
    de.end()?;
    Ok(value)
}

const NUL: &str = "contains a NUL character (\\u0000), which PostgreSQL cannot store";

fn refused(field: &str, problem: &str) -> Error {
    Error::InvalidInput(format!("{field} {problem}"))
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

    fn message(result: Result<(), Error>) -> String {
        match result {
            Err(Error::InvalidInput(m)) => m,
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    /// `[[…[x]…]]`, `depth` arrays around `x`.
    fn nested(depth: usize, x: serde_json::Value) -> serde_json::Value {
        (0..depth).fold(x, |inner, _| serde_json::Value::Array(vec![inner]))
    }

    #[test]
    fn names_up_to_the_byte_limit_and_without_nul() {
        let at_limit = "é".repeat(MAX_NAME_BYTES / 2);
        assert_eq!(at_limit.len(), MAX_NAME_BYTES);
        check_name("queue", &at_limit).unwrap();
        check_name("queue", "").unwrap();
        let m = message(check_name("lock", &format!("{at_limit}x")));
        assert!(
            m.starts_with("lock ") && m.contains("1001 bytes") && m.contains("MAX_NAME_BYTES"),
            "{m}"
        );
        let m = message(check_name("queueing_lock", "a\0b"));
        assert!(m.starts_with("queueing_lock ") && m.contains("NUL"), "{m}");
    }

    #[test]
    fn schedules_within_the_range() {
        use chrono::TimeZone;
        check_time("scheduled_at", EARLIEST).unwrap();
        check_time("scheduled_at", LATEST).unwrap();
        let year = |y: i32| Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0).single().unwrap();
        for bad in [
            year(0),
            year(-100),
            year(10_000),
            DateTime::<Utc>::MAX_UTC,
            DateTime::<Utc>::MIN_UTC,
            EARLIEST - chrono::Duration::nanoseconds(1),
            LATEST + chrono::Duration::milliseconds(500),
        ] {
            let m = message(check_time("scheduled_at", bad));
            assert!(
                m.starts_with("scheduled_at ") && m.contains("EARLIEST..=LATEST"),
                "{m}"
            );
        }
        assert!(check_delay(Duration::from_secs(60)).unwrap() > Utc::now());
        for bad in [Duration::MAX, Duration::from_secs(10_000 * 366 * 86_400)] {
            let m = message(check_delay(bad).map(|_| ()));
            assert!(m.starts_with("delay ") && m.contains("LATEST"), "{m}");
        }
    }

    #[test]
    fn args_nest_up_to_the_limit() {
        check_args(&nested(MAX_ARGS_DEPTH, serde_json::json!(1))).unwrap();
        check_args(&nested(MAX_ARGS_DEPTH - 1, serde_json::json!({"a": 1}))).unwrap();
        check_args(&serde_json::json!("scalar")).unwrap();
        for too_deep in [
            nested(MAX_ARGS_DEPTH + 1, serde_json::json!(1)),
            nested(MAX_ARGS_DEPTH, serde_json::json!({})),
            nested(200, serde_json::json!(1)),
        ] {
            let m = message(check_args(&too_deep));
            assert!(
                m.starts_with("args ") && m.contains("100 deep") && m.contains("MAX_ARGS_DEPTH"),
                "{m}"
            );
        }
    }

    #[test]
    fn args_hold_no_nul_in_strings_or_keys() {
        let m = message(check_args(
            &serde_json::json!({"items": [1, {"name": "a\0b"}], "z/~": 1}),
        ));
        assert!(m.contains("\"/items/1/name\"") && m.contains("NUL"), "{m}");
        let m = message(check_args(&serde_json::json!({"ok": {"k\0": 1}})));
        assert!(
            m.contains("the key at \"/ok/k\\0\"") && m.contains("NUL"),
            "{m}"
        );
        let m = message(check_args(&serde_json::json!({"a/b~": ["\0"]})));
        assert!(m.contains("\"/a~1b~0/0\""), "{m}");
        let m = message(check_args(&serde_json::json!("\0")));
        assert!(m.contains("the string at \"/\""), "{m}");
    }

    #[test]
    fn jobs_and_batches_are_checked_whole() {
        let mut job = NewJob::new("t", serde_json::json!({}));
        check_job(&job).unwrap();
        assert!(message(check_job(&NewJob::new("", serde_json::json!({})))).starts_with("task "));
        job.options.queue = Some("q".repeat(MAX_NAME_BYTES + 1));
        assert!(message(check_job(&job)).starts_with("queue "));
        let mut batch: Vec<NewJob> = (0..1_000)
            .map(|n| NewJob::new("t", serde_json::json!({ "n": n })))
            .collect();
        check_batch(&batch).unwrap();
        batch[417].args = serde_json::json!({"n": "\0"});
        let m = message(check_batch(&batch));
        assert!(m.starts_with("job 417 of the batch: args"), "{m}");
        let filter = JobFilter {
            lock: Some("a\0".into()),
            ..JobFilter::default()
        };
        assert!(message(check_filter(&filter)).starts_with("filter lock "));
        let long = JobFilter {
            queue: Some("q".repeat(MAX_NAME_BYTES * 10)),
            ..JobFilter::default()
        };
        check_filter(&long).unwrap();
    }

    #[test]
    fn trace_contexts_are_w3c_traceparents_of_version_00() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        check_trace_context(good).unwrap();
        let parsed = TraceParent::parse(good).unwrap();
        assert_eq!(parsed.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(parsed.span_id, 0x00f067aa0ba902b7);
        assert_eq!(parsed.flags, 1);
        assert_eq!(parsed.to_string(), good, "written back as read");
        check_trace_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        check_trace_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff").unwrap();
        for bad in [
            "",
            "00",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\0",
        ] {
            let m = message(check_trace_context(bad));
            assert!(
                m.starts_with("trace_context ") && m.contains("W3C traceparent"),
                "{bad:?}: {m}"
            );
        }
        let m = message(check_trace_context(&"a".repeat(10_000)));
        assert!(m.len() < 400, "a long value is cut in the message: {m}");
        let mut job = NewJob::new("t", serde_json::json!({}));
        job.options.trace_context = Some("nope".into());
        assert!(message(check_job(&job)).starts_with("trace_context "));
        job.options.trace_context = Some(good.into());
        check_job(&job).unwrap();
    }

    /// Takes `value` apart without recursion: a deep `Value`'s own drop recurses.
    fn drop_flat(value: serde_json::Value) {
        let mut stack = vec![value];
        while let Some(mut value) = stack.pop() {
            match &mut value {
                serde_json::Value::Array(items) => stack.append(items),
                serde_json::Value::Object(map) => {
                    stack.extend(std::mem::take(map).into_iter().map(|(_, v)| v));
                }
                _ => {}
            }
        }
    }

    #[test]
    fn rows_are_read_whatever_their_depth() {
        #[derive(serde::Deserialize)]
        struct Row {
            id: i64,
            args: serde_json::Value,
        }
        let depth = 50_000;
        let row = format!(
            "{{\"id\": 7, \"args\": {}1{}}}",
            "{\"a\": [".repeat(depth),
            "]}".repeat(depth)
        );
        // On a small stack, so that only growing it can get through.
        let read = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let row: Row = read_json(&row).expect("a deep row is read");
                let (mut value, mut levels) = (&row.args, 0);
                while let Some(inner) = value.get("a").and_then(|a| a.get(0)) {
                    (value, levels) = (inner, levels + 1);
                }
                drop_flat(row.args);
                (row.id, levels)
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(read, (7, depth));
        assert!(read_json::<Row>("{\"id\": 1, \"args\": null} trailing").is_err());
    }

    #[test]
    fn nul_characters_are_replaced() {
        assert_eq!(storable_text("a\0b"), "a\u{FFFD}b");
        assert!(matches!(storable_text("plain"), Cow::Borrowed("plain")));
    }
}
