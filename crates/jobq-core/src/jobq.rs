//! [`Jobq`]: the handle every operation starts from, and the builders for deferring and cancelling.

use crate::BulkOutcome;
use crate::batch::{self, Columns};
use crate::limits;
use crate::query::{Operation, Query, Step};
use crate::sql::{SCHEMA_VERSION, Statements};
use crate::{
    CancelOutcome, Error, Job, JobFilter, JobId, JobOptions, NewJob, RetryOutcome, Status, Task,
};
use crate::{PausedQueue, QueueLag};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The entry point: jobq's statements for one PostgreSQL schema, and every job operation.
///
/// Cheap to clone. Each method returns an operation to run on a connection the caller holds (inside its
/// transaction, if it has one) or on a pool:
///
/// ```no_run
/// # async fn demo<V, C: jobq_core::IntoAsyncExecutor<V> + Send>(conn: C) -> Result<(), jobq_core::Error> {
/// use jobq_core::prelude::*;
///
/// let jobq = Jobq::default();
/// let id = jobq.defer_job(NewJob::new("send_email", serde_json::json!({"to": "a@example.com"})))
///     .queue("emails")
///     .priority(5)
///     .run(conn)
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Jobq {
    sql: Arc<Statements>,
}

impl Default for Jobq {
    /// jobq in the schema `jobq`.
    fn default() -> Self {
        Self::with_schema("jobq").expect("`jobq` is a valid schema name")
    }
}

impl Jobq {
    /// jobq in the schema `jobq`.
    pub fn new() -> Self {
        Self::default()
    }

