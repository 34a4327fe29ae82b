//! jobq's conformance suite through the sync `postgres` crate, three times: on a `&mut Client` whose
//! transaction the test opens with `BEGIN`, on the same with a `StatementCache`, and on a real
//! `postgres::Transaction` from `client.transaction()`. The pooled cases run on an r2d2 pool, the worker
//! cases on a `PoolExecutor` that LISTENs.
//!
//! The suite is async and the `postgres` client blocks on a runtime of its own, which must not happen on a
//! tokio worker thread: every call runs on tokio's blocking threads or on a thread of its own, and the
//! clients and pools are dropped off the runtime too (dropping a client closes it by blocking).

use jobq_core::{Error, Query};
use jobq_postgres::{PoolExecutor, StatementCache};
use jobq_testkit::{CallerConnection, Harness, PooledConnection, WorkerHarness};
use postgres::{Client, GenericClient, NoTls, SimpleQueryMessage, Transaction};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::oneshot;

/// Runs `f` on tokio's blocking threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Drops `value` on a thread of its own, outside the async runtime.
fn drop_off_runtime<T: Send + 'static>(value: T) {
    std::thread::spawn(move || drop(value)).join().unwrap();
}

/// The first column of the first row of `sql`, as text, read with the simple protocol.
fn first_text<C: GenericClient>(client: &mut C, sql: &str) -> Result<Option<String>, String> {
    let messages = client.simple_query(sql).map_err(|e| e.to_string())?;
    Ok(messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
            _ => None,
        })
        .flatten())
}

/// An r2d2 pool, used as users do: `run_blocking(&pool)`.
struct Pool(Option<jobq_postgres::Pool>);

impl PooledConnection for Pool {
    async fn run<T: Send + 'static>(&self, query: Query<T>) -> Result<T, Error> {
        let pool = self.0.clone().unwrap();
        blocking(move || query.run_blocking(&pool)).await
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        drop_off_runtime(self.0.take());
    }
}

async fn pool(url: &str) -> Pool {
    let url = url.to_owned();
    Pool(Some(
        blocking(move || jobq_postgres::pool(&url, 4))
            .await
            .unwrap(),
    ))
}

/// The caller's `Client`, used as users do: `run_blocking(&mut client)`, or with a [`StatementCache`] beside
/// it: `run_blocking(statements.on(&mut client))`.
///
/// The transaction is opened and ended with `batch_execute("BEGIN")` and friends because a
/// `postgres::Transaction` borrows the client mutably, so a struct cannot keep both across the harness's
/// separate begin/run/commit calls. jobq cannot tell the difference: it sees the same open transaction on
/// the same connection. The real `Transaction` path is exercised by [`ViaTransaction`].
struct ClientConn(Option<Arc<Mutex<Held>>>);

/// The client, and its statement cache when the harness uses one.
struct Held {
    client: Client,
    statements: Option<StatementCache>,
}

impl ClientConn {
    async fn new(url: &str, statements: Option<StatementCache>) -> Self {
        let client = connect(url).await;
        Self(Some(Arc::new(Mutex::new(Held { client, statements }))))
    }

    async fn with<T: Send + 'static>(&self, f: impl FnOnce(&mut Held) -> T + Send + 'static) -> T {
        let held = self.0.clone().unwrap();
        blocking(move || f(&mut held.lock().unwrap())).await
    }
}

impl Drop for ClientConn {
    fn drop(&mut self) {
        drop_off_runtime(self.0.take());
    }
}

impl CallerConnection for ClientConn {
    async fn begin(&mut self) {
        self.with(|h| h.client.batch_execute("BEGIN").unwrap())
            .await;
    }
    async fn commit(&mut self) {
        self.with(|h| h.client.batch_execute("COMMIT").unwrap())
            .await;
    }
    async fn rollback(&mut self) {
        self.with(|h| h.client.batch_execute("ROLLBACK").unwrap())
            .await;
    }
    async fn sql(&mut self, sql: &str) -> Result<Option<String>, String> {
        let sql = sql.to_owned();
        self.with(move |h| first_text(&mut h.client, &sql)).await
    }
    async fn run<T: Send + 'static>(&mut self, query: Query<T>) -> Result<T, Error> {
        self.with(move |h| match &mut h.statements {
            Some(statements) => query.run_blocking(statements.on(&mut h.client)),
            None => query.run_blocking(&mut h.client),
        })
        .await
    }
}

async fn connect(url: &str) -> Client {
    let url = url.to_owned();
    blocking(move || Client::connect(&url, NoTls).unwrap()).await
}

/// The caller's `Client`; with `CACHED`, through a [`StatementCache`] that prepares jobq's statements once.
struct ViaClient<const CACHED: bool = false>;

impl<const CACHED: bool> Harness for ViaClient<CACHED> {
    const CONNECTOR: &'static str = jobq_postgres::CONNECTOR;
    type Conn = ClientConn;
    type Pool = Pool;
    async fn connect(url: &str) -> ClientConn {
        ClientConn::new(url, CACHED.then(StatementCache::new)).await
    }
    async fn pool(url: &str) -> Pool {
        pool(url).await
    }
}

