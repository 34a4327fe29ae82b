//! The pooled path: a deadpool pool as an owned executor, which is also the worker's backend.

use crate::error::connector_error;
use crate::tls::{self, MakeTls};
use crate::{CONNECTOR, TokioPostgres, TransactionPooling};
use deadpool_postgres::{Manager, Pool, PoolError, QueueMode, Runtime, TimeoutType};
#[cfg(feature = "worker")]
use futures_util::StreamExt;
#[cfg(feature = "worker")]
use jobq_core::worker::{Backend, Notification};
use jobq_core::{AsyncExecutor, ConnectorError, ErrorKind, IntoAsyncExecutor};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
#[cfg(feature = "worker")]
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

/// Builds a deadpool pool of at most `size` connections to `url`, that waits at most 30 s for a free
/// connection, with the URL's TLS policy (`sslmode`, `sslrootcert`: see [`jobq_core::tls`]; rustls, with
/// the default `rustls` feature) and jobq's [network bounds](jobq_core::network) (connect timeout,
/// keepalives, TCP user timeout) wherever the URL sets none.
///
/// Connections are made when first needed, so this returns at once; an unparsable `url`, a TLS policy that
/// cannot be followed (an unknown `sslmode`, an unreadable `sslrootcert`) or a `size` of 0 fails.
pub fn pool(url: &str, size: usize) -> Result<Pool, ConnectorError> {
    let (config, tls) = tls::from_url(url)?;
    build(config, size, tls)
}

/// [`pool`] with a TLS connector of your own (used instead of the URL's `sslrootcert`; `sslmode` still
/// says whether TLS is required, tried or never used).
///
/// ```no_run
/// // `tls`: `tokio_postgres_rustls::MakeRustlsConnect::new(your_rustls_config)`, say.
/// # fn demo(tls: impl jobq_tokio_postgres::MakeTls) -> Result<(), Box<dyn std::error::Error>> {
/// let pool = jobq_tokio_postgres::pool_with_tls("postgres://app@db/app?sslmode=require", 10, tls)?;
/// # Ok(()) }
/// ```
pub fn pool_with_tls<T: MakeTls>(url: &str, size: usize, tls: T) -> Result<Pool, ConnectorError> {
    build(tls::for_own_connector(url)?, size, tls)
}

/// A pool of `size` connections with `config` and `tls`, and LISTEN connections made the same way.
fn with_listen<T: MakeTls>(
    config: tokio_postgres::Config,
    size: usize,
    tls: T,
) -> Result<PoolExecutor, ConnectorError> {
    Ok(PoolExecutor::new(build(config.clone(), size, tls.clone())?).listen_with_tls(config, tls))
}

fn build<T: MakeTls>(
    config: tokio_postgres::Config,
    size: usize,
    tls: T,
) -> Result<Pool, ConnectorError> {
    if size == 0 {
        return Err(ConnectorError::new(
            CONNECTOR,
            ErrorKind::Other,
            "a pool needs at least one connection",
        ));
    }
    Pool::builder(Manager::new(config, tls))
        .max_size(size)
        // The connection returned last is handed out first, so the few a worker keeps busy stay warm and
        // the rest sit idle; in turn (FIFO), every statement went to the next of the pool's backends. A
        // worker of no-op jobs on a pool of 8: 0.75–0.83 of the raw loop against 0.63–0.71 in four
        // interleaved pairs of full `jobq-bench --only worker` runs (docs/benchmarks.md).
        .queue_mode(QueueMode::Lifo)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(30)))
        .build()
        .map_err(|e| ConnectorError::new(CONNECTOR, ErrorKind::Other, e.to_string()).with_source(e))
}

