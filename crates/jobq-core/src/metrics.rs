//! The names of jobq's metrics: one home for every name and label, so the worker (through the `metrics`
//! facade, feature `metrics`), the queue gauges and the dashboard's `GET /metrics` agree.
//!
//! No label carries unbounded user data: labels are the task name (bounded by the tasks an application
//! registers), the queue name, a job status and an outcome — never a job id or arguments.
//!
//! Why the [`metrics`](https://docs.rs/metrics) facade rather than OpenTelemetry's metrics API or a
//! Prometheus client: it is the interface the Rust ecosystem's exporters plug into
//! (`metrics-exporter-prometheus`, StatsD and Datadog exporters, bridges to OpenTelemetry), so the
//! application picks the exporter and jobq depends on none; without a recorder installed every call is a
//! no-op; and with the feature off nothing of it is compiled. Install the recorder before starting the
//! worker: the worker resolves its handles the first time it needs them and keeps them.
//!
//! The worker's metrics count what this process's workers did. The `jobq_queue_*` gauges describe the live
//! jobs in the table (any process may set them: [`queue_gauges`] is the one mapping from
//! [`Jobq::queue_lag`](crate::Jobq::queue_lag), which reads only waiting and running jobs through partial
//! indexes, so a scrape costs the same with millions of finished jobs in the table). Finished jobs have no
//! gauge: the worker's counters (`jobq_jobs_succeeded_total`, `jobq_jobs_failed_total`,
//! `jobq_jobs_aborted_total`, …) count them as they end, and
//! [`Jobq::queue_counts`](crate::Jobq::queue_counts) (`jobq queues`, the dashboard's queues page) gives the
//! table's totals by status, at the cost of reading every row.
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `jobq_jobs_started_total` | counter | task, queue | handlers started |
//! | `jobq_jobs_succeeded_total` | counter | task, queue | jobs that succeeded |
//! | `jobq_jobs_retried_total` | counter | task, queue | failed attempts that will be retried (a stalled worker's jobs this worker recovered too) |
//! | `jobq_jobs_failed_total` | counter | task, queue | jobs failed for good (no retry left, or permanent; recovered stalled jobs too) |
//! | `jobq_jobs_aborted_total` | counter | task, queue | jobs aborted on request |
//! | `jobq_jobs_timed_out_total` | counter | task, queue | attempts stopped by their timeout (also counted as retried or failed) |
//! | `jobq_jobs_released_total` | counter | task, queue | jobs put back uncharged by the worker's shutdown (interrupted, or fetched and not started) |
//! | `jobq_job_duration_seconds` | histogram | task, queue, outcome | handler run time, one sample per attempt; outcome `succeeded`, `failed` (retried or not), `aborted`, `timed_out`, `released` |
//! | `jobq_job_queue_wait_seconds` | histogram | task, queue | from when the job became due (`scheduled_at`: the deferral's time, its schedule or its retry time) to when a worker took it (`started_at`), both by the server's clock, never below 0; one sample per attempt |
//! | `jobq_jobs_running` | gauge | | handlers running in this process |
//! | `jobq_fetch_duration_seconds` | histogram | | one fetch statement, sent to answered |
//! | `jobq_fetched_jobs_total` | counter | | jobs fetched |
//! | `jobq_completion_duration_seconds` | histogram | | one statement reporting a batch of job ends |
//! | `jobq_completions_pending` | gauge | | job ends waiting to be reported to the server |
//! | `jobq_queue_jobs` | gauge | queue, status | live jobs in the table by queue and status: `todo` (waiting: due and scheduled) and `doing` (running); no finished status |
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
/// Live jobs by queue and status, `todo` or `doing` only. Labels: [`QUEUE`], [`STATUS`].
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
/// Label: a job status (`todo`, `doing`, …; in [`QUEUE_JOBS`] only `todo` and `doing`).
pub const STATUS: &str = "status";
/// Label: how a handler run ended (`succeeded`, `failed`, `aborted`, `timed_out`, `released`).
pub const OUTCOME: &str = "outcome";

use crate::{QueueLag, Status};