    /// jobq in another schema: 1 to 40 characters of `a-z`, `0-9` and `_`.
    pub fn with_schema(schema: &str) -> Result<Self, Error> {
        Ok(Self {
            sql: Arc::new(Statements::new(schema)?),
        })
    }

    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.sql.schema
    }

    /// The channel on which jobq NOTIFYs new jobs; the payload is the job's queue (empty for very long names).
    pub fn channel(&self) -> &str {
        &self.sql.channel
    }

    /// The channel on which jobq NOTIFYs abort requests; the payload is the job id.
    pub fn abort_channel(&self) -> String {
        format!("{}_abort", self.sql.channel)
    }

    /// The schema version this library needs.
    pub fn required_version(&self) -> i32 {
        SCHEMA_VERSION
    }

    /// The SQL that [`migrate`](Self::migrate) runs, for review.
    pub fn migration_sql(&self) -> &str {
        &self.sql.migrate
    }

    pub(crate) fn query<T>(
        &self,
        sql: &Arc<str>,
        arg: Option<String>,
        decode: impl FnOnce(Vec<String>) -> Result<T, Error> + Send + 'static,
    ) -> Query<T> {
        Query::new(&self.sql.schema, sql, arg, move |rows| {
            decode(rows).map(Step::Done)
        })
    }

    pub(crate) fn json_query<T, R: for<'de> Deserialize<'de>>(
        &self,
        sql: &Arc<str>,
        arg: impl serde::Serialize,
        decode: impl FnOnce(Vec<R>) -> Result<T, Error> + Send + 'static,
    ) -> Query<T> {
        match serde_json::to_string(&arg) {
            Ok(arg) => self.query(sql, Some(arg), |rows| {
                let rows: Result<Vec<R>, _> = rows.iter().map(|r| limits::read_json(r)).collect();
                decode(rows?)
            }),
            Err(e) => Query::refused(e.into()),
        }
    }

    /// Applies the pending migrations, serialised by an advisory lock; a no-op when the schema is current.
    ///
    /// Fails with [`Error::SchemaNewer`] when the database was migrated by a newer jobq.
    pub fn migrate(&self) -> Query<()> {
        let schema = self.sql.schema.to_string();
        let migrate = self.query(&self.sql.migrate, None, |_| Ok(()));
        self.schema_version().and_then(move |found| match found {
            Some(v) if v > SCHEMA_VERSION => Err(Error::SchemaNewer {
                schema,
                found: v,
                expected: SCHEMA_VERSION,
            }),
            Some(SCHEMA_VERSION) => Ok(Step::Done(())),
            _ => Ok(Step::Then(migrate)),
        })
    }

    /// The GRANT statements that let `role` (a lowercase identifier) defer, read and run jobs, without DDL.
    /// Run them as the schema's owner after [`migrate`](Self::migrate).
    pub fn grant_sql(&self, role: &str) -> Result<String, Error> {
        self.sql.grants(role)
    }

    /// The applied schema version, or `None` when the schema has never been applied.
    pub fn schema_version(&self) -> Query<Option<i32>> {
        let version_sql = self.sql.schema_version.clone();
        let schema = self.sql.schema.clone();
        Query::new(
            &self.sql.schema,
            &self.sql.schema_exists,
            None,
            move |rows| {
                if rows.first().map(String::as_str) != Some("true") {
                    return Ok(Step::Done(None));
                }
                Ok(Step::Then(Query::new(
                    &schema,
                    &version_sql,
                    None,
                    |rows| Ok(Step::Done(Some(parse_one::<i32>(&rows)?))),
                )))
            },
        )
    }

    /// Checks that the schema is applied and at this library's version; returns the version.
    pub fn check_schema(&self) -> Query<i32> {
        let schema = self.sql.schema.to_string();
        self.schema_version().map(move |found| match found {
            None => Err(Error::SchemaMissing { schema }),
            Some(v) if v < SCHEMA_VERSION => Err(Error::SchemaOutdated {
                schema,
                found: v,
                expected: SCHEMA_VERSION,
            }),
            Some(v) if v > SCHEMA_VERSION => Err(Error::SchemaNewer {
                schema,
                found: v,
                expected: SCHEMA_VERSION,
            }),
            Some(v) => Ok(v),
        })
    }

    /// Defers a typed task with its default options; the builder can override them.
    pub fn defer<T: Task>(&self, task: &T) -> Defer {
        match NewJob::from_task(task) {
            Ok(job) => self.defer_job(job),
            Err(e) => Defer {
                jobq: self.clone(),
                job: Err(e),
            },
        }
    }

    /// Defers a job given by task name and JSON arguments.
    pub fn defer_job(&self, job: NewJob) -> Defer {
        Defer {
            jobq: self.clone(),
            job: Ok(job),
        }
    }

    /// Defers many jobs in one statement, atomically: when one queueing lock is taken, nothing is inserted
    /// and [`Error::AlreadyEnqueued`] names the lock. Returns the ids in input order.
    ///
    /// A job outside the [`limits`](crate::limits) is refused with [`Error::InvalidInput`] naming its
    /// place in the batch, before any SQL is sent: nothing is inserted and the transaction stays usable.
    ///
    /// The batch is one statement however large, so it stays atomic on an autocommit connection too. Each
    /// job is checked and written into the statement's argument (a text array literal, one row per field:
    /// schema 9; rebuilt as JSON for `defer_jobs` when a job has a lock or a queueing lock) as it comes
    /// from `jobs`, then dropped: pass an iterator (`(0..n).map(…)`) rather than a
    /// collected `Vec`, and the client holds only that compact text (about 40 bytes for a tiny job; a
    /// `serde_json::Value` object costs over 600), briefly twice while it is joined, and the driver's copy. On the server, a batch with queueing locks takes them in their sort order, so two
    /// batches never deadlock over them.
    ///
    /// With the feature `opentelemetry`, a job without a [`JobOptions::trace_context`] of its own gets the
    /// current span's (read once for the batch); see [`Defer::trace_context`].
    pub fn defer_batch(&self, jobs: impl IntoIterator<Item = NewJob>) -> Query<Vec<JobId>> {
        // Once for the whole batch: every job of it is deferred in the same span.
        let current = current_trace_context();
        let mut columns = Columns::new();
        for (i, job) in jobs.into_iter().enumerate() {
            // As `limits::check_batch` names the job.
            if let Err(e) = limits::check_job(&job) {
                return Query::refused(match e {
                    Error::InvalidInput(m) => {
                        Error::InvalidInput(format!("job {i} of the batch: {m}"))
                    }
                    other => other,
                });
            }
            if let Err(e) = columns.push(&job, current.as_deref()) {
                return Query::refused(e.into());
            }
        }
        if columns.has_locks() {
            // defer_jobs, on the JSON it always took: its lock paths are unchanged (schema 9).
            return self.deferral(&self.sql.defer, Some(columns.into_json()));
        }
        self.query(&self.sql.defer_columns, Some(columns.finish()), |rows| {
            let row = rows.into_iter().next().ok_or_else(no_row)?;
            batch::read_ids(&row).ok_or_else(|| {
                Error::Json(serde::de::Error::custom(format!(
                    "defer_columns answered {row:?}, not an array of ids"
                )))
            })
        })
    }

    /// Runs a deferral statement on `arg`, its JSON text, which returns `{"ids": [...]}` or
    /// `{"conflict": "<queueing lock>"}`.
    fn deferral(&self, sql: &Arc<str>, arg: Option<String>) -> Query<Vec<JobId>> {
        #[derive(Deserialize)]
        struct Outcome {
            ids: Option<Vec<JobId>>,
            conflict: Option<String>,
        }
        self.query(sql, arg, |rows| {
            let row = rows.into_iter().next().ok_or_else(no_row)?;
            let outcome: Outcome = limits::read_json(&row)?;
            match (outcome.ids, outcome.conflict) {
                (Some(ids), _) => Ok(ids),
                (None, lock) => Err(Error::AlreadyEnqueued {
                    queueing_lock: lock.unwrap_or_default(),
                }),
            }
        })
    }

    /// Cancels a job: a waiting job becomes `cancelled`; with [`Cancel::abort`] a running job is asked to
    /// stop; with [`Cancel::delete`] a waiting or finished job is deleted instead.
    pub fn cancel(&self, id: JobId) -> Cancel {
        Cancel {
            jobq: self.clone(),
            id,
            abort: false,
            delete: false,
        }
    }

    /// Reads one job.
    pub fn job(&self, id: JobId) -> Query<Job> {
        self.json_query(&self.sql.get_job, id, move |rows: Vec<Job>| {
            rows.into_iter().next().ok_or(Error::JobNotFound(id))
        })
    }

    /// Reads one job's status.
    pub fn status(&self, id: JobId) -> Query<Status> {
        /// Only the status: the rest of the row, arguments included, is skipped unread.
        #[derive(Deserialize)]
        struct Row {
            status: Status,
        }
        self.json_query(&self.sql.get_job, id, move |rows: Vec<Row>| {
            rows.into_iter()
                .next()
                .map(|row| row.status)
                .ok_or(Error::JobNotFound(id))
        })
    }

    /// Lists jobs matching `filter`, oldest first. A filter name holding a NUL character is refused with
    /// [`Error::InvalidInput`] before any SQL is sent.
    pub fn list(&self, filter: &JobFilter) -> Query<Vec<Job>> {
        if let Err(e) = limits::check_filter(filter) {
            return Query::refused(e);
        }
        self.json_query(&self.sql.list_jobs, filter, Ok)
    }

    /// Puts a finished job back to `todo`, to run now. Fails with [`Error::AlreadyEnqueued`] when another
    /// waiting job holds its queueing lock.
    pub fn retry(&self, id: JobId) -> Query<RetryOutcome> {
        #[derive(Deserialize)]
        struct Outcome {
            outcome: String,
            queueing_lock: Option<String>,
        }
        self.json_query(
            &self.sql.retry,
            serde_json::json!({ "id": id }),
            move |rows: Vec<Outcome>| {
                let row = rows.into_iter().next().ok_or(Error::JobNotFound(id))?;
                match row.outcome.as_str() {
                    "retried" => Ok(RetryOutcome::Retried),
                    "conflict" => Err(Error::AlreadyEnqueued {
                        queueing_lock: row.queueing_lock.unwrap_or_default(),
                    }),
                    _ => Ok(RetryOutcome::Unchanged),
                }
            },
        )
    }
}

