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
    pub scheduled_at: DateTime<Utc>,
    /// How many times it has started.
    pub attempts: i32,
    /// Someone asked the running job to stop.
    pub abort_requested: bool,
    /// The worker running it, while it runs.
    pub worker_id: Option<i64>,
    /// When it was deferred.
    pub created_at: DateTime<Utc>,
    /// When its last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// The error of its last failed attempt.
    pub last_error: Option<String>,
    /// Every failed attempt, oldest first.
    pub errors: Vec<AttemptError>,
}

/// One failed attempt of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptError {
    /// Which attempt failed (1 for the first).
    pub attempt: i32,
    /// When it failed.
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
}

/// A job to defer: a task name, its JSON arguments and its options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// The task's name.
    pub task: String,
    /// The task's arguments.
    pub args: serde_json::Value,
    /// Queue, priority, locks and schedule.
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

    /// How a worker retries a failed job of this task; by default it does not.
    fn retry() -> crate::worker::RetryStrategy
    where
        Self: Sized,
    {
        crate::worker::RetryStrategy::none()
    }
}

/// Which jobs to list. Every field narrows the list; `limit` caps it (1,000 when not set).
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
