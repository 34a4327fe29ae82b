//! Every metric the worker records, as small methods the loops call unconditionally: with the `metrics`
//! feature off their bodies are empty and the types hold nothing, so they cost nothing.
//!
//! The names and labels are those of [`crate::metrics`]. Recording goes through the `metrics` facade, so
//! it is one atomic operation on a handle when the application has installed a recorder, and nothing when
//! it has not. Handles are resolved once per worker (per task and queue for the job metrics) the first
//! time they are needed, not per job: a recorder installed after that is not seen by this worker, so
//! install it before starting the worker, as every exporter's documentation says.

use super::complete::End;
use crate::Job;
#[cfg(feature = "metrics")]
use crate::metrics as names;
#[cfg(feature = "metrics")]
use std::collections::HashMap;
#[cfg(feature = "metrics")]
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How a handler run ended, as the [`OUTCOME`](crate::metrics::OUTCOME) label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ran {
    /// It returned `Ok`.
    Succeeded,
    /// It returned an error or panicked (retried or not: see the end).
    Failed,
    /// It was aborted on request.
    Aborted,
    /// It ran out of time.
    TimedOut,
    /// The worker's shutdown interrupted it; it goes back uncharged.
    Released,
}

impl Ran {
    /// The label value.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
            Self::TimedOut => "timed_out",
            Self::Released => "released",
        }
    }

    #[cfg(feature = "metrics")]
    const ALL: [Ran; 5] = [
        Self::Succeeded,
        Self::Failed,
        Self::Aborted,
        Self::TimedOut,
        Self::Released,
    ];
}

/// The worker's metrics: its handles, resolved when first needed.
#[derive(Default)]
pub(super) struct Metrics {
    /// Per task, then per queue.
    #[cfg(feature = "metrics")]
    jobs: Mutex<HashMap<String, HashMap<String, Arc<JobHandles>>>>,
    #[cfg(feature = "metrics")]
    worker: OnceLock<WorkerHandles>,
}

/// The metrics of one job while it runs.
pub(super) struct JobMetrics {
    #[cfg(feature = "metrics")]
    handles: Arc<JobHandles>,
}

#[cfg(feature = "metrics")]
struct JobHandles {
    started: metrics::Counter,
    succeeded: metrics::Counter,
    retried: metrics::Counter,
    failed: metrics::Counter,
    aborted: metrics::Counter,
    timed_out: metrics::Counter,
    released: metrics::Counter,
    queue_wait: metrics::Histogram,
    /// By [`Ran`], in [`Ran::ALL`] order.
    duration: [metrics::Histogram; 5],
}

#[cfg(feature = "metrics")]
impl JobHandles {
    fn new(task: &str, queue: &str) -> Self {
        use metrics::{Label, SharedString};
        // One shared copy of each value for every handle of this task and queue.
        let task = SharedString::from(Arc::<str>::from(task));
        let queue = SharedString::from(Arc::<str>::from(queue));
        let labels = vec![
            Label::new(names::TASK, task),
            Label::new(names::QUEUE, queue),
        ];
        let counter = |name: &'static str| metrics::counter!(name, labels.iter());
        let duration = Ran::ALL.map(|ran| {
            let mut labels = labels.clone();
            labels.push(Label::from_static_parts(names::OUTCOME, ran.as_str()));
            metrics::histogram!(names::JOB_DURATION, labels)
        });
        Self {
            started: counter(names::JOBS_STARTED),
            succeeded: counter(names::JOBS_SUCCEEDED),
            retried: counter(names::JOBS_RETRIED),
            failed: counter(names::JOBS_FAILED),
            aborted: counter(names::JOBS_ABORTED),
            timed_out: counter(names::JOBS_TIMED_OUT),
            released: counter(names::JOBS_RELEASED),
            queue_wait: metrics::histogram!(names::JOB_QUEUE_WAIT, labels.iter()),
            duration,
        }
    }

