//! Prepared statements on a connection the caller holds: jobq's statements parsed and planned once per
//! connection instead of on every call.

use crate::executor::{connector_error, read_rows};
use jobq_core::{BlockingExecutor, ConnectorError};
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{GenericClient, Statement};
use std::collections::HashMap;

/// jobq's prepared statements on one connection you hold: keep one beside each `Client` and run through
/// [`on`](Self::on), and each of jobq's statements is prepared on its first use and reused after, as you
/// would prepare your own statements once.
///
/// ```no_run
/// use jobq_postgres::{StatementCache, prelude::*};
///
/// # fn demo(client: &mut postgres::Client, jobq: &Jobq) -> Result<(), Box<dyn std::error::Error>> {
/// let mut statements = StatementCache::new(); // once per connection, kept as long as it
/// for order_id in 1..=3_i64 {
///     let mut tx = client.transaction()?;
///     tx.execute("INSERT INTO orders (id) VALUES ($1)", &[&order_id])?;
///     jobq.defer_job(NewJob::new("process_order", serde_json::json!({ "order_id": order_id })))
///         .run_blocking(statements.on(&mut tx))?;
///     tx.commit()?;
/// }
/// # Ok(()) }
/// ```
///
/// The statements live on the server connection, so a cache belongs to one connection: used with another
/// (or after `DEALLOCATE ALL` or `DISCARD ALL`), a statement fails once with `prepared statement "s…" does
/// not exist`, which aborts that transaction, and is prepared again on the next call. Behind
/// PgBouncer in transaction pooling mode, run on the connection itself instead (unnamed statements).
#[derive(Debug, Default)]
pub struct StatementCache {
    statements: HashMap<String, Statement>,
}

impl StatementCache {
    /// An empty cache, for one connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs jobq on `client` (the `Client` this cache belongs to, or a `Transaction` on it) with this
    /// cache's prepared statements.
    pub fn on<'a, C: GenericClient + ?Sized>(&'a mut self, client: &'a mut C) -> Prepared<'a, C> {
        Prepared {
            cache: self,
            client,
        }
    }

    /// How many statements are prepared.
    pub fn len(&self) -> usize {
        self.statements.len()
    }

    /// Whether no statement is prepared yet.
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }
}

/// A connection you hold with a [`StatementCache`], made by [`StatementCache::on`]; pass it to
/// `run_blocking`, which takes any executor as it is.
#[derive(Debug)]
pub struct Prepared<'a, C: ?Sized> {
    cache: &'a mut StatementCache,
    client: &'a mut C,
}

impl<C: GenericClient + ?Sized> BlockingExecutor for Prepared<'_, C> {
    fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError> {
        let statement = match self.cache.statements.get(sql) {
            Some(statement) => statement.clone(),
            None => {
                let types: &[Type] = if arg.is_some() { &[Type::TEXT] } else { &[] };
                let statement = self
                    .client
                    .prepare_typed(sql, types)
                    .map_err(connector_error)?;
                self.cache
                    .statements
                    .insert(sql.to_owned(), statement.clone());
                statement
            }
        };
        let params: &[&(dyn ToSql + Sync)] = match &arg {
            Some(arg) => &[arg],
            None => &[],
        };
        let rows = self.client.query(&statement, params).map_err(|e| {
            // Gone from the server (`DEALLOCATE`, `DISCARD ALL`, another connection): forget it, so the
            // next call prepares it again.
            if e.code() == Some(&SqlState::INVALID_SQL_STATEMENT_NAME) {
                self.cache.statements.remove(sql);
            }
            connector_error(e)
        })?;
        read_rows(&rows)
    }
}