/// A deadpool pool as an owned, cloneable executor: each statement takes a connection from the pool and
/// returns it right after. This is what `run(&pool)` uses, and what a worker runs on:
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use jobq_tokio_postgres::PoolExecutor;
/// use jobq_tokio_postgres::core::{Jobq, worker::{Worker, shutdown_signal}};
///
/// let backend = PoolExecutor::connect("postgres://app@localhost/app", 10)?;
/// Worker::builder(Jobq::default(), backend).build().run_until(shutdown_signal()).await?;
/// # Ok(()) }
/// ```
///
/// Each statement is prepared once per pooled connection, in deadpool's statement cache, unless
/// [`transaction_pooling`](Self::transaction_pooling) says otherwise.
///
/// As a worker [`Backend`] it LISTENs on a connection of its own when it knows how to make one
/// ([`connect`](Self::connect), [`listen_with`](Self::listen_with)); otherwise the worker polls.
#[derive(Debug, Clone)]
pub struct PoolExecutor {
    pool: Pool,
    listen: Option<Arc<dyn Listen>>,
    transaction_pooling: bool,
}

/// The notifications of a LISTEN connection, whatever its TLS stream.
type Messages =
    Pin<Box<dyn futures_util::Stream<Item = Result<AsyncMessage, tokio_postgres::Error>> + Send>>;

/// A LISTEN connection being opened.
type Connecting<'a> = Pin<
    Box<
        dyn Future<Output = Result<(tokio_postgres::Client, Messages), tokio_postgres::Error>>
            + Send
            + 'a,
    >,
>;

/// How to open a LISTEN connection: its settings and TLS connector, with the connector's type erased so
/// that `PoolExecutor` has none.
#[cfg_attr(not(feature = "worker"), allow(dead_code))] // opened only by the worker
trait Listen: fmt::Debug + Send + Sync {
    fn connect(&self) -> Connecting<'_>;
}

struct Listener<T> {
    config: tokio_postgres::Config,
    tls: T,
}

impl<T> fmt::Debug for Listener<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("config", &self.config)
            .field("tls", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T: MakeTls> Listen for Listener<T> {
    fn connect(&self) -> Connecting<'_> {
        let tls = self.tls.clone();
        Box::pin(async move {
            let (client, mut connection) = self.config.connect(tls).await?;
            let messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            Ok((client, Box::pin(messages) as Messages))
        })
    }
}

impl PoolExecutor {
    /// Runs on `pool`. A worker on it polls, unless [`listen_with`](Self::listen_with) is added.
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            listen: None,
            transaction_pooling: false,
        }
    }

    /// A pool of `size` connections to `url` (see [`pool`](crate::pool())), with LISTEN on the same server,
    /// both with the URL's TLS policy.
    pub fn connect(url: &str, size: usize) -> Result<Self, ConnectorError> {
        let (config, tls) = tls::from_url(url)?;
        with_listen(config, size, tls)
    }

    /// [`connect`](Self::connect) with a TLS connector of your own, for the pool and the LISTEN connection
    /// alike (see [`pool_with_tls`](crate::pool_with_tls)).
    pub fn connect_with_tls<T: MakeTls>(
        url: &str,
        size: usize,
        tls: T,
    ) -> Result<Self, ConnectorError> {
        with_listen(tls::for_own_connector(url)?, size, tls)
    }

    /// Opens LISTEN connections without TLS with `config`, so an idle worker wakes at once.
    pub fn listen_with(self, config: tokio_postgres::Config) -> Self {
        self.listen_with_tls(config, NoTls)
    }

    /// Opens LISTEN connections with `config` and the TLS connector `tls`, so an idle worker wakes at once.
    pub fn listen_with_tls<T: MakeTls>(mut self, config: tokio_postgres::Config, tls: T) -> Self {
        self.listen = Some(Arc::new(Listener { config, tls }));
        self
    }

    /// Runs each statement unnamed, so nothing stays prepared on the connection: for a pool of connections
    /// through PgBouncer in transaction pooling mode (before 1.21, or without `max_prepared_statements`),
    /// which hands each statement to whichever server connection is free.
    ///
    /// On a connection you hold, the counterpart is [`TransactionPooling`].
    pub fn transaction_pooling(mut self) -> Self {
        self.transaction_pooling = true;
        self
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl AsyncExecutor for PoolExecutor {
    async fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError> {
        let mut client = CloseIfAbandoned {
            object: Some(self.pool.get().await.map_err(pool_error)?),
        };
        let Some(object) = client.object.as_ref() else {
            return Err(ConnectorError::new(
                CONNECTOR,
                ErrorKind::Other,
                "no connection",
            ));
        };
        let rows = if self.transaction_pooling {
            TransactionPooling(object)
                .into_executor()?
                .query(sql, arg)
                .await
        } else {
            object.into_executor()?.query(sql, arg).await
        };
        // A connection-kind error leaves the connection unfit (lost, or on a server that is a standby
        // now, after a failover): it is closed, and the next one the pool opens finds the primary.
        if !matches!(&rows, Err(e) if e.kind == ErrorKind::Connection) {
            client.finished();
        }
        rows
    }
}

/// A pooled connection that is closed, not returned to the pool, when the statement on it is abandoned
/// (its future dropped, as a worker does when a statement outlives its timeout): its answer may still be
/// on the way, or the connection may have gone silent, so it is not fit for the next statement.
struct CloseIfAbandoned {
    object: Option<deadpool_postgres::Object>,
}

impl CloseIfAbandoned {
    /// The statement ended: the connection goes back to the pool.
    fn finished(&mut self) {
        self.object.take();
    }
}

impl Drop for CloseIfAbandoned {
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            // Out of the pool for good; dropping the client closes the connection.
            drop(deadpool_postgres::Object::take(object));
        }
    }
}

