//! TLS for the connections this crate opens: the URL's `sslmode`/`sslrootcert` (read by
//! [`jobq_core::tls`]), or a connector of the caller's own. (Twin of `tls.rs` in jobq-postgres, whose
//! `Config` is another type: change both.)

use crate::CONNECTOR;
use crate::error::connector_error;
use jobq_core::ConnectorError;
use jobq_core::tls::TlsPolicy;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio_postgres::Socket;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

/// The connector `pool`, `PoolExecutor::connect` and [`connect`] use for a URL: rustls with the URL's
/// `sslmode` and `sslrootcert` (feature `rustls`, on by default), or `NoTls` without that feature.
#[cfg(feature = "rustls")]
#[derive(Clone)]
pub struct DefaultTls(tokio_postgres_rustls::MakeRustlsConnect);

#[cfg(feature = "rustls")]
impl std::fmt::Debug for DefaultTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DefaultTls(rustls)")
    }
}

#[cfg(feature = "rustls")]
impl<S> MakeTlsConnect<S> for DefaultTls
where
    tokio_postgres_rustls::MakeRustlsConnect: MakeTlsConnect<S>,
{
    type Stream = <tokio_postgres_rustls::MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <tokio_postgres_rustls::MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;
    type Error = <tokio_postgres_rustls::MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        self.0.make_tls_connect(domain)
    }
}

/// The connector `pool`, `PoolExecutor::connect` and [`connect`] use for a URL: rustls with the URL's
/// `sslmode` and `sslrootcert` (feature `rustls`, on by default), or `NoTls` without that feature.
#[cfg(not(feature = "rustls"))]
pub type DefaultTls = tokio_postgres::NoTls;

/// A TLS connector jobq can open its connections with, pooled and LISTEN alike: any tokio-postgres
/// [`MakeTlsConnect`] that can be cloned and sent between threads, such as `NoTls`,
/// `tokio_postgres_rustls::MakeRustlsConnect` or `postgres_openssl::MakeTlsConnector`.
pub trait MakeTls:
    MakeTlsConnect<
        Socket,
        Stream: Send + Sync + 'static,
        TlsConnect: Send + Sync + TlsConnect<Socket, Future: Send>,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> MakeTls for T where
    T: MakeTlsConnect<
            Socket,
            Stream: Send + Sync + 'static,
            TlsConnect: Send + Sync + TlsConnect<Socket, Future: Send>,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// The settings of `url` (with jobq's network bounds) and the connector its `sslmode`/`sslrootcert` ask
/// for. Everything is checked here, before any connection: an unknown `sslmode`, a missing root
/// certificate, or (without the `rustls` feature) a mode that needs TLS.
pub(crate) fn from_url(url: &str) -> Result<(tokio_postgres::Config, DefaultTls), ConnectorError> {
    let (policy, url) = policy(url)?;
    let config = bounded(&url)?;
    #[cfg(feature = "rustls")]
    let tls = DefaultTls(tokio_postgres_rustls::MakeRustlsConnect::new(
        policy
            .client_config()
            .map_err(|e| e.into_connector_error(CONNECTOR))?,
    ));
    #[cfg(not(feature = "rustls"))]
    let tls = {
        if policy.mode().requires_tls() {
            return Err(ConnectorError::new(
                CONNECTOR,
                jobq_core::ErrorKind::Unsupported,
                format!(
                    "sslmode={} needs TLS, and {CONNECTOR} was built without its `rustls` feature: \
                     enable it, or pass a connector of your own (`pool_with_tls`)",
                    policy.mode().as_str()
                ),
            ));
        }
        tokio_postgres::NoTls
    };
    Ok((config, tls))
}

/// The settings of `url` for a connector the caller chose: `sslmode` as tokio-postgres knows it,
/// `sslrootcert` dropped (the connector decides what to trust), with jobq's network bounds.
#[cfg(feature = "pool")]
pub(crate) fn for_own_connector(url: &str) -> Result<tokio_postgres::Config, ConnectorError> {
    bounded(&policy(url)?.1)
}

fn policy(url: &str) -> Result<(TlsPolicy, String), ConnectorError> {
    TlsPolicy::from_url(url).map_err(|e| e.into_connector_error(CONNECTOR))
}

/// The connection settings of `url`, with jobq's [network bounds](jobq_core::network) wherever the URL sets
/// none. (Twin of `bounded` in jobq-postgres, whose `Config` is another type: change both.)
fn bounded(url: &str) -> Result<tokio_postgres::Config, ConnectorError> {
    use jobq_core::network;
    let mut config: tokio_postgres::Config = url.parse().map_err(connector_error)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(network::CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(network::TCP_USER_TIMEOUT);
    }
    // tokio-postgres keeps keepalives on, and idle for two hours unless told otherwise.
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(network::KEEPALIVE_IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(network::KEEPALIVE_INTERVAL);
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(network::KEEPALIVE_RETRIES);
    }
    Ok(config)
}

/// The connection half of [`connect`]: drive it (`tokio::spawn(connection)`) for the client to work.
pub type Connection = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

/// Opens one connection to `url` as jobq's own connections are opened: with the URL's TLS policy
/// (`sslmode`, `sslrootcert`; see [`jobq_core::tls`]) and jobq's [network bounds](jobq_core::network)
/// (connect timeout, keepalives, TCP user timeout) wherever the URL sets none.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let url = "postgres://app@db.example.com/app?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem";
/// let (client, connection) = jobq_tokio_postgres::connect(url).await?;
/// tokio::spawn(connection);
/// client.simple_query("SELECT 1").await?;
/// # Ok(()) }
/// ```
///
/// A bad `sslmode` or an unreadable root certificate fails before anything is sent; a server whose
/// certificate fails the check fails the TLS handshake, with rustls' reason in the message (such as
/// `invalid peer certificate: UnknownIssuer`).
pub async fn connect(url: &str) -> Result<(tokio_postgres::Client, Connection), ConnectorError> {
    let (config, tls) = from_url(url)?;
    let (client, connection) = config.connect(tls).await.map_err(connector_error)?;
    Ok((client, Box::pin(connection)))
}
