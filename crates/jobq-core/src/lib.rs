//! The driver-agnostic core of jobq, a PostgreSQL job queue for Rust.
//!
//! jobq defers, cancels and reads jobs on a connection the caller already holds, inside the caller's own
//! transaction (the transactional outbox), with any of the four mainstream drivers. This crate holds the
//! job model, the SQL, the narrow [`AsyncExecutor`] and [`BlockingExecutor`] traits that driver adapters
//! implement, and every job operation, written once on top of them. Applications use an adapter crate
//! (`jobq-postgres`, `jobq-tokio-postgres`, `jobq-sqlx`, `jobq-diesel`), which re-exports this one.
//!
//! Data flows one way: user code → adapter → [`Jobq`] operation → executor → PostgreSQL.

#![forbid(unsafe_code)]

mod batch;
mod error;
mod executor;
mod jobq;
pub mod limits;
pub mod metrics;
mod model;
pub mod network;
mod query;
mod sql;
pub mod tls;
pub mod worker;

pub use error::{ConnectorError, Error, ErrorKind};
pub use executor::{
    AsyncExecutor, BlockingExecutor, Direct, IntoAsyncExecutor, IntoBlockingExecutor,
};
pub use jobq::{Cancel, Defer, Jobq, QueueCount, WorkerInfo};
pub use jobq::{CancelMatching, DeleteMatching, PruneBatch, RetryMatching};
pub use model::BulkOutcome;
pub use model::{
    AttemptError, CancelOutcome, Job, JobFilter, JobId, JobOptions, NewJob, RetryOutcome, Status,
    Task,
};
pub use model::{PausedQueue, QueueLag};
pub use query::{Operation, Query};
pub use sql::SCHEMA_VERSION;

/// What most users import: the handle, the operation trait and the job model.
pub mod prelude {
    pub use crate::{
        Error, Job, JobFilter, JobId, JobOptions, Jobq, NewJob, Operation, Status, Task,
    };
}
