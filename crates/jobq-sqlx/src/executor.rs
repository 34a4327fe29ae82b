//! The executor over a borrowed connection, the conversions users rely on, and error mapping.

use crate::{CONNECTOR, Sqlx};
use jobq_core::{AsyncExecutor, ConnectorError, ErrorKind, IntoAsyncExecutor};
use sqlx::database::HasStatementCache;
use sqlx::pool::PoolConnection;
use sqlx::{
    Any, AnyConnection, ColumnIndex, Database, Decode, Encode, IntoArguments, PgConnection,
    Postgres, Row, Transaction, Type,
};

/// Runs jobq's statements on a connection the caller holds, inside whatever transaction is open on it.
///
/// Made by [`Operation::run`](jobq_core::Operation::run) from `&mut PgConnection` (so `&mut *tx` and
/// `&mut *conn`), `&mut Transaction<Postgres>`, `&mut PoolConnection<Postgres>`, or the same for a
/// PostgreSQL [`AnyConnection`]; you do not build one yourself.
#[derive(Debug)]
pub struct ConnectionExecutor<'a, C>(&'a mut C);

/// On a caller's connection, statements are unnamed (`persistent(false)`): nothing is left prepared on the
/// connection, so they also work through PgBouncer in transaction pooling mode, where the next transaction
/// may run on another server connection that lacks (or already has, from another client) sqlx's
/// `sqlx_s_N` statements. This costs one more round trip than a cached statement.
impl AsyncExecutor for ConnectionExecutor<'_, PgConnection> {
    async fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError> {
        fetch(&mut *self.0, sql, arg, false).await
    }
}

/// Unnamed statements, as on a `PgConnection`.
impl AsyncExecutor for ConnectionExecutor<'_, AnyConnection> {
    async fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError> {
        fetch(&mut *self.0, sql, arg, false).await
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

/// The one place a [`sqlx::Error`] becomes a [`ConnectorError`].
pub(crate) fn connector_error(e: sqlx::Error) -> ConnectorError {
    if let sqlx::Error::Database(db) = &e {
        if let Some(code) = db.code() {
            let code = code.into_owned();
            let constraint = db.constraint().map(str::to_owned);
            let message = db.message().to_owned();
            return ConnectorError::from_server(
                CONNECTOR,
                &code,
                constraint.as_deref(),
                message,
                e,
            );
        }
    }
    let kind = match &e {
        sqlx::Error::PoolTimedOut => ErrorKind::PoolTimeout,
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => ErrorKind::Connection,
        sqlx::Error::Protocol(_)
        | sqlx::Error::RowNotFound
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::AnyDriverError(_) => ErrorKind::Protocol,
        _ => ErrorKind::Other,
    };
    ConnectorError::new(CONNECTOR, kind, e.to_string()).with_source(e)
}

/// Runs on the connection, inside its open transaction if any. This is what `&mut *tx` (a
/// [`Transaction<Postgres>`]) and `&mut *conn` (a [`PoolConnection<Postgres>`]) give.
impl<'a> IntoAsyncExecutor<Sqlx> for &'a mut PgConnection {
    type Executor = ConnectionExecutor<'a, PgConnection>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        Ok(ConnectionExecutor(self))
    }
}

/// Runs inside the transaction (or savepoint): it takes effect when the caller commits.
impl<'a> IntoAsyncExecutor<Sqlx> for &'a mut Transaction<'_, Postgres> {
    type Executor = ConnectionExecutor<'a, PgConnection>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        Ok(ConnectionExecutor(self))
    }
}

/// Runs on this checked-out pooled connection, inside its open transaction if any.
impl<'a> IntoAsyncExecutor<Sqlx> for &'a mut PoolConnection<Postgres> {
    type Executor = ConnectionExecutor<'a, PgConnection>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        Ok(ConnectionExecutor(self))
    }
}

/// Runs on the connection when it is connected to PostgreSQL; any other backend is refused with
/// [`ErrorKind::Unsupported`] before any SQL is sent.
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
        Ok(ConnectionExecutor(self))
    }
}

/// Runs inside the transaction when it is on PostgreSQL; see `&mut AnyConnection`.
impl<'a> IntoAsyncExecutor<Sqlx> for &'a mut Transaction<'_, Any> {
    type Executor = ConnectionExecutor<'a, AnyConnection>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        let conn: &'a mut AnyConnection = self;
        conn.into_executor()
    }
}

/// Runs on this checked-out connection when it is on PostgreSQL; see `&mut AnyConnection`.
impl<'a> IntoAsyncExecutor<Sqlx> for &'a mut PoolConnection<Any> {
    type Executor = ConnectionExecutor<'a, AnyConnection>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        let conn: &'a mut AnyConnection = self;
        conn.into_executor()
    }
}