impl Jobq {
    /// How many jobs each queue holds in each status.
    pub fn queue_counts(&self) -> Query<Vec<QueueCount>> {
        self.json_query_rows(&self.sql.queue_counts, None, Ok)
    }

    /// The registered workers, with their last heartbeats.
    pub fn workers(&self) -> Query<Vec<WorkerInfo>> {
        self.json_query_rows(&self.sql.list_workers, None, Ok)
    }

    /// Deletes finished jobs that finished more than `older_than` ago; returns how many.
    ///
    /// It runs [`prune_batch`](Self::prune_batch) until none is left: statements of at most
    /// [`limits::BULK_BATCH`] rows each, one after another on the same executor (on a pool, each commits on
    /// its own, so no statement holds many rows' locks).
    pub fn prune(&self, older_than: Duration) -> Query<u64> {
        self.prune_from(older_than, None, 0)
    }

    /// Runs `sql` with an optional JSON argument and decodes every row as JSON.
    pub(crate) fn json_query_rows<T, R: for<'de> Deserialize<'de>>(
        &self,
        sql: &Arc<str>,
        arg: Option<serde_json::Value>,
        decode: impl FnOnce(Vec<R>) -> Result<T, Error> + Send + 'static,
    ) -> Query<T> {
        match arg {
            Some(arg) => self.json_query(sql, arg, decode),
            None => self.query(sql, None, |rows| {
                let rows: Result<Vec<R>, _> = rows.iter().map(|r| limits::read_json(r)).collect();
                decode(rows?)
            }),
        }
    }

    /// The statements, for the worker.
    #[cfg(feature = "worker")]
    pub(crate) fn statements(&self) -> &Statements {
        &self.sql
    }
}

