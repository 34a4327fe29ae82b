//! The executor over a borrowed `Client` or `Transaction`, the conversions users rely on, and error mapping.

use crate::error::connector_error;
use crate::{CONNECTOR, StatementCache, TokioPostgres};
use jobq_core::{AsyncExecutor, ConnectorError, IntoAsyncExecutor};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{GenericClient, Row, Statement};

/// Runs jobq's statements on a `tokio_postgres::Client` or `Transaction` the caller holds, inside whatever
/// transaction is open on it.
///
/// Made by [`Operation::run`](jobq_core::Operation::run) from `&Client`, `&Transaction`, a deadpool `&Object`
/// or `&deadpool_postgres::Transaction` (each also wrapped in [`TransactionPooling`]), or by
/// [`StatementCache::on`]; you do not build one yourself.
#[derive(Debug)]
pub struct ConnectionExecutor<'a, C: ?Sized> {
    conn: &'a C,
    statements: Statements<'a>,
}

/// Where a [`ConnectionExecutor`]'s statements come from.
#[derive(Debug, Clone, Copy)]
enum Statements<'a> {
    /// Unnamed, parsed and planned on every call; nothing stays prepared on the connection.
    Unnamed,
    /// Prepared once per connection in the caller's cache.
    Cache(&'a StatementCache),
    /// Prepared once per connection in deadpool's cache of the pooled connection.
    #[cfg(feature = "pool")]
    Deadpool(&'a deadpool_postgres::StatementCache),
}

impl<'a, C: ?Sized> ConnectionExecutor<'a, C> {
    fn unnamed(conn: &'a C) -> Self {
        Self {
            conn,
            statements: Statements::Unnamed,
        }
    }

    pub(crate) fn cached(conn: &'a C, cache: &'a StatementCache) -> Self {
        Self {
            conn,
            statements: Statements::Cache(cache),
        }
    }

    #[cfg(feature = "pool")]
    pub(crate) fn deadpool(conn: &'a C, cache: &'a deadpool_postgres::StatementCache) -> Self {
        Self {
            conn,
            statements: Statements::Deadpool(cache),
        }
    }
}

impl<C: GenericClient + Sync + ?Sized> AsyncExecutor for ConnectionExecutor<'_, C> {
    async fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError> {
        let types: &[Type] = if arg.is_some() { &[Type::TEXT] } else { &[] };
        let statement: Statement = match self.statements {
            Statements::Unnamed => {
                let params: &[(&(dyn ToSql + Sync), Type)] = match &arg {
                    Some(arg) => &[(arg, Type::TEXT)],
                    None => &[],
                };
                let rows = self.conn.query_typed(sql, params).await;
                return read_rows(&rows.map_err(connector_error)?);
            }
            Statements::Cache(cache) => cache.prepare(self.conn, sql, types).await,
            #[cfg(feature = "pool")]
            Statements::Deadpool(cache) => {
                cache.prepare_typed(self.conn.client(), sql, types).await
            }
        }
        .map_err(connector_error)?;
        let params: &[&(dyn ToSql + Sync)] = match &arg {
            Some(arg) => &[arg],
            None => &[],
        };
        let rows = self.conn.query(&statement, params).await.map_err(|e| {
            // Gone from the server (`DEALLOCATE`, `DISCARD ALL`, another connection): forget it, so the
            // next call prepares it again.
            if e.code() == Some(&SqlState::INVALID_SQL_STATEMENT_NAME) {
                match self.statements {
                    Statements::Unnamed => {}
                    Statements::Cache(cache) => cache.forget(sql),
                    #[cfg(feature = "pool")]
                    Statements::Deadpool(cache) => drop(cache.remove(sql, types)),
                }
            }
            connector_error(e)
        })?;
        read_rows(&rows)
    }
}

/// Column 0 of every row, as text.
fn read_rows(rows: &[Row]) -> Result<Vec<String>, ConnectorError> {
    rows.iter()
        .map(|row| {
            row.try_get::<_, String>(0)
                .map_err(|e| ConnectorError::unexpected_row(CONNECTOR, e))
        })
        .collect()
}

/// Runs on the client, inside its open transaction if one was begun on it, with unnamed statements.
impl<'a> IntoAsyncExecutor<TokioPostgres> for &'a tokio_postgres::Client {
    type Executor = ConnectionExecutor<'a, tokio_postgres::Client>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        Ok(ConnectionExecutor::unnamed(self))
    }
}

