//! What a handler sees ([`JobContext`]) and returns ([`JobError`]), and the type-erased handlers a worker
//! keeps.

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

/// Why a job failed, as its handler says.
#[derive(Debug, Clone)]
pub struct JobError {
    message: String,
    kind: Option<String>,
    retryable: bool,
}

impl JobError {
    /// A failure that the task's retry strategy may retry.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: None,
            retryable: true,
        }
    }

    /// A failure that is never retried.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            ..Self::new(message)
        }
    }

    /// Tags the failure with a kind, which a strategy can choose to retry ([`RetryStrategy::only_kinds`]).
    pub fn with_kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// The message stored on the job.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The kind, if one was given.
    pub fn kind(&self) -> Option<&str> {
        self.kind.as_deref()
    }

    /// Whether a retry may help.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The failure of a handler that panicked, async or blocking alike: of kind `panic`, and retryable
    /// like any other failure (the task's strategy decides; [`RetryStrategy::only_kinds`] can leave panics
    /// out).
    pub(crate) fn panicked(payload: Box<dyn std::any::Any + Send>) -> Self {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-text panic payload".to_owned());
        Self::new(format!("the handler panicked: {text}")).with_kind("panic")
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for JobError {
    fn from(error: E) -> Self {
        Self::new(error.to_string())
    }
}

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
