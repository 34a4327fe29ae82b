//! jobq's conformance suite through tokio-postgres, three times: on a `&Client` whose transaction the test
//! opens with `BEGIN`, on the same with a `StatementCache`, and on a real `tokio_postgres::Transaction` from
//! `client.transaction()`. The pooled cases run on a deadpool pool, the worker cases on a `PoolExecutor` that
//! LISTENs.

use futures_util::future::BoxFuture;
use jobq_core::{Error, Query};
use jobq_testkit::{CallerConnection, Harness, PooledConnection, WorkerHarness};
use jobq_tokio_postgres::{PoolExecutor, StatementCache};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, GenericClient, NoTls, SimpleQueryMessage, Transaction};

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// The first column of the first row of `sql`, as text, read with the simple protocol.
async fn first_text<C: GenericClient + Sync>(
    client: &C,
    sql: &str,
) -> Result<Option<String>, String> {
    let messages = client.simple_query(sql).await.map_err(|e| e.to_string())?;
    Ok(messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
            _ => None,
        })
        .flatten())
}

/// A deadpool pool, used as users do: `run(&pool)`.
struct Pool(deadpool_postgres::Pool);

impl PooledConnection for Pool {
    async fn run<T: Send + 'static>(&self, query: Query<T>) -> Result<T, Error> {
        query.run(&self.0).await
    }
}

async fn pool(url: &str) -> Pool {
    Pool(jobq_tokio_postgres::pool(url, 4).unwrap())
}

/// The caller's `Client`, used as users do: `run(&client)`, or with a [`StatementCache`] beside it:
/// `run(statements.on(&client))`.
///
/// The transaction is opened and ended with `batch_execute("BEGIN")` and friends because a
/// `tokio_postgres::Transaction` borrows the client mutably, so a struct cannot keep both across the
/// harness's separate begin/run/commit calls. jobq cannot tell the difference: it sees the same open
/// transaction on the same connection. The real `Transaction` path is exercised by [`ViaTransaction`].
struct ClientConn {
    client: Client,
    statements: Option<StatementCache>,
}

impl CallerConnection for ClientConn {
    async fn begin(&mut self) {
        self.client.batch_execute("BEGIN").await.unwrap();
    }
    async fn commit(&mut self) {
        self.client.batch_execute("COMMIT").await.unwrap();
    }
    async fn rollback(&mut self) {
        self.client.batch_execute("ROLLBACK").await.unwrap();
    }
    async fn sql(&mut self, sql: &str) -> Result<Option<String>, String> {
        first_text(&self.client, sql).await
    }
    async fn run<T: Send + 'static>(&mut self, query: Query<T>) -> Result<T, Error> {
        match &self.statements {
            Some(statements) => query.run(statements.on(&self.client)).await,
            None => query.run(&self.client).await,
        }
    }
}

/// The caller's `Client`; with `CACHED`, through a [`StatementCache`] that prepares jobq's statements once.
struct ViaClient<const CACHED: bool = false>;

impl<const CACHED: bool> Harness for ViaClient<CACHED> {
    const CONNECTOR: &'static str = jobq_tokio_postgres::CONNECTOR;
    type Conn = ClientConn;
    type Pool = Pool;
    async fn connect(url: &str) -> ClientConn {
        ClientConn {
            client: connect(url).await,
            statements: CACHED.then(StatementCache::new),
        }
    }
    async fn pool(url: &str) -> Pool {
        pool(url).await
    }
}

/// What a command runs on: the client, or the transaction open on it.
enum On<'a> {
    Client(&'a Client),
    Transaction(&'a Transaction<'a>),
}

type Command = Box<dyn for<'a> FnOnce(On<'a>) -> BoxFuture<'a, ()> + Send>;

enum Message {
    Begin(oneshot::Sender<()>),
    Commit(oneshot::Sender<()>),
    Rollback(oneshot::Sender<()>),
    Run(Command),
}

/// The caller's connection with transactions from `client.transaction()`, used as users do: `run(&tx)`.
///
/// A task owns the client and the `Transaction` borrowing it, and runs what the test sends it.
struct TransactionConn(mpsc::UnboundedSender<Message>);

impl TransactionConn {
    fn start(mut client: Client) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                match message {
                    Message::Begin(done) => {
                        let transaction = client.transaction().await.unwrap();
                        let _ = done.send(());
                        while let Some(message) = rx.recv().await {
                            match message {
                                Message::Run(command) => {
                                    command(On::Transaction(&transaction)).await;
                                }
                                Message::Commit(done) => {
                                    transaction.commit().await.unwrap();
                                    let _ = done.send(());
                                    break;
                                }
                                Message::Rollback(done) => {
                                    transaction.rollback().await.unwrap();
                                    let _ = done.send(());
                                    break;
                                }
                                Message::Begin(_) => panic!("a transaction is already open"),
                            }
                        }
                    }
                    Message::Run(command) => command(On::Client(&client)).await,
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
        f: impl for<'a> FnOnce(On<'a>) -> BoxFuture<'a, T> + Send + 'static,
    ) -> T {
        let (reply, result) = oneshot::channel();
        let command: Command = Box::new(move |on| {
            Box::pin(async move {
                let _ = reply.send(f(on).await);
            })
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
        self.call(move |on| {
            Box::pin(async move {
                match on {
                    On::Client(c) => first_text(c, &sql).await,
                    On::Transaction(t) => first_text(t, &sql).await,
                }
            })
        })
        .await
    }
    async fn run<T: Send + 'static>(&mut self, query: Query<T>) -> Result<T, Error> {
        self.call(move |on| {
            Box::pin(async move {
                match on {
                    On::Client(c) => query.run(c).await,
                    On::Transaction(t) => query.run(t).await,
                }
            })
        })
        .await
    }
}

struct ViaTransaction;

impl Harness for ViaTransaction {
    const CONNECTOR: &'static str = jobq_tokio_postgres::CONNECTOR;
    type Conn = TransactionConn;
    type Pool = Pool;
    async fn connect(url: &str) -> TransactionConn {
        TransactionConn::start(connect(url).await)
    }
    async fn pool(url: &str) -> Pool {
        pool(url).await
    }
}

impl WorkerHarness for ViaClient {
    type Backend = PoolExecutor;
    const LISTENS: bool = true;
    async fn backend(url: &str) -> PoolExecutor {
        PoolExecutor::connect(url, 4).unwrap()
    }
}

impl WorkerHarness for ViaTransaction {
    type Backend = PoolExecutor;
    const LISTENS: bool = true;
    async fn backend(url: &str) -> PoolExecutor {
        PoolExecutor::connect(url, 4).unwrap()
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