/// Steering a queue: pause, resume, and how far behind each queue is.
impl Jobq {
    /// Pauses a queue: its waiting jobs stay `todo` and no worker takes them (every running worker honours
    /// it at its next fetch; jobs already running run on). A queue with no jobs yet can be paused, and its
    /// future jobs wait. Returns whether it changed (`false` when it was paused already).
    ///
    /// The name is checked as a deferral's queue is ([`limits::check_name`]); a bad one is refused with
    /// [`Error::InvalidInput`] before any SQL is sent.
    ///
    /// ```no_run
    /// # async fn demo<V, C: jobq_core::IntoAsyncExecutor<V> + Send>(conn: C) -> Result<(), jobq_core::Error> {
    /// let jobq = jobq_core::Jobq::default();
    /// let changed = jobq.pause_queue("emails").run(conn).await?;
    /// # Ok(()) }
    /// ```
    pub fn pause_queue(&self, queue: &str) -> Query<bool> {
        self.steer(&self.sql.pause_queue, queue)
    }

    /// Resumes a paused queue and wakes its workers (a NOTIFY on [`channel`](Self::channel), delivered at
    /// commit). Returns whether it changed (`false` when it was not paused).
    pub fn resume_queue(&self, queue: &str) -> Query<bool> {
        self.steer(&self.sql.resume_queue, queue)
    }

    /// The paused queues, by name.
    pub fn paused_queues(&self) -> Query<Vec<PausedQueue>> {
        self.json_query_rows(&self.sql.paused_queues, None, Ok)
    }

    /// For each queue that has waiting or running jobs or is paused, by name: how many jobs are due now, how
    /// many are scheduled later, how many are running, how long the oldest due job has waited, and whether
    /// the queue is paused. One statement that reads only waiting and running jobs (through partial
    /// indexes), so finished jobs do not slow it down.
    pub fn queue_lag(&self) -> Query<Vec<QueueLag>> {
        self.json_query_rows(&self.sql.queue_lag, None, Ok)
    }

    /// Runs a pause or resume statement on `queue`, checked first; the statement returns `true`/`false`.
    fn steer(&self, sql: &Arc<str>, queue: &str) -> Query<bool> {
        if let Err(e) = limits::check_name("queue", queue) {
            return Query::refused(e);
        }
        self.json_query(
            sql,
            serde_json::json!({ "queue": queue }),
            |rows: Vec<bool>| rows.into_iter().next().ok_or_else(no_row),
        )
    }
}

/// How many jobs one queue holds in one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCount {
    /// The queue.
    pub queue: String,
    /// The status.
    pub status: Status,
    /// How many jobs.
    pub count: i64,
}

/// A registered worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// The queues it serves; all when `None`.
    pub queues: Option<Vec<String>>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// How many jobs it is running.
    pub running: i64,
}

impl<T: Send + 'static> Query<T> {
    /// A query that runs `self`, then passes its result to `next`.
    pub(crate) fn map<U: Send + 'static>(
        self,
        next: impl FnOnce(T) -> Result<U, Error> + Send + 'static,
    ) -> Query<U> {
        self.and_then(move |value| next(value).map(Step::Done))
    }
}

fn parse_one<T: std::str::FromStr>(rows: &[String]) -> Result<T, Error> {
    rows.first().and_then(|r| r.parse().ok()).ok_or_else(no_row)
}

fn no_row() -> Error {
    Error::InvalidInput("the server returned no row where jobq expected one".into())
}

/// A job as the deferral statements read it: only what differs from the defaults (`job_rows` and
/// `defer_job` fill in the rest), so a tiny job is a few dozen bytes of JSON.
#[derive(Serialize)]
struct Wire<'a> {
    task: &'a str,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    args: &'a serde_json::Value,
    #[serde(flatten)]
    options: &'a JobOptions,
    /// The deferring span's trace context, for a job that has none of its own in `options` (so the key is
    /// written at most once, and not at all when no context is known).
    #[serde(rename = "trace_context", skip_serializing_if = "Option::is_none")]
    inherited: Option<&'a str>,
}

impl<'a> Wire<'a> {
    /// `job`, with `current` (the deferring span's trace context) unless it has a trace context of its own.
    fn new(job: &'a NewJob, current: Option<&'a str>) -> Self {
        Self {
            task: &job.task,
            args: &job.args,
            options: &job.options,
            inherited: current.filter(|_| job.options.trace_context.is_none()),
        }
    }
}

