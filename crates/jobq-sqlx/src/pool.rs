//! The pooled path: a [`PgPool`] as an owned executor, which is also the worker's backend.

use crate::error::connector_error;
use crate::executor::fetch;
use crate::{CONNECTOR, Sqlx};
#[cfg(feature = "worker")]
use jobq_core::worker::{Backend, Notification};
use jobq_core::{AsyncExecutor, ConnectorError, ErrorKind, IntoAsyncExecutor};
use sqlx::PgPool;
#[cfg(feature = "worker")]
use sqlx::postgres::PgListener;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
#[cfg(feature = "worker")]
use tokio::sync::mpsc;

/// Builds a [`PgPool`] of at most `size` connections to `url`, made when first needed, so this returns at
/// once; an unparsable `url` or a `size` of 0 fails.
///
/// TLS is sqlx's own (rustls with ring, with the default `rustls` feature): it reads `sslmode` (libpq's
/// values) and `sslrootcert` from the URL itself. sqlx has no TCP keepalive or user timeout settings;
/// jobq's [network bounds](jobq_core::network) are therefore not applied here (a worker's statements still
/// have their statement timeout).
pub fn pool(url: &str, size: usize) -> Result<PgPool, ConnectorError> {
    let size = u32::try_from(size).unwrap_or(u32::MAX);
    if size == 0 {
        return Err(ConnectorError::new(
            CONNECTOR,
            ErrorKind::Other,
            "a pool needs at least one connection",
        ));
    }
    PgPoolOptions::new()
        .max_connections(size)
        .connect_lazy(url)
        .map_err(connector_error)
}

/// A [`PgPool`] as an owned, cloneable executor: each statement takes a connection from the pool and
/// returns it right after. This is what `run(&pool)` uses, and what a worker runs on:
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use jobq_sqlx::PoolExecutor;
/// use jobq_sqlx::core::{Jobq, worker::{Worker, shutdown_signal}};
///
/// let backend = PoolExecutor::connect("postgres://app@localhost/app", 10)?;
/// Worker::builder(Jobq::default(), backend).build().run_until(shutdown_signal()).await?;
/// # Ok(()) }
/// ```
///
/// A pool that has no free connection within its `acquire_timeout` fails the statement with
/// [`ErrorKind::PoolTimeout`](jobq_core::ErrorKind::PoolTimeout); so does a server that refuses connections,
/// because sqlx keeps retrying to connect until that timeout. As a worker [`Backend`] it LISTENs on a dedicated connection made with the
/// pool's connect options (or those of [`listen_with`](Self::listen_with)), so LISTEN never holds one of
/// the pool's connections.
///
/// By default statements are prepared once per connection and cached by sqlx (one round trip each after
/// the first). Behind PgBouncer in transaction pooling mode use
/// [`transaction_pooling`](Self::transaction_pooling).
#[derive(Debug, Clone)]
pub struct PoolExecutor {
    pool: PgPool,
    transaction_pooling: bool,
    listen: Option<PgConnectOptions>,
}

