//! The job model: ids, statuses, stored jobs, and what a deferral carries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The id of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting to run (possibly scheduled for later).
    Todo,
    /// Running on a worker.
    Doing,
    /// Finished without error.
    Succeeded,
    /// Failed and will not be retried.
    Failed,
    /// Cancelled before it started.
    Cancelled,
    /// Stopped while running, at someone's request.
    Aborted,
}

impl Status {
    /// Every status, in life-cycle order.
    pub const ALL: [Status; 6] = [
        Self::Todo,
        Self::Doing,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::Aborted,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Todo => "todo",
            Self::Doing => "doing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Aborted => "aborted",
        }
    }

    /// Whether the job has finished (it will not run again unless retried).
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Todo | Self::Doing)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|status| status.as_str() == s).ok_or_else(|| {
            crate::Error::InvalidInput(format!(
                "unknown status {s:?}; expected one of todo, doing, succeeded, failed, cancelled, aborted"
            ))
        })
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// The queue it waits in.
    pub queue: String,
    /// The name of the task that runs it.
    pub task: String,
    /// The task's arguments.
    pub args: serde_json::Value,
    /// Higher runs first.
    pub priority: i32,
    /// At most one job per lock runs at a time.
    pub lock: Option<String>,
    /// At most one job per queueing lock waits at a time.
    pub queueing_lock: Option<String>,
    /// Where it is in its life.
    pub status: Status,
    /// It does not run before this time.
    #[serde(deserialize_with = "pg_time::utc")]
    pub scheduled_at: DateTime<Utc>,
    /// How many times it has started.
    pub attempts: i32,
    /// Someone asked the running job to stop.
    pub abort_requested: bool,
    /// The worker running it, while it runs.
    pub worker_id: Option<i64>,
    /// When it was deferred.
    #[serde(deserialize_with = "pg_time::utc")]
    pub created_at: DateTime<Utc>,
    /// When its last attempt started.
    #[serde(default, deserialize_with = "pg_time::optional_utc")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    #[serde(default, deserialize_with = "pg_time::optional_utc")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The error of its last failed attempt.
    pub last_error: Option<String>,
    /// Every failed attempt, oldest first.
    pub errors: Vec<AttemptError>,
    /// The W3C `traceparent` of the span that deferred it, when one was known: the worker's `job` span
    /// links to it (feature `opentelemetry`; see [`JobOptions::trace_context`]). `None` for a job deferred
    /// outside any traced span, or before schema version 6.
    #[serde(default)]
    pub trace_context: Option<String>,
}

/// One failed attempt of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptError {
    /// Which attempt failed (1 for the first).
    pub attempt: i32,
    /// When it failed.
    #[serde(deserialize_with = "pg_time::utc")]
    pub at: DateTime<Utc>,
    /// What went wrong.
    pub error: String,
}

/// Where and how a job runs: its queue, priority, locks and schedule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobOptions {
    /// The queue; `default` when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Higher runs first; 0 when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// At most one job per lock runs at a time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// At most one job per queueing lock waits at a time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queueing_lock: Option<String>,
    /// Do not run before this time; now when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<DateTime<Utc>>,
    /// The trace context to store with the job: a W3C `traceparent` header
    /// (`00-<trace id>-<parent id>-<flags>`, checked by [`limits::check_trace_context`](crate::limits::check_trace_context)),
    /// which the worker's `job` span links to. When not set and the feature `opentelemetry` is on, a
    /// deferral made inside a `tracing` span with an OpenTelemetry context stores that span's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_context: Option<String>,
}

/// A job to defer: a task name, its JSON arguments and its options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// The task's name.
    pub task: String,
    /// The task's arguments.
    pub args: serde_json::Value,
    /// Queue, priority, locks, schedule and trace context.
    #[serde(flatten)]
    pub options: JobOptions,
}

