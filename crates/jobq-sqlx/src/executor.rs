//! The executor over a borrowed connection, the conversions users rely on, and error mapping.

use crate::error::connector_error;
use crate::{CONNECTOR, Sqlx};
use jobq_core::{AsyncExecutor, ConnectorError, IntoAsyncExecutor};
use sqlx::database::HasStatementCache;
use sqlx::pool::PoolConnection;
#[cfg(feature = "any")]
use sqlx::{Any, AnyConnection};
use sqlx::{
    ColumnIndex, Database, Decode, Encode, IntoArguments, PgConnection, Postgres, Row, Transaction,
    Type,
};

/// Runs jobq's statements on a connection the caller holds, inside whatever transaction is open on it.
///
/// Made by [`Operation::run`](jobq_core::Operation::run) from `&mut PgConnection` (so `&mut *tx` and
/// `&mut *conn`), `&mut Transaction<Postgres>`, `&mut PoolConnection<Postgres>`, or the same for a
/// PostgreSQL [`AnyConnection`], each also wrapped in [`TransactionPooling`]; you do not build one
/// yourself.
#[derive(Debug)]
pub struct ConnectionExecutor<'a, C> {
    conn: &'a mut C,
    /// Named statements in sqlx's per-connection cache; unnamed ones under [`TransactionPooling`].
    cache: bool,
}

impl<'a, C> ConnectionExecutor<'a, C> {
    fn new(conn: &'a mut C) -> Self {
        Self { conn, cache: true }
    }
}

/// By default sqlx prepares each statement once per connection under a name (`sqlx_s_N`) and keeps it in
/// the connection's statement cache: one round trip per statement after the first. Under
/// [`TransactionPooling`] statements are unnamed (`persistent(false)`).
impl AsyncExecutor for ConnectionExecutor<'_, PgConnection> {
    async fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError> {
        fetch(&mut *self.conn, sql, arg, self.cache).await
    }
}

/// As on a `PgConnection`.
#[cfg(feature = "any")]
impl AsyncExecutor for ConnectionExecutor<'_, AnyConnection> {
    async fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError> {
        fetch(&mut *self.conn, sql, arg, self.cache).await
    }
}

/// A connection you hold behind PgBouncer in transaction pooling mode: jobq runs its statements on it
/// unnamed (`sqlx::query(..).persistent(false)`), so nothing stays prepared on the connection.
///
/// Without it, sqlx caches named prepared statements (`sqlx_s_1`, …) per client connection; PgBouncer
/// (before 1.21, or without `max_prepared_statements`) hands each transaction to whichever server
/// connection is free, which lacks those statements or already has another client's under the same name
/// (`prepared statement "sqlx_s_1" already exists`). Wrap what you would pass otherwise: `&mut *tx`,
/// `&mut tx`, `&mut *conn`, any `&mut PgConnection`, and the same for a PostgreSQL
/// [`AnyConnection`]. For a pool use [`PoolExecutor::transaction_pooling`](crate::PoolExecutor::transaction_pooling).
///
/// Use it **inside a transaction**: sqlx parses an unnamed statement and executes it in two exchanges
/// (one more round trip than a cached statement), and outside a transaction PgBouncer may send the second
/// one to another server connection.
///
/// ```no_run
/// use jobq_sqlx::prelude::*; // with TransactionPooling
/// use serde::Serialize;
///
/// #[derive(Serialize)]
/// struct ProcessOrder { order_id: i64 }
/// impl Task for ProcessOrder { const NAME: &'static str = "process_order"; }
///
/// # async fn demo(bouncer: &sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// let jobq = Jobq::default();
/// let mut tx = bouncer.begin().await?;
/// // Your own statements through PgBouncer need `persistent(false)` too.
/// sqlx::query("INSERT INTO orders (id) VALUES ($1)")
///     .bind(42_i64)
///     .persistent(false)
///     .execute(&mut *tx)
///     .await?;
/// let id = jobq.defer(&ProcessOrder { order_id: 42 }).run(TransactionPooling(&mut *tx)).await?;
/// let status = jobq.status(id).run(TransactionPooling(&mut tx)).await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
///
/// A pool is not a connection to wrap:
///
/// ```compile_fail,E0277
/// use jobq_sqlx::prelude::*;
///
/// async fn demo(jobq: Jobq, pool: &sqlx::PgPool) {
///     let _ = jobq.status(JobId(1)).run(jobq_sqlx::TransactionPooling(pool)).await;
/// }
/// ```
#[derive(Debug)]
pub struct TransactionPooling<C>(pub C);

