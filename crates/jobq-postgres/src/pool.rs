//! The pooled path: an r2d2 pool as an owned executor, which is also the worker's backend.

#[cfg(feature = "worker")]
use crate::error::connector_error;
use crate::tls::{self, DefaultTls, MakeTls};
use crate::{CONNECTOR, SyncPostgres};
#[cfg(feature = "worker")]
use jobq_core::worker::{Backend, Notification, SpawnBlocking};
use jobq_core::{BlockingExecutor, ConnectorError, ErrorKind, IntoBlockingExecutor};
use postgres::NoTls;
#[cfg(feature = "worker")]
use postgres::fallible_iterator::FallibleIterator;
use r2d2::ManageConnection;
use r2d2_postgres::PostgresConnectionManager;
use std::sync::Arc;
use std::time::Duration;
#[cfg(feature = "worker")]
use tokio::sync::{mpsc, oneshot};

/// The r2d2 pool type this crate's helpers build: with [`DefaultTls`] (rustls, with the default `rustls`
/// feature) from [`pool`](crate::pool()), with your connector from [`pool_with_tls`].
pub type Pool<T = DefaultTls> = r2d2::Pool<PostgresConnectionManager<T>>;

/// Builds an r2d2 pool of at most `size` connections to `url`, that waits at most 30 s for a free
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

/// [`pool`](crate::pool()) with a TLS connector of your own (used instead of the URL's `sslrootcert`;
/// `sslmode` still says whether TLS is required, tried or never used).
///
/// ```no_run
/// // `tls`: `tokio_postgres_rustls::MakeRustlsConnect::new(your_rustls_config)`, say.
/// # fn demo<T: jobq_postgres::MakeTls>(tls: T) -> Result<(), Box<dyn std::error::Error>> {
/// let pool = jobq_postgres::pool_with_tls("postgres://app@db/app?sslmode=require", 10, tls)?;
/// # Ok(()) }
/// ```
pub fn pool_with_tls<T: MakeTls>(
    url: &str,
    size: usize,
    tls: T,
) -> Result<Pool<T>, ConnectorError> {
    build(tls::for_own_connector(url)?, size, tls)
}

/// A pool of `size` connections with `config` and `tls`, and LISTEN connections made the same way.
fn with_listen<T: MakeTls>(
    config: postgres::Config,
    size: usize,
    tls: T,
) -> Result<PoolExecutor<PostgresConnectionManager<T>>, ConnectorError> {
    Ok(PoolExecutor::new(build(config.clone(), size, tls.clone())?).listen_with_tls(config, tls))
}

fn build<T: MakeTls>(
    config: postgres::Config,
    size: usize,
    tls: T,
) -> Result<Pool<T>, ConnectorError> {
    let size = u32::try_from(size).unwrap_or(u32::MAX);
    if size == 0 {
        return Err(ConnectorError::new(
            CONNECTOR,
            ErrorKind::Other,
            "a pool needs at least one connection",
        ));
    }
    r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(30))
        .build(PostgresConnectionManager::new(config, tls))
        .map_err(pool_error)
}

/// An r2d2 pool as an owned, cloneable executor: each statement takes a connection from the pool and
/// returns it right after. This is what `run_blocking(&pool)` uses, and what a worker runs on:
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use jobq_postgres::PoolExecutor;
/// use jobq_postgres::core::{Jobq, worker::{Worker, shutdown_signal}};
///
/// let backend = PoolExecutor::connect("postgres://app@localhost/app", 10)?;
/// Worker::builder(Jobq::default(), backend).build().run_until(shutdown_signal()).await?;
/// # Ok(()) }
/// ```
///
/// As a worker [`Backend`], its statements run on tokio's blocking threads ([`SpawnBlocking`]), and it
/// LISTENs on a connection of its own, on a thread of its own, when it knows how to make one
/// ([`connect`](Self::connect), [`listen_with`](Self::listen_with)); otherwise the worker polls.
///
/// Any r2d2 manager whose connections are `postgres::Client`s will do, such as
/// [`PostgresConnectionManager`] with any TLS connector.
pub struct PoolExecutor<M: Manager = PostgresConnectionManager<DefaultTls>> {
    pool: Arc<DropOffRuntime<M>>,
    listen: Option<Arc<dyn Listen>>,
}