/// The W3C `traceparent` of the current span, when it has a valid OpenTelemetry context: the `tracing`
/// span's (through tracing-opentelemetry's layer), else OpenTelemetry's own current context (an
/// application that uses the OpenTelemetry API directly). Always `None` without the feature
/// `opentelemetry`.
fn current_trace_context() -> Option<String> {
    #[cfg(feature = "opentelemetry")]
    {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let from_span = tracing::Span::current().context();
        let span = from_span.span();
        let mut context = span.span_context().clone();
        if !context.is_valid() {
            let current = opentelemetry::Context::current();
            context = current.span().span_context().clone();
        }
        context.is_valid().then(|| {
            limits::TraceParent {
                trace_id: u128::from_be_bytes(context.trace_id().to_bytes()),
                span_id: u64::from_be_bytes(context.span_id().to_bytes()),
                flags: context.trace_flags().to_u8(),
            }
            .to_string()
        })
    }
    #[cfg(not(feature = "opentelemetry"))]
    None
}

/// A deferral being configured: queue, priority, locks and schedule. Run it like any [`Operation`].
///
/// A job outside the [`limits`](crate::limits) (a name too long or holding a NUL, a schedule outside
/// `EARLIEST..=LATEST`, arguments holding a NUL or nested too deep) is refused with
/// [`Error::InvalidInput`] when it runs, before any SQL is sent, so the caller's transaction stays usable.
#[derive(Debug)]
#[must_use = "a deferral does nothing until it is run on a connection"]
pub struct Defer {
    jobq: Jobq,
    job: Result<NewJob, Error>,
}

impl Defer {
    fn with(mut self, f: impl FnOnce(&mut JobOptions)) -> Self {
        if let Ok(job) = &mut self.job {
            f(&mut job.options);
        }
        self
    }

    /// The queue the job waits in.
    pub fn queue(self, queue: impl Into<String>) -> Self {
        let queue = queue.into();
        self.with(|o| o.queue = Some(queue))
    }

    /// The job's priority: higher runs first.
    pub fn priority(self, priority: i32) -> Self {
        self.with(|o| o.priority = Some(priority))
    }

    /// At most one job with this lock runs at a time.
    pub fn lock(self, lock: impl Into<String>) -> Self {
        let lock = lock.into();
        self.with(|o| o.lock = Some(lock))
    }

    /// At most one job with this queueing lock waits at a time; a second gets [`Error::AlreadyEnqueued`].
    pub fn queueing_lock(self, queueing_lock: impl Into<String>) -> Self {
        let queueing_lock = queueing_lock.into();
        self.with(|o| o.queueing_lock = Some(queueing_lock))
    }

    /// Runs the job no earlier than `at`, which must lie within
    /// [`limits::EARLIEST`]`..=`[`limits::LATEST`]; the deferral is refused with [`Error::InvalidInput`]
    /// otherwise.
    pub fn at(self, at: DateTime<Utc>) -> Self {
        self.with(|o| o.scheduled_at = Some(at))
    }

    /// Runs the job no earlier than `delay` from now. A delay that reaches past [`limits::LATEST`] is
    /// refused with [`Error::InvalidInput`] (not moved to `LATEST`: the caller asked for that time).
    pub fn after(self, delay: Duration) -> Self {
        match limits::check_delay(delay) {
            Ok(at) => self.at(at),
            Err(e) => Self {
                jobq: self.jobq,
                job: Err(e),
            },
        }
    }

    /// Replaces all options at once.
    pub fn options(self, options: JobOptions) -> Self {
        self.with(|o| *o = options)
    }

    /// Stores this trace context with the job, a W3C `traceparent` header
    /// (`00-<trace id>-<parent id>-<flags>`), instead of the current span's: the worker's `job` span links
    /// to it. One that is not a valid `traceparent` ([`limits::check_trace_context`]) is refused with
    /// [`Error::InvalidInput`] before any SQL is sent.
    ///
    /// Without it, and with the feature `opentelemetry`, a deferral run inside a `tracing` span that has
    /// an OpenTelemetry context (through `tracing-opentelemetry`'s layer) stores that span's traceparent;
    /// outside one it stores none. See `docs/tracing.md`.
    ///
    /// ```no_run
    /// # async fn demo<V, C: jobq_core::IntoAsyncExecutor<V> + Send>(conn: C) -> Result<(), jobq_core::Error> {
    /// use jobq_core::prelude::*;
    ///
    /// // The `traceparent` header of the request this job comes from.
    /// let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    /// Jobq::default()
    ///     .defer_job(NewJob::new("send_email", serde_json::json!({"to": "a@example.com"})))
    ///     .trace_context(traceparent)
    ///     .run(conn)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn trace_context(self, traceparent: impl Into<String>) -> Self {
        let traceparent = traceparent.into();
        self.with(|o| o.trace_context = Some(traceparent))
    }
}

