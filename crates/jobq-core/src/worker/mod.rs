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
//! a job again, and never loses one. The worker and the server agree on what is running: each heartbeat
//! says which jobs the worker holds, and the server puts back, uncharged, any other it has running for that
//! worker (a fetch whose answer was lost). A job's end is reported until the server takes it. A worker
//! that stops heartbeating is declared dead after [`WorkerBuilder::stalled_after`], and its running jobs
//! are retried or failed per their task's strategy by another worker. Every statement of the worker is
//! bounded by [`WorkerBuilder::statement_timeout`].
//!
//! The worker itself needs the `worker` feature (on by default), which brings tokio's runtime, cron and
//! signal handling; without it this module holds only what a task's definition names — its
//! [`RetryStrategy`] and the [`JobError`] its handler returns — so a service that only defers jobs
//! compiles the same `Task` impls without the worker.

#[cfg(feature = "worker")]
mod backend;
#[cfg(feature = "worker")]
mod builder;
#[cfg(feature = "worker")]
mod complete;
#[cfg(feature = "worker")]
pub mod drain;
#[cfg(feature = "worker")]
mod execute;
#[cfg(feature = "worker")]
mod fetch;
mod job_error;
#[cfg(feature = "worker")]
mod listen;
#[cfg(feature = "worker")]
mod maintain;
#[cfg(feature = "worker")]
mod metrics;
#[cfg(feature = "worker")]
mod periodic;
mod retry;
#[cfg(feature = "worker")]
mod run;
#[cfg(feature = "worker")]
mod shared;
#[cfg(feature = "worker")]
mod statements;
#[cfg(feature = "worker")]
mod task;
#[cfg(feature = "worker")]
mod trace;

pub use job_error::JobError;
pub use retry::{Backoff, RetryDecision, RetryStrategy};

#[cfg(feature = "worker")]
pub use backend::{Backend, Notification, SpawnBlocking};
#[cfg(feature = "worker")]
pub(crate) use builder::Config;
#[cfg(feature = "worker")]
pub use builder::{Worker, WorkerBuilder, shutdown_signal};
#[cfg(feature = "worker")]
pub use periodic::Periodic;
#[cfg(feature = "worker")]
pub use task::JobContext;