    /// Counts an end by what it does to the job.
    fn count(&self, end: End) {
        match end {
            End::Succeeded => &self.succeeded,
            End::Retry => &self.retried,
            End::Failed => &self.failed,
            End::Aborted => &self.aborted,
            End::Release => &self.released,
        }
        .increment(1);
    }
}

#[cfg(feature = "metrics")]
struct WorkerHandles {
    running: metrics::Gauge,
    fetch: metrics::Histogram,
    fetched: metrics::Counter,
    completion: metrics::Histogram,
    pending: metrics::Gauge,
}

#[cfg(feature = "metrics")]
impl WorkerHandles {
    fn new() -> Self {
        describe();
        Self {
            running: metrics::gauge!(names::JOBS_RUNNING),
            fetch: metrics::histogram!(names::FETCH_DURATION),
            fetched: metrics::counter!(names::FETCHED_JOBS),
            completion: metrics::histogram!(names::COMPLETION_DURATION),
            pending: metrics::gauge!(names::COMPLETIONS_PENDING),
        }
    }
}

/// Describes every metric to the recorder (help text and unit), as exporters show them.
#[cfg(feature = "metrics")]
fn describe() {
    use metrics::Unit;
    let help = |name| names::help(name).unwrap_or_default();
    for name in [
        names::JOBS_STARTED,
        names::JOBS_SUCCEEDED,
        names::JOBS_RETRIED,
        names::JOBS_FAILED,
        names::JOBS_ABORTED,
        names::JOBS_TIMED_OUT,
        names::JOBS_RELEASED,
        names::FETCHED_JOBS,
    ] {
        metrics::describe_counter!(name, Unit::Count, help(name));
    }
    for name in [
        names::JOB_DURATION,
        names::JOB_QUEUE_WAIT,
        names::FETCH_DURATION,
        names::COMPLETION_DURATION,
    ] {
        metrics::describe_histogram!(name, Unit::Seconds, help(name));
    }
    for name in [
        names::JOBS_RUNNING,
        names::COMPLETIONS_PENDING,
        names::QUEUE_JOBS,
        names::QUEUE_DUE_JOBS,
        names::QUEUE_SCHEDULED_JOBS,
        names::QUEUE_PAUSED,
    ] {
        metrics::describe_gauge!(name, Unit::Count, help(name));
    }
    metrics::describe_gauge!(
        names::QUEUE_OLDEST_DUE_AGE,
        Unit::Seconds,
        help(names::QUEUE_OLDEST_DUE_AGE)
    );
}

impl Metrics {
    #[cfg(feature = "metrics")]
    fn worker(&self) -> &WorkerHandles {
        self.worker.get_or_init(WorkerHandles::new)
    }

    #[cfg(feature = "metrics")]
    fn job(&self, job: &Job) -> Arc<JobHandles> {
        // Resolve the worker's handles (and describe every metric) before the first job's.
        let _ = self.worker();
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let by_queue = match jobs.get_mut(job.task.as_str()) {
            Some(by_queue) => by_queue,
            None => jobs.entry(job.task.clone()).or_default(),
        };
        match by_queue.get(job.queue.as_str()) {
            Some(handles) => handles.clone(),
            None => {
                let handles = Arc::new(JobHandles::new(&job.task, &job.queue));
                by_queue.insert(job.queue.clone(), handles.clone());
                handles
            }
        }
    }

    /// A handler starts: counts it, records how long the job waited since it became due (by the server's
    /// clock: `started_at − scheduled_at` as the fetch set them, never below zero) and counts it running.
    pub(super) fn started(&self, job: &Job) -> JobMetrics {
        #[cfg(feature = "metrics")]
        {
            let handles = self.job(job);
            handles.started.increment(1);
            if let Some(started) = job.started_at {
                let wait = (started - job.scheduled_at).to_std().unwrap_or_default();
                handles.queue_wait.record(wait.as_secs_f64());
            }
            self.worker().running.increment(1.0);
            JobMetrics { handles }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = job;
            JobMetrics {}
        }
    }