impl Operation for Defer {
    type Output = JobId;

    fn into_query(self) -> Query<JobId> {
        let job = match self
            .job
            .and_then(|job| limits::check_job(&job).map(|()| job))
        {
            Ok(job) => job,
            Err(e) => return Query::refused(e),
        };
        // The current span's only for a job without a trace context of its own.
        let current = match job.options.trace_context {
            None => current_trace_context(),
            Some(_) => None,
        };
        match serde_json::to_string(&Wire::new(&job, current.as_deref())) {
            Ok(arg) => self
                .jobq
                .deferral(&self.jobq.sql.defer_one, Some(arg))
                .map(|ids| ids.into_iter().next().ok_or_else(no_row)),
            Err(e) => Query::refused(e.into()),
        }
    }
}

/// A cancellation being configured. Run it like any [`Operation`]; fails with [`Error::JobNotFound`] when
/// no job has the id.
#[derive(Debug)]
#[must_use = "a cancellation does nothing until it is run on a connection"]
pub struct Cancel {
    jobq: Jobq,
    id: JobId,
    abort: bool,
    delete: bool,
}

impl Cancel {
    /// Also asks a running job to stop; the worker ends it as `aborted`.
    pub fn abort(mut self) -> Self {
        self.abort = true;
        self
    }

    /// Deletes a waiting or finished job instead of keeping it as `cancelled`.
    pub fn delete(mut self) -> Self {
        self.delete = true;
        self
    }
}

impl Operation for Cancel {
    type Output = CancelOutcome;

    fn into_query(self) -> Query<CancelOutcome> {
        #[derive(Deserialize)]
        struct Outcome {
            outcome: CancelOutcome,
        }
        let id = self.id;
        let arg = serde_json::json!({ "id": id, "abort": self.abort, "delete": self.delete });
        self.jobq
            .json_query(&self.jobq.sql.cancel, arg, move |rows: Vec<Outcome>| {
                rows.into_iter()
                    .next()
                    .map(|r| r.outcome)
                    .ok_or(Error::JobNotFound(id))
            })
    }
}

