//! The worker: fetches jobs in batches, runs their handlers concurrently, and ends them in batches.
//!
//! ```no_run
//! # async fn demo<B: jobq_core::worker::Backend>(backend: B) -> Result<(), jobq_core::Error> {
//! use jobq_core::worker::{JobContext, Worker};
//! use jobq_core::Task;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct SendEmail { to: String }
//! impl Task for SendEmail { const NAME: &'static str = "send_email"; }
//!
//! let worker = Worker::builder(jobq_core::Jobq::default(), backend)
//!     .concurrency(20)
//!     .task(|email: SendEmail, _ctx: JobContext| async move {
//!         println!("mailing {}", email.to);
//!         Ok(())
//!     })
//!     .build();
//! worker.run_until(jobq_core::worker::shutdown_signal()).await?;
//! # Ok(()) }
//! ```
//!
//! Delivery is at least once: a job is marked finished only after its handler returned, so a crash may run
//! a job again, and never loses one. A worker that stops heartbeating is declared dead after
//! [`WorkerBuilder::stalled_after`], and its running jobs are retried or failed per their task's strategy
//! by another worker.

mod backend;
mod periodic;
mod retry;
mod run;
mod task;

pub use backend::{Backend, Notification, SpawnBlocking};
pub use periodic::Periodic;
pub use retry::{Backoff, RetryDecision, RetryStrategy};
pub use task::{JobContext, JobError};

use crate::{Error, Jobq, Task};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use task::{HandlerResult, Registered};

/// A configured worker; start it with [`run_until`](Self::run_until).
#[derive(Debug)]
pub struct Worker<B> {
    jobq: Jobq,
    backend: B,
    tasks: HashMap<String, Registered>,
    periodic: Vec<Periodic>,
    config: Config,
}

/// The worker's settings.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    name: Arc<str>,
    queues: Option<Vec<String>>,
    concurrency: usize,
    fetch_batch: usize,
    poll_interval: Duration,
    heartbeat_interval: Duration,
    stalled_after: Duration,
    shutdown_timeout: Duration,
    delete_succeeded: bool,
    prune_after: Option<Duration>,
    listen: bool,
}

/// Builds a [`Worker`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct WorkerBuilder<B> {
    worker: Worker<B>,
}

impl<B: Backend> Worker<B> {
    /// A builder for a worker of `jobq` on `backend`, serving every queue with concurrency 10.
    pub fn builder(jobq: Jobq, backend: B) -> WorkerBuilder<B> {
        let name = format!("{}-{}", hostname(), std::process::id());
        WorkerBuilder {
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
                    delete_succeeded: false,
                    prune_after: None,
                    listen: true,
                },
            },
        }
    }

    /// Runs until `shutdown` completes, then stops fetching, lets running jobs finish for up to the shutdown
    /// timeout, aborts the rest (they go back per their retry strategy), and returns.
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

    /// Replaces the retry strategy of the task registered as `task`.
    pub fn retry(mut self, task: &str, strategy: RetryStrategy) -> Self {
        if let Some(registered) = self.worker.tasks.get_mut(task) {
            registered.retry = strategy;
        }
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

    /// The worker.
    pub fn build(self) -> Worker<B> {
        self.worker
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

/// The text of a panic payload.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_owned());
    format!("the handler panicked: {text}")
}