/// Opens a LISTEN connection: its settings and TLS connector, with the connector's type erased.
#[cfg_attr(not(feature = "worker"), allow(dead_code))] // opened only by the worker
trait Listen: Send + Sync {
    fn connect(&self) -> Result<postgres::Client, postgres::Error>;
}

struct Listener<T> {
    config: postgres::Config,
    tls: T,
}

impl<T: MakeTls> Listen for Listener<T> {
    fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        self.config.connect(self.tls.clone())
    }
}

/// The pool, dropped off the async runtime when the last executor goes: closing a `postgres::Client`
/// blocks on a runtime of its own, which panics on a thread that drives tokio, and that is where a worker
/// drops its backend when it stops.
struct DropOffRuntime<M: Manager>(Option<r2d2::Pool<M>>);

impl<M: Manager> Drop for DropOffRuntime<M> {
    fn drop(&mut self) {
        let pool = self.0.take();
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::spawn(move || drop(pool));
        }
    }
}

/// An r2d2 connection manager whose connections are `postgres::Client`s.
pub trait Manager: ManageConnection<Connection = postgres::Client> {}

impl<M: ManageConnection<Connection = postgres::Client>> Manager for M {}

impl<M: Manager> Clone for PoolExecutor<M> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            listen: self.listen.clone(),
        }
    }
}

impl<M: Manager> std::fmt::Debug for PoolExecutor<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.pool().state();
        f.debug_struct("PoolExecutor")
            .field("connections", &state.connections)
            .field("idle_connections", &state.idle_connections)
            .field("listen", &self.listen.is_some())
            .finish()
    }
}

impl<M: Manager> PoolExecutor<M> {
    /// Runs on `pool`. A worker on it polls, unless [`listen_with`](Self::listen_with) is added.
    pub fn new(pool: r2d2::Pool<M>) -> Self {
        Self {
            pool: Arc::new(DropOffRuntime(Some(pool))),
            listen: None,
        }
    }

    /// Opens LISTEN connections without TLS with `config`, so an idle worker wakes at once.
    pub fn listen_with(self, config: postgres::Config) -> Self {
        self.listen_with_tls(config, NoTls)
    }

    /// Opens LISTEN connections with `config` and the TLS connector `tls`, so an idle worker wakes at once.
    pub fn listen_with_tls<T: MakeTls>(mut self, config: postgres::Config, tls: T) -> Self {
        self.listen = Some(Arc::new(Listener { config, tls }));
        self
    }

    /// The pool.
    pub fn pool(&self) -> &r2d2::Pool<M> {
        self.pool
            .0
            .as_ref()
            .expect("the pool is only taken when dropped")
    }
}

impl PoolExecutor {
    /// A pool of `size` connections to `url` (see [`pool`](crate::pool())), with LISTEN on the same server,
    /// both with the URL's TLS policy.
    pub fn connect(url: &str, size: usize) -> Result<Self, ConnectorError> {
        let (config, tls) = tls::from_url(url)?;
        with_listen(config, size, tls)
    }
}

impl<T: MakeTls> PoolExecutor<PostgresConnectionManager<T>> {
    /// [`connect`](PoolExecutor::connect) with a TLS connector of your own, for the pool and the LISTEN
    /// connection alike (see [`pool_with_tls`]).
    pub fn connect_with_tls(url: &str, size: usize, tls: T) -> Result<Self, ConnectorError> {
        with_listen(tls::for_own_connector(url)?, size, tls)
    }
}