impl NewJob {
    /// A job for the task named `task` with JSON arguments and default options.
    pub fn new(task: impl Into<String>, args: serde_json::Value) -> Self {
        Self {
            task: task.into(),
            args,
            options: JobOptions::default(),
        }
    }

    /// Stores a trace context with the job, a W3C `traceparent` header, rather than the current span's
    /// (see [`JobOptions::trace_context`]): for a batch of jobs that come from several traced requests.
    /// One that is not a valid `traceparent` is refused with [`Error::InvalidInput`](crate::Error::InvalidInput)
    /// when the deferral runs, before any SQL is sent.
    pub fn trace_context(mut self, traceparent: impl Into<String>) -> Self {
        self.options.trace_context = Some(traceparent.into());
        self
    }

    /// A job for a typed task, with the task's default options.
    pub fn from_task<T: Task>(task: &T) -> Result<Self, crate::Error> {
        Ok(Self {
            task: T::NAME.to_owned(),
            args: serde_json::to_value(task)?,
            options: task.options(),
        })
    }
}

/// A typed task: its name and its arguments, which serialize to the job's JSON arguments.
///
/// ```
/// use jobq_core::{JobOptions, Task};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct ProcessOrder { order_id: i64 }
///
/// impl Task for ProcessOrder {
///     const NAME: &'static str = "process_order";
///     fn options(&self) -> JobOptions {
///         JobOptions { queue: Some("orders".into()), ..JobOptions::default() }
///     }
/// }
/// ```
pub trait Task: Serialize {
    /// The task's name, stored on every job and used by workers to find the handler.
    const NAME: &'static str;

    /// The options a job of this task gets unless the deferral overrides them.
    fn options(&self) -> JobOptions {
        JobOptions::default()
    }

    /// How a worker retries a failed job of this task: by default with
    /// [`RetryStrategy::default`](crate::worker::RetryStrategy::default) (20 attempts over about two days,
    /// capped exponential backoff with jitter); [`RetryStrategy::none`](crate::worker::RetryStrategy::none)
    /// runs a job once.
    fn retry() -> crate::worker::RetryStrategy
    where
        Self: Sized,
    {
        crate::worker::RetryStrategy::default()
    }

    /// How long a job of this task may run before it is aborted and fails with kind `timeout` (retried per
    /// [`retry`](Self::retry)); the worker's [`job_timeout`](crate::worker::WorkerBuilder::job_timeout)
    /// when `None`, the default.
    fn timeout() -> Option<std::time::Duration>
    where
        Self: Sized,
    {
        None
    }
}

/// Which jobs to list, or to retry, cancel or delete in bulk. Every field narrows the set; `limit` caps a
/// list (1,000 when not set) or sizes one batch of a bulk operation
/// ([`limits::BULK_BATCH`](crate::limits::BULK_BATCH) when not set).
///
/// Times bound `created_at` (every job has one, and a retry keeps it) or `finished_at` (when it
/// succeeded, failed, was cancelled or aborted; a job not finished never matches a `finished_*` bound):
/// `*_since` inclusive, `*_until` exclusive. Listing and the bulk operations read the same filter, so an
/// action on "every job matching" touches exactly the jobs that listing with it shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobFilter {
    /// Only jobs in this queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Only jobs of this task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Only jobs with this status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Only jobs with this lock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// Only jobs with this queueing lock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queueing_lock: Option<String>,
    /// Only jobs with a greater id (for paging).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_id: Option<JobId>,
    /// At most this many jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only jobs created at or after this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_since: Option<DateTime<Utc>>,
    /// Only jobs created before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_until: Option<DateTime<Utc>>,
    /// Only jobs that finished at or after this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_since: Option<DateTime<Utc>>,
    /// Only jobs that finished before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_until: Option<DateTime<Utc>>,
}

