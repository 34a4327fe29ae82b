//! Prepared statements on a connection the caller holds: jobq's statements parsed and planned once per
//! connection instead of on every call.

use crate::ConnectionExecutor;
use postgres::types::Type;
use postgres::{Error, GenericClient, Statement};
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
    /// cache's prepared statements; pass the result to `run_blocking`.
    pub fn on<'a, C: GenericClient + ?Sized>(
        &'a mut self,
        client: &'a mut C,
    ) -> ConnectionExecutor<'a, C> {
        ConnectionExecutor::cached(client, self)
    }

    /// How many statements are prepared.
    pub fn len(&self) -> usize {
        self.statements.len()
    }

    /// Whether no statement is prepared yet.
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// `sql` prepared on `client` with parameter `types`, from the cache or prepared now and kept.
    pub(crate) fn prepare<C: GenericClient + ?Sized>(
        &mut self,
        client: &mut C,
        sql: &str,
        types: &[Type],
    ) -> Result<Statement, Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare_typed(sql, types)?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Drops `sql`'s statement, which the server no longer has.
    pub(crate) fn forget(&mut self, sql: &str) {
        self.statements.remove(sql);
    }
}
