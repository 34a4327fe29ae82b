//! jobq for [`sqlx`]: defer, cancel and read jobs on the `PgConnection` or `Transaction` you already hold,
//! inside your own transaction, or on a [`PgPool`](sqlx::PgPool).
//!
//! ```no_run
//! use jobq_sqlx::prelude::*;
//! use serde::Serialize;
//!
//! #[derive(Serialize)]
//! struct ProcessOrder { order_id: i64 }
//! impl Task for ProcessOrder { const NAME: &'static str = "process_order"; }
//!
//! # async fn demo(pool: &sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! let jobq = Jobq::default();
//!
//! // The order and the job that processes it commit together, or not at all.
//! let mut tx = pool.begin().await?;
//! sqlx::query("INSERT INTO orders (id) VALUES ($1)").bind(42_i64).execute(&mut *tx).await?;
//! let id = jobq.defer(&ProcessOrder { order_id: 42 }).queue("orders").run(&mut *tx).await?;
//! tx.commit().await?;
//!
//! // Outside a transaction, a pool is simplest: it takes a connection per statement.
//! let status = jobq.status(id).run(pool).await?;
//! # Ok(()) }
//! ```
//!
//! | you pass | jobq runs |
//! | --- | --- |
//! | `&mut *tx` ([`Transaction<Postgres>`](sqlx::Transaction)), or `&mut tx` | inside the transaction (also a nested one, a savepoint) |
//! | `&mut *conn` ([`PoolConnection<Postgres>`](sqlx::pool::PoolConnection)), `&mut conn`, any `&mut PgConnection` | on that connection, inside its open transaction if any |
//! | `&mut any_conn` ([`AnyConnection`](sqlx::AnyConnection)), `&mut *tx` of a `Transaction<Any>` | the same, when its backend is PostgreSQL; any other backend is refused with [`ErrorKind::Unsupported`](jobq_core::ErrorKind::Unsupported) before any SQL is sent |
//! | `&pool` ([`PgPool`](sqlx::PgPool)), `&executor` ([`PoolExecutor`]) | one pooled connection per statement; no free connection within the pool's `acquire_timeout` is [`ErrorKind::PoolTimeout`](jobq_core::ErrorKind::PoolTimeout) |
//!
//! jobq never begins, commits or rolls back a transaction, nor changes a setting, on a connection you hand
//! it: each operation is one statement, so it is atomic inside your transaction and costs two round trips
//! (parse and describe, then bind and execute).
//!
//! On a connection you hand it, jobq runs each statement as sqlx's unnamed statement
//! (`sqlx::query(..).persistent(false)`): nothing stays prepared on your connection, and it works through
//! PgBouncer in transaction pooling mode **inside a transaction** (`pool.begin()`). Outside one, sqlx
//! parses and executes an unnamed statement in two exchanges, which PgBouncer may send to two different
//! server connections: behind PgBouncer, hand jobq a connection only inside a transaction. Your own sqlx
//! queries need `persistent(false)` there too.
//!
//! [`PoolExecutor`] (and `&pool`) prepares each statement once per connection and caches it
//! (`PgConnectOptions::statement_cache_capacity`), one round trip per statement after the first; after the
//! jobq schema is migrated to a new version, replace such connections (restart the application or close
//! the pool), as PostgreSQL may refuse a cached plan whose result type changed. Behind PgBouncer's
//! transaction pooling use [`PoolExecutor::transaction_pooling`], which runs each statement unnamed in a
//! transaction of its own. See `docs/operations.md` (PgBouncer).
//!
//! Anything that is not a PostgreSQL connection of sqlx does not compile, for example a SQLite one:
//!
//! ```compile_fail,E0277
//! use jobq_sqlx::prelude::*;
//!
//! async fn demo(jobq: Jobq, conn: &mut sqlx::SqliteConnection) {
//!     let _ = jobq.status(JobId(1)).run(conn).await;
//! }
//! ```
//!
//! nor does a value that is no connection at all:
//!
//! ```compile_fail,E0277
//! use jobq_sqlx::prelude::*;
//!
//! async fn demo(jobq: Jobq, mut url: String) {
//!     let _ = jobq.status(JobId(1)).run(&mut url).await;
//! }
//! ```
//!
//! A worker runs on a [`PoolExecutor`], which LISTENs for new jobs (not through PgBouncer: see
//! [`PoolExecutor::listen_with`]); see [`jobq_core::worker`].

#![forbid(unsafe_code)]

mod executor;
mod pool;

pub use executor::ConnectionExecutor;
pub use pool::PoolExecutor;

/// jobq's core: the [`Jobq`](jobq_core::Jobq) handle, job model, errors and the worker.
pub use jobq_core as core;

/// The connector name in this crate's [`ConnectorError`](jobq_core::ConnectorError)s.
pub const CONNECTOR: &str = "jobq-sqlx";

/// Marks the conversions of sqlx connections, transactions and pools into jobq executors.
///
/// You never name it: `run(&mut *tx)` finds it by itself.
#[derive(Debug)]
pub enum Sqlx {}

/// What most users import: jobq's prelude, this crate's marker and its pool executor.
pub mod prelude {
    pub use crate::{PoolExecutor, Sqlx};
    pub use jobq_core::prelude::*;
}
