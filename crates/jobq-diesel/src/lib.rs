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
//! | `&Pool<ConnectionManager<PgConnection>>`, `&PoolExecutor` | a pooled connection per statement |
//!
//! diesel is synchronous and so is this adapter: no async runtime is needed to defer. A worker runs on a
//! pool through [`backend`], which moves each statement to tokio's blocking threads; it polls for new jobs
//! (diesel has no LISTEN).
//!
//! Each statement goes through `diesel::sql_query`, which diesel never prepares under a name: it is sent
//! as one unnamed parse-bind-execute (`PQsendQueryParams`), one round trip, and works through PgBouncer
//! in transaction pooling mode. jobq never begins, commits or rolls back on your connection; a
//! queueing-lock conflict comes back as [`Error::AlreadyEnqueued`](jobq_core::Error::AlreadyEnqueued) and
//! leaves your transaction usable.
//!
//! # Errors
//!
//! diesel 2.2 does not hand out the server's SQLSTATE, so [`ConnectorError::sqlstate`] is always `None`
//! here. The [`ErrorKind`] comes from diesel's `DatabaseErrorKind` (unique, foreign key, not null and
//! check violations, serialization failures, closed connections) and, for what diesel leaves as
//! `Unknown`, from PostgreSQL's primary message: a failed transaction (`current transaction is
//! aborted…`), a missing schema, table or function, timeouts, deadlocks and missing privileges. Those
//! messages are PostgreSQL's English ones; with a translated `lc_messages` such errors keep their text
//! but get [`ErrorKind::Other`].
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

use diesel::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool, PoolError, PooledConnection};
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

impl<'a> IntoBlockingExecutor<Diesel>
    for &'a mut PooledConnection<ConnectionManager<PgConnection>>
{
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

/// What r2d2 reported. r2d2 only ever times out; when it names the last failed connection attempt, the
/// cause is the connection (server down, wrong password), not a busy pool.
fn pool_error(e: PoolError) -> ConnectorError {
    let text = e.to_string();
    let kind = if text.starts_with("timed out waiting for connection: ") {
        ErrorKind::Connection
    } else {
        ErrorKind::PoolTimeout
    };
    ConnectorError::new(CONNECTOR, kind, format!("no pooled connection: {text}")).with_source(e)
}

/// Maps a diesel error, in this one place. diesel reports no SQLSTATE, so the kind comes from diesel's own
/// error kind and, for the cases it leaves as `Unknown`, from PostgreSQL's primary message.
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
        // A row without a text column named `jobq`.
        DieselError::DeserializationError(_) => {
            return ConnectorError::unexpected_row(CONNECTOR, e);
        }
        DieselError::SerializationError(_) => (ErrorKind::Protocol, e.to_string(), None),
        _ => (ErrorKind::Other, e.to_string(), None),
    };
    ConnectorError {
        constraint,
        ..ConnectorError::new(CONNECTOR, kind, message).with_source(e)
    }
}

/// The kind for PostgreSQL's (English) primary message, for the SQLSTATEs diesel does not classify.
fn kind_from_message(message: &str) -> ErrorKind {
    let missing = |what: &str| message.starts_with(what) && message.ends_with(" does not exist");
    if message.starts_with("current transaction is aborted") {
        // 25P02
        ErrorKind::InFailedTransaction
    } else if missing("relation ") || missing("function ") || missing("schema ") {
        // 42P01, 42883, 3F000
        ErrorKind::UndefinedObject
    } else if message.starts_with("canceling statement due to")
        || message.starts_with("could not obtain lock")
    {
        // 57014, 55P03
        ErrorKind::Timeout
    } else if message.starts_with("deadlock detected") {
        // 40P01
        ErrorKind::SerializationFailure
    } else if message.starts_with("permission denied") {
        // 42501
        ErrorKind::InsufficientPrivilege
    } else if message.starts_with("terminating connection")
        || message.contains("server closed the connection")
    {
        // 57P01..57P03, or libpq's own message
        ErrorKind::Connection
    } else {
        ErrorKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_messages_get_their_kinds() {
        for (message, kind) in [
            (
                "current transaction is aborted, commands ignored until end of transaction block",
                ErrorKind::InFailedTransaction,
            ),
            (
                "relation \"jobq.jobs\" does not exist",
                ErrorKind::UndefinedObject,
            ),
            (
                "function jobq.defer(jsonb) does not exist",
                ErrorKind::UndefinedObject,
            ),
            ("schema \"jobq\" does not exist", ErrorKind::UndefinedObject),
            ("column \"x\" does not exist", ErrorKind::Other),
            ("role \"x\" does not exist", ErrorKind::Other),
            (
                "canceling statement due to statement timeout",
                ErrorKind::Timeout,
            ),
            (
                "could not obtain lock on row in relation \"jobs\"",
                ErrorKind::Timeout,
            ),
            ("deadlock detected", ErrorKind::SerializationFailure),
            (
                "permission denied for table jobs",
                ErrorKind::InsufficientPrivilege,
            ),
            (
                "terminating connection due to administrator command",
                ErrorKind::Connection,
            ),
            ("syntax error at or near \"x\"", ErrorKind::Other),
        ] {
            assert_eq!(kind_from_message(message), kind, "{message}");
        }
    }
}
