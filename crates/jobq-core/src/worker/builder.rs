//! The worker as configured: [`Worker`], its [`WorkerBuilder`] and settings, and [`shutdown_signal`].

use super::task::{HandlerResult, Registered, State};
use super::{Backend, JobContext, Periodic, RetryStrategy, run};
use crate::{Error, Jobq, Task};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// A configured worker; start it with [`run_until`](Self::run_until).
#[derive(Debug)]
pub struct Worker<B> {
    pub(super) jobq: Jobq,
    pub(super) backend: B,
    pub(super) tasks: HashMap<String, Registered>,
    pub(super) periodic: Vec<Periodic>,
    pub(super) config: Config,
}

/// The worker's settings (see the builder's methods for each).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(super) name: Arc<str>,
    pub(super) queues: Option<Vec<String>>,
    pub(super) concurrency: usize,
    pub(super) fetch_batch: usize,
    pub(super) poll_interval: Duration,
    pub(super) heartbeat_interval: Duration,
    pub(super) stalled_after: Duration,
    pub(super) shutdown_timeout: Duration,
    pub(super) statement_timeout: Duration,
    pub(super) job_timeout: Option<Duration>,
    pub(super) delete_succeeded: bool,
    pub(super) prune_after: Option<Duration>,
    pub(super) listen: bool,
    pub(super) fetch_unknown_tasks: bool,
    /// How often to set the queue gauges (feature `metrics`); never when `None`.
    pub(super) queue_metrics: Option<Duration>,
    pub(super) state: Arc<State>,
}

/// Builds a [`Worker`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct WorkerBuilder<B> {
    pub(super) worker: Worker<B>,
    pub(super) retries: HashMap<String, RetryStrategy>,
}

impl<B: Backend> Worker<B> {
    /// A builder for a worker of `jobq` on `backend`, serving every queue with concurrency 10.
    pub fn builder(jobq: Jobq, backend: B) -> WorkerBuilder<B> {
        let name = format!("{}-{}", hostname(), std::process::id());
        WorkerBuilder {
            retries: HashMap::new(),
            worker: Worker {
                jobq,
                backend,
                tasks: HashMap::new(),
                periodic: Vec::new(),
                config: Config {
                    name: name.into(),
                    queues: None,
                    concurrency: 10,
                    fetch_batch: 100,
                    poll_interval: Duration::from_secs(1),
                    heartbeat_interval: Duration::from_secs(5),
                    stalled_after: Duration::from_secs(60),
                    shutdown_timeout: Duration::from_secs(30),
                    statement_timeout: Duration::from_secs(10),
                    job_timeout: None,
                    delete_succeeded: false,
                    prune_after: None,
                    listen: true,
                    fetch_unknown_tasks: false,
                    queue_metrics: None,
                    state: Arc::default(),
                },
            },
        }
    }

    /// Runs until `shutdown` completes, then stops fetching, puts back the jobs it fetched but did not
    /// start, lets running jobs finish for up to the shutdown timeout, aborts the rest (they go back to the
    /// queue, their attempt not charged), reports every end and returns: within the shutdown timeout, one
    /// second and one statement timeout, even when the server is silent.
    ///
    /// Fails at once with [`Error::InvalidInput`], naming the setting, when the settings contradict each
    /// other; with [`Error::ShutdownIncomplete`] when some ends could not be reported in time, or a blocking
    /// handler ignored its abort (the worker then stays registered in the background until it returns).
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
        run::run(self, shutdown).await
    }
}

impl<B: Backend> WorkerBuilder<B> {
    /// Registers an async handler for task `T`, with `T`'s retry strategy.
    pub fn task<T, F, Fut>(mut self, handler: F) -> Self
    where
        T: Task + DeserializeOwned + Send + 'static,
        F: Fn(T, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.worker
            .tasks
            .insert(T::NAME.to_owned(), Registered::new_async(handler));
        self
    }