/// Bulk operations by filter, and pruning in batches (#15): each call is one bounded statement.
impl Jobq {
    /// Puts finished jobs matching `filter` back to `todo`, to run now, one batch per call: the first
    /// `filter.limit` ([`limits::BULK_BATCH`] when unset, at most [`limits::MAX_BULK_BATCH`]) succeeded,
    /// failed, cancelled or aborted jobs with an id above `filter.after_id`, skipping rows another
    /// transaction holds. Waiting and running jobs are never touched. Each job is retried as
    /// [`retry`](Self::retry) retries one, and a job whose queueing lock another waiting job holds is left
    /// as it was and counted in [`BulkOutcome::conflicts`] (the transaction stays usable).
    ///
    /// Attempt counts are kept unless [`RetryMatching::reset_attempts`] is asked, as the single-job retry
    /// keeps them: a job that used up its retries then runs once more and fails for good if it fails
    /// again, instead of starting another full round of retries with backoff.
    ///
    /// Loop until [`BulkOutcome::next`] is `None`, on a pool (each batch commits on its own) or in
    /// transactions of your own:
    ///
    /// ```no_run
    /// # async fn demo<V, C: jobq_core::IntoAsyncExecutor<V> + Send + Copy>(pool: C) -> Result<(), jobq_core::Error> {
    /// use jobq_core::prelude::*;
    ///
    /// let jobq = Jobq::default();
    /// let mut filter = JobFilter { task: Some("send_email".into()), status: Some(Status::Failed), ..JobFilter::default() };
    /// loop {
    ///     let batch = jobq.retry_matching(&filter).run(pool).await?;
    ///     println!("retried {}, {} left by a queueing-lock conflict", batch.changed, batch.conflicts);
    ///     match batch.next {
    ///         Some(next) => filter.after_id = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn retry_matching(&self, filter: &JobFilter) -> RetryMatching {
        RetryMatching {
            jobq: self.clone(),
            filter: filter.clone(),
            reset_attempts: false,
        }
    }

    /// Cancels waiting jobs matching `filter`, one batch per call (sized and continued as for
    /// [`retry_matching`](Self::retry_matching)): each becomes `cancelled`, as [`cancel`](Self::cancel)
    /// does it. Running jobs are left alone unless [`CancelMatching::abort`] is asked, which asks them to
    /// stop.
    pub fn cancel_matching(&self, filter: &JobFilter) -> CancelMatching {
        CancelMatching {
            jobq: self.clone(),
            filter: filter.clone(),
            abort: false,
        }
    }

    /// Deletes jobs matching `filter` that are not running, one batch per call (sized and continued as for
    /// [`retry_matching`](Self::retry_matching)), as [`Cancel::delete`] deletes one. An empty filter
    /// ([`JobFilter::is_empty`]) matches every job: the CLI asks for `--all` then.
    pub fn delete_matching(&self, filter: &JobFilter) -> DeleteMatching {
        DeleteMatching {
            jobq: self.clone(),
            filter: filter.clone(),
        }
    }

    /// One bounded batch of [`prune`](Self::prune): deletes at most [`limits::BULK_BATCH`] jobs that
    /// finished more than `older_than` ago, oldest first. Pass the previous batch to continue it: its
    /// cutoff is kept, so the batches end even while jobs keep finishing.
    pub fn prune_batch(
        &self,
        older_than: Duration,
        previous: Option<&PruneBatch>,
    ) -> Query<PruneBatch> {
        #[derive(Deserialize)]
        struct Row {
            deleted: u64,
            examined: u64,
            #[serde(deserialize_with = "crate::model::pg_time_utc")]
            before: DateTime<Utc>,
        }
        let arg = serde_json::json!({
            "older_than_seconds": older_than.as_secs_f64(),
            "before": previous.map(|p| p.cutoff),
            "limit": limits::BULK_BATCH,
        });
        self.json_query(&self.sql.prune, arg, |rows: Vec<Row>| {
            let row = rows.into_iter().next().ok_or_else(no_row)?;
            Ok(PruneBatch {
                deleted: row.deleted,
                more: row.examined >= u64::from(limits::BULK_BATCH),
                cutoff: row.before,
            })
        })
    }

    fn prune_from(
        &self,
        older_than: Duration,
        previous: Option<PruneBatch>,
        total: u64,
    ) -> Query<u64> {
        let jobq = self.clone();
        self.prune_batch(older_than, previous.as_ref())
            .and_then(move |batch| {
                let total = total + batch.deleted;
                Ok(if batch.more {
                    Step::Then(jobq.prune_from(older_than, Some(batch), total))
                } else {
                    Step::Done(total)
                })
            })
    }

    /// A batch of a bulk operation: `sql` on `filter` (its limit set to the checked batch size) with `extra`
    /// keys, decoded into a [`BulkOutcome`] whose `changed` is the row's `changed_key`.
    fn bulk(
        &self,
        sql: &Arc<str>,
        filter: &JobFilter,
        extra: serde_json::Value,
        changed_key: &'static str,
    ) -> Query<(BulkOutcome, Vec<JobId>)> {
        let batch = match limits::check_bulk_filter(filter) {
            Ok(batch) => batch,
            Err(e) => return Query::refused(e),
        };
        let mut arg = match serde_json::to_value(JobFilter {
            limit: Some(batch),
            ..filter.clone()
        }) {
            Ok(arg) => arg,
            Err(e) => return Query::refused(e.into()),
        };
        if let (Some(arg), serde_json::Value::Object(extra)) = (arg.as_object_mut(), extra) {
            arg.extend(extra);
        }
        self.json_query(
            sql,
            arg,
            move |rows: Vec<serde_json::Map<String, serde_json::Value>>| {
                let row = rows.into_iter().next().ok_or_else(no_row)?;
                let count = |key: &str| {
                    row.get(key)
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0)
                };
                let examined = count("examined");
                let outcome = BulkOutcome {
                    examined,
                    changed: count(changed_key),
                    conflicts: count("conflicts"),
                    abort_requested: count("abort_requested"),
                    attempts_reset: false,
                    next: match row.get("last_id").and_then(serde_json::Value::as_i64) {
                        Some(last) if examined >= u64::from(batch) => Some(JobId(last)),
                        _ => None,
                    },
                };
                let locked: Vec<JobId> = match row.get("locked_retried") {
                    Some(ids) => serde_json::from_value(ids.clone())?,
                    None => Vec::new(),
                };
                Ok((outcome, locked))
            },
        )
    }

    /// How many jobs in one of `statuses` match `filter` (its `limit` aside).
    fn count_matching(&self, filter: &JobFilter, statuses: &[Status]) -> Query<u64> {
        if let Err(e) = limits::check_filter(filter) {
            return Query::refused(e);
        }
        let arg = serde_json::json!({ "filter": filter, "statuses": statuses });
        match serde_json::to_string(&arg) {
            Ok(arg) => self.query(&self.sql.count_matching, Some(arg), |rows| parse_one(&rows)),
            Err(e) => Query::refused(e.into()),
        }
    }
}