    /// A job ended without a handler run here (a stalled worker's job, recovered): counts its end.
    pub(super) fn ended_unstarted(&self, job: &Job, end: End) {
        #[cfg(feature = "metrics")]
        self.job(job).count(end);
        #[cfg(not(feature = "metrics"))]
        let _ = (job, end);
    }

    /// Jobs fetched but not started go back at the worker's shutdown: counts them released.
    pub(super) fn released_unstarted<'a>(&self, jobs: impl IntoIterator<Item = &'a Job>) {
        for job in jobs {
            self.ended_unstarted(job, End::Release);
        }
    }

    /// One fetch statement answered `n` rows after `elapsed`.
    pub(super) fn fetched(&self, n: usize, elapsed: Duration) {
        #[cfg(feature = "metrics")]
        {
            let worker = self.worker();
            worker.fetch.record(elapsed.as_secs_f64());
            worker.fetched.increment(n as u64);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (n, elapsed);
    }

    /// One statement reporting job ends took `elapsed` (answered or failed).
    pub(super) fn completion_sent(&self, elapsed: Duration) {
        #[cfg(feature = "metrics")]
        self.worker().completion.record(elapsed.as_secs_f64());
        #[cfg(not(feature = "metrics"))]
        let _ = elapsed;
    }

    /// `n` job ends were handed to the completer.
    pub(super) fn pending_added(&self, n: usize) {
        #[cfg(feature = "metrics")]
        self.worker().pending.increment(n as f64);
        #[cfg(not(feature = "metrics"))]
        let _ = n;
    }

    /// The server took `n` job ends (or the completer gave them up to the heartbeat).
    pub(super) fn pending_taken(&self, n: usize) {
        #[cfg(feature = "metrics")]
        self.worker().pending.decrement(n as f64);
        #[cfg(not(feature = "metrics"))]
        let _ = n;
    }
}

impl JobMetrics {
    /// The handler ran for `duration` and ended as `ran`; the job ends as `end`.
    pub(super) fn ended(self, metrics: &Metrics, ran: Ran, end: End, duration: Duration) {
        #[cfg(feature = "metrics")]
        {
            let handles = &self.handles;
            handles.count(end);
            if ran == Ran::TimedOut {
                handles.timed_out.increment(1);
            }
            let index = Ran::ALL.iter().position(|r| *r == ran).unwrap_or(0);
            handles.duration[index].record(duration.as_secs_f64());
            metrics.worker().running.decrement(1.0);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (metrics, ran, end, duration);
    }
}

/// Sets the queue gauges of [`crate::metrics::queue_gauges`], and to 0 those set before that are no longer
/// in the list (a queue whose last job went away and that is not paused).
#[derive(Default)]
pub(super) struct QueueGauges {
    #[cfg(feature = "metrics")]
    set: std::collections::HashSet<(&'static str, Vec<(&'static str, String)>)>,
}

impl QueueGauges {
    /// Sets `gauges`, and zeroes the ones set before and missing now.
    pub(super) fn set(&mut self, gauges: Vec<crate::metrics::QueueGauge>) {
        #[cfg(feature = "metrics")]
        {
            let gauge = |name: &'static str, labels: &[(&'static str, String)]| {
                let labels: Vec<metrics::Label> = labels
                    .iter()
                    .map(|(k, v)| metrics::Label::new(*k, v.clone()))
                    .collect();
                metrics::gauge!(name, labels)
            };
            let mut now = std::collections::HashSet::with_capacity(gauges.len());
            for g in gauges {
                gauge(g.name, &g.labels).set(g.value);
                now.insert((g.name, g.labels));
            }
            for (name, labels) in self.set.difference(&now) {
                gauge(name, labels).set(0.0);
            }
            self.set = now;
        }
        #[cfg(not(feature = "metrics"))]
        let _ = gauges;
    }
}
