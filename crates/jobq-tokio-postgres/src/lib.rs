//! jobq for [`tokio_postgres`]: defer, cancel and read jobs on the `Client` or `Transaction` you already
//! hold, inside your own transaction, or on a [`deadpool_postgres`] pool.
//!
//! ```no_run
//! use jobq_tokio_postgres::prelude::*;
//! use serde::Serialize;
//!
//! #[derive(Serialize)]
//! struct ProcessOrder { order_id: i64 }
//! impl Task for ProcessOrder { const NAME: &'static str = "process_order"; }
//!
//! # async fn demo(client: &mut tokio_postgres::Client, pool: &deadpool_postgres::Pool)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! let jobq = Jobq::default();
//!
//! // The order and the job that processes it commit together, or not at all.
//! let tx = client.transaction().await?;
//! tx.execute("INSERT INTO orders (id) VALUES ($1)", &[&42_i64]).await?;
//! let id = jobq.defer(&ProcessOrder { order_id: 42 }).queue("orders").run(&tx).await?;
//! tx.commit().await?;
//!
//! // Outside a transaction, a pool is simplest: it takes a connection per statement.
//! let status = jobq.status(id).run(pool).await?;
//! # Ok(()) }
//! ```
//!
//! | you pass | jobq runs |
//! | --- | --- |
//! | `&client`, `&mut client` ([`tokio_postgres::Client`]) | on that connection, inside its open transaction if any |
//! | `&tx`, `&mut tx` ([`tokio_postgres::Transaction`], also a savepoint) | inside the transaction |
//! | [`statements.on(&client)`](StatementCache::on), `statements.on(&tx)` | the same, with jobq's statements prepared once |
//! | `&object` ([`deadpool_postgres::Object`]), `&tx` ([`deadpool_postgres::Transaction`]) | the same, on a checked-out connection, with statements from deadpool's cache |
//! | `&pool` ([`deadpool_postgres::Pool`]), `&executor` ([`PoolExecutor`]) | one pooled connection per statement, with statements from deadpool's cache |
//! | [`TransactionPooling`]`(&object)`, `TransactionPooling(&tx)` (deadpool's) | as the wrapped connection, with unnamed statements: for PgBouncer |
//!
//! jobq never begins, commits or rolls back a transaction, nor changes a setting, on a connection you hand
//! it: each operation is one statement, so it is atomic inside your transaction and costs one round trip.
//!
//! **Prepared statements.** On deadpool's connections and pools, jobq prepares each of its statements once
//! per connection in deadpool's statement cache (`prepare_typed_cached`). A plain `Client` has no place for
//! a cache, so there jobq runs unnamed statements (`query_typed`), which the server parses and plans on
//! every call; where you defer often on a connection you keep, keep a [`StatementCache`] beside it, as you
//! would prepare your own statements once.
//!
//! **PgBouncer** in transaction pooling mode (before 1.21, or without `max_prepared_statements`) hands
//! each transaction to whichever server connection is free, which lacks the statements prepared on
//! another. Run on a plain `Client` or `Transaction` (unnamed statements), wrap deadpool's in
//! [`TransactionPooling`], and build the pool executor with [`PoolExecutor::transaction_pooling`].
//!
//! Anything that is not a tokio-postgres or deadpool connection does not compile:
//!
//! ```compile_fail,E0277
//! use jobq_tokio_postgres::prelude::*;
//!
//! async fn demo(jobq: Jobq) {
//!     let _ = jobq.status(JobId(1)).run("postgres://localhost/app").await;
//! }
//! ```
//!
//! **TLS.** [`pool`](crate::pool()), [`PoolExecutor::connect`] and [`connect`] follow the URL's `sslmode` and
//! `sslrootcert` as libpq does (rustls with ring, the default `rustls` feature; see [`jobq_core::tls`]),
//! for the pool's connections and the worker's LISTEN connection alike; [`pool_with_tls`] and
//! [`PoolExecutor::connect_with_tls`] take a TLS connector of your own ([`MakeTls`]). A pool you build
//! yourself keeps the connector you gave it. See `docs/operations.md` (TLS).
//!
//! A worker runs on a [`PoolExecutor`], which LISTENs for new jobs; see [`jobq_core::worker`].
//!
//! Runnable examples, each on a throwaway PostgreSQL: `cargo run -p jobq-tokio-postgres --example` with
//! `quickstart`, `tokio_postgres_transaction` (an order and its job in one transaction) or
//! `tokio_postgres_pool` (deferring through deadpool, then a worker).

#![forbid(unsafe_code)]

mod cache;
mod error;
mod executor;
#[cfg(feature = "pool")]
mod pool;
mod tls;

pub use cache::StatementCache;
pub use executor::{ConnectionExecutor, TransactionPooling};
#[cfg(feature = "pool")]
pub use pool::{PoolExecutor, pool, pool_with_tls};
pub use tls::{Connection, DefaultTls, MakeTls, connect};

/// jobq's core: the [`Jobq`](jobq_core::Jobq) handle, job model, errors and the worker.
pub use jobq_core as core;

/// The connector name in this crate's [`ConnectorError`](jobq_core::ConnectorError)s.
pub const CONNECTOR: &str = "jobq-tokio-postgres";

/// Marks the conversions of tokio-postgres and deadpool connections into jobq executors.
///
/// You never name it: `run(&client)` finds it by itself.
#[derive(Debug)]
pub enum TokioPostgres {}

/// What most users import: jobq's prelude, and this crate's pool executor.
pub mod prelude {
    #[cfg(feature = "pool")]
    pub use crate::PoolExecutor;
    pub use crate::{StatementCache, TokioPostgres, TransactionPooling};
    pub use jobq_core::prelude::*;
}
