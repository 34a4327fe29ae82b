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
//! diesel is synchronous and so is this adapter: no async runtime is needed to defer. A worker runs on a
//! pool through [`backend`], which moves each statement to tokio's blocking threads; it polls for new jobs
//! (diesel has no LISTEN).
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
//! - on a pool, use [`PoolExecutor::transaction_pooling`], and `backend(that executor)` for a worker.
//!
//! Your own statements there need the same care: diesel caches most statements of its query builder too,
//! never `sql_query`'s. See `docs/operations.md` (PgBouncer).
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

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::r2d2::{ConnectionManager, Pool, PoolError, PooledConnection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{Text, Untyped};
use diesel::{PgConnection, QueryResult, QueryableByName, RunQueryDsl};
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

/// What most users import: jobq's prelude, this adapter's marker, its pool executor and the PgBouncer
/// wrapper.
pub mod prelude {
    pub use crate::{Diesel, PoolExecutor, TransactionPooling};
    pub use jobq_core::prelude::*;
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    jobq: String,
}

/// Runs jobq's statements on a borrowed diesel connection, inside whatever transaction is open on it.
///
/// Made by [`Operation::run_blocking`](jobq_core::Operation::run_blocking) from `&mut PgConnection` or
/// `&mut PooledConnection<…>`, each also wrapped in [`TransactionPooling`]; you do not build one
/// yourself.
pub struct ConnectionExecutor<'a> {
    conn: &'a mut PgConnection,
    /// Prepared under a name and kept in diesel's statement cache; unnamed under [`TransactionPooling`].
    cache: bool,
}

impl<'a> ConnectionExecutor<'a> {
    fn new(conn: &'a mut PgConnection) -> Self {
        Self { conn, cache: true }
    }
}

impl std::fmt::Debug for ConnectionExecutor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionExecutor")
            .field("conn", &"PgConnection")
            .field("cache", &self.cache)
            .finish()
    }
}

/// By default diesel prepares each statement once per connection under a name (`__diesel_stmt_N`) and
/// keeps it in the connection's statement cache: one round trip per statement after the first. Under
/// [`TransactionPooling`] each statement is unnamed (`diesel::sql_query`).
impl BlockingExecutor for ConnectionExecutor<'_> {
    fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError> {
        let cached = if self.cache {
            Statement::new(sql, arg)
        } else {
            None
        };
        let rows: Vec<Row> = match (cached, arg) {
            (Some(statement), _) => statement.load(self.conn),
            (None, Some(arg)) => diesel::sql_query(sql).bind::<Text, _>(arg).load(self.conn),
            (None, None) => diesel::sql_query(sql).load(self.conn),
        }
        .map_err(connector_error)?;
        Ok(rows.into_iter().map(|r| r.jobq).collect())
    }
}

/// One of jobq's statements as a diesel query that diesel may cache, unlike `diesel::sql_query`: its SQL
/// text, and the one text value bound as `$1` when there is one.
///
/// It calls no `unsafe_to_cache_prepared`, so [`QueryFragment::is_safe_to_cache_prepared`] is true, and
/// it has no static query id (`HAS_STATIC_QUERY_ID = false`), so `PgConnection`'s statement cache keys it
/// by its SQL text and bind types: a fixed, small set per schema, as jobq never puts a value into SQL.
#[derive(Debug, Clone, Copy)]
struct Statement<'a> {
    sql: &'a str,
    /// The value of `$1` and where `$1` first stands in `sql`.
    arg: Option<(&'a str, usize)>,
}

impl<'a> Statement<'a> {
    /// `None` when `arg` is given but `sql` has no `$1` to bind it to (never so for jobq's statements):
    /// the caller then runs it through `sql_query`, which reports the mismatch as the server sees it.
    fn new(sql: &'a str, arg: Option<&'a str>) -> Option<Self> {
        let arg = match arg {
            Some(arg) => Some((arg, sql.find("$1")?)),
            None => None,
        };
        Some(Self { sql, arg })
    }
}

