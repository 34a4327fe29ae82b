//! The names of jobq's metrics: one home for every name and label, so the worker (through the `metrics`
//! facade, feature `metrics`), the queue gauges and the dashboard's `GET /metrics` agree.
//!
//! No label carries unbounded user data: labels are the task name (bounded by the tasks an application
//! registers), the queue name, a job status and an outcome — never a job id or arguments.
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `jobq_jobs_started_total` | counter | task, queue | handlers started |
//! | `jobq_jobs_succeeded_total` | counter | task, queue | jobs that succeeded |
//! | `jobq_jobs_retried_total` | counter | task, queue | failed attempts that will be retried |
//! | `jobq_jobs_failed_total` | counter | task, queue | jobs failed for good (no retry left, or permanent) |
//! | `jobq_jobs_aborted_total` | counter | task, queue | jobs aborted on request |
//! | `jobq_jobs_timed_out_total` | counter | task, queue | attempts stopped by their timeout (also counted as retried or failed) |
//! | `jobq_jobs_released_total` | counter | task, queue | jobs put back uncharged by the worker's shutdown |
//! | `jobq_job_duration_seconds` | histogram | task, queue, outcome | handler run time |
//! | `jobq_job_queue_wait_seconds` | histogram | task, queue | from when the job became due (`scheduled_at`, the deferral's time unless scheduled) to its start |
//! | `jobq_jobs_running` | gauge | | handlers running in this process |
//! | `jobq_fetch_duration_seconds` | histogram | | one fetch statement, sent to answered |
//! | `jobq_fetched_jobs_total` | counter | | jobs fetched |
//! | `jobq_completion_duration_seconds` | histogram | | one statement reporting a batch of job ends |
//! | `jobq_completions_pending` | gauge | | job ends waiting to be reported to the server |
//! | `jobq_queue_jobs` | gauge | queue, status | jobs in the table by queue and status |
//! | `jobq_queue_due_jobs` | gauge | queue | waiting jobs due now |
//! | `jobq_queue_scheduled_jobs` | gauge | queue | waiting jobs scheduled for later |
//! | `jobq_queue_oldest_due_age_seconds` | gauge | queue | how long the oldest due job has waited (0 when none) |
//! | `jobq_queue_paused` | gauge | queue | 1 while the queue is paused, else 0 |

/// Handlers started. Labels: [`TASK`], [`QUEUE`].
pub const JOBS_STARTED: &str = "jobq_jobs_started_total";
/// Jobs that succeeded. Labels: [`TASK`], [`QUEUE`].
pub const JOBS_SUCCEEDED: &str = "jobq_jobs_succeeded_total";
/// Failed attempts that will be retried. Labels: [`TASK`], [`QUEUE`].
pub const JOBS_RETRIED: &str = "jobq_jobs_retried_total";
/// Jobs failed for good. Labels: [`TASK`], [`QUEUE`].
pub const JOBS_FAILED: &str = "jobq_jobs_failed_total";
/// Jobs aborted on request. Labels: [`TASK`], [`QUEUE`].
pub const JOBS_ABORTED: &str = "jobq_jobs_aborted_total";
/// Attempts stopped by their timeout. Labels: [`TASK`], [`QUEUE`].
pub const JOBS_TIMED_OUT: &str = "jobq_jobs_timed_out_total";
/// Jobs put back uncharged by the worker's shutdown. Labels: [`TASK`], [`QUEUE`].
pub const JOBS_RELEASED: &str = "jobq_jobs_released_total";
/// Handler run time, seconds. Labels: [`TASK`], [`QUEUE`], [`OUTCOME`].
pub const JOB_DURATION: &str = "jobq_job_duration_seconds";
/// From due to started, seconds. Labels: [`TASK`], [`QUEUE`].
pub const JOB_QUEUE_WAIT: &str = "jobq_job_queue_wait_seconds";
/// Handlers running in this process.
pub const JOBS_RUNNING: &str = "jobq_jobs_running";
/// One fetch statement, seconds.
pub const FETCH_DURATION: &str = "jobq_fetch_duration_seconds";
/// Jobs fetched.
pub const FETCHED_JOBS: &str = "jobq_fetched_jobs_total";
/// One statement reporting job ends, seconds.
pub const COMPLETION_DURATION: &str = "jobq_completion_duration_seconds";
/// Job ends waiting to be reported.
pub const COMPLETIONS_PENDING: &str = "jobq_completions_pending";
/// Jobs by queue and status. Labels: [`QUEUE`], [`STATUS`].
pub const QUEUE_JOBS: &str = "jobq_queue_jobs";
/// Waiting jobs due now. Label: [`QUEUE`].
pub const QUEUE_DUE_JOBS: &str = "jobq_queue_due_jobs";
/// Waiting jobs scheduled for later. Label: [`QUEUE`].
pub const QUEUE_SCHEDULED_JOBS: &str = "jobq_queue_scheduled_jobs";
/// Age of the oldest due job, seconds (0 when none). Label: [`QUEUE`].
pub const QUEUE_OLDEST_DUE_AGE: &str = "jobq_queue_oldest_due_age_seconds";
/// 1 while the queue is paused, else 0. Label: [`QUEUE`].
pub const QUEUE_PAUSED: &str = "jobq_queue_paused";

/// Label: the task name.
pub const TASK: &str = "task";
/// Label: the queue name.
pub const QUEUE: &str = "queue";
/// Label: a job status (`todo`, `doing`, …).
pub const STATUS: &str = "status";
/// Label: how a handler run ended (`succeeded`, `failed`, `aborted`, `timed_out`, `released`).
pub const OUTCOME: &str = "outcome";
