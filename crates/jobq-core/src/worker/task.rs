//! What a handler sees ([`JobContext`]), and the type-erased handlers a worker keeps.

use super::job_error::JobError;
use super::retry::RetryStrategy;
use crate::{Job, JobId, Task};
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What a handler knows about the job it runs.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job as fetched (status `doing`, `attempts` counting this attempt).
    pub job: Arc<Job>,
    /// The name of the worker running it.
    pub worker: Arc<str>,
    pub(crate) abort: CancellationToken,
    pub(crate) state: Arc<State>,
}

/// Values given to the worker with [`WorkerBuilder::state`](super::WorkerBuilder::state), one per type,
/// shared by every job it runs.
#[derive(Clone, Default)]
pub(crate) struct State(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl State {
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Arc::new(value));
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "State({} values)", self.0.len())
    }
}

impl JobContext {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.job.id
    }

    /// Which attempt this is, 1 for the first.
    pub fn attempt(&self) -> i32 {
        self.job.attempts
    }

    /// Whether the job was asked to stop (an abort or the worker's shutdown). Blocking handlers poll this;
    /// async handlers are simply dropped at their next `.await`.
    pub fn is_aborted(&self) -> bool {
        self.abort.is_cancelled()
    }

    /// Completes when the job is asked to stop.
    pub async fn aborted(&self) {
        self.abort.cancelled().await;
    }

    /// The value of type `T` given to the worker with
    /// [`WorkerBuilder::state`](super::WorkerBuilder::state): a pool, a client, a configuration, shared
    /// by every job without cloning by hand. When none was given the job fails permanently, naming the
    /// type, so `?` is all a handler needs:
    ///
    /// ```
    /// use jobq_core::worker::{JobContext, JobError};
    ///
    /// struct Mailer { from: String }
    ///
    /// async fn send(ctx: JobContext) -> Result<(), JobError> {
    ///     let mailer = ctx.state::<Mailer>()?;
    ///     println!("sending from {}", mailer.from);
    ///     Ok(())
    /// }
    /// ```
    pub fn state<T: Send + Sync + 'static>(&self) -> Result<&T, JobError> {
        self.state
            .0
            .get(&TypeId::of::<T>())
            .and_then(|value| value.downcast_ref::<T>())
            .ok_or_else(|| {
                JobError::permanent(format!(
                    "no state of type {} was given to worker {} (WorkerBuilder::state)",
                    std::any::type_name::<T>(),
                    self.worker
                ))
            })
    }
}

pub(crate) type HandlerResult = Result<(), JobError>;
type AsyncHandler =
    Arc<dyn Fn(serde_json::Value, JobContext) -> BoxFuture<'static, HandlerResult> + Send + Sync>;

/// A handler registered under a task name, with its retry strategy.
#[derive(Clone)]
pub(crate) struct Registered {
    pub(crate) run: AsyncHandler,
    /// Blocking handlers run to their end even when aborted; they see the abort through the context.
    pub(crate) blocking: bool,
    pub(crate) retry: RetryStrategy,
    /// How long a job may run, when the task says.
    pub(crate) timeout: Option<std::time::Duration>,
}

impl fmt::Debug for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registered")
            .field("blocking", &self.blocking)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn decode<T: Task + DeserializeOwned>(args: serde_json::Value) -> Result<T, JobError> {
    serde_json::from_value(args).map_err(|e| {
        JobError::permanent(format!(
            "the job's arguments do not match task {}: {e}",
            T::NAME
        ))
    })
}

impl Registered {
    pub(crate) fn new_async<T, F, Fut>(handler: F) -> Self
    where
        T: Task + DeserializeOwned + Send + 'static,
        F: Fn(T, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler = Arc::new(handler);
        Self {
            run: Arc::new(move |args, ctx| {
                let handler = handler.clone();
                Box::pin(async move { handler(decode::<T>(args)?, ctx).await })
            }),
            blocking: false,
            retry: T::retry(),
            timeout: T::timeout(),
        }
    }

    pub(crate) fn new_blocking<T, F>(handler: F) -> Self
    where
        T: Task + DeserializeOwned + Send + 'static,
        F: Fn(T, JobContext) -> HandlerResult + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        Self {
            run: Arc::new(move |args, ctx| {
                let handler = handler.clone();
                Box::pin(async move {
                    let args = decode::<T>(args)?;
                    match tokio::task::spawn_blocking(move || handler(args, ctx)).await {
                        Ok(result) => result,
                        Err(e) if e.is_panic() => Err(JobError::panicked(e.into_panic())),
                        Err(e) => Err(JobError::new(e.to_string())),
                    }
                })
            }),
            blocking: true,
            retry: T::retry(),
            timeout: T::timeout(),
        }
    }
}
