//! A loopback TCP proxy that can pause, cut and blackhole the connections through it: network faults
//! between a client and PostgreSQL, on demand.
//!
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! let db = jobq_tempdb::database();
//! let proxy = jobq_tests::proxy::FaultProxy::for_url(db.url()).await?;
//! let client = jobq_tests::connect(&proxy.url(db.url())).await;
//! proxy.pause(); // queries hang (bytes are read and dropped) until `proxy.resume()`
//! # Ok(()) }
//! ```
//!
//! Each connection belongs to the proxy's state at the time it was accepted: [`FaultProxy::cut`] and
//! [`FaultProxy::blackhole`] reach the connections open at the time of the call, [`FaultProxy::pause`]
//! every connection, old and new, while it lasts. Whenever bytes are not forwarded the proxy still reads
//! both sockets (and drops what it reads), so no peer ever waits on a full buffer, and it keeps them open:
//! a peer that closes its side then is not told to the other one until forwarding resumes (never, for a
//! blackholed connection). The proxy runs on the tokio runtime it was started on; dropping it ends every
//! task it spawned.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A TCP proxy on 127.0.0.1 in front of one upstream address, with faults on demand. Dropping it stops
/// accepting and closes every connection through it.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// What the proxy and its tasks share.
#[derive(Debug)]
struct Shared {
    /// Cancelled when the proxy is dropped; every `cut` token is a child of it.
    stop: CancellationToken,
    /// True while paused.
    paused: watch::Sender<bool>,
    /// True while the server's bytes are dropped (and the client's still forwarded).
    answers_lost: watch::Sender<bool>,
    /// The tokens handed to connections as they are accepted.
    current: Mutex<Tokens>,
    /// Connections open through the proxy.
    open: AtomicUsize,
}

/// The tokens a connection takes when it is accepted.
#[derive(Debug, Clone)]
struct Tokens {
    /// Cancelled by `cut` (or the proxy's drop): the connection closes.
    cut: CancellationToken,
    /// Cancelled by `blackhole`: the connection goes silent for good.
    silenced: CancellationToken,
}

impl FaultProxy {
    /// Listens on `127.0.0.1:<free port>` and forwards each accepted connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            current: Mutex::new(Tokens {
                cut: stop.child_token(),
                silenced: CancellationToken::new(),
            }),
            stop,
            paused: watch::Sender::new(false),
            answers_lost: watch::Sender::new(false),
            open: AtomicUsize::new(0),
        });
        tokio::spawn(accept(listener, upstream, shared.clone()));
        Ok(FaultProxy { addr, shared })
    }

    /// The same, for the host:port of a `postgres://user@host:port/db` URL (port 5432 when it names none).
    pub async fn for_url(url: &str) -> io::Result<FaultProxy> {
        let invalid = || io::Error::new(io::ErrorKind::InvalidInput, format!("no host in {url:?}"));
        let (start, end) = host_port(url).ok_or_else(invalid)?;
        let host_port = &url[start..end];
        let has_port = match host_port.rfind(']') {
            Some(bracket) => host_port[bracket..].contains(':'),
            None => host_port.contains(':'),
        };
        let target = if has_port {
            host_port.to_owned()
        } else {
            format!("{host_port}:5432")
        };
        let upstream = tokio::net::lookup_host(target)
            .await?
            .next()
            .ok_or_else(invalid)?;
        FaultProxy::start(upstream).await
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` (postgres://user@host:port/db?query) with host:port replaced by the proxy's address. A URL
    /// without a host is returned as it is.
    pub fn url(&self, url: &str) -> String {
        match host_port(url) {
            Some((start, end)) => format!("{}{}{}", &url[..start], self.addr, &url[end..]),
            None => url.to_owned(),
        }
    }

    /// Drops every byte, both ways, on every connection (current and new ones, which are still
    /// accepted), until [`FaultProxy::resume`]. Sockets stay open.
    pub fn pause(&self) {
        self.shared.paused.send_replace(true);
    }

    /// Forwards what clients send but drops everything the server sends back, on every connection, until
    /// [`FaultProxy::resume`]: each statement reaches the server, runs and commits, and its answer is lost.
    pub fn lose_answers(&self) {
        self.shared.answers_lost.send_replace(true);
    }

    /// Forwards again after [`FaultProxy::pause`] or [`FaultProxy::lose_answers`] (blackholed connections
    /// stay silent). Bytes dropped meanwhile are lost, so a connection that was mid-exchange is likely
    /// broken.
    pub fn resume(&self) {
        self.shared.paused.send_replace(false);
        self.shared.answers_lost.send_replace(false);
    }

    /// Closes every current connection at once (both sides see EOF); new connections are still accepted
    /// and forwarded (unless paused).
    pub fn cut(&self) {
        let mut current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        current.cut.cancel();
        current.cut = self.shared.stop.child_token();
    }

    /// The current connections go silent for good (bytes dropped both ways, sockets kept open, as a lost
    /// host or a failover to a new server at the same address) until [`FaultProxy::cut`] or the proxy's
    /// drop; connections made afterwards are forwarded normally.
    pub fn blackhole(&self) {
        let mut current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        current.silenced.cancel();
        current.silenced = CancellationToken::new();
    }

    /// How many connections are open through the proxy now: accepted and not yet closed on both sides
    /// (a blackholed connection counts until it is cut, even when its peers have closed).
    pub fn connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    /// Stops accepting and closes every connection.
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

/// Where host:port is in `scheme://[userinfo@]host:port[/path][?query]`, as a byte range.
fn host_port(url: &str) -> Option<(usize, usize)> {
    let authority = url.find("://")? + 3;
    let rest = &url[authority..];
    let end = authority + rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let start = url[authority..end]
        .rfind('@')
        .map_or(authority, |at| authority + at + 1);
    (start < end).then_some((start, end))
}

/// Accepts connections until the proxy is dropped. An accept error (say, too many open files) is
/// retried after a moment rather than ending the proxy.
async fn accept(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shared.stop.cancelled() => return,
        };
        let Ok((client, _)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let tokens = shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let gate = Gate {
            paused: shared.paused.subscribe(),
            silenced: tokens.silenced,
            answers_lost: None,
        };
        let answers = shared.answers_lost.subscribe();
        shared.open.fetch_add(1, Ordering::SeqCst);
        let open = Open(shared.clone());
        tokio::spawn(async move {
            let _open = open;
            tokio::select! {
                () = connection(client, upstream, gate, answers) => {}
                () = tokens.cut.cancelled() => {}
            }
        });
    }
}