    /// Registers a blocking handler for task `T`; it runs on tokio's blocking threads and sees aborts through
    /// [`JobContext::is_aborted`].
    pub fn blocking_task<T, F>(mut self, handler: F) -> Self
    where
        T: Task + DeserializeOwned + Send + 'static,
        F: Fn(T, JobContext) -> HandlerResult + Send + Sync + 'static,
    {
        self.worker
            .tasks
            .insert(T::NAME.to_owned(), Registered::new_blocking(handler));
        self
    }

    /// Replaces the retry strategy of the task registered as `task`, whether it is registered before or
    /// after this call.
    pub fn retry(mut self, task: &str, strategy: RetryStrategy) -> Self {
        self.retries.insert(task.to_owned(), strategy);
        self
    }

    /// Defers a job at every tick of a cron schedule; with several workers, each tick is deferred once.
    pub fn periodic(mut self, periodic: Periodic) -> Self {
        self.worker.periodic.push(periodic);
        self
    }

    /// The worker's name, shown in `jobq workers` and in job contexts; host and pid by default.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.worker.config.name = name.into().into();
        self
    }

    /// Serves only these queues (all by default).
    pub fn queues<S: Into<String>>(mut self, queues: impl IntoIterator<Item = S>) -> Self {
        self.worker.config.queues = Some(queues.into_iter().map(Into::into).collect());
        self
    }

    /// How many jobs run at once (at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.worker.config.concurrency = concurrency.max(1);
        self
    }

    /// The most jobs fetched in one statement (1 to 1,000; 100 by default).
    pub fn fetch_batch(mut self, batch: usize) -> Self {
        self.worker.config.fetch_batch = batch.clamp(1, 1000);
        self
    }

    /// How often an idle worker looks for jobs without a notification (1 s by default).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.worker.config.poll_interval = interval;
        self
    }

    /// How often the worker heartbeats and checks for aborts and stalled workers (5 s by default).
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.worker.config.heartbeat_interval = interval;
        self
    }

    /// After how long without a heartbeat a worker counts as dead (60 s by default).
    pub fn stalled_after(mut self, timeout: Duration) -> Self {
        self.worker.config.stalled_after = timeout;
        self
    }

    /// How long any one of the worker's statements may take before it counts as failed, and its connection
    /// is closed (10 s by default): a server or network gone silent never holds the worker up for longer.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.worker.config.statement_timeout = timeout;
        self
    }

    /// How long a job may run before it is aborted and fails with kind `timeout`, retried per its task's
    /// strategy, for tasks whose [`Task::timeout`] says nothing (no limit by default). An async handler is
    /// dropped at once and its slot freed; a blocking one sees [`JobContext::is_aborted`] and keeps its
    /// slot until it returns, so its job never runs twice at once.
    pub fn job_timeout(mut self, timeout: Duration) -> Self {
        self.worker.config.job_timeout = Some(timeout);
        self
    }

    /// How long running jobs may finish after shutdown was asked (30 s by default).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.worker.config.shutdown_timeout = timeout;
        self
    }

    /// Deletes jobs that succeed instead of keeping them as `succeeded`.
    pub fn delete_succeeded(mut self, delete: bool) -> Self {
        self.worker.config.delete_succeeded = delete;
        self
    }

    /// Prunes finished jobs older than `age` now and then.
    pub fn prune_after(mut self, age: Duration) -> Self {
        self.worker.config.prune_after = Some(age);
        self
    }

    /// Whether to LISTEN for new jobs and aborts (on by default); off means polling only.
    pub fn listen(mut self, listen: bool) -> Self {
        self.worker.config.listen = listen;
        self
    }

    /// Shares `value` with every job this worker runs, reachable from the handler as
    /// [`JobContext::state::<T>()`](JobContext::state): one value per type (a second of the same type
    /// replaces the first), so wrap values of common types in a type of your own.
    ///
    /// ```no_run
    /// # async fn demo<B: jobq_core::worker::Backend>(backend: B) -> Result<(), jobq_core::Error> {
    /// use jobq_core::worker::{JobContext, Worker};
    /// use jobq_core::Task;
    /// use serde::{Deserialize, Serialize};
    ///
    /// struct Mailer { from: String }
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct SendEmail { to: String }
    /// impl Task for SendEmail { const NAME: &'static str = "send_email"; }
    ///
    /// let worker = Worker::builder(jobq_core::Jobq::default(), backend)
    ///     .state(Mailer { from: "noreply@example.com".into() })
    ///     .task(|email: SendEmail, ctx: JobContext| async move {
    ///         let mailer = ctx.state::<Mailer>()?;
    ///         println!("mailing {} from {}", email.to, mailer.from);
    ///         Ok(())
    ///     })
    ///     .build();
    /// # Ok(()) }
    /// ```
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        Arc::make_mut(&mut self.worker.config.state).insert(value);
        self
    }

    /// Whether to take jobs of tasks this worker has no handler for, and fail them (off by default).
    ///
    /// By default a worker fetches only the tasks registered on it, so in a rolling deploy the jobs of a new
    /// task wait for a worker that knows it instead of failing on the old ones. On, a job of an unknown task
    /// fails permanently with a message naming the task and the worker, which suits a worker meant to serve
    /// every task of its queues.
    pub fn fetch_unknown_tasks(mut self, fetch: bool) -> Self {
        self.worker.config.fetch_unknown_tasks = fetch;
        self
    }

    /// Sets the queue gauges (`jobq_queue_*`: due, scheduled, oldest due age, paused, waiting and running
    /// jobs; see [`crate::metrics`]) every `interval`, from [`Jobq::queue_lag`], through the `metrics` facade
    /// (off by default).
    ///
    /// The gauges describe the whole table, not this worker, so one worker of a deployment is enough
    /// (several set the same values). `queue_lag` reads only waiting and running jobs through partial
    /// indexes, so finished jobs cost it nothing; its cost grows with the waiting jobs. A queue that disappears (no job left and not
    /// paused) has its gauges set to 0 once and is then left alone. A statement that fails is logged and
    /// tried again at the next interval; it never delays a heartbeat.
    #[cfg(feature = "metrics")]
    pub fn queue_metrics(mut self, interval: Duration) -> Self {
        self.worker.config.queue_metrics = Some(interval);
        self
    }

    /// The worker. Its settings are checked when it starts.
    pub fn build(self) -> Worker<B> {
        let mut worker = self.worker;
        for (task, strategy) in self.retries {
            if let Some(registered) = worker.tasks.get_mut(&task) {
                registered.retry = strategy;
            }
        }
        worker
    }
}

impl Config {
    /// Refuses settings that would stop a loop of the worker or contradict each other.
    pub(super) fn check(&self) -> Result<(), Error> {
        let refuse = |setting: &str, why: String| {
            Err(Error::InvalidInput(format!(
                "worker setting {setting}: {why}"
            )))
        };
        for (setting, value) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("poll_interval", self.poll_interval),
            ("statement_timeout", self.statement_timeout),
            (
                "queue_metrics",
                self.queue_metrics.unwrap_or(Duration::from_secs(1)),
            ),
        ] {
            if value.is_zero() {
                return refuse(setting, "must be more than zero".into());
            }
        }
        if self.stalled_after <= self.heartbeat_interval.saturating_mul(2) {
            return refuse(
                "stalled_after",
                format!(
                    "{:?} must be more than twice heartbeat_interval ({:?}), or a worker that is merely \
                     slow counts as dead and its jobs run twice",
                    self.stalled_after, self.heartbeat_interval
                ),
            );
        }
        Ok(())
    }
}

/// Completes at the first SIGINT or SIGTERM: pass it to [`Worker::run_until`] for a graceful shutdown.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut interrupt), Ok(mut terminate)) => {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned())
}
