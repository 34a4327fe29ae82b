//! The pooled path: an r2d2 pool as an owned executor, which is also the worker's backend.

use crate::executor::ConnectionExecutor;
use crate::{CONNECTOR, Diesel};
use diesel::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool, PoolError};
#[cfg(feature = "worker")]
use jobq_core::worker::{Backend, SpawnBlocking};
use jobq_core::{BlockingExecutor, ConnectorError, ErrorKind, IntoBlockingExecutor};

/// An r2d2 pool of diesel connections.
pub type PgPool = Pool<ConnectionManager<PgConnection>>;

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

    /// A pool of `size` connections to `url` (see [`pool`](crate::pool())).
    pub fn connect(url: &str, size: usize) -> Result<Self, ConnectorError> {
        Ok(Self::new(pool(url, size)?))
    }

    /// For a pool whose connections go through PgBouncer in transaction pooling mode (without prepared
    /// statement support, as PgBouncer before 1.21): each statement is unnamed (`diesel::sql_query`) and
    /// sent in one exchange, so none of jobq's stays prepared on a server connection. A worker on this
    /// executor polls, as every diesel worker does.
    ///
    /// On a connection you hold, the counterpart is [`TransactionPooling`](crate::TransactionPooling). Build the pool without r2d2's
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
        ConnectionExecutor::with_cache(&mut conn, !self.transaction_pooling).query(sql, arg)
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
/// jobq's [network bounds](jobq_core::network) as libpq parameters wherever the URL sets none. TLS is
/// libpq's own: `sslmode`, `sslrootcert` and the other `ssl*` parameters of the URL work as in `psql`.
///
/// r2d2 checks each connection it hands out with diesel's cached `SELECT 1`. Behind PgBouncer in
/// transaction pooling mode that named statement meets other clients' on shared server connections and
/// r2d2 reconnects over and over: build that pool yourself with `test_on_check_out(false)` (see
/// [`PoolExecutor::transaction_pooling`]).
pub fn pool(url: &str, size: usize) -> Result<PgPool, ConnectorError> {
    let size = u32::try_from(size).unwrap_or(u32::MAX);
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

/// As a worker backend, statements run on tokio's blocking threads ([`SpawnBlocking`]); the worker polls
/// for new jobs, as diesel has no LISTEN (feature `worker`).
#[cfg(feature = "worker")]
impl Backend for PoolExecutor {
    type Executor = SpawnBlocking<Self>;

    fn executor(&self) -> SpawnBlocking<Self> {
        SpawnBlocking(self.clone())
    }
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
