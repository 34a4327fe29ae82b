//! Prepared statements on a connection the caller holds: jobq's statements parsed and planned once per
//! connection instead of on every call.

use crate::ConnectionExecutor;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use tokio_postgres::types::Type;
use tokio_postgres::{Error, GenericClient, Statement};

/// jobq's prepared statements on one connection you hold: keep one beside each `Client` and run through
/// [`on`](Self::on), and each of jobq's statements is prepared on its first use and reused after, as you
/// would prepare your own statements once.
///
/// ```no_run
/// use jobq_tokio_postgres::{StatementCache, prelude::*};
///
/// # async fn demo(client: &mut tokio_postgres::Client, jobq: &Jobq)
/// #     -> Result<(), Box<dyn std::error::Error>> {
/// let statements = StatementCache::new(); // once per connection, kept as long as it
/// for order_id in 1..=3_i64 {
///     let tx = client.transaction().await?;
///     tx.execute("INSERT INTO orders (id) VALUES ($1)", &[&order_id]).await?;
///     jobq.defer_job(NewJob::new("process_order", serde_json::json!({ "order_id": order_id })))
///         .run(statements.on(&tx))
///         .await?;
///     tx.commit().await?;
/// }
/// # Ok(()) }
/// ```
///
/// The statements live on the server connection, so a cache belongs to one connection: used with another
/// (or after `DEALLOCATE ALL` or `DISCARD ALL`), a statement fails once with `prepared statement "s…" does
/// not exist`, which aborts that transaction, and is prepared again on the next call. Behind
/// PgBouncer in transaction pooling mode, run on the connection itself instead (unnamed statements).
/// A deadpool `Object` or `Transaction` needs none of this: run on it and jobq uses deadpool's own cache.
#[derive(Debug, Default)]
pub struct StatementCache {
    statements: Mutex<HashMap<String, Statement>>,
}

impl StatementCache {
    /// An empty cache, for one connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs jobq on `client` (the `Client` this cache belongs to, or a `Transaction` on it) with this
    /// cache's prepared statements; pass the result to `run`.
    pub fn on<'a, C: GenericClient + Sync + ?Sized>(
        &'a self,
        client: &'a C,
    ) -> ConnectionExecutor<'a, C> {
        ConnectionExecutor::cached(client, self)
    }

    /// How many statements are prepared.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no statement is prepared yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `sql` prepared on `client` with parameter `types`, from the cache or prepared now and kept.
    pub(crate) async fn prepare<C: GenericClient + Sync + ?Sized>(
        &self,
        client: &C,
        sql: &str,
        types: &[Type],
    ) -> Result<Statement, Error> {
        if let Some(statement) = self.lock().get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare_typed(sql, types).await?;
        self.lock().insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Drops `sql`'s statement, which the server no longer has.
    pub(crate) fn forget(&self, sql: &str) {
        self.lock().remove(sql);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Statement>> {
        // A panic elsewhere while holding the lock leaves the map whole: every update is one insert.
        self.statements.lock().unwrap_or_else(|e| e.into_inner())
    }
}