/// Counts a connection as open while it lives.
struct Open(Arc<Shared>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether a connection forwards bytes now.
#[derive(Clone)]
struct Gate {
    paused: watch::Receiver<bool>,
    silenced: CancellationToken,
    /// For the server's direction only: true while answers are lost.
    answers_lost: Option<watch::Receiver<bool>>,
}

impl Gate {
    fn is_open(&self) -> bool {
        !*self.paused.borrow()
            && !self.silenced.is_cancelled()
            && !self
                .answers_lost
                .as_ref()
                .is_some_and(|lost| *lost.borrow())
    }

    /// Returns once the gate is closed (paused, silenced, or answers lost).
    async fn closed(&mut self) {
        let lost = async {
            match self.answers_lost.as_mut() {
                Some(lost) => drop(lost.wait_for(|lost| *lost).await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // An error means the proxy is gone: as good as closed.
            _ = self.paused.wait_for(|paused| *paused) => {}
            () = self.silenced.cancelled() => {}
            () = lost => {}
        }
    }

    /// Returns once the gate is open (never for a silenced connection).
    async fn opened(&mut self) {
        if self.silenced.is_cancelled() {
            return std::future::pending().await;
        }
        let resumed = tokio::select! {
            waited = self.paused.wait_for(|paused| !*paused) => waited.is_ok(),
            () = self.silenced.cancelled() => false,
        };
        if !resumed {
            // Silenced meanwhile, or the proxy is gone (its drop cuts this connection).
            std::future::pending::<()>().await;
        }
    }
}

/// Forwards between `client` and a new connection to `upstream`, as the gate allows, until a side
/// closes while the gate is open (or both sides have closed).
async fn connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut gate: Gate,
    answers: watch::Receiver<bool>,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        // Dropping the client's socket tells it, as a refused connection would.
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let up = pump(&mut client_read, &mut server_write, gate.clone());
    let answering = Gate {
        answers_lost: Some(answers),
        ..gate.clone()
    };
    let down = pump(&mut server_read, &mut client_write, answering);
    tokio::pin!(up, down);
    // When a side ends while forwarding, both are closed at once. Otherwise the other pump keeps reading
    // (and dropping) and that side stays open, unaware, until the gate opens again or it ends too.
    tokio::select! {
        () = &mut up => tokio::select! {
            () = gate.opened() => {}
            () = &mut down => {}
        },
        () = &mut down => tokio::select! {
            () = gate.opened() => {}
            () = &mut up => {}
        },
    }
    // The sockets are dropped here, which closes both.
}

/// Copies from `from` to `to` while the gate is open and drops what it reads while it is closed. Returns
/// when `from` ends (EOF or an error) or `to` fails; it never closes either.
async fn pump(from: &mut ReadHalf<'_>, to: &mut WriteHalf<'_>, mut gate: Gate) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !gate.is_open() {
            continue;
        }
        // A peer that does not read would block the write: give up on these bytes when the gate closes,
        // so `from` is read again.
        tokio::select! {
            written = to.write_all(&buf[..n]) => {
                if written.is_err() {
                    return;
                }
            }
            () = gate.closed() => {}
        }
    }
}