impl JobFilter {
    /// Whether the filter narrows nothing but by id (`after_id`) and size (`limit`): every job matches it.
    pub fn is_empty(&self) -> bool {
        let JobFilter {
            queue,
            task,
            status,
            lock,
            queueing_lock,
            after_id: _,
            limit: _,
            created_since,
            created_until,
            finished_since,
            finished_until,
        } = self;
        queue.is_none()
            && task.is_none()
            && status.is_none()
            && lock.is_none()
            && queueing_lock.is_none()
            && created_since.is_none()
            && created_until.is_none()
            && finished_since.is_none()
            && finished_until.is_none()
    }
}

/// What one batch of a bulk operation ([`Jobq::retry_matching`](crate::Jobq::retry_matching),
/// [`cancel_matching`](crate::Jobq::cancel_matching), [`delete_matching`](crate::Jobq::delete_matching))
/// did. Run the next batch with the filter's `after_id` set to [`next`](Self::next) until it is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BulkOutcome {
    /// How many matching jobs the batch looked at (at most the batch size): the ones it changed and the
    /// ones it left (a retry's queueing-lock conflicts).
    pub examined: u64,
    /// How many jobs it retried, cancelled or deleted.
    pub changed: u64,
    /// Retry: how many finished jobs it left as they were because another waiting job holds their
    /// queueing lock (as [`Jobq::retry`](crate::Jobq::retry) reports with
    /// [`Error::AlreadyEnqueued`](crate::Error::AlreadyEnqueued)).
    pub conflicts: u64,
    /// Cancel with abort: how many running jobs it asked to stop (not counted in `changed`).
    pub abort_requested: u64,
    /// Retry: whether the retried jobs' attempt counts were reset to 0 (else they keep theirs).
    pub attempts_reset: bool,
    /// Where the next batch starts (the last id this one looked at), or `None` when no more jobs match.
    pub next: Option<JobId>,
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcome {
    /// The waiting job is now `cancelled`.
    Cancelled,
    /// The job was deleted.
    Deleted,
    /// The running job was asked to abort; the worker ends it as `aborted`.
    AbortRequested,
    /// Nothing changed: the job is running (and no abort was asked) or already finished.
    Unchanged,
}

/// What a retry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryOutcome {
    /// The job is back in `todo`, to run now.
    Retried,
    /// Nothing changed: the job is waiting or running.
    Unchanged,
}

/// A paused queue, as [`Jobq::paused_queues`](crate::Jobq::paused_queues) lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PausedQueue {
    /// The queue.
    pub queue: String,
    /// Since when it is paused.
    #[serde(deserialize_with = "pg_time::utc")]
    pub paused_at: DateTime<Utc>,
}

/// How far behind one queue is, as [`Jobq::queue_lag`](crate::Jobq::queue_lag) reports it: its waiting jobs
/// due now and scheduled later, its running jobs, the oldest due job's wait, and whether it is paused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QueueLag {
    /// The queue.
    pub queue: String,
    /// Waiting jobs due now (`scheduled_at` in the past): what workers could take at once.
    pub due: i64,
    /// Waiting jobs scheduled for later.
    pub scheduled: i64,
    /// Running jobs (`doing`): taken by a worker and not yet ended.
    pub running: i64,
    /// When the oldest due job became due (its `scheduled_at`); `None` when none is due.
    #[serde(default, deserialize_with = "pg_time::optional_utc")]
    pub oldest_due_at: Option<DateTime<Utc>>,
    /// How long the oldest due job has been due, by the server's clock; `None` when none is due.
    #[serde(default, rename = "oldest_due_age_seconds", with = "seconds")]
    pub oldest_due_age: Option<std::time::Duration>,
    /// Since when the queue is paused; `None` when it runs.
    #[serde(default, deserialize_with = "pg_time::optional_utc")]
    pub paused_at: Option<DateTime<Utc>>,
}

impl QueueLag {
    /// Whether the queue is paused.
    pub fn paused(&self) -> bool {
        self.paused_at.is_some()
    }
}

/// An optional duration as a number of seconds in JSON; a negative number reads as zero, one too large as the longest.
mod seconds {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        d.map(|d| d.as_secs_f64()).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<f64>::deserialize(d)?
            .map(|s| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)))
    }
}

