//! The caller's path: a `&mut PgConnection` (or pooled connection) as an executor, inside whatever
//! transaction is open on it, and [`TransactionPooling`] for PgBouncer.

use crate::Diesel;
use crate::error::connector_error;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
#[cfg(feature = "pool")]
use diesel::r2d2::{ConnectionManager, PooledConnection};
use diesel::sql_types::{Text, Untyped};
use diesel::{PgConnection, QueryResult, QueryableByName, RunQueryDsl};
use jobq_core::{BlockingExecutor, ConnectorError, IntoBlockingExecutor};

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

    /// Runs on `conn`, with statements cached by diesel when `cache`.
    #[cfg(feature = "pool")]
    pub(crate) fn with_cache(conn: &'a mut PgConnection, cache: bool) -> Self {
        Self { conn, cache }
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

#[cfg(feature = "pool")]
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
/// [`PoolExecutor::transaction_pooling`](crate::PoolExecutor::transaction_pooling).
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