impl<M: Manager> BlockingExecutor for PoolExecutor<M> {
    fn query(&mut self, sql: &str, arg: Option<&str>) -> Result<Vec<String>, ConnectorError> {
        let mut client = self.pool().get().map_err(pool_error)?;
        (&mut *client).into_executor()?.query(sql, arg)
    }
}

/// Takes a connection from the pool for each statement.
impl<M: Manager> IntoBlockingExecutor<SyncPostgres> for &r2d2::Pool<M> {
    type Executor = PoolExecutor<M>;
    fn into_executor(self) -> Result<PoolExecutor<M>, ConnectorError> {
        Ok(PoolExecutor::new(self.clone()))
    }
}

/// Takes a connection from the pool for each statement.
impl<M: Manager> IntoBlockingExecutor<SyncPostgres> for &PoolExecutor<M> {
    type Executor = PoolExecutor<M>;
    fn into_executor(self) -> Result<PoolExecutor<M>, ConnectorError> {
        Ok(self.clone())
    }
}

/// What r2d2 reported, as a [`ConnectorError`]. r2d2 only ever times out; it names the last failed
/// connection attempt when there was one, and then the cause is the connection, not a busy pool.
fn pool_error(e: r2d2::Error) -> ConnectorError {
    let message = e.to_string();
    let kind = if message.contains(": ") {
        ErrorKind::Connection
    } else {
        ErrorKind::PoolTimeout
    };
    ConnectorError::new(CONNECTOR, kind, message).with_source(e)
}

/// The worker's backend (feature `worker`).
#[cfg(feature = "worker")]
impl<M: Manager> Backend for PoolExecutor<M> {
    type Executor = SpawnBlocking<Self>;

    fn executor(&self) -> SpawnBlocking<Self> {
        SpawnBlocking(self.clone())
    }

    async fn listen(
        &self,
        channels: Vec<String>,
    ) -> Result<mpsc::UnboundedReceiver<Notification>, ConnectorError> {
        let Some(listener) = self.listen.clone() else {
            return Err(ConnectorError::new(
                CONNECTOR,
                ErrorKind::Unsupported,
                "this PoolExecutor has no LISTEN connection: build it with `connect` or `listen_with`",
            ));
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready, listening) = oneshot::channel();
        std::thread::Builder::new()
            .name("jobq-listen".into())
            .spawn(move || listen(&*listener, &channels, ready, &tx))
            .map_err(|e| {
                ConnectorError::new(CONNECTOR, ErrorKind::Other, "cannot start a thread")
                    .with_source(e)
            })?;
        match listening.await {
            Ok(Ok(())) => Ok(rx),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ConnectorError::new(
                CONNECTOR,
                ErrorKind::Other,
                "the LISTEN thread ended early",
            )),
        }
    }
}

/// The LISTEN thread: connects, LISTENs, reports readiness, then forwards notifications until the
/// connection is lost or the receiver is dropped (checked every second).
#[cfg(feature = "worker")]
fn listen(
    listener: &dyn Listen,
    channels: &[String],
    ready: oneshot::Sender<Result<(), ConnectorError>>,
    tx: &mpsc::UnboundedSender<Notification>,
) {
    let sql: String = channels
        .iter()
        .map(|c| format!("LISTEN \"{}\";", c.replace('"', "\"\"")))
        .collect();
    let client = listener
        .connect()
        .and_then(|mut c| c.batch_execute(&sql).map(|()| c));
    let mut client = match client {
        Ok(client) => {
            let _ = ready.send(Ok(()));
            client
        }
        Err(e) => {
            let _ = ready.send(Err(connector_error(e)));
            return;
        }
    };
    while !tx.is_closed() {
        let mut notifications = client.notifications();
        match notifications.timeout_iter(Duration::from_secs(1)).next() {
            Ok(Some(n)) => {
                let n = Notification {
                    channel: n.channel().to_owned(),
                    payload: n.payload().to_owned(),
                };
                if tx.send(n).is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
}