impl QueryFragment<Pg> for Statement<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        match self.arg {
            None => out.push_sql(self.sql),
            Some((arg, at)) => {
                // The query builder writes the placeholder of the first bind, `$1`, back where it stood:
                // diesel sends the same text, and the value goes with it.
                out.push_sql(&self.sql[..at]);
                out.push_bind_param::<Text, str>(arg)?;
                out.push_sql(&self.sql[at + 2..]);
            }
        }
        Ok(())
    }
}

impl QueryId for Statement<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Statement<'_> {
    type SqlType = Untyped;
}

impl RunQueryDsl<PgConnection> for Statement<'_> {}

impl<'a> IntoBlockingExecutor<Diesel> for &'a mut PgConnection {
    type Executor = ConnectionExecutor<'a>;
    fn into_executor(self) -> Result<ConnectionExecutor<'a>, ConnectorError> {
        Ok(ConnectionExecutor::new(self))
    }
}

impl<'a> IntoBlockingExecutor<Diesel>
    for &'a mut PooledConnection<ConnectionManager<PgConnection>>
{
    type Executor = ConnectionExecutor<'a>;
    fn into_executor(self) -> Result<ConnectionExecutor<'a>, ConnectorError> {
        Ok(ConnectionExecutor::new(self))
    }
}

/// A connection you hold behind PgBouncer in transaction pooling mode: jobq runs its statements on it
/// unnamed (through `diesel::sql_query`), so none of them stays prepared on the connection.
///
/// Without it, diesel prepares jobq's statements under names (`__diesel_stmt_0`, …) and caches them per
/// client connection; PgBouncer (before 1.21, or without `max_prepared_statements`) hands each
/// transaction to whichever server connection is free, which lacks those statements or already has
/// another client's under the same name (`prepared statement "__diesel_stmt_0" already exists`). Wrap
/// what you would pass otherwise: the `conn` of `conn.transaction(|conn| …)`, `&mut *pooled`, any
/// `&mut PgConnection` or `&mut PooledConnection`. For a pool use
/// [`PoolExecutor::transaction_pooling`].
///
/// diesel 2.2.12 sends an unnamed statement in one exchange (`PQsendQueryParams`), so this works inside a
/// transaction and outside one. It costs a parse and plan on the server per statement, which is why it is
/// not the default.
///
/// ```no_run
/// use diesel::prelude::*;
/// use jobq_diesel::prelude::*; // with TransactionPooling
///
/// # fn demo(bouncer: &mut PgConnection) -> Result<(), Box<dyn std::error::Error>> {
/// let jobq = Jobq::default();
/// bouncer.transaction::<_, Box<dyn std::error::Error>, _>(|conn| {
///     // Your own statements through PgBouncer must not be cached either: `sql_query` is not.
///     diesel::sql_query("INSERT INTO orders (id) VALUES (42)").execute(conn)?;
///     let id = jobq
///         .defer_job(NewJob::new("process_order", serde_json::json!({"order_id": 42})))
///         .run_blocking(TransactionPooling(&mut *conn))?;
///     jobq.status(id).run_blocking(TransactionPooling(conn))?;
///     Ok(())
/// })?;
/// # Ok(()) }
/// ```
///
/// A pool is not a connection to wrap:
///
/// ```compile_fail,E0277
/// use jobq_diesel::prelude::*;
/// fn status(jobq: Jobq, pool: &jobq_diesel::PgPool) {
///     let _ = jobq.status(JobId(1)).run_blocking(TransactionPooling(pool));
/// }
/// ```
#[derive(Debug)]
pub struct TransactionPooling<C>(pub C);

/// Whatever a caller's connection converts into, with the statement cache off.
impl<'a, C> IntoBlockingExecutor<Diesel> for TransactionPooling<C>
where
    C: IntoBlockingExecutor<Diesel, Executor = ConnectionExecutor<'a>>,
{
    type Executor = ConnectionExecutor<'a>;
    fn into_executor(self) -> Result<ConnectionExecutor<'a>, ConnectorError> {
        let executor = self.0.into_executor()?;
        Ok(ConnectionExecutor {
            cache: false,
            ..executor
        })
    }
}

