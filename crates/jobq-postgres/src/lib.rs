//! jobq for the sync [`postgres`] crate: defer, cancel and read jobs on the `Client` or `Transaction` you
//! already hold, inside your own transaction, or on an [`r2d2`] pool. Plain blocking calls: no async
//! runtime needed.
//!
//! ```no_run
//! use jobq_postgres::prelude::*;
//! use serde::Serialize;
//!
//! #[derive(Serialize)]
//! struct ProcessOrder { order_id: i64 }
//! impl Task for ProcessOrder { const NAME: &'static str = "process_order"; }
//!
//! # fn demo(client: &mut postgres::Client, pool: &jobq_postgres::Pool)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! let jobq = Jobq::default();
//!
//! // The order and the job that processes it commit together, or not at all.
//! let mut tx = client.transaction()?;
//! tx.execute("INSERT INTO orders (id) VALUES ($1)", &[&42_i64])?;
//! let id = jobq.defer(&ProcessOrder { order_id: 42 }).queue("orders").run_blocking(&mut tx)?;
//! tx.commit()?;
//!
//! // Outside a transaction, a pool is simplest: it takes a connection per statement.
//! let status = jobq.status(id).run_blocking(pool)?;
//! # Ok(()) }
//! ```
//!
//! | you pass | jobq runs |
//! | --- | --- |
//! | `&mut client` ([`postgres::Client`]) | on that connection, inside its open transaction if any |
//! | `&mut tx` ([`postgres::Transaction`], also a savepoint) | inside the transaction |
//! | `&mut conn` ([`r2d2::PooledConnection`]) | the same, on a checked-out connection |
//! | `&pool` ([`r2d2::Pool`] of [`r2d2_postgres::PostgresConnectionManager`]), `&executor` ([`PoolExecutor`]) | one pooled connection per statement |
//! | [`statements.on(&mut client)`](StatementCache::on), `statements.on(&mut tx)` | on that connection or transaction, with jobq's statements prepared once |
//!
//! jobq never begins, commits or rolls back a transaction, nor changes a setting, on a connection you hand
//! it: each operation is one statement, so it is atomic inside your transaction and costs one round trip.
//! Statements run unnamed (`query_typed`), so nothing stays prepared on the connection and jobq works
//! through PgBouncer in transaction pooling mode; the server then parses and plans each one on every call.
//! Where you defer often on a connection you keep, keep a [`StatementCache`] beside it, as you would
//! prepare your own statements once: each of jobq's statements is then prepared on first use and reused.
//!
//! The `postgres` client drives a runtime of its own, so call it from plain threads (or tokio's
//! `spawn_blocking`), never from an async task. Anything that is not a `postgres` connection does not
//! compile:
//!
//! ```compile_fail,E0277
//! use jobq_postgres::prelude::*;
//!
//! fn demo(jobq: Jobq, file: &mut std::fs::File) {
//!     let _ = jobq.status(JobId(1)).run_blocking(file);
//! }
//! ```
//!
//! **TLS.** [`pool`](crate::pool()), [`PoolExecutor::connect`] follow the URL's `sslmode` and
//! `sslrootcert` as libpq does (rustls with ring, the default `rustls` feature; see [`jobq_core::tls`]),
//! for the pool's connections and the worker's LISTEN connection alike; [`pool_with_tls`] and
//! [`PoolExecutor::connect_with_tls`] take a TLS connector of your own ([`MakeTls`]). A pool you build
//! yourself keeps the connector you gave it. See `docs/operations.md` (TLS).
//!
//! A worker runs on a [`PoolExecutor`]; see [`jobq_core::worker`].
//!
//! Runnable examples, each on a throwaway PostgreSQL: `cargo run -p jobq-postgres --example` with
//! `postgres_quickstart`, `postgres_transaction` (an order and its job in one transaction) or
//! `postgres_pool` (deferring through r2d2 from several threads, then a worker).

#![forbid(unsafe_code)]

mod cache;
mod error;
mod executor;
#[cfg(feature = "pool")]
mod pool;
#[cfg(feature = "pool")]
mod tls;

pub use cache::StatementCache;
pub use executor::ConnectionExecutor;
#[cfg(feature = "pool")]
pub use pool::{Manager, Pool, PoolExecutor, pool, pool_with_tls};
#[cfg(feature = "pool")]
pub use tls::{DefaultTls, MakeTls};

/// jobq's core: the [`Jobq`](jobq_core::Jobq) handle, job model, errors and the worker.
pub use jobq_core as core;

/// The connector name in this crate's [`ConnectorError`](jobq_core::ConnectorError)s.
pub const CONNECTOR: &str = "jobq-postgres";

/// Marks the conversions of `postgres` and r2d2 connections into jobq executors.
///
/// You never name it: `run_blocking(&mut client)` finds it by itself.
#[derive(Debug)]
pub enum SyncPostgres {}

/// What most users import: jobq's prelude, and this crate's pool executor.
pub mod prelude {
    #[cfg(feature = "pool")]
    pub use crate::PoolExecutor;
    pub use crate::{StatementCache, SyncPostgres};
    pub use jobq_core::prelude::*;
}
