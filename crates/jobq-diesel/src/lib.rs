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
//! | `&mut PgConnection` (also `&mut *pooled`) | that connection, inside its open transaction if any |
//! | `&Pool<ConnectionManager<PgConnection>>`, `&PoolExecutor` | a pooled connection per statement |
//!
//! diesel is synchronous and so is this adapter: no async runtime is needed to defer. A worker runs on a
//! pool through [`backend`], which moves each statement to tokio's blocking threads; it polls for new jobs
//! (diesel has no LISTEN).
//!
//! Anything else is refused by the compiler:
//!
//! ```compile_fail,E0277
//! use jobq_diesel::prelude::*;
//! let mut not_a_connection = String::new();
//! Jobq::default().status(JobId(1)).run_blocking(&mut not_a_connection);
//! ```

#![forbid(unsafe_code)]

use diesel::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool, PoolError};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::Text;
use diesel::{QueryableByName, RunQueryDsl};
use jobq_core::worker::SpawnBlocking;
use jobq_core::{BlockingExecutor, ConnectorError, ErrorKind, IntoBlockingExecutor};

pub use jobq_core as core;

/// The connector name in errors.
pub const CONNECTOR: &str = "jobq-diesel";

/// Marks this adapter's conversions (see [`jobq_core::IntoBlockingExecutor`]).
#[derive(Debug)]
pub enum Diesel {}

/// An r2d2 pool of diesel connections.
pub type PgPool = Pool<ConnectionManager<PgConnection>>;

/// What most users import: jobq's prelude and this adapter's types.
pub mod prelude {
    pub use crate::{Diesel, PoolExecutor};
    pub use jobq_core::prelude::*;
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    jobq: String,
}

/// Runs jobq's statements on a borrowed diesel connection.
pub struct ConnectionExecutor<'a>(&'a mut PgConnection);

impl std::fmt::Debug for ConnectionExecutor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionExecutor(PgConnection)")
    }
}

impl BlockingExecutor for ConnectionExecutor<'_> {
    fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError> {
        let rows: Vec<Row> = match arg {
            Some(arg) => diesel::sql_query(sql).bind::<Text, _>(arg).load(self.0),
            None => diesel::sql_query(sql).load(self.0),
        }
        .map_err(connector_error)?;
        Ok(rows.into_iter().map(|r| r.jobq).collect())
    }
}

impl<'a> IntoBlockingExecutor<Diesel> for &'a mut PgConnection {
    type Executor = ConnectionExecutor<'a>;
    fn into_executor(self) -> Result<ConnectionExecutor<'a>, ConnectorError> {
        Ok(ConnectionExecutor(self))
    }
}

/// An r2d2 pool as an owned, cloneable executor: each statement takes a connection and returns it.
#[derive(Debug, Clone)]
pub struct PoolExecutor(pub PgPool);

impl BlockingExecutor for PoolExecutor {
    fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError> {
        let mut conn = self.0.get().map_err(pool_error)?;
        ConnectionExecutor(&mut conn).query(sql, arg)
    }
}

impl IntoBlockingExecutor<Diesel> for &PgPool {
    type Executor = PoolExecutor;
    fn into_executor(self) -> Result<PoolExecutor, ConnectorError> {
        Ok(PoolExecutor(self.clone()))
    }
}

impl IntoBlockingExecutor<Diesel> for &PoolExecutor {
    type Executor = PoolExecutor;
    fn into_executor(self) -> Result<PoolExecutor, ConnectorError> {
        Ok(self.clone())
    }
}

/// Builds an r2d2 pool of at most `size` connections to `url`; connections are made when first needed.
pub fn pool(url: &str, size: u32) -> Result<PgPool, ConnectorError> {
    if size == 0 {
        return Err(ConnectorError::new(
            CONNECTOR,
            ErrorKind::Other,
            "a pool needs at least one connection",
        ));
    }
    Ok(Pool::builder()
        .max_size(size)
        .min_idle(Some(0))
        .connection_timeout(std::time::Duration::from_secs(30))
        .build_unchecked(ConnectionManager::new(url)))
}

/// The worker backend for a pool: statements on tokio's blocking threads, polling for new jobs.
pub fn backend(pool: PgPool) -> SpawnBlocking<PoolExecutor> {
    SpawnBlocking(PoolExecutor(pool))
}

fn pool_error(e: PoolError) -> ConnectorError {
    let text = e.to_string();
    let kind = if text.contains("timed out") {
        ErrorKind::PoolTimeout
    } else {
        ErrorKind::Connection
    };
    ConnectorError::new(CONNECTOR, kind, format!("no pooled connection: {text}")).with_source(e)
}

/// Maps a diesel error. diesel reports no SQLSTATE, so the kind comes from diesel's own error kind and, for
/// the cases it does not classify, from PostgreSQL's message.
fn connector_error(e: DieselError) -> ConnectorError {
    let (kind, message, constraint) = match &e {
        DieselError::DatabaseError(kind, info) => {
            let message = info.message().to_owned();
            let kind = match kind {
                DatabaseErrorKind::UniqueViolation => ErrorKind::UniqueViolation,
                DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::CheckViolation => ErrorKind::ConstraintViolation,
                DatabaseErrorKind::SerializationFailure => ErrorKind::SerializationFailure,
                DatabaseErrorKind::ClosedConnection => ErrorKind::Connection,
                _ => kind_from_message(&message),
            };
            (kind, message, info.constraint_name().map(str::to_owned))
        }
        DieselError::DeserializationError(_) | DieselError::SerializationError(_) => {
            (ErrorKind::Protocol, e.to_string(), None)
        }
        _ => (ErrorKind::Other, e.to_string(), None),
    };
    ConnectorError {
        constraint,
        ..ConnectorError::new(CONNECTOR, kind, message).with_source(e)
    }
}

fn kind_from_message(message: &str) -> ErrorKind {
    if message.starts_with("current transaction is aborted") {
        ErrorKind::InFailedTransaction
    } else if message.ends_with("does not exist") {
        ErrorKind::UndefinedObject
    } else if message.starts_with("canceling statement due to")
        || message.starts_with("could not obtain lock")
    {
        ErrorKind::Timeout
    } else if message.starts_with("permission denied") {
        ErrorKind::InsufficientPrivilege
    } else if message.contains("terminating connection")
        || message.contains("server closed the connection")
    {
        ErrorKind::Connection
    } else {
        ErrorKind::Other
    }
}