/// Takes a connection from the pool for each statement.
impl IntoAsyncExecutor<TokioPostgres> for &Pool {
    type Executor = PoolExecutor;
    fn into_executor(self) -> Result<PoolExecutor, ConnectorError> {
        Ok(PoolExecutor::new(self.clone()))
    }
}

/// Takes a connection from the pool for each statement.
impl IntoAsyncExecutor<TokioPostgres> for &PoolExecutor {
    type Executor = PoolExecutor;
    fn into_executor(self) -> Result<PoolExecutor, ConnectorError> {
        Ok(self.clone())
    }
}

/// What the pool reported, as a [`ConnectorError`]; the driver's own errors go through [`connector_error`].
fn pool_error(e: PoolError) -> ConnectorError {
    let kind = match e {
        PoolError::Backend(e) => return connector_error(e),
        PoolError::Timeout(TimeoutType::Wait) => ErrorKind::PoolTimeout,
        PoolError::Timeout(_) | PoolError::Closed | PoolError::PostCreateHook(_) => {
            ErrorKind::Connection
        }
        _ => ErrorKind::Other,
    };
    ConnectorError::new(CONNECTOR, kind, e.to_string()).with_source(e)
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
        let Some(listener) = &self.listen else {
            return Err(ConnectorError::new(
                CONNECTOR,
                ErrorKind::Unsupported,
                "this PoolExecutor has no LISTEN connection: build it with `connect` or `listen_with`",
            ));
        };
        let (client, mut messages) = listener.connect().await.map_err(connector_error)?;
        let client = Arc::new(client);
        let keep_open = client.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let forward = tx.clone();
        let forwarding = async move {
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(n) = message {
                    let n = Notification {
                        channel: n.channel().to_owned(),
                        payload: n.payload().to_owned(),
                    };
                    if forward.send(n).is_err() {
                        return;
                    }
                }
            }
        };
        tokio::spawn(async move {
            // Runs until the connection is lost or the receiver is dropped; then the client and the
            // connection are dropped here, which closes the connection.
            let _client = keep_open;
            tokio::select! {
                () = forwarding => {}
                () = tx.closed() => {}
            }
        });
        let listen: String = channels
            .iter()
            .map(|c| format!("LISTEN \"{}\";", c.replace('"', "\"\"")))
            .collect();
        client
            .batch_execute(&listen)
            .await
            .map_err(connector_error)?;
        Ok(rx)
    }
}