/// Same as `&Client`, for callers holding it mutably.
impl<'a> IntoAsyncExecutor<TokioPostgres> for &'a mut tokio_postgres::Client {
    type Executor = ConnectionExecutor<'a, tokio_postgres::Client>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        Ok(ConnectionExecutor::unnamed(self))
    }
}

/// Runs inside the transaction (or savepoint), with unnamed statements: it takes effect when the caller
/// commits.
impl<'a, 't> IntoAsyncExecutor<TokioPostgres> for &'a tokio_postgres::Transaction<'t> {
    type Executor = ConnectionExecutor<'a, tokio_postgres::Transaction<'t>>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        Ok(ConnectionExecutor::unnamed(self))
    }
}

/// Same as `&Transaction`, for callers holding it mutably.
impl<'a, 't> IntoAsyncExecutor<TokioPostgres> for &'a mut tokio_postgres::Transaction<'t> {
    type Executor = ConnectionExecutor<'a, tokio_postgres::Transaction<'t>>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        Ok(ConnectionExecutor::unnamed(self))
    }
}

/// Runs on this checked-out pooled connection, inside its open transaction if any, with its statements
/// prepared once in deadpool's statement cache (`prepare_typed_cached`).
#[cfg(feature = "pool")]
impl<'a> IntoAsyncExecutor<TokioPostgres> for &'a deadpool_postgres::Object {
    type Executor = ConnectionExecutor<'a, tokio_postgres::Client>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        let client: &tokio_postgres::Client = self;
        Ok(ConnectionExecutor::deadpool(client, &self.statement_cache))
    }
}

/// Runs inside deadpool's transaction, with statements from the connection's deadpool statement cache: it
/// takes effect when the caller commits.
#[cfg(feature = "pool")]
impl<'a, 't> IntoAsyncExecutor<TokioPostgres> for &'a deadpool_postgres::Transaction<'t> {
    type Executor = ConnectionExecutor<'a, tokio_postgres::Transaction<'t>>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        let tx: &tokio_postgres::Transaction<'t> = self;
        Ok(ConnectionExecutor::deadpool(tx, &self.statement_cache))
    }
}

/// A deadpool connection you hold behind PgBouncer in transaction pooling mode: jobq runs its statements
/// on it unnamed, so nothing stays prepared on the connection.
///
/// Without it, jobq prepares its statements in deadpool's per-connection statement cache (named `s0`,
/// `s1`, …); PgBouncer (before 1.21, or without `max_prepared_statements`) hands each transaction to
/// whichever server connection is free, which lacks them. Wrap `&object` or `&tx` (a
/// `deadpool_postgres::Transaction`); for a pool use
/// [`PoolExecutor::transaction_pooling`](crate::PoolExecutor::transaction_pooling). A plain
/// `tokio_postgres::Client` or `Transaction` runs unnamed statements anyway.
///
/// ```no_run
/// use jobq_tokio_postgres::{TransactionPooling, prelude::*};
///
/// # async fn demo(pool: &deadpool_postgres::Pool, jobq: &Jobq)
/// #     -> Result<(), Box<dyn std::error::Error>> {
/// let mut object = pool.get().await?;
/// let tx = object.transaction().await?;
/// let id = jobq.defer_job(NewJob::new("send_mail", serde_json::json!({})))
///     .run(TransactionPooling(&tx))
///     .await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TransactionPooling<C>(pub C);

/// Runs on the pooled connection with unnamed statements.
#[cfg(feature = "pool")]
impl<'a> IntoAsyncExecutor<TokioPostgres> for TransactionPooling<&'a deadpool_postgres::Object> {
    type Executor = ConnectionExecutor<'a, tokio_postgres::Client>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        let client: &tokio_postgres::Client = self.0;
        Ok(ConnectionExecutor::unnamed(client))
    }
}

/// Runs inside deadpool's transaction with unnamed statements.
#[cfg(feature = "pool")]
impl<'a, 't> IntoAsyncExecutor<TokioPostgres>
    for TransactionPooling<&'a deadpool_postgres::Transaction<'t>>
{
    type Executor = ConnectionExecutor<'a, tokio_postgres::Transaction<'t>>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        let tx: &tokio_postgres::Transaction<'t> = self.0;
        Ok(ConnectionExecutor::unnamed(tx))
    }
}
