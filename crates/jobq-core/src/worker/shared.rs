//! What the worker's loops share: the settings, the backend, and the worker's own record of the jobs it
//! holds, which the heartbeat keeps in agreement with the server's.

use super::JobError;
use super::complete::Completion;
use super::task::Registered;
use super::{Backend, Config};
use crate::{ConnectorError, Error, ErrorKind, Job, JobId, Jobq, Query};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// A job whose handler is running.
pub(super) struct Running {
    pub(super) abort: CancellationToken,
    /// The abort came from this worker's shutdown, not from a request.
    pub(super) by_shutdown: std::sync::Arc<AtomicBool>,
}

pub(super) struct Shared<B> {
    pub(super) jobq: Jobq,
    pub(super) backend: B,
    pub(super) tasks: HashMap<String, Registered>,
    /// The tasks a fetch asks for: those with a handler here, or any (`None`) when the worker takes jobs
    /// of unknown tasks too ([`WorkerBuilder::fetch_unknown_tasks`](super::WorkerBuilder::fetch_unknown_tasks)).
    pub(super) fetched_tasks: Option<Vec<String>>,
    pub(super) config: Config,
    worker_id: AtomicI64,
    /// Jobs whose handler is running, by id.
    pub(super) running: Mutex<HashMap<JobId, Running>>,
    /// Every job the server has `doing` for this worker as far as the worker knows: fetched and waiting,
    /// running, or ended and not yet reported. A job enters when an answer hands it over and leaves when
    /// the server has taken its end.
    held: Mutex<HashSet<JobId>>,
    /// Taken by every statement that hands jobs to this worker (fetch, stalled-job recovery) and by the
    /// heartbeat that puts back the jobs the worker does not hold: so the heartbeat never runs while an
    /// answer that would add to `held` is still on its way.
    pub(super) handover: tokio::sync::Mutex<()>,
    /// Wakes the fetch loop: a slot freed up, or a notification came.
    pub(super) wake: Notify,
    /// Jobs ended so far, to size the next fetch.
    pub(super) ended: AtomicUsize,
    completions: mpsc::UnboundedSender<Completion>,
    /// The worker is shutting down: no more recovery or pruning.
    pub(super) stopping: AtomicBool,
    /// Whether the LISTEN connection still hears (see [`Probe`]).
    pub(super) probe: super::listen::Probe,
    /// The worker's metrics (nothing without the `metrics` feature).
    pub(super) metrics: super::metrics::Metrics,
}

impl<B: Backend> Shared<B> {
    pub(super) fn new(
        jobq: Jobq,
        backend: B,
        tasks: HashMap<String, Registered>,
        config: Config,
        worker_id: i64,
        completions: mpsc::UnboundedSender<Completion>,
    ) -> Self {
        let fetched_tasks = (!config.fetch_unknown_tasks).then(|| {
            let mut names: Vec<String> = tasks.keys().cloned().collect();
            names.sort();
            names
        });
        Self {
            jobq,
            backend,
            tasks,
            fetched_tasks,
            config,
            worker_id: AtomicI64::new(worker_id),
            running: Mutex::new(HashMap::new()),
            held: Mutex::new(HashSet::new()),
            handover: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            ended: AtomicUsize::new(0),
            completions,
            stopping: AtomicBool::new(false),
            probe: super::listen::Probe::default(),
            metrics: super::metrics::Metrics::default(),
        }
    }

    pub(super) fn worker_id(&self) -> i64 {
        self.worker_id.load(Ordering::Relaxed)
    }

    pub(super) fn set_worker_id(&self, id: i64) {
        self.worker_id.store(id, Ordering::Relaxed);
    }

    /// Runs one of the worker's statements, bounded by its statement timeout: no answer in time is an error
    /// of kind [`Timeout`](ErrorKind::Timeout) (the adapters close a connection whose statement was
    /// abandoned, so it is not used again).
    pub(super) async fn run<T: Send>(&self, query: Query<T>) -> Result<T, Error> {
        within(
            self.config.statement_timeout,
            query.run(self.backend.executor()),
        )
        .await
    }

    fn held_set(&self) -> MutexGuard<'_, HashSet<JobId>> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records jobs an answer has just handed to this worker.
    pub(super) fn hold(&self, ids: impl IntoIterator<Item = JobId>) {
        self.held_set().extend(ids);
    }

    /// Forgets a job whose end the server has taken.
    pub(super) fn let_go(&self, id: JobId) {
        self.held_set().remove(&id);
    }

    /// The jobs this worker holds.
    pub(super) fn held(&self) -> Vec<JobId> {
        self.held_set().iter().copied().collect()
    }

    /// The running jobs.
    pub(super) fn running(&self) -> MutexGuard<'_, HashMap<JobId, Running>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands a job's end to the completer, which reports it until the server takes it.
    pub(super) fn end(&self, completion: Completion) {
        // The completer lives as long as the worker does; after it ended, the job stays held and the
        // shutdown reports it as unreported.
        if self.completions.send(completion).is_ok() {
            self.metrics.pending_added(1);
        }
    }

    /// The end of a failed attempt: a retry per the task's strategy, or `failed`. A job of a task this
    /// worker does not know (recovered from a stalled worker, say) is retried at once: the strategy is the
    /// business of a worker that knows the task.
    ///
    /// Emits the attempt's event (in the caller's span): a warning with `retry_at` and `retry_in` when it
    /// will be retried, an error with `final = true` and the `reason` when it will not.
    pub(super) fn after_failure(&self, job: &Job, error: &JobError) -> Completion {
        use super::complete::End;
        let attempt = u32::try_from(job.attempts).unwrap_or(0);
        let task = self.tasks.get(&job.task);
        let decision = match task {
            Some(task) => task.retry.after_failure(attempt, error),
            None if error.is_retryable() => Some(super::RetryDecision::default()),
            None => None,
        };
        match decision {
            Some(d) => {
                let completion = Completion::retry(job.id, job.attempts, error.message(), d);
                let now = chrono::Utc::now();
                let retry_at = completion.scheduled_at().unwrap_or(now);
                let retry_in = (retry_at - now).to_std().unwrap_or_default();
                tracing::warn!(
                    error = %error,
                    kind = error.kind(),
                    attempt,
                    retry_at = %retry_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    // Whole milliseconds read better than the nanoseconds of a computed wait.
                    retry_in = ?Duration::from_millis(u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX)),
                    "job failed; it will be retried"
                );
                completion
            }
            None => {
                let reason = if !error.is_retryable() {
                    "permanent error"
                } else if task.is_some_and(|t| attempt >= t.retry.max_attempts()) {
                    "attempts exhausted"
                } else {
                    "the task's retry strategy declined"
                };
                tracing::error!(
                    error = %error,
                    kind = error.kind(),
                    attempt,
                    final = true,
                    reason,
                    "job failed for good"
                );
                Completion::new(job.id, job.attempts, End::Failed, Some(error.message()))
            }
        }
    }

    /// Asks a running job to stop.
    pub(super) fn abort(&self, id: JobId, by_shutdown: bool) {
        if let Some(running) = self.running().get(&id) {
            running.by_shutdown.store(by_shutdown, Ordering::Relaxed);
            running.abort.cancel();
        }
    }
}

/// `work`, or a timeout error after `limit`.
pub(super) async fn within<T, E: Into<Error>>(
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(ConnectorError::new(
            "jobq-core",
            ErrorKind::Timeout,
            format!("no answer from the server within {limit:?} (the worker's statement_timeout)"),
        )
        .into()),
    }
}