/// An r2d2 pool as an owned, cloneable executor: each statement takes a connection and returns it.
///
/// By default statements are prepared once per pooled connection and cached by diesel (one round trip
/// each after the first). Behind PgBouncer in transaction pooling mode use
/// [`transaction_pooling`](Self::transaction_pooling).
#[derive(Debug, Clone)]
pub struct PoolExecutor {
    pool: PgPool,
    transaction_pooling: bool,
}

impl PoolExecutor {
    /// Runs on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            transaction_pooling: false,
        }
    }

    /// For a pool whose connections go through PgBouncer in transaction pooling mode (without prepared
    /// statement support, as PgBouncer before 1.21): each statement is unnamed (`diesel::sql_query`) and
    /// sent in one exchange, so none of jobq's stays prepared on a server connection. A worker on this
    /// pool ([`backend`]) polls, as every diesel worker does.
    ///
    /// On a connection you hold, the counterpart is [`TransactionPooling`]. Build the pool without r2d2's
    /// check on checkout (a cached named `SELECT 1`), or r2d2 reconnects over and over:
    ///
    /// ```no_run
    /// # fn demo(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    /// use diesel::r2d2::{ConnectionManager, Pool};
    ///
    /// let pool = Pool::builder()
    ///     .max_size(8)
    ///     .test_on_check_out(false)
    ///     .build(ConnectionManager::<diesel::PgConnection>::new(url))?;
    /// let executor = jobq_diesel::PoolExecutor::new(pool).transaction_pooling();
    /// # Ok(()) }
    /// ```
    pub fn transaction_pooling(mut self) -> Self {
        self.transaction_pooling = true;
        self
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl From<PgPool> for PoolExecutor {
    fn from(pool: PgPool) -> Self {
        Self::new(pool)
    }
}

impl BlockingExecutor for PoolExecutor {
    fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError> {
        let mut conn = self.pool.get().map_err(pool_error)?;
        ConnectionExecutor {
            conn: &mut conn,
            cache: !self.transaction_pooling,
        }
        .query(sql, arg)
    }
}

/// Takes a connection from the pool for each statement, with statements cached as by
/// [`PoolExecutor::new`]; behind PgBouncer's transaction pooling, run on
/// `&PoolExecutor::new(pool).transaction_pooling()` instead.
impl IntoBlockingExecutor<Diesel> for &PgPool {
    type Executor = PoolExecutor;
    fn into_executor(self) -> Result<PoolExecutor, ConnectorError> {
        Ok(PoolExecutor::new(self.clone()))
    }
}

/// Takes a connection from the pool for each statement.
impl IntoBlockingExecutor<Diesel> for &PoolExecutor {
    type Executor = PoolExecutor;
    fn into_executor(self) -> Result<PoolExecutor, ConnectorError> {
        Ok(self.clone())
    }
}

/// Builds an r2d2 pool of at most `size` connections to `url`; connections are made when first needed, with
/// jobq's [network bounds](jobq_core::network) as libpq parameters wherever the URL sets none.
///
/// r2d2 checks each connection it hands out with diesel's cached `SELECT 1`. Behind PgBouncer in
/// transaction pooling mode that named statement meets other clients' on shared server connections and
/// r2d2 reconnects over and over: build that pool yourself with `test_on_check_out(false)` (see
/// [`PoolExecutor::transaction_pooling`]).
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
        .build_unchecked(ConnectionManager::new(
            jobq_core::network::with_libpq_bounds(url),
        )))
}

/// The worker backend for a pool (a [`PgPool`], or a [`PoolExecutor`] such as
/// `PoolExecutor::new(pool).transaction_pooling()` behind PgBouncer): statements on tokio's blocking
/// threads, polling for new jobs.
pub fn backend(pool: impl Into<PoolExecutor>) -> SpawnBlocking<PoolExecutor> {
    SpawnBlocking(pool.into())
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