/// One queue gauge's value, as plain data: what the worker's `queue_metrics` sets through the `metrics`
/// facade and what a dashboard renders as Prometheus text, from the same [`queue_gauges`].
#[derive(Debug, Clone, PartialEq)]
pub struct QueueGauge {
    /// The metric's name, one of the `QUEUE_*` constants of this module.
    pub name: &'static str,
    /// Its labels as `(name, value)`: [`QUEUE`] first, then [`STATUS`] for [`QUEUE_JOBS`].
    pub labels: Vec<(&'static str, String)>,
    /// Its value.
    pub value: f64,
}

impl QueueGauge {
    fn new(name: &'static str, queue: &str, value: f64) -> Self {
        Self {
            name,
            labels: vec![(QUEUE, queue.to_owned())],
            value,
        }
    }
}

/// The statuses [`QUEUE_JOBS`] has a series for: the live ones, which [`Jobq::queue_lag`](crate::Jobq::queue_lag)
/// counts without reading finished jobs.
pub const LIVE_STATUSES: [Status; 2] = [Status::Todo, Status::Doing];

/// The queue gauges for what [`Jobq::queue_lag`](crate::Jobq::queue_lag) returned: the one mapping from its
/// rows to gauge values.
///
/// Every queue in `lag` (a queue with waiting or running jobs, or paused) gets every gauge:
/// [`QUEUE_DUE_JOBS`], [`QUEUE_SCHEDULED_JOBS`], [`QUEUE_OLDEST_DUE_AGE`] (0 when no job is due),
/// [`QUEUE_PAUSED`] (1 or 0), and [`QUEUE_JOBS`] for each of [`LIVE_STATUSES`]: `todo` (due and scheduled)
/// and `doing` (running), 0 when it has none, so a series that empties reads 0 rather than vanishing. No
/// finished status gets a series (see the [module](self) documentation for where those counts come from).
/// A queue not in `lag` (no live job and not paused) gets none; a process that sets these gauges over time
/// should set that queue's series to 0 (the worker's `queue_metrics` does). The order is stable: by queue
/// name, then the gauges in the order above, statuses in [`LIVE_STATUSES`] order; should `lag` name a queue
/// twice, its first row counts.
pub fn queue_gauges(lag: &[QueueLag]) -> Vec<QueueGauge> {
    let mut rows: Vec<&QueueLag> = lag.iter().collect();
    // Stable, so the first of two rows of one queue stays first.
    rows.sort_by(|a, b| a.queue.cmp(&b.queue));
    rows.dedup_by(|later, first| later.queue == first.queue);
    let mut gauges = Vec::with_capacity(rows.len() * (4 + LIVE_STATUSES.len()));
    for row in rows {
        let queue = row.queue.as_str();
        let age = row.oldest_due_age.map_or(0.0, |d| d.as_secs_f64());
        gauges.push(QueueGauge::new(QUEUE_DUE_JOBS, queue, row.due as f64));
        gauges.push(QueueGauge::new(
            QUEUE_SCHEDULED_JOBS,
            queue,
            row.scheduled as f64,
        ));
        gauges.push(QueueGauge::new(QUEUE_OLDEST_DUE_AGE, queue, age));
        gauges.push(QueueGauge::new(
            QUEUE_PAUSED,
            queue,
            if row.paused() { 1.0 } else { 0.0 },
        ));
        // In LIVE_STATUSES order: todo, doing.
        let counts = [row.due + row.scheduled, row.running];
        for (status, count) in LIVE_STATUSES.into_iter().zip(counts) {
            let mut gauge = QueueGauge::new(QUEUE_JOBS, queue, count as f64);
            gauge.labels.push((STATUS, status.as_str().to_owned()));
            gauges.push(gauge);
        }
    }
    gauges
}

/// The help text of one of jobq's metrics, by name (for an exporter's `describe_*` or a `# HELP` line);
/// `None` for a name that is not jobq's.
pub fn help(name: &str) -> Option<&'static str> {
    Some(match name {
        JOBS_STARTED => "Job handlers started.",
        JOBS_SUCCEEDED => "Jobs that succeeded.",
        JOBS_RETRIED => "Failed attempts that will be retried.",
        JOBS_FAILED => "Jobs failed for good (no retry left, or a permanent error).",
        JOBS_ABORTED => "Jobs aborted on request.",
        JOBS_TIMED_OUT => "Attempts stopped by their timeout (also counted as retried or failed).",
        JOBS_RELEASED => "Jobs put back uncharged by the worker's shutdown.",
        JOB_DURATION => "Handler run time in seconds.",
        JOB_QUEUE_WAIT => "Seconds from when a job became due to its start.",
        JOBS_RUNNING => "Job handlers running in this process.",
        FETCH_DURATION => "Seconds one fetch statement took, sent to answered.",
        FETCHED_JOBS => "Jobs fetched.",
        COMPLETION_DURATION => "Seconds one statement reporting a batch of job ends took.",
        COMPLETIONS_PENDING => "Job ends waiting to be reported to the server.",
        QUEUE_JOBS => "Live jobs in the table by queue and status (todo: waiting, doing: running).",
        QUEUE_DUE_JOBS => "Waiting jobs due now.",
        QUEUE_SCHEDULED_JOBS => "Waiting jobs scheduled for later.",
        QUEUE_OLDEST_DUE_AGE => "Seconds the oldest due job has waited (0 when none is due).",
        QUEUE_PAUSED => "1 while the queue is paused, else 0.",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn lag(
        queue: &str,
        (due, scheduled, running): (i64, i64, i64),
        age: Option<u64>,
        paused: bool,
    ) -> QueueLag {
        QueueLag {
            queue: queue.into(),
            due,
            scheduled,
            running,
            oldest_due_at: age.map(|_| chrono::Utc::now()),
            oldest_due_age: age.map(Duration::from_secs),
            paused_at: paused.then(chrono::Utc::now),
        }
    }

    fn value(gauges: &[QueueGauge], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        gauges
            .iter()
            .find(|g| {
                g.name == name
                    && g.labels.len() == labels.len()
                    && g.labels
                        .iter()
                        .zip(labels)
                        .all(|(a, b)| a.0 == b.0 && a.1 == b.1)
            })
            .map(|g| g.value)
    }

    #[test]
    fn queue_gauges_map_lag() {
        // Not in name order, and "emails" twice: the first row counts.
        let lags = [
            lag("idle", (0, 0, 0), None, true),
            lag("emails", (3, 2, 4), Some(40), false),
            lag("busy", (0, 0, 5), None, false),
            lag("emails", (9, 9, 9), Some(1), true),
        ];
        let g = queue_gauges(&lags);
        // Three queues, each with four lag gauges and one count gauge per live status.
        assert_eq!(g.len(), 3 * (4 + LIVE_STATUSES.len()));
        let q = |queue| [(QUEUE, queue)];
        assert_eq!(value(&g, QUEUE_DUE_JOBS, &q("emails")), Some(3.0));
        assert_eq!(value(&g, QUEUE_SCHEDULED_JOBS, &q("emails")), Some(2.0));
        assert_eq!(value(&g, QUEUE_OLDEST_DUE_AGE, &q("emails")), Some(40.0));
        assert_eq!(value(&g, QUEUE_PAUSED, &q("emails")), Some(0.0));
        assert_eq!(value(&g, QUEUE_PAUSED, &q("idle")), Some(1.0));
        assert_eq!(value(&g, QUEUE_OLDEST_DUE_AGE, &q("idle")), Some(0.0));
        // A queue with only running jobs has zero lag.
        assert_eq!(value(&g, QUEUE_DUE_JOBS, &q("busy")), Some(0.0));
        assert_eq!(value(&g, QUEUE_PAUSED, &q("busy")), Some(0.0));
        let s = |queue, status| [(QUEUE, queue), (STATUS, status)];
        assert_eq!(value(&g, QUEUE_JOBS, &s("emails", "todo")), Some(5.0));
        assert_eq!(value(&g, QUEUE_JOBS, &s("emails", "doing")), Some(4.0));
        assert_eq!(value(&g, QUEUE_JOBS, &s("busy", "doing")), Some(5.0));
        assert_eq!(value(&g, QUEUE_JOBS, &s("busy", "todo")), Some(0.0));
        assert_eq!(value(&g, QUEUE_JOBS, &s("idle", "todo")), Some(0.0));
        // No finished status has a series.
        assert!(
            g.iter()
                .filter(|g| g.name == QUEUE_JOBS)
                .all(|g| ["todo", "doing"].contains(&g.labels[1].1.as_str())),
            "{g:?}"
        );
        // Sorted by queue name.
        let queues: Vec<&str> = g.iter().map(|g| g.labels[0].1.as_str()).collect();
        let mut sorted = queues.clone();
        sorted.sort_unstable();
        assert_eq!(queues, sorted);
        assert_eq!(queues[0], "busy");
        assert!(g.iter().all(|g| help(g.name).is_some()));
    }

    #[test]
    fn queue_gauges_of_nothing_is_empty() {
        assert!(queue_gauges(&[]).is_empty());
    }
}