/// One batch of pruning: what [`Jobq::prune_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PruneBatch {
    /// How many jobs it deleted.
    pub deleted: u64,
    /// Whether more jobs may be old enough: pass this batch to the next [`Jobq::prune_batch`].
    pub more: bool,
    /// Jobs that finished before this time are pruned (the server's now minus `older_than`, at the first
    /// batch).
    pub cutoff: DateTime<Utc>,
}

/// A batch of [`Jobq::retry_matching`] being configured. Run it like any [`Operation`].
#[derive(Debug)]
#[must_use = "a bulk retry does nothing until it is run on a connection"]
pub struct RetryMatching {
    jobq: Jobq,
    filter: JobFilter,
    reset_attempts: bool,
}

impl RetryMatching {
    /// Also resets each retried job's attempt count to 0, so it gets its task's full retry budget again.
    /// [`BulkOutcome::attempts_reset`] says so. A job with a queueing lock is reset by a second statement
    /// right after the retry (on a pool, its own transaction), and only while it still waits: one a worker
    /// started in between keeps its count.
    pub fn reset_attempts(mut self) -> Self {
        self.reset_attempts = true;
        self
    }

    /// How many finished jobs match the filter (its `limit` aside): what the batches would look at.
    pub fn count(&self) -> Query<u64> {
        self.jobq.count_matching(
            &self.filter,
            &[
                Status::Succeeded,
                Status::Failed,
                Status::Cancelled,
                Status::Aborted,
            ],
        )
    }
}

impl Operation for RetryMatching {
    type Output = BulkOutcome;

    fn into_query(self) -> Query<BulkOutcome> {
        let reset = self.reset_attempts;
        let jobq = self.jobq.clone();
        self.jobq
            .bulk(
                &self.jobq.sql.retry_matching,
                &self.filter,
                serde_json::json!({ "reset_attempts": reset }),
                "retried",
            )
            .and_then(move |(mut outcome, locked)| {
                outcome.attempts_reset = reset;
                if !reset || locked.is_empty() {
                    return Ok(Step::Done(outcome));
                }
                let arg = serde_json::json!({ "ids": locked });
                Ok(Step::Then(jobq.json_query(
                    &jobq.sql.reset_attempts,
                    arg,
                    move |_: Vec<u64>| Ok(outcome),
                )))
            })
    }
}

/// A batch of [`Jobq::cancel_matching`] being configured. Run it like any [`Operation`].
#[derive(Debug)]
#[must_use = "a bulk cancel does nothing until it is run on a connection"]
pub struct CancelMatching {
    jobq: Jobq,
    filter: JobFilter,
    abort: bool,
}

impl CancelMatching {
    /// Also asks matching running jobs to stop (counted in [`BulkOutcome::abort_requested`]); the worker
    /// ends each as `aborted`.
    pub fn abort(mut self) -> Self {
        self.abort = true;
        self
    }

    /// How many jobs match the filter (its `limit` aside) that the batches would look at: waiting ones, and
    /// running ones with [`abort`](Self::abort).
    pub fn count(&self) -> Query<u64> {
        let statuses: &[Status] = if self.abort {
            &[Status::Todo, Status::Doing]
        } else {
            &[Status::Todo]
        };
        self.jobq.count_matching(&self.filter, statuses)
    }
}

impl Operation for CancelMatching {
    type Output = BulkOutcome;

    fn into_query(self) -> Query<BulkOutcome> {
        self.jobq
            .bulk(
                &self.jobq.sql.cancel_matching,
                &self.filter,
                serde_json::json!({ "abort": self.abort }),
                "cancelled",
            )
            .map(|(outcome, _)| Ok(outcome))
    }
}

/// A batch of [`Jobq::delete_matching`]. Run it like any [`Operation`].
#[derive(Debug)]
#[must_use = "a bulk delete does nothing until it is run on a connection"]
pub struct DeleteMatching {
    jobq: Jobq,
    filter: JobFilter,
}

impl DeleteMatching {
    /// How many jobs match the filter (its `limit` aside) that the batches would delete: all but running ones.
    pub fn count(&self) -> Query<u64> {
        self.jobq.count_matching(
            &self.filter,
            &[
                Status::Todo,
                Status::Succeeded,
                Status::Failed,
                Status::Cancelled,
                Status::Aborted,
            ],
        )
    }
}

impl Operation for DeleteMatching {
    type Output = BulkOutcome;

    fn into_query(self) -> Query<BulkOutcome> {
        self.jobq
            .bulk(
                &self.jobq.sql.delete_matching,
                &self.filter,
                serde_json::json!({}),
                "deleted",
            )
            .map(|(outcome, _)| Ok(outcome))
    }
}
