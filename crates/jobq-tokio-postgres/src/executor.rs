//! The executor over a borrowed `Client` or `Transaction`, the conversions users rely on, and error mapping.

use crate::{CONNECTOR, TokioPostgres};
use jobq_core::{AsyncExecutor, ConnectorError, ErrorKind, IntoAsyncExecutor};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{GenericClient, Row};

/// Runs jobq's statements on a `tokio_postgres::Client` or `Transaction` the caller holds, inside whatever
/// transaction is open on it.
///
/// Made by [`Operation::run`](jobq_core::Operation::run) from `&Client`, `&Transaction`, a deadpool `&Object`
/// or `&deadpool_postgres::Transaction`; you do not build one yourself.
#[derive(Debug)]
pub struct ConnectionExecutor<'a, C: ?Sized>(&'a C);

impl<C: GenericClient + Sync + ?Sized> AsyncExecutor for ConnectionExecutor<'_, C> {
    async fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError> {
        let rows = query(self.0, sql, arg).await?;
        read_rows(&rows)
    }
}

/// Runs `sql` as an unnamed statement in one round trip: no prepared statement stays behind on the
/// connection, so this also works through PgBouncer in transaction pooling mode.
pub(crate) async fn query<C: GenericClient + Sync + ?Sized>(
    client: &C,
    sql: &str,
    arg: Option<&str>,
) -> Result<Vec<Row>, ConnectorError> {
    let params: &[(&(dyn ToSql + Sync), Type)] = match &arg {
        Some(arg) => &[(arg, Type::TEXT)],
        None => &[],
    };
    client
        .query_typed(sql, params)
        .await
        .map_err(connector_error)
}

/// Column 0 of every row, as text.
pub(crate) fn read_rows(rows: &[Row]) -> Result<Vec<String>, ConnectorError> {
    rows.iter()
        .map(|row| {
            row.try_get::<_, String>(0)
                .map_err(|e| ConnectorError::unexpected_row(CONNECTOR, e))
        })
        .collect()
}

/// The one place a `tokio_postgres::Error` becomes a [`ConnectorError`].
pub(crate) fn connector_error(e: tokio_postgres::Error) -> ConnectorError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code().to_owned();
        let constraint = db.constraint().map(str::to_owned);
        let message = db.message().to_owned();
        return ConnectorError::from_server(CONNECTOR, &code, constraint.as_deref(), message, e);
    }
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    let kind = if e.is_closed() || io {
        ErrorKind::Connection
    } else {
        ErrorKind::Other
    };
    ConnectorError::new(CONNECTOR, kind, e.to_string()).with_source(e)
}

/// Runs on the client, inside its open transaction if one was begun on it.
impl<'a> IntoAsyncExecutor<TokioPostgres> for &'a tokio_postgres::Client {
    type Executor = ConnectionExecutor<'a, tokio_postgres::Client>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        Ok(ConnectionExecutor(self))
    }
}

/// Same as `&Client`, for callers holding it mutably.
impl<'a> IntoAsyncExecutor<TokioPostgres> for &'a mut tokio_postgres::Client {
    type Executor = ConnectionExecutor<'a, tokio_postgres::Client>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        Ok(ConnectionExecutor(self))
    }
}

/// Runs inside the transaction (or savepoint): it takes effect when the caller commits.
impl<'a, 't> IntoAsyncExecutor<TokioPostgres> for &'a tokio_postgres::Transaction<'t> {
    type Executor = ConnectionExecutor<'a, tokio_postgres::Transaction<'t>>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        Ok(ConnectionExecutor(self))
    }
}

/// Same as `&Transaction`, for callers holding it mutably.
impl<'a, 't> IntoAsyncExecutor<TokioPostgres> for &'a mut tokio_postgres::Transaction<'t> {
    type Executor = ConnectionExecutor<'a, tokio_postgres::Transaction<'t>>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        Ok(ConnectionExecutor(self))
    }
}

/// Runs on this checked-out pooled connection, inside its open transaction if any.
impl<'a> IntoAsyncExecutor<TokioPostgres> for &'a deadpool_postgres::Object {
    type Executor = ConnectionExecutor<'a, tokio_postgres::Client>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        let client: &tokio_postgres::Client = self;
        Ok(ConnectionExecutor(client))
    }
}

/// Runs inside deadpool's transaction: it takes effect when the caller commits.
impl<'a, 't> IntoAsyncExecutor<TokioPostgres> for &'a deadpool_postgres::Transaction<'t> {
    type Executor = ConnectionExecutor<'a, tokio_postgres::Transaction<'t>>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        let tx: &tokio_postgres::Transaction<'t> = self;
        Ok(ConnectionExecutor(tx))
    }
}