/// What a command runs on: the client, or the transaction open on it.
enum On<'a, 'c> {
    Client(&'a mut Client),
    Transaction(&'a mut Transaction<'c>),
}

type Command = Box<dyn for<'a, 'c> FnOnce(On<'a, 'c>) + Send>;

enum Message {
    Begin(oneshot::Sender<()>),
    Commit(oneshot::Sender<()>),
    Rollback(oneshot::Sender<()>),
    Run(Command),
}

/// The caller's connection with transactions from `client.transaction()`, used as users do:
/// `run_blocking(&mut tx)`.
///
/// A thread owns the client and the `Transaction` borrowing it, and runs what the test sends it.
struct TransactionConn(mpsc::Sender<Message>);

impl TransactionConn {
    fn start(mut client: Client) -> Self {
        let (tx, rx) = mpsc::channel::<Message>();
        std::thread::spawn(move || {
            while let Ok(message) = rx.recv() {
                match message {
                    Message::Begin(done) => {
                        let mut transaction = client.transaction().unwrap();
                        let _ = done.send(());
                        while let Ok(message) = rx.recv() {
                            match message {
                                Message::Run(command) => command(On::Transaction(&mut transaction)),
                                Message::Commit(done) => {
                                    transaction.commit().unwrap();
                                    let _ = done.send(());
                                    break;
                                }
                                Message::Rollback(done) => {
                                    transaction.rollback().unwrap();
                                    let _ = done.send(());
                                    break;
                                }
                                Message::Begin(_) => panic!("a transaction is already open"),
                            }
                        }
                    }
                    Message::Run(command) => command(On::Client(&mut client)),
                    Message::Commit(_) | Message::Rollback(_) => panic!("no transaction is open"),
                }
            }
        });
        Self(tx)
    }

    async fn control(&self, message: fn(oneshot::Sender<()>) -> Message) {
        let (done, wait) = oneshot::channel();
        self.0.send(message(done)).unwrap();
        wait.await.unwrap();
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl for<'a, 'c> FnOnce(On<'a, 'c>) -> T + Send + 'static,
    ) -> T {
        let (reply, result) = oneshot::channel();
        let command: Command = Box::new(move |on| {
            let _ = reply.send(f(on));
        });
        self.0.send(Message::Run(command)).unwrap();
        result.await.unwrap()
    }
}

impl CallerConnection for TransactionConn {
    async fn begin(&mut self) {
        self.control(Message::Begin).await;
    }
    async fn commit(&mut self) {
        self.control(Message::Commit).await;
    }
    async fn rollback(&mut self) {
        self.control(Message::Rollback).await;
    }
    async fn sql(&mut self, sql: &str) -> Result<Option<String>, String> {
        let sql = sql.to_owned();
        self.call(move |on| match on {
            On::Client(c) => first_text(c, &sql),
            On::Transaction(t) => first_text(t, &sql),
        })
        .await
    }
    async fn run<T: Send + 'static>(&mut self, query: Query<T>) -> Result<T, Error> {
        self.call(move |on| match on {
            On::Client(c) => query.run_blocking(c),
            On::Transaction(t) => query.run_blocking(t),
        })
        .await
    }
}

struct ViaTransaction;

impl Harness for ViaTransaction {
    const CONNECTOR: &'static str = jobq_postgres::CONNECTOR;
    type Conn = TransactionConn;
    type Pool = Pool;
    async fn connect(url: &str) -> TransactionConn {
        TransactionConn::start(connect(url).await)
    }
    async fn pool(url: &str) -> Pool {
        pool(url).await
    }
}

/// A worker backend on an r2d2 pool that LISTENs. The worker drops it on the runtime when it stops;
/// `PoolExecutor` then closes its clients off the runtime by itself.
async fn backend(url: &str) -> PoolExecutor {
    let url = url.to_owned();
    blocking(move || PoolExecutor::connect(&url, 4).unwrap()).await
}

impl WorkerHarness for ViaClient {
    type Backend = PoolExecutor;
    const LISTENS: bool = true;
    async fn backend(url: &str) -> PoolExecutor {
        backend(url).await
    }
}

impl WorkerHarness for ViaTransaction {
    type Backend = PoolExecutor;
    const LISTENS: bool = true;
    async fn backend(url: &str) -> PoolExecutor {
        backend(url).await
    }
}

mod client {
    jobq_testkit::conformance_tests!(super::ViaClient);
    jobq_testkit::worker_tests!(super::ViaClient);
}

mod transaction {
    jobq_testkit::conformance_tests!(super::ViaTransaction);
    jobq_testkit::worker_tests!(super::ViaTransaction);
}

mod statement_cache {
    jobq_testkit::conformance_tests!(super::ViaClient<true>);
}
