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
//! | [`TransactionPooling`]`(&mut *tx)`, or any connection above wrapped in it | as the wrapped connection, with unnamed statements: for PgBouncer's transaction pooling, inside a transaction (see below) |
//! | `&pool` ([`PgPool`](sqlx::PgPool)), `&executor` ([`PoolExecutor`]) | one pooled connection per statement; no free connection within the pool's `acquire_timeout` is [`ErrorKind::PoolTimeout`](jobq_core::ErrorKind::PoolTimeout) |
//!
//! jobq never begins, commits or rolls back a transaction, nor changes a setting, on a connection you hand
//! it: each operation is one statement, so it is atomic inside your transaction.
//!
//! Statements run through `sqlx::query`, so sqlx prepares each one once per connection under a name
//! (`sqlx_s_1`, …) and keeps it in the connection's statement cache
//! (`PgConnectOptions::statement_cache_capacity`): one round trip per statement after the first. After the
//! jobq schema is migrated to a new version, replace connections that cached the old statements (restart
//! the application or close the pool), as PostgreSQL may refuse a cached plan whose result type changed.
//!
//! **Behind PgBouncer in transaction pooling mode** (before 1.21, or without `max_prepared_statements`)
//! those named statements break: the next transaction may run on a server connection that lacks them, or
//! already has another client's under the same name (`prepared statement "sqlx_s_1" already exists`).
//! There, opt out of the cache:
//!
//! - on a connection you hold, wrap it, **inside a transaction**: `run(TransactionPooling(&mut *tx))`
//!   runs each statement unnamed (`persistent(false)`). sqlx parses and executes an unnamed statement in
//!   two exchanges (one more round trip), which outside a transaction PgBouncer may send to two different
//!   server connections. Your own sqlx queries need `persistent(false)` there too.
//! - on a pool, use [`PoolExecutor::transaction_pooling`], which runs each statement unnamed in a
//!   transaction of its own.
//!
//! See `docs/operations.md` (PgBouncer).
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
//! **TLS** is sqlx's own (rustls with ring, the default `rustls` feature): sqlx reads `sslmode` and
//! `sslrootcert` from the URL given to [`pool`](crate::pool()) or [`PoolExecutor::connect`], and its LISTEN
//! connection uses the pool's options. See `docs/operations.md` (TLS).
//!
//! A worker runs on a [`PoolExecutor`], which LISTENs for new jobs (not through PgBouncer: see
//! [`PoolExecutor::listen_with`]); see [`jobq_core::worker`].

#![forbid(unsafe_code)]

mod error;
mod executor;
mod pool;

pub use executor::{ConnectionExecutor, TransactionPooling};
pub use pool::{PoolExecutor, pool};

/// jobq's core: the [`Jobq`](jobq_core::Jobq) handle, job model, errors and the worker.
pub use jobq_core as core;

/// The connector name in this crate's [`ConnectorError`](jobq_core::ConnectorError)s.
pub const CONNECTOR: &str = "jobq-sqlx";

/// Marks the conversions of sqlx connections, transactions and pools into jobq executors.
///
/// You never name it: `run(&mut *tx)` finds it by itself.
#[derive(Debug)]
pub enum Sqlx {}

/// What most users import: jobq's prelude, this crate's marker, its pool executor and the PgBouncer wrapper.
pub mod prelude {
    pub use crate::{PoolExecutor, Sqlx, TransactionPooling};
    pub use jobq_core::prelude::*;
}