/// Reads one of PostgreSQL's JSON timestamps, for rows read outside this module.
pub(crate) fn pg_time_utc<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<DateTime<Utc>, D::Error> {
    pg_time::utc(d)
}

/// Reads PostgreSQL's JSON timestamps, whatever the session's time zone. RFC 3339 covers the usual ones;
/// dates before the zone's standard time (the year 1000 in `Europe/Amsterdam`, say) carry a local mean
/// time offset with seconds, `+00:19:32`, which RFC 3339 has no room for.
mod pg_time {
    use chrono::{DateTime, Datelike, FixedOffset, NaiveDateTime, TimeDelta, Utc};
    use serde::{Deserialize, Deserializer, de::Error};

    pub(super) fn utc<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse(&text).ok_or_else(|| D::Error::custom(format!("not a timestamp: {text:?}")))
    }

    pub(super) fn optional_utc<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<std::borrow::Cow<'de, str>>::deserialize(d)? {
            None => Ok(None),
            Some(text) => parse(&text)
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("not a timestamp: {text:?}"))),
        }
    }

    fn parse(text: &str) -> Option<DateTime<Utc>> {
        if let Ok(t) = DateTime::<FixedOffset>::parse_from_rfc3339(text) {
            return Some(t.to_utc());
        }
        // The local time, then `Z` or `±HH:MM[:SS]`: the local time minus the offset.
        let (local, offset) = match text.strip_suffix('Z') {
            Some(local) => (local, TimeDelta::zero()),
            None => {
                let time = text.find('T')?;
                let at = text.rfind(['+', '-']).filter(|&at| at > time)?;
                let sign = if text[at..].starts_with('-') { -1 } else { 1 };
                let mut parts = text[at + 1..].split(':').map(|p| p.parse::<i64>().ok());
                let (h, m) = (parts.next()??, parts.next()??);
                let s = parts.next().unwrap_or(Some(0))?;
                if parts.next().is_some() {
                    return None;
                }
                (
                    &text[..at],
                    TimeDelta::seconds(sign * (h * 3600 + m * 60 + s)),
                )
            }
        };
        // The year apart: chrono reads at most four digits unsigned, and the year 9999 in UTC is 10000
        // east of it. 2000 is a leap year, so any day of the year parses and `with_year` checks it.
        let (year, rest) = local.split_once('-')?;
        let local = NaiveDateTime::parse_from_str(&format!("2000-{rest}"), "%Y-%m-%dT%H:%M:%S%.f")
            .ok()?
            .with_year(year.parse().ok()?)?;
        Some(local.checked_sub_signed(offset)?.and_utc())
    }

    #[cfg(test)]
    mod tests {
        use super::parse;

        #[test]
        fn reads_rfc3339_and_offsets_with_seconds() {
            let utc = |s: &str| parse(s).map(|t| t.to_rfc3339());
            assert_eq!(
                utc("2026-11-25T10:00:00.5+01:00").as_deref(),
                Some("2026-11-25T09:00:00.500+00:00")
            );
            assert_eq!(
                utc("1000-01-01T00:19:32+00:19:32").as_deref(),
                Some("1000-01-01T00:00:00+00:00")
            );
            assert_eq!(
                utc("1000-01-01T00:00:00-00:01:15").as_deref(),
                Some("1000-01-01T00:01:15+00:00")
            );
            // 9999-12-31 23:59:59 UTC, written in a zone east of UTC.
            assert_eq!(
                utc("10000-01-01T00:59:59+01:00").as_deref(),
                Some("9999-12-31T23:59:59+00:00")
            );
            for bad in [
                "",
                "yesterday",
                "2026-11-25T10:00:00*00:19:32",
                "2026-11-25",
                "ééééé",
            ] {
                assert_eq!(parse(bad), None, "{bad:?}");
            }
        }
    }
}
