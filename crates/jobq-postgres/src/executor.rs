//! The executor over a borrowed `Client` or `Transaction`, the conversions users rely on, and error mapping.

use crate::error::connector_error;
#[cfg(feature = "pool")]
use crate::pool::Manager;
use crate::{CONNECTOR, StatementCache, SyncPostgres};
use jobq_core::{BlockingExecutor, ConnectorError, IntoBlockingExecutor};
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{GenericClient, Row};

/// Runs jobq's statements on a `postgres::Client` or `Transaction` the caller holds, inside whatever
/// transaction is open on it.
///
/// Made by [`Operation::run_blocking`](jobq_core::Operation::run_blocking) from `&mut Client`,
/// `&mut Transaction` or an r2d2 `&mut PooledConnection`, or by [`StatementCache::on`]; you do not build
/// one yourself.
#[derive(Debug)]
pub struct ConnectionExecutor<'a, C: ?Sized> {
    conn: &'a mut C,
    /// The caller's prepared statements; unnamed statements without.
    statements: Option<&'a mut StatementCache>,
}

impl<'a, C: ?Sized> ConnectionExecutor<'a, C> {
    fn unnamed(conn: &'a mut C) -> Self {
        Self {
            conn,
            statements: None,
        }
    }

    pub(crate) fn cached(conn: &'a mut C, cache: &'a mut StatementCache) -> Self {
        Self {
            conn,
            statements: Some(cache),
        }
    }
}

impl<C: GenericClient + ?Sized> BlockingExecutor for ConnectionExecutor<'_, C> {
    fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError> {
        let Some(cache) = &mut self.statements else {
            // Unnamed statement, one round trip: nothing stays prepared on the connection, so this also
            // works through PgBouncer in transaction pooling mode.
            let params: &[(&(dyn ToSql + Sync), Type)] = match &arg {
                Some(arg) => &[(arg, Type::TEXT)],
                None => &[],
            };
            let rows = self
                .conn
                .query_typed(sql, params)
                .map_err(connector_error)?;
            return read_rows(&rows);
        };
        let types: &[Type] = if arg.is_some() { &[Type::TEXT] } else { &[] };
        let statement = cache
            .prepare(self.conn, sql, types)
            .map_err(connector_error)?;
        let params: &[&(dyn ToSql + Sync)] = match &arg {
            Some(arg) => &[arg],
            None => &[],
        };
        let rows = self.conn.query(&statement, params).map_err(|e| {
            // Gone from the server (`DEALLOCATE`, `DISCARD ALL`, another connection): forget it, so the
            // next call prepares it again.
            if e.code() == Some(&SqlState::INVALID_SQL_STATEMENT_NAME) {
                cache.forget(sql);
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

/// Runs on the client, inside its open transaction if one was begun on it.
impl<'a> IntoBlockingExecutor<SyncPostgres> for &'a mut postgres::Client {
    type Executor = ConnectionExecutor<'a, postgres::Client>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        Ok(ConnectionExecutor::unnamed(self))
    }
}

/// Runs inside the transaction (or savepoint): it takes effect when the caller commits.
impl<'a, 't> IntoBlockingExecutor<SyncPostgres> for &'a mut postgres::Transaction<'t> {
    type Executor = ConnectionExecutor<'a, postgres::Transaction<'t>>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        Ok(ConnectionExecutor::unnamed(self))
    }
}

/// Runs on this checked-out pooled connection, inside its open transaction if any.
#[cfg(feature = "pool")]
impl<'a, M: Manager> IntoBlockingExecutor<SyncPostgres> for &'a mut r2d2::PooledConnection<M> {
    type Executor = ConnectionExecutor<'a, postgres::Client>;
    fn into_executor(self) -> Result<Self::Executor, ConnectorError> {
        let client: &mut postgres::Client = self;
        Ok(ConnectionExecutor::unnamed(client))
    }
}