/// Whatever a caller's connection converts into, with the statement cache off.
impl<'a, C, K: 'a> IntoAsyncExecutor<Sqlx> for TransactionPooling<C>
where
    C: IntoAsyncExecutor<Sqlx, Executor = ConnectionExecutor<'a, K>>,
    ConnectionExecutor<'a, K>: AsyncExecutor,
{
    type Executor = ConnectionExecutor<'a, K>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        let executor = self.0.into_executor()?;
        Ok(ConnectionExecutor {
            cache: false,
            ..executor
        })
    }
}

/// Runs `sql` with `arg` bound as `$1` (or no parameter) on `executor`, and reads column 0 of every row as
/// text.
///
/// With `cache`, sqlx prepares the statement once per connection under a name and keeps it in the
/// connection's statement cache, so later runs cost one round trip. Without, it is parsed as the unnamed
/// statement each time (parse and describe, then bind and execute: two round trips).
pub(crate) async fn fetch<'c, DB, E>(
    executor: E,
    sql: &str,
    arg: Option<&str>,
    cache: bool,
) -> Result<Vec<String>, ConnectorError>
where
    DB: Database + HasStatementCache,
    E: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let mut query = sqlx::query::<DB>(sql).persistent(cache);
    if let Some(arg) = arg {
        query = query.bind(arg);
    }
    let rows = query.fetch_all(executor).await.map_err(connector_error)?;
    rows.iter()
        .map(|row| {
            row.try_get::<String, _>(0)
                .map_err(|e| ConnectorError::unexpected_row(CONNECTOR, e))
        })
        .collect()
}

/// Runs on the connection, inside its open transaction if any. This is what `&mut *tx` (a
/// [`Transaction<Postgres>`]) and `&mut *conn` (a [`PoolConnection<Postgres>`]) give.
impl<'a> IntoAsyncExecutor<Sqlx> for &'a mut PgConnection {
    type Executor = ConnectionExecutor<'a, PgConnection>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        Ok(ConnectionExecutor::new(self))
    }
}

/// Runs inside the transaction (or savepoint): it takes effect when the caller commits.
impl<'a> IntoAsyncExecutor<Sqlx> for &'a mut Transaction<'_, Postgres> {
    type Executor = ConnectionExecutor<'a, PgConnection>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        Ok(ConnectionExecutor::new(self))
    }
}

/// Runs on this checked-out pooled connection, inside its open transaction if any.
impl<'a> IntoAsyncExecutor<Sqlx> for &'a mut PoolConnection<Postgres> {
    type Executor = ConnectionExecutor<'a, PgConnection>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        Ok(ConnectionExecutor::new(self))
    }
}

/// Runs on the connection when it is connected to PostgreSQL; any other backend is refused with
/// [`ErrorKind::Unsupported`](jobq_core::ErrorKind::Unsupported) before any SQL is sent.
#[cfg(feature = "any")]
impl<'a> IntoAsyncExecutor<Sqlx> for &'a mut AnyConnection {
    type Executor = ConnectionExecutor<'a, AnyConnection>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        let backend = self.backend_name();
        if backend != Postgres::NAME {
            return Err(ConnectorError::unsupported(
                CONNECTOR,
                format!("AnyConnection to {backend}"),
            ));
        }
        Ok(ConnectionExecutor::new(self))
    }
}

/// Runs inside the transaction when it is on PostgreSQL; see `&mut AnyConnection`.
#[cfg(feature = "any")]
impl<'a> IntoAsyncExecutor<Sqlx> for &'a mut Transaction<'_, Any> {
    type Executor = ConnectionExecutor<'a, AnyConnection>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        let conn: &'a mut AnyConnection = self;
        conn.into_executor()
    }
}

/// Runs on this checked-out connection when it is on PostgreSQL; see `&mut AnyConnection`.
#[cfg(feature = "any")]
impl<'a> IntoAsyncExecutor<Sqlx> for &'a mut PoolConnection<Any> {
    type Executor = ConnectionExecutor<'a, AnyConnection>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        let conn: &'a mut AnyConnection = self;
        conn.into_executor()
    }
}
