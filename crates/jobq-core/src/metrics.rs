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
//! The worker's metrics count what this process's workers did. The `jobq_queue_*` gauges describe the
//! table (any process may set them: [`queue_gauges`] is the one mapping from
//! [`Jobq::queue_lag`](crate::Jobq::queue_lag) and [`Jobq::queue_counts`](crate::Jobq::queue_counts)).
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

use crate::{QueueCount, QueueLag, Status};

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

/// The queue gauges for what [`Jobq::queue_lag`](crate::Jobq::queue_lag) and
/// [`Jobq::queue_counts`](crate::Jobq::queue_counts) returned: the one mapping from those rows to gauge
/// values.
///
/// Every queue named in either input gets every gauge: [`QUEUE_DUE_JOBS`], [`QUEUE_SCHEDULED_JOBS`],
/// [`QUEUE_OLDEST_DUE_AGE`] (0 when no job is due), [`QUEUE_PAUSED`] (1 or 0), and [`QUEUE_JOBS`] for every
/// [`Status`] (0 for a status it has no job in), so a series that empties reads 0 rather than vanishing.
/// A queue in neither input (no job left and not paused) gets none; a process that sets these gauges over
/// time should set that queue's series to 0 (the worker's `queue_metrics` does). The order is stable: by
/// queue name, then the gauges in the order above, statuses in [`Status::ALL`] order.
pub fn queue_gauges(lag: &[QueueLag], counts: &[QueueCount]) -> Vec<QueueGauge> {
    let mut queues: Vec<&str> = lag
        .iter()
        .map(|l| l.queue.as_str())
        .chain(counts.iter().map(|c| c.queue.as_str()))
        .collect();
    queues.sort_unstable();
    queues.dedup();
    let mut gauges = Vec::with_capacity(queues.len() * (4 + Status::ALL.len()));
    for queue in queues {
        let row = lag.iter().find(|l| l.queue == queue);
        let due = row.map_or(0, |l| l.due);
        let scheduled = row.map_or(0, |l| l.scheduled);
        let age = row
            .and_then(|l| l.oldest_due_age)
            .map_or(0.0, |d| d.as_secs_f64());
        let paused = row.is_some_and(QueueLag::paused);
        gauges.push(QueueGauge::new(QUEUE_DUE_JOBS, queue, due as f64));
        gauges.push(QueueGauge::new(
            QUEUE_SCHEDULED_JOBS,
            queue,
            scheduled as f64,
        ));
        gauges.push(QueueGauge::new(QUEUE_OLDEST_DUE_AGE, queue, age));
        gauges.push(QueueGauge::new(
            QUEUE_PAUSED,
            queue,
            if paused { 1.0 } else { 0.0 },
        ));
        for status in Status::ALL {
            let count: i64 = counts
                .iter()
                .filter(|c| c.queue == queue && c.status == status)
                .map(|c| c.count)
                .sum();
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
        QUEUE_JOBS => "Jobs in the table by queue and status.",
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

    fn lag(queue: &str, due: i64, scheduled: i64, age: Option<u64>, paused: bool) -> QueueLag {
        QueueLag {
            queue: queue.into(),
            due,
            scheduled,
            oldest_due_at: age.map(|_| chrono::Utc::now()),
            oldest_due_age: age.map(Duration::from_secs),
            paused_at: paused.then(chrono::Utc::now),
        }
    }

    fn count(queue: &str, status: Status, count: i64) -> QueueCount {
        QueueCount {
            queue: queue.into(),
            status,
            count,
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
    fn queue_gauges_map_lag_and_counts() {
        let lags = [
            lag("emails", 3, 2, Some(40), false),
            lag("idle", 0, 0, None, true),
        ];
        let counts = [
            count("emails", Status::Todo, 5),
            count("emails", Status::Failed, 1),
            count("done", Status::Succeeded, 7),
        ];
        let g = queue_gauges(&lags, &counts);
        // Three queues, each with four lag gauges and one count gauge per status.
        assert_eq!(g.len(), 3 * (4 + Status::ALL.len()));
        let q = |queue| [(QUEUE, queue)];
        assert_eq!(value(&g, QUEUE_DUE_JOBS, &q("emails")), Some(3.0));
        assert_eq!(value(&g, QUEUE_SCHEDULED_JOBS, &q("emails")), Some(2.0));
        assert_eq!(value(&g, QUEUE_OLDEST_DUE_AGE, &q("emails")), Some(40.0));
        assert_eq!(value(&g, QUEUE_PAUSED, &q("emails")), Some(0.0));
        assert_eq!(value(&g, QUEUE_PAUSED, &q("idle")), Some(1.0));
        assert_eq!(value(&g, QUEUE_OLDEST_DUE_AGE, &q("idle")), Some(0.0));
        // A queue only in the counts has zero lag.
        assert_eq!(value(&g, QUEUE_DUE_JOBS, &q("done")), Some(0.0));
        assert_eq!(value(&g, QUEUE_PAUSED, &q("done")), Some(0.0));
        let s = |queue, status| [(QUEUE, queue), (STATUS, status)];
        assert_eq!(value(&g, QUEUE_JOBS, &s("emails", "todo")), Some(5.0));
        assert_eq!(value(&g, QUEUE_JOBS, &s("emails", "failed")), Some(1.0));
        assert_eq!(value(&g, QUEUE_JOBS, &s("emails", "doing")), Some(0.0));
        assert_eq!(value(&g, QUEUE_JOBS, &s("done", "succeeded")), Some(7.0));
        assert_eq!(value(&g, QUEUE_JOBS, &s("idle", "todo")), Some(0.0));
        // Sorted by queue name.
        assert_eq!(g[0].labels[0].1, "done");
        assert_eq!(g.last().map(|g| g.labels[0].1.as_str()), Some("idle"));
        assert!(g.iter().all(|g| help(g.name).is_some()));
    }

    #[test]
    fn queue_gauges_of_nothing_is_empty() {
        assert!(queue_gauges(&[], &[]).is_empty());
    }
}
