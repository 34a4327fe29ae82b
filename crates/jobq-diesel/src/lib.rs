//! jobq for diesel: defer, cancel and read jobs on the `PgConnection` you hold — inside
//! `conn.transaction(|conn| …)`, so your rows and your jobs commit together — or on an r2d2 pool.
//!
//! ```no_run
//! use diesel::prelude::*;
//! use jobq_diesel::prelude::*;
//!
//! # fn demo(conn: &mut PgConnection) -> Result<(), Box<dyn std::error::Error>> {
//! let jobq = Jobq::default();
//! conn.transaction::<_, Box<dyn std::error::Error>, _>(|conn| {
//!     diesel::sql_query("INSERT INTO orders (id) VALUES (42)").execute(conn)?;
//!     jobq.defer_job(NewJob::new("process_order", serde_json::json!({"order_id": 42})))
//!         .run_blocking(conn)?;
//!     Ok(())
//! })?;
//! # Ok(()) }
//! ```
//!
//! | you pass to `run_blocking` | runs on |
//! | --- | --- |
//! | `&mut PgConnection` (the `conn` of `conn.transaction(\|conn\| …)`, also `&mut *pooled`) | that connection, inside its open transaction if any |
//! | `&mut PooledConnection<ConnectionManager<PgConnection>>` | the pooled connection, likewise |
//! | [`TransactionPooling`]`(conn)`, or any connection above wrapped in it | as the wrapped connection, with unnamed statements: for PgBouncer's transaction pooling (see below) |
//! | `&Pool<ConnectionManager<PgConnection>>`, `&PoolExecutor` | a pooled connection per statement |
//!
//! TLS is libpq's own: `sslmode`, `sslrootcert` and the other `ssl*` parameters of the URL given to
//! [`pool`](crate::pool()) or [`PoolExecutor::connect`] work as in `psql`.
//!
//! diesel is synchronous and so is this adapter: no async runtime is needed to defer. A worker runs on a
//! [`PoolExecutor`], which moves each statement to tokio's blocking threads
//! ([`SpawnBlocking`](jobq_core::worker::SpawnBlocking)); it polls for new jobs (diesel has no LISTEN).
//!
//! jobq never begins, commits or rolls back on your connection, nor changes a setting: each operation is
//! one statement, so it is atomic inside your transaction. A queueing-lock conflict comes back as
//! [`Error::AlreadyEnqueued`](jobq_core::Error::AlreadyEnqueued) and leaves your transaction usable.
//!
//! # Prepared statements, and PgBouncer
//!
//! jobq's statements go through diesel's prepared-statement cache, as the statements of diesel's query
//! builder do: `PgConnection` prepares each one once, under a name (`__diesel_stmt_N`), and keeps it for
//! the life of the connection, keyed by its SQL text. After the first run a statement costs one round
//! trip, and the server does not parse it again. jobq's statements are a fixed set per schema, so they
//! add a few entries to the cache, not one per call.
//!
//! **Behind PgBouncer in transaction pooling mode** (before 1.21, or without `max_prepared_statements`)
//! those named statements break: the next transaction may run on a server connection that lacks them, or
//! already has another client's under the same name (`prepared statement "__diesel_stmt_0" already
//! exists`). There, opt out of the cache:
//!
//! - on a connection you hold, wrap it: `run_blocking(TransactionPooling(conn))` runs each statement
//!   unnamed through `diesel::sql_query`, which diesel never caches and, from 2.2.12 on, sends in one
//!   exchange (`PQsendQueryParams`, diesel PR #4539), so it works inside a transaction and outside one;
//! - on a pool, use [`PoolExecutor::transaction_pooling`], which is also the worker's backend there.
//!
//! Your own statements there need the same care: diesel caches most statements of its query builder too,
//! never `sql_query`'s. See `docs/operations.md` (PgBouncer).
//!
//! # Errors
//!
//! diesel 2.2 does not hand out the server's SQLSTATE, so [`ConnectorError::sqlstate`](jobq_core::ConnectorError::sqlstate) is always `None`
//! here. The [`ErrorKind`](jobq_core::ErrorKind) comes from diesel's `DatabaseErrorKind` (unique, foreign key, not null and
//! check violations, serialization failures, closed connections) and, for what diesel leaves as
//! `Unknown`, from PostgreSQL's primary message: a failed transaction (`current transaction is
//! aborted…`), a missing schema, table or function, timeouts, deadlocks and missing privileges. Those
//! messages are PostgreSQL's English ones; with a translated `lc_messages` such errors keep their text
//! but get [`ErrorKind::Other`](jobq_core::ErrorKind::Other).
//!
//! Anything else is refused by the compiler:
//!
//! ```compile_fail,E0277
//! use jobq_diesel::prelude::*;
//! let mut not_a_connection = String::new();
//! Jobq::default().status(JobId(1)).run_blocking(&mut not_a_connection);
//! ```
//!
//! and so is a shared `&PgConnection`, which diesel cannot run statements on:
//!
//! ```compile_fail,E0277
//! use jobq_diesel::prelude::*;
//! fn status(conn: &diesel::PgConnection) {
//!     Jobq::default().status(JobId(1)).run_blocking(conn);
//! }
//! ```

#![forbid(unsafe_code)]

mod error;
mod executor;
#[cfg(feature = "pool")]
mod pool;

pub use executor::{ConnectionExecutor, TransactionPooling};
#[cfg(feature = "pool")]
pub use pool::{PgPool, PoolExecutor, pool};

/// jobq's core: the [`Jobq`](jobq_core::Jobq) handle, job model, errors and the worker.
pub use jobq_core as core;

/// The connector name in this crate's [`ConnectorError`](jobq_core::ConnectorError)s.
pub const CONNECTOR: &str = "jobq-diesel";

/// Marks this adapter's conversions (see [`jobq_core::IntoBlockingExecutor`]).
#[derive(Debug)]
pub enum Diesel {}

/// What most users import: jobq's prelude, this adapter's marker, its pool executor and the PgBouncer
/// wrapper.
pub mod prelude {
    #[cfg(feature = "pool")]
    pub use crate::PoolExecutor;
    pub use crate::{Diesel, TransactionPooling};
    pub use jobq_core::prelude::*;
}
