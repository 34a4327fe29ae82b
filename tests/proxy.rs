//! The fault proxy: it forwards to the throwaway server, and pauses, cuts and blackholes connections as
//! told. The waits of 500 ms assert that something does *not* happen; what must happen is polled for with
//! a generous limit.

use jobq_tests::connect;
use jobq_tests::proxy::FaultProxy;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a query that must not answer is given.
const SILENT: Duration = Duration::from_millis(500);
/// How long something that must happen may take.
const LIMIT: Duration = Duration::from_secs(20);

/// Polls `condition` until it holds; panics naming `what` after [`LIMIT`].
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn answers(client: &tokio_postgres::Client) -> i32 {
    client.query_one("SELECT 41 + 1", &[]).await.unwrap().get(0)
}

#[test]
fn urls_point_at_the_proxy() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = FaultProxy::start(upstream.local_addr().unwrap())
            .await
            .unwrap();
        let at = proxy.addr();
        assert!(at.ip().is_loopback());
        assert_eq!(
            proxy.url("postgres://postgres@127.0.0.1:5432/jobq_test_1?application_name=x"),
            format!("postgres://postgres@{at}/jobq_test_1?application_name=x")
        );
        assert_eq!(
            proxy.url("postgresql://u:p@db.example:6543"),
            format!("postgresql://u:p@{at}")
        );
        assert_eq!(
            proxy.url("postgres://[::1]:5432/db"),
            format!("postgres://{at}/db")
        );
        assert_eq!(
            proxy.url("postgres://localhost/db"),
            format!("postgres://{at}/db")
        );

        let named = FaultProxy::for_url("postgres://postgres@localhost:5432/db")
            .await
            .unwrap();
        assert_ne!(named.addr(), at, "a port of its own");
        assert!(FaultProxy::for_url("no url").await.is_err());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_go_through_and_connections_are_counted() {
    let db = jobq_tempdb::database();
    let proxy = FaultProxy::for_url(db.url()).await.unwrap();
    assert_eq!(proxy.connections(), 0);
    let url = proxy.url(db.url());
    let a = connect(&url).await;
    let b = connect(&url).await;
    assert_eq!(proxy.connections(), 2);
    assert_eq!(answers(&a).await, 42);
    assert_eq!(answers(&b).await, 42);
    let direct = connect(db.url()).await;
    let from_proxy: bool = direct
        .query_one(
            "SELECT count(*) = 2 FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(from_proxy, "two sessions on the server");
    drop(a);
    eventually("one connection left after a client closes", || {
        proxy.connections() == 1
    })
    .await;
    assert_eq!(answers(&b).await, 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_holds_every_connection_until_resumed() {
    let db = jobq_tempdb::database();
    let proxy = FaultProxy::for_url(db.url()).await.unwrap();
    let url = proxy.url(db.url());
    let idle = connect(&url).await;
    let asking = connect(&url).await;

    proxy.pause();
    let query = tokio::spawn(async move {
        let answer = asking.query_one("SELECT 1", &[]).await;
        (asking, answer)
    });
    tokio::time::sleep(SILENT).await;
    assert!(!query.is_finished(), "no answer while paused");
    assert!(
        tokio::time::timeout(SILENT, tokio_postgres::connect(&url, tokio_postgres::NoTls))
            .await
            .is_err(),
        "a new connection is accepted but its startup gets no answer"
    );
    eventually("the connection tried while paused was accepted", || {
        proxy.connections() == 3
    })
    .await;
    assert!(!idle.is_closed() && !query.is_finished());
    tokio::time::sleep(SILENT).await;
    assert_eq!(
        proxy.connections(),
        3,
        "the abandoned connection is not closed upstream while paused"
    );

    proxy.resume();
    eventually("the abandoned connection closes once resumed", || {
        proxy.connections() == 2
    })
    .await;
    assert_eq!(answers(&idle).await, 42, "an idle connection works again");
    assert_eq!(answers(&connect(&url).await).await, 42);
    // The query's bytes were dropped, not held: it is lost, and fails once the connection is cut.
    tokio::time::sleep(SILENT).await;
    assert!(!query.is_finished(), "a query sent while paused is lost");
    proxy.cut();
    let (asking, answer) = tokio::time::timeout(LIMIT, query).await.unwrap().unwrap();
    assert!(answer.is_err());
    eventually("the client sees its connection closed", || {
        asking.is_closed()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_closes_the_current_connections_only() {
    let db = jobq_tempdb::database();
    let proxy = FaultProxy::for_url(db.url()).await.unwrap();
    let url = proxy.url(db.url());
    let a = connect(&url).await;
    let b = connect(&url).await;
    assert_eq!(answers(&a).await, 42);

    proxy.cut();
    eventually("both clients see their connection closed", || {
        a.is_closed() && b.is_closed()
    })
    .await;
    assert!(a.query_one("SELECT 1", &[]).await.is_err());
    assert!(b.query_one("SELECT 1", &[]).await.is_err());
    eventually("no connection left", || proxy.connections() == 0).await;
    let direct = connect(db.url()).await;
    jobq_tests::wait_until(
        &direct,
        "SELECT count(*) = 0 FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
        LIMIT,
    )
    .await;

    let c = connect(&url).await;
    assert_eq!(answers(&c).await, 42, "a new connection is forwarded");
    assert_eq!(proxy.connections(), 1);

    // A cut while paused closes too.
    proxy.pause();
    proxy.cut();
    eventually("a cut during a pause closes", || c.is_closed()).await;
    proxy.resume();
    assert_eq!(answers(&connect(&url).await).await, 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackhole_silences_the_current_connections_for_good() {
    let db = jobq_tempdb::database();
    let proxy = FaultProxy::for_url(db.url()).await.unwrap();
    let url = proxy.url(db.url());
    let lost = connect(&url).await;
    let pid: i32 = lost
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    proxy.blackhole();
    let query = tokio::spawn(async move {
        let answer = lost.query_one("SELECT 1", &[]).await;
        (lost, answer)
    });
    let fresh = connect(&url).await;
    assert_eq!(answers(&fresh).await, 42, "a new connection is forwarded");
    assert_eq!(proxy.connections(), 2);
    tokio::time::sleep(SILENT).await;
    assert!(!query.is_finished(), "the old connection gets no answer");

    // The server ends the old session: its client hears nothing of it either.
    let terminated: bool = fresh
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(terminated);
    tokio::time::sleep(SILENT).await;
    assert!(!query.is_finished(), "no error, no EOF through a blackhole");
    assert_eq!(
        proxy.connections(),
        2,
        "the client side is kept open after the server closed"
    );

    proxy.resume();
    tokio::time::sleep(SILENT).await;
    assert!(!query.is_finished(), "resume does not undo a blackhole");

    proxy.cut();
    let (lost, answer) = tokio::time::timeout(LIMIT, query).await.unwrap().unwrap();
    assert!(answer.is_err(), "a cut ends the blackholed connection");
    eventually("the client sees its connection closed", || lost.is_closed()).await;
    eventually("the cut ends every other current connection", || {
        fresh.is_closed()
    })
    .await;
    eventually("no connection left", || proxy.connections() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_proxy_closes_everything() {
    let db = jobq_tempdb::database();
    let proxy = FaultProxy::for_url(db.url()).await.unwrap();
    let (url, addr) = (proxy.url(db.url()), proxy.addr());
    let forwarded = connect(&url).await;
    let blackholed = connect(&url).await;
    proxy.blackhole();
    let paused = connect(&url).await;
    proxy.pause();
    drop(proxy);
    eventually("every client sees its connection closed", || {
        forwarded.is_closed() && blackholed.is_closed() && paused.is_closed()
    })
    .await;
    let deadline = tokio::time::Instant::now() + LIMIT;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the proxy still accepts"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A proxy in front of a plain TCP listener, and one connection through it: (client, server side).
async fn raw_pair() -> (FaultProxy, TcpListener, TcpStream, TcpStream) {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = FaultProxy::start(upstream.local_addr().unwrap())
        .await
        .unwrap();
    let (client, server) = raw_connect(&proxy, &upstream).await;
    (proxy, upstream, client, server)
}

async fn raw_connect(proxy: &FaultProxy, upstream: &TcpListener) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect(proxy.addr()).await.unwrap();
    let (server, _) = tokio::time::timeout(LIMIT, upstream.accept())
        .await
        .unwrap()
        .unwrap();
    (client, server)
}

/// Far more than the kernel buffers of both sockets hold.
const FLOOD: usize = 64 << 20;

/// Writes [`FLOOD`] zero bytes each way at once: both writes complete only if the proxy keeps reading.
async fn flood_both_ways(client: &mut TcpStream, server: &mut TcpStream) {
    let junk = vec![0u8; FLOOD];
    let (up, down) = tokio::join!(
        tokio::time::timeout(LIMIT, client.write_all(&junk)),
        tokio::time::timeout(LIMIT, server.write_all(&junk)),
    );
    up.expect("the proxy reads the client while not forwarding")
        .unwrap();
    down.expect("the proxy reads the server while not forwarding")
        .unwrap();
}

/// Reads from `from` until `marker` arrives; everything before it must be zeros (leftovers of a flood
/// that the proxy had not read yet when it resumed).
async fn read_until(from: &mut TcpStream, marker: &[u8]) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while !got.ends_with(marker) {
        let n = tokio::time::timeout(LIMIT, from.read(&mut buf))
            .await
            .expect("the marker arrives")
            .unwrap();
        assert_ne!(n, 0, "closed before the marker arrived");
        got.extend_from_slice(&buf[..n]);
    }
    let before = &got[..got.len() - marker.len()];
    assert!(before.iter().all(|&b| b == 0), "only flood leftovers");
    assert!(before.len() < FLOOD, "most of the flood was dropped");
}

async fn nothing_arrives(on: &mut TcpStream) {
    let mut buf = [0u8; 16];
    assert!(
        tokio::time::timeout(SILENT, on.read(&mut buf))
            .await
            .is_err(),
        "no byte and no EOF"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_connections_are_drained_both_ways_and_kept_open() {
    let (proxy, _upstream, mut client, mut server) = raw_pair().await;
    client.write_all(b"ping").await.unwrap();
    read_until(&mut server, b"ping").await;

    proxy.pause();
    flood_both_ways(&mut client, &mut server).await;
    nothing_arrives(&mut client).await;
    nothing_arrives(&mut server).await;
    assert_eq!(proxy.connections(), 1);

    proxy.resume();
    client.write_all(b"after").await.unwrap();
    server.write_all(b"reply").await.unwrap();
    read_until(&mut server, b"after").await;
    read_until(&mut client, b"reply").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_connections_are_drained_and_never_closed() {
    let (proxy, upstream, mut client, mut server) = raw_pair().await;
    proxy.blackhole();
    flood_both_ways(&mut client, &mut server).await;
    nothing_arrives(&mut client).await;
    nothing_arrives(&mut server).await;

    let (mut new_client, mut new_server) = raw_connect(&proxy, &upstream).await;
    new_client.write_all(b"new").await.unwrap();
    read_until(&mut new_server, b"new").await;

    // The server goes away: the client keeps waiting on an open socket.
    drop(server);
    nothing_arrives(&mut client).await;
    assert_eq!(proxy.connections(), 2);
    client.write_all(b"still writable").await.unwrap();

    proxy.cut();
    let mut buf = [0u8; 16];
    let end = tokio::time::timeout(LIMIT, client.read(&mut buf))
        .await
        .expect("a cut closes the client side");
    assert!(matches!(end, Ok(0) | Err(_)));
    let end = tokio::time::timeout(LIMIT, new_server.read(&mut buf))
        .await
        .expect("and the server side of the other connection");
    assert!(matches!(end, Ok(0) | Err(_)));
    eventually("no connection left", || proxy.connections() == 0).await;
}

/// While answers are lost, a statement still reaches the server and commits; only its answer is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_still_commit() {
    let db = jobq_tempdb::database();
    let observer = connect(db.url()).await;
    observer
        .batch_execute("CREATE TABLE marks (n int)")
        .await
        .unwrap();
    let proxy = FaultProxy::for_url(db.url()).await.unwrap();
    let client = connect(&proxy.url(db.url())).await;
    proxy.lose_answers();
    // The simple protocol: one message, so nothing waits for an answer before the statement runs.
    let insert = client.batch_execute("INSERT INTO marks VALUES (1)");
    assert!(
        tokio::time::timeout(SILENT, insert).await.is_err(),
        "no answer"
    );
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let n: i64 = observer
            .query_one("SELECT count(*) FROM marks", &[])
            .await
            .unwrap()
            .get(0);
        if n == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the insert never committed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.resume();
    let fresh = connect(&proxy.url(db.url())).await;
    assert_eq!(answers(&fresh).await, 42);
}