impl PoolExecutor {
    /// Runs on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            transaction_pooling: false,
            listen: None,
        }
    }

    /// A pool of `size` connections to `url` (see [`pool`](crate::pool())); a worker on it LISTENs with
    /// the pool's connect options.
    pub fn connect(url: &str, size: usize) -> Result<Self, ConnectorError> {
        Ok(Self::new(pool(url, size)?))
    }

    /// For a pool whose connections go through PgBouncer in transaction pooling mode (without prepared
    /// statement support, as PgBouncer before 1.21):
    ///
    /// - each statement is unnamed and runs in a transaction of its own (`BEGIN`, parse, bind and execute,
    ///   `COMMIT`). sqlx parses an unnamed statement and executes it in two exchanges; outside a
    ///   transaction PgBouncer may hand the second one to another server connection, where the unnamed
    ///   statement is missing or, worse, is another client's. Two more round trips per statement.
    /// - a worker does not LISTEN through the pool (PgBouncer cannot keep a LISTEN across transactions); it
    ///   polls, unless [`listen_with`](Self::listen_with) names a direct connection to the server.
    ///
    /// On a connection you hold, the counterpart is [`TransactionPooling`](crate::TransactionPooling).
    pub fn transaction_pooling(mut self) -> Self {
        self.transaction_pooling = true;
        self
    }

    /// LISTENs (as a worker backend) on a connection made with `options` rather than the pool's: a direct
    /// connection to the server when the pool goes through PgBouncer.
    pub fn listen_with(mut self, options: PgConnectOptions) -> Self {
        self.listen = Some(options);
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

impl AsyncExecutor for PoolExecutor {
    async fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError> {
        let conn = self.pool.acquire().await.map_err(connector_error)?;
        let mut conn = CloseIfAbandoned {
            conn,
            finished: false,
        };
        let rows = if self.transaction_pooling {
            let mut tx = sqlx::Connection::begin(&mut *conn.conn)
                .await
                .map_err(connector_error)?;
            let rows = fetch(&mut *tx, sql, arg, false).await;
            match rows {
                Ok(rows) => tx.commit().await.map_err(connector_error).map(|()| rows),
                Err(e) => Err(e),
            }
        } else {
            fetch(&mut *conn.conn, sql, arg, true).await
        };
        // A connection-kind error leaves the connection unfit (lost, or on a server that is a standby
        // now, after a failover): it is closed, not returned. (Twin of jobq-tokio-postgres' pool.)
        conn.finished = !matches!(&rows, Err(e) if e.kind == ErrorKind::Connection);
        rows
    }
}

/// A pooled connection that is closed, not returned to the pool, when the statement on it is abandoned
/// (its future dropped, as a worker does when a statement outlives its timeout): its answer may still be
/// on the way, or the connection may have gone silent, so it is not fit for the next statement.
struct CloseIfAbandoned {
    conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
    finished: bool,
}

impl Drop for CloseIfAbandoned {
    fn drop(&mut self) {
        if !self.finished {
            self.conn.close_on_drop();
        }
    }
}

/// Takes a connection from the pool for each statement, with statements cached as by
/// [`PoolExecutor::new`]; behind PgBouncer's transaction pooling, run on
/// `&PoolExecutor::new(pool).transaction_pooling()` instead.
impl IntoAsyncExecutor<Sqlx> for &PgPool {
    type Executor = PoolExecutor;
    fn into_executor(self) -> Result<PoolExecutor, ConnectorError> {
        Ok(PoolExecutor::new(self.clone()))
    }
}

/// Takes a connection from the pool for each statement.
impl IntoAsyncExecutor<Sqlx> for &PoolExecutor {
    type Executor = PoolExecutor;
    fn into_executor(self) -> Result<PoolExecutor, ConnectorError> {
        Ok(self.clone())
    }
}

/// The worker's backend (feature `worker`).
#[cfg(feature = "worker")]
impl Backend for PoolExecutor {
    type Executor = Self;

    fn executor(&self) -> Self {
        self.clone()
    }

    async fn listen(
        &self,
        channels: Vec<String>,
    ) -> Result<mpsc::UnboundedReceiver<Notification>, ConnectorError> {
        let options = match &self.listen {
            Some(options) => options.clone(),
            None if self.transaction_pooling => {
                return Err(ConnectorError::new(
                    CONNECTOR,
                    ErrorKind::Unsupported,
                    "LISTEN does not work through PgBouncer's transaction pooling: the worker polls \
                     (give PoolExecutor::listen_with a direct connection to LISTEN on)",
                ));
            }
            None => (*self.pool.connect_options()).clone(),
        };
        // A pool of one, so the listener's connection is not taken from the application's pool.
        let own = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(options);
        let mut listener = PgListener::connect_with(&own)
            .await
            .map_err(connector_error)?;
        // A lost connection ends the receiver, and the worker polls and calls `listen` again, rather than
        // sqlx reconnecting silently and notifications going missing unnoticed.
        listener.eager_reconnect(false);
        listener
            .listen_all(channels.iter().map(String::as_str))
            .await
            .map_err(connector_error)?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    received = listener.try_recv() => {
                        let Ok(Some(n)) = received else { return };
                        let n = Notification {
                            channel: n.channel().to_owned(),
                            payload: n.payload().to_owned(),
                        };
                        if tx.send(n).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(rx)
    }
}
