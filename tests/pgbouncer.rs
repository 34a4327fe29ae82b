//! jobq through PgBouncer in transaction pooling mode (Debian's 1.18, which keeps no prepared statements
//! across transactions), for every adapter:
//!
//! - on the caller's connection inside a driver transaction (commit and rollback), and outside one;
//! - on the adapter's pool, from several tasks at once through more client connections than PgBouncer has
//!   server connections ([`jobq_tempdb::POOL_SIZE`]), so the statements of different clients take turns on
//!   the same server connections;
//! - a worker draining jobs through PgBouncer by polling (LISTEN cannot work through transaction pooling),
//!   and, for the adapters that can LISTEN elsewhere, a worker whose pool goes through PgBouncer while it
//!   LISTENs on a direct connection.
//!
//! Everything is checked in the database through a direct connection. Where `pgbouncer` is not installed,
//! each test reports as ignored with the reason (the `pgbouncer` cfg comes from `build.rs`); under `CI=true`
//! they run whatever, and fail loudly without it.

use jobq_core::prelude::*;
use jobq_core::worker::{Backend, JobContext, Worker};
use jobq_core::{CancelOutcome, Query};
use jobq_sqlx::TransactionPooling;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobq_tests::connect;

/// Client connections per pool: more than PgBouncer's server connections per database.
const CLIENTS: usize = 8;
/// Rounds of operations per client.
const ROUNDS: usize = 4;

/// The test's database, its URL through PgBouncer, and a direct connection that checks the results.
struct Setup {
    db: jobq_tempdb::TestDatabase,
    bouncer: String,
    observer: tokio_postgres::Client,
}

async fn setup() -> Setup {
    let db = jobq_tempdb::database();
    let bouncer = jobq_tempdb::pgbouncer_for_test(&db);
    let observer = connect(db.url()).await;
    observer
        .batch_execute("CREATE TABLE orders (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    Setup {
        db,
        bouncer,
        observer,
    }
}

impl Setup {
    async fn count(&self, sql: &str) -> i64 {
        self.observer
            .query_one(&format!("SELECT count(*) FROM ({sql}) s"), &[])
            .await
            .unwrap()
            .get(0)
    }

    async fn status(&self, id: JobId) -> String {
        self.observer
            .query_one("SELECT status::text FROM jobq.jobs WHERE id = $1", &[&id.0])
            .await
            .unwrap()
            .get(0)
    }

    async fn wait_for(&self, sql: &str) {
        jobq_tests::wait_until(&self.observer, sql, Duration::from_secs(60)).await;
    }
}

/// Drops a value on a thread of its own: a sync `postgres` client blocks when closed, which must not
/// happen on the async runtime.
struct OffRuntime<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> Drop for OffRuntime<T> {
    fn drop(&mut self) {
        let value = self.0.take();
        std::thread::spawn(move || drop(value)).join().unwrap();
    }
}

impl<T: Send + 'static> OffRuntime<T> {
    fn get(&mut self) -> &mut T {
        self.0.as_mut().expect("taken only on drop")
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// One way an adapter runs a query outside any transaction: its pool, or a connection the caller holds.
trait Runner: Clone + Send + Sync + 'static {
    fn run<T: Send + 'static>(
        &self,
        query: Query<T>,
    ) -> impl Future<Output = Result<T, Error>> + Send;
}

/// deadpool behind PgBouncer: a [`jobq_tokio_postgres::PoolExecutor`] in transaction pooling mode.
#[derive(Clone)]
struct TokioPool(jobq_tokio_postgres::PoolExecutor);
impl TokioPool {
    fn new(pool: deadpool_postgres::Pool) -> Self {
        Self(jobq_tokio_postgres::PoolExecutor::new(pool).transaction_pooling())
    }
}
impl Runner for TokioPool {
    async fn run<T: Send + 'static>(&self, query: Query<T>) -> Result<T, Error> {
        query.run(&self.0).await
    }
}

#[derive(Clone)]
struct TokioClient(Arc<tokio_postgres::Client>);
impl Runner for TokioClient {
    async fn run<T: Send + 'static>(&self, query: Query<T>) -> Result<T, Error> {
        query.run(&*self.0).await
    }
}

/// sqlx's pool behind PgBouncer: a [`jobq_sqlx::PoolExecutor`] in transaction pooling mode.
#[derive(Clone)]
struct SqlxPool(jobq_sqlx::PoolExecutor);
impl Runner for SqlxPool {
    async fn run<T: Send + 'static>(&self, query: Query<T>) -> Result<T, Error> {
        query.run(&self.0).await
    }
}

/// A sqlx connection the caller holds, wrapped in [`jobq_sqlx::TransactionPooling`] (unnamed statements),
/// each query in a transaction of its own (`conn.begin()`): sqlx parses and executes an unnamed statement
/// in two exchanges, which PgBouncer keeps on one server connection only inside a transaction (see
/// jobq-sqlx's docs).
#[derive(Clone)]
struct SqlxConn(Arc<tokio::sync::Mutex<sqlx::PgConnection>>);
impl Runner for SqlxConn {
    async fn run<T: Send + 'static>(&self, query: Query<T>) -> Result<T, Error> {
        use sqlx::Connection;
        let mut conn = self.0.lock().await;
        let mut tx = conn.begin().await.unwrap();
        let result = query.run(TransactionPooling(&mut *tx)).await;
        tx.commit().await.unwrap();
        result
    }
}

#[derive(Clone)]
struct SyncPool(jobq_postgres::PoolExecutor);
impl Runner for SyncPool {
    async fn run<T: Send + 'static>(&self, query: Query<T>) -> Result<T, Error> {
        let pool = self.0.clone();
        blocking(move || query.run_blocking(&pool)).await
    }
}

#[derive(Clone)]
struct SyncClient(Arc<Mutex<OffRuntime<postgres::Client>>>);
impl Runner for SyncClient {
    async fn run<T: Send + 'static>(&self, query: Query<T>) -> Result<T, Error> {
        let client = self.0.clone();
        blocking(move || query.run_blocking(client.lock().unwrap().get())).await
    }
}

/// diesel's pool behind PgBouncer: a [`jobq_diesel::PoolExecutor`] in transaction pooling mode.
#[derive(Clone)]
struct DieselPool(jobq_diesel::PoolExecutor);
impl Runner for DieselPool {
    async fn run<T: Send + 'static>(&self, query: Query<T>) -> Result<T, Error> {
        let pool = self.0.clone();
        blocking(move || query.run_blocking(&pool)).await
    }
}

/// A diesel connection the caller holds, wrapped in [`jobq_diesel::TransactionPooling`] (unnamed
/// statements), outside any transaction.
#[derive(Clone)]
struct DieselConn(Arc<Mutex<diesel::PgConnection>>);
impl Runner for DieselConn {
    async fn run<T: Send + 'static>(&self, query: Query<T>) -> Result<T, Error> {
        let conn = self.0.clone();
        blocking(move || {
            query.run_blocking(jobq_diesel::TransactionPooling(&mut *conn.lock().unwrap()))
        })
        .await
    }
}

/// Defer, batch defer, status, job and cancel from every runner at once, `ROUNDS` times each; then the
/// database holds exactly what the calls returned.
async fn operations<R: Runner>(setup: &Setup, runners: Vec<R>, queue: &str) {
    let jobq = Jobq::default();
    let clients = runners.len();
    let tasks: Vec<_> = runners
        .into_iter()
        .enumerate()
        .map(|(client, runner)| {
            let (jobq, queue) = (jobq.clone(), queue.to_owned());
            tokio::spawn(async move {
                let mut kept = Vec::new();
                let mut cancelled = Vec::new();
                for round in 0..ROUNDS {
                    let args = json!({"client": client, "round": round});
                    let id = runner
                        .run(
                            jobq.defer_job(NewJob::new("bounced", args.clone()))
                                .queue(&queue)
                                .priority(3)
                                .into_query(),
                        )
                        .await
                        .unwrap();
                    assert_eq!(runner.run(jobq.status(id)).await.unwrap(), Status::Todo);
                    let job = runner.run(jobq.job(id)).await.unwrap();
                    assert_eq!(
                        (
                            job.task.as_str(),
                            &job.args,
                            job.queue.as_str(),
                            job.priority
                        ),
                        ("bounced", &args, queue.as_str(), 3)
                    );
                    let batch = runner
                        .run(jobq.defer_batch((0..2).map(|n| {
                            let mut job = NewJob::new("bounced", json!({"batch": n}));
                            job.options.queue = Some(queue.clone());
                            job
                        })))
                        .await
                        .unwrap();
                    assert_eq!(batch.len(), 2);
                    let outcome = runner
                        .run(jobq.cancel(batch[0]).into_query())
                        .await
                        .unwrap();
                    assert_eq!(outcome, CancelOutcome::Cancelled);
                    assert_eq!(
                        runner.run(jobq.status(batch[0])).await.unwrap(),
                        Status::Cancelled
                    );
                    kept.extend([id, batch[1]]);
                    cancelled.push(batch[0]);
                }
                let missing = runner.run(jobq.cancel(JobId(i64::MAX)).into_query()).await;
                assert!(matches!(missing, Err(Error::JobNotFound(_))), "{missing:?}");
                (kept, cancelled)
            })
        })
        .collect();
    let (mut kept, mut cancelled) = (Vec::new(), Vec::new());
    for task in tasks {
        let (k, c) = task.await.unwrap();
        kept.extend(k);
        cancelled.extend(c);
    }
    let ids = |ids: &[JobId]| ids.iter().map(|id| id.0).collect::<Vec<i64>>();
    let stored = |status: &str| {
        format!("SELECT id FROM jobq.jobs WHERE queue = '{queue}' AND status = '{status}'")
    };
    assert_eq!(
        setup.count(&stored("todo")).await,
        (kept.len()) as i64,
        "every deferred job is stored once"
    );
    assert_eq!(
        setup.count(&stored("cancelled")).await,
        cancelled.len() as i64
    );
    let rows = setup
        .observer
        .query(
            "SELECT count(*) FILTER (WHERE id = ANY($1) AND status = 'todo'),
                    count(*) FILTER (WHERE id = ANY($2) AND status = 'cancelled')
             FROM jobq.jobs",
            &[&ids(&kept), &ids(&cancelled)],
        )
        .await
        .unwrap();
    assert_eq!(
        (rows[0].get::<_, i64>(0), rows[0].get::<_, i64>(1)),
        (kept.len() as i64, cancelled.len() as i64),
        "the returned ids are the stored jobs"
    );
    assert_eq!(kept.len(), clients * 2 * ROUNDS);
}

/// After a committed transaction that deferred (one job, a batch of two) next to order `order`, and a
/// rolled-back one that deferred and cancelled: the committed jobs and the order are stored, the
/// rolled-back job is not, and the cancelled job is still waiting.
async fn check_transactions(setup: &Setup, order: i64, committed: &[JobId], rolled_back: JobId) {
    assert_eq!(committed.len(), 3);
    assert_eq!(
        setup
            .count(&format!("SELECT 1 FROM orders WHERE id = {order}"))
            .await,
        1
    );
    for id in committed {
        assert_eq!(setup.status(*id).await, "todo", "committed job {id}");
    }
    assert_eq!(
        setup
            .count(&format!("SELECT 1 FROM jobq.jobs WHERE id = {rolled_back}"))
            .await,
        0,
        "a job deferred in a rolled-back transaction does not exist"
    );
}

/// What a transaction on the caller's connection saw inside, before its end.
#[derive(Debug, PartialEq)]
struct Inside {
    status: Status,
    batch: usize,
    cancel: CancelOutcome,
}

const INSIDE: Inside = Inside {
    status: Status::Todo,
    batch: 2,
    cancel: CancelOutcome::Cancelled,
};

fn order_job(order: i64) -> NewJob {
    NewJob::new("ship", json!({ "order": order }))
}

fn two_jobs() -> Vec<NewJob> {
    (0..2)
        .map(|n| NewJob::new("ship", json!({ "n": n })))
        .collect()
}

/// jobq-tempdb's PgBouncer fronts a test database (moved here from jobq-tempdb's own tests, so it is ignored
/// with the reason where pgbouncer is missing, like the rest).
#[test]
#[cfg_attr(
    not(pgbouncer),
    ignore = "pgbouncer is not installed: apt-get install pgbouncer"
)]
fn pgbouncer_fronts_a_test_database() {
    let db = jobq_tempdb::database();
    let url = jobq_tempdb::pgbouncer_for_test(&db);
    assert_ne!(url, db.url());
    let mut direct = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    direct.batch_execute("CREATE TABLE seen (x int)").unwrap();
    // The simple query protocol: no prepared statement is involved.
    let mut bounced = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    bounced
        .batch_execute("INSERT INTO seen VALUES (1), (2)")
        .unwrap();
    let rows = bounced
        .simple_query("SELECT current_database(), count(*) FROM seen")
        .unwrap();
    let row = rows
        .iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (row.get(0), row.get(1)),
        (Some(db.name()), Some("2")),
        "through PgBouncer, the same database"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pgbouncer),
    ignore = "pgbouncer is not installed: apt-get install pgbouncer"
)]
async fn tokio_postgres_through_pgbouncer() {
    let setup = setup().await;
    let jobq = Jobq::default();
    // The caller's connection, inside a driver transaction: commit, then roll back.
    let mut client = connect(&setup.bouncer).await;
    let tx = client.transaction().await.unwrap();
    tx.batch_execute("INSERT INTO orders VALUES (1)")
        .await
        .unwrap();
    let first = jobq.defer_job(order_job(1)).run(&tx).await.unwrap();
    let batch = jobq.defer_batch(two_jobs()).run(&tx).await.unwrap();
    let status = jobq.status(first).run(&tx).await.unwrap();
    tx.commit().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let doomed = jobq.defer_job(order_job(2)).run(&tx).await.unwrap();
    let cancel = jobq.cancel(first).run(&tx).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        Inside {
            status,
            batch: batch.len(),
            cancel
        },
        INSIDE
    );
    check_transactions(&setup, 1, &[first, batch[0], batch[1]], doomed).await;
    // The caller's connections outside a transaction, then the pool.
    let mut clients = vec![TokioClient(Arc::new(client))];
    for _ in 1..CLIENTS {
        clients.push(TokioClient(Arc::new(connect(&setup.bouncer).await)));
    }
    operations(&setup, clients, "caller").await;
    let pool = jobq_tokio_postgres::pool(&setup.bouncer, CLIENTS).unwrap();
    // A pooled connection the caller checks out, with `TransactionPooling` as users write it behind
    // PgBouncer (deadpool's statement cache otherwise).
    let mut object = pool.get().await.unwrap();
    let tx = object.transaction().await.unwrap();
    let pooled = jobq
        .defer_job(order_job(3))
        .run(jobq_tokio_postgres::TransactionPooling(&tx))
        .await
        .unwrap();
    let status = jobq
        .status(pooled)
        .run(jobq_tokio_postgres::TransactionPooling(&tx))
        .await;
    assert_eq!(status.unwrap(), Status::Todo);
    tx.commit().await.unwrap();
    let status = jobq
        .status(pooled)
        .run(jobq_tokio_postgres::TransactionPooling(&object))
        .await;
    assert_eq!(status.unwrap(), Status::Todo);
    drop(object);
    operations(&setup, vec![TokioPool::new(pool); CLIENTS], "pool").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pgbouncer),
    ignore = "pgbouncer is not installed: apt-get install pgbouncer"
)]
async fn sqlx_through_pgbouncer() {
    use sqlx::Connection;
    let setup = setup().await;
    let jobq = Jobq::default();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(CLIENTS as u32)
        .connect(&setup.bouncer)
        .await
        .unwrap();
    // `pool.begin()`, with `TransactionPooling(&mut *tx)` as users write it behind PgBouncer: commit, then
    // roll back.
    let mut tx = pool.begin().await.unwrap();
    sqlx::raw_sql("INSERT INTO orders VALUES (1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let first = jobq
        .defer_job(order_job(1))
        .run(TransactionPooling(&mut *tx))
        .await
        .unwrap();
    let batch = jobq
        .defer_batch(two_jobs())
        .run(TransactionPooling(&mut *tx))
        .await
        .unwrap();
    let status = jobq
        .status(first)
        .run(TransactionPooling(&mut *tx))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let doomed = jobq
        .defer_job(order_job(2))
        .run(TransactionPooling(&mut *tx))
        .await
        .unwrap();
    let cancel = jobq
        .cancel(first)
        .run(TransactionPooling(&mut tx))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        Inside {
            status,
            batch: batch.len(),
            cancel
        },
        INSIDE
    );
    check_transactions(&setup, 1, &[first, batch[0], batch[1]], doomed).await;
    let mut conns = Vec::new();
    for _ in 0..CLIENTS {
        let conn = sqlx::PgConnection::connect(&setup.bouncer).await.unwrap();
        conns.push(SqlxConn(Arc::new(tokio::sync::Mutex::new(conn))));
    }
    operations(&setup, conns, "caller").await;
    let pool = jobq_sqlx::PoolExecutor::new(pool).transaction_pooling();
    operations(&setup, vec![SqlxPool(pool); CLIENTS], "pool").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pgbouncer),
    ignore = "pgbouncer is not installed: apt-get install pgbouncer"
)]
async fn postgres_through_pgbouncer() {
    let setup = setup().await;
    let url = setup.bouncer.clone();
    let (client, inside, first, batch, doomed) = blocking(move || {
        let jobq = Jobq::default();
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let mut tx = client.transaction().unwrap();
        tx.batch_execute("INSERT INTO orders VALUES (1)").unwrap();
        let first = jobq.defer_job(order_job(1)).run_blocking(&mut tx).unwrap();
        let batch = jobq.defer_batch(two_jobs()).run_blocking(&mut tx).unwrap();
        let status = jobq.status(first).run_blocking(&mut tx).unwrap();
        tx.commit().unwrap();
        let mut tx = client.transaction().unwrap();
        let doomed = jobq.defer_job(order_job(2)).run_blocking(&mut tx).unwrap();
        let cancel = jobq.cancel(first).run_blocking(&mut tx).unwrap();
        tx.rollback().unwrap();
        let inside = Inside {
            status,
            batch: batch.len(),
            cancel,
        };
        (OffRuntime(Some(client)), inside, first, batch, doomed)
    })
    .await;
    assert_eq!(inside, INSIDE);
    check_transactions(&setup, 1, &[first, batch[0], batch[1]], doomed).await;
    let mut clients = vec![SyncClient(Arc::new(Mutex::new(client)))];
    for _ in 1..CLIENTS {
        let url = setup.bouncer.clone();
        let client =
            blocking(move || postgres::Client::connect(&url, postgres::NoTls).unwrap()).await;
        clients.push(SyncClient(Arc::new(Mutex::new(OffRuntime(Some(client))))));
    }
    operations(&setup, clients, "caller").await;
    let pool =
        jobq_postgres::PoolExecutor::new(jobq_postgres::pool(&setup.bouncer, CLIENTS).unwrap());
    operations(&setup, vec![SyncPool(pool); CLIENTS], "pool").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pgbouncer),
    ignore = "pgbouncer is not installed: apt-get install pgbouncer"
)]
async fn diesel_through_pgbouncer() {
    use diesel::{Connection, RunQueryDsl};
    use jobq_diesel::TransactionPooling;
    let setup = setup().await;
    let url = setup.bouncer.clone();
    // `conn.transaction(..)` with `TransactionPooling(&mut *conn)`, as users write it behind PgBouncer:
    // commit, then roll back.
    let (conn, inside, first, batch, doomed) = blocking(move || {
        let jobq = Jobq::default();
        let mut conn = diesel::PgConnection::establish(&url).unwrap();
        let (first, batch, status) = conn
            .transaction::<_, BoxError, _>(|conn| {
                diesel::sql_query("INSERT INTO orders VALUES (1)")
                    .execute(conn)
                    .unwrap();
                let first = jobq
                    .defer_job(order_job(1))
                    .run_blocking(TransactionPooling(&mut *conn))?;
                let batch = jobq
                    .defer_batch(two_jobs())
                    .run_blocking(TransactionPooling(&mut *conn))?;
                let status = jobq
                    .status(first)
                    .run_blocking(TransactionPooling(&mut *conn))?;
                Ok((first, batch, status))
            })
            .unwrap();
        let mut rolled_back = None;
        let outcome = conn.transaction::<(), BoxError, _>(|conn| {
            let doomed = jobq
                .defer_job(order_job(2))
                .run_blocking(TransactionPooling(&mut *conn))?;
            let cancel = jobq
                .cancel(first)
                .run_blocking(TransactionPooling(&mut *conn))?;
            rolled_back = Some((doomed, cancel));
            Err("roll back".into())
        });
        assert_eq!(outcome.unwrap_err().to_string(), "roll back");
        let (doomed, cancel) = rolled_back.unwrap();
        let inside = Inside {
            status,
            batch: batch.len(),
            cancel,
        };
        (conn, inside, first, batch, doomed)
    })
    .await;
    assert_eq!(inside, INSIDE);
    check_transactions(&setup, 1, &[first, batch[0], batch[1]], doomed).await;
    let mut conns = vec![DieselConn(Arc::new(Mutex::new(conn)))];
    for _ in 1..CLIENTS {
        let url = setup.bouncer.clone();
        let conn = blocking(move || diesel::PgConnection::establish(&url).unwrap()).await;
        conns.push(DieselConn(Arc::new(Mutex::new(conn))));
    }
    operations(&setup, conns, "caller").await;
    let pool =
        jobq_diesel::PoolExecutor::new(diesel_pool(CLIENTS).build(diesel_manager(&setup)).unwrap())
            .transaction_pooling();
    operations(&setup, vec![DieselPool(pool); CLIENTS], "pool").await;
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Counts its runs per `n`.
#[derive(Debug, Serialize, Deserialize)]
struct Work {
    n: u32,
}

impl Task for Work {
    const NAME: &'static str = "work";
}

/// Runs until aborted.
#[derive(Debug, Serialize, Deserialize)]
struct Wait {}

impl Task for Wait {
    const NAME: &'static str = "wait";
}

type Runs = Arc<Mutex<HashMap<u32, u32>>>;

struct Running {
    stop: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), Error>>,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        self.handle.await.unwrap().expect("the worker ends cleanly");
    }
}

/// Starts a worker on `backend` with LISTEN as `listen` says, polling every `poll`.
fn start<B: Backend>(backend: B, runs: Runs, listen: bool, poll: Duration) -> Running {
    let worker = Worker::builder(Jobq::default(), backend)
        .listen(listen)
        .concurrency(4)
        .poll_interval(poll)
        .heartbeat_interval(Duration::from_millis(100))
        .task(move |w: Work, _ctx: JobContext| {
            let runs = runs.clone();
            async move {
                *runs.lock().unwrap().entry(w.n).or_default() += 1;
                Ok(())
            }
        })
        .task(|_: Wait, ctx: JobContext| async move {
            ctx.aborted().await;
            Ok(())
        })
        .build();
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let handle = tokio::spawn(worker.run_until(async move { stopped.cancelled().await }));
    Running { stop, handle }
}

const JOBS: u32 = 60;

/// A polling worker whose every statement goes through PgBouncer drains jobs deferred through PgBouncer,
/// each exactly once, and obeys an abort requested through PgBouncer (which it learns by polling too).
async fn polling_worker_drains<B: Backend, R: Runner>(
    setup: &Setup,
    backend: B,
    runner: R,
    listen: bool,
) {
    let jobq = Jobq::default();
    runner
        .run(jobq.defer_batch((0..JOBS).map(|n| NewJob::from_task(&Work { n }).unwrap())))
        .await
        .unwrap();
    let runs = Runs::default();
    let worker = start(backend, runs.clone(), listen, Duration::from_millis(50));
    setup
        .wait_for(&format!(
            "SELECT count(*) = {JOBS} FROM jobq.jobs WHERE status = 'succeeded'"
        ))
        .await;
    let waiting = runner.run(jobq.defer(&Wait {}).into_query()).await.unwrap();
    setup
        .wait_for(&format!(
            "SELECT status = 'doing' FROM jobq.jobs WHERE id = {waiting}"
        ))
        .await;
    let outcome = runner
        .run(jobq.cancel(waiting).abort().into_query())
        .await
        .unwrap();
    assert_eq!(outcome, CancelOutcome::AbortRequested);
    setup
        .wait_for(&format!(
            "SELECT status = 'aborted' FROM jobq.jobs WHERE id = {waiting}"
        ))
        .await;
    worker.stop().await;
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), JOBS as usize, "every job ran");
    assert!(
        runs.values().all(|&n| n == 1),
        "each exactly once: {runs:?}"
    );
    assert_eq!(
        setup
            .count("SELECT 1 FROM jobq.jobs WHERE status NOT IN ('succeeded', 'aborted')")
            .await,
        0
    );
    assert_eq!(
        setup.count("SELECT 1 FROM jobq.workers").await,
        0,
        "the worker unregistered"
    );
}

/// LISTEN through PgBouncer in transaction pooling cannot hear: a worker left to LISTEN there refuses to
/// start, with a message that says what to do, instead of running deaf; it leaves no worker row behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pgbouncer),
    ignore = "pgbouncer is not installed: apt-get install pgbouncer"
)]
async fn a_worker_listening_through_pgbouncer_fails_clearly() {
    let setup = setup().await;
    // `connect` LISTENs on a connection made from the same URL: through PgBouncer too.
    let tokio_backend = jobq_tokio_postgres::PoolExecutor::connect(&setup.bouncer, 2).unwrap();
    let sync_backend = jobq_postgres::PoolExecutor::connect(&setup.bouncer, 2).unwrap();
    let errors = [
        deaf_worker_error(tokio_backend).await,
        deaf_worker_error(sync_backend).await,
    ];
    for error in errors {
        let message = error.to_string();
        assert!(matches!(error, Error::ListenUnheard { .. }), "{error:?}");
        assert!(
            message.contains("PgBouncer")
                && message.contains("listen_with")
                && message.contains(".listen(false)"),
            "the message says what to do: {message}"
        );
    }
    assert_eq!(setup.count("SELECT 1 FROM jobq.workers").await, 0);
}

/// How a worker that LISTENs (the default) on `backend` ends.
async fn deaf_worker_error<B: Backend>(backend: B) -> Error {
    let worker = Worker::builder(Jobq::default(), backend)
        .task(|_: Work, _: JobContext| async { Ok(()) })
        .build();
    tokio::time::timeout(
        Duration::from_secs(60),
        worker.run_until(std::future::pending()),
    )
    .await
    .expect("the worker gave up within its probe timeout")
    .expect_err("a worker that cannot hear does not start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pgbouncer),
    ignore = "pgbouncer is not installed: apt-get install pgbouncer"
)]
async fn tokio_postgres_worker_polls_through_pgbouncer() {
    let setup = setup().await;
    let pool = jobq_tokio_postgres::pool(&setup.bouncer, 4).unwrap();
    let backend = jobq_tokio_postgres::PoolExecutor::new(pool.clone()).transaction_pooling();
    polling_worker_drains(&setup, backend, TokioPool::new(pool), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pgbouncer),
    ignore = "pgbouncer is not installed: apt-get install pgbouncer"
)]
async fn sqlx_worker_polls_through_pgbouncer() {
    let setup = setup().await;
    // LISTEN is left on: in transaction pooling mode the backend refuses it, and the worker polls.
    let backend = jobq_sqlx::PoolExecutor::connect(&setup.bouncer, 4)
        .unwrap()
        .transaction_pooling();
    polling_worker_drains(&setup, backend.clone(), SqlxPool(backend), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pgbouncer),
    ignore = "pgbouncer is not installed: apt-get install pgbouncer"
)]
async fn sqlx_worker_listens_directly_beside_pgbouncer() {
    let setup = setup().await;
    let backend = jobq_sqlx::PoolExecutor::connect(&setup.bouncer, 4)
        .unwrap()
        .transaction_pooling()
        .listen_with(setup.db.url().parse().unwrap());
    listening_worker_wakes(&setup, backend.clone(), SqlxPool(backend)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pgbouncer),
    ignore = "pgbouncer is not installed: apt-get install pgbouncer"
)]
async fn postgres_worker_polls_through_pgbouncer() {
    let setup = setup().await;
    let backend = jobq_postgres::PoolExecutor::new(jobq_postgres::pool(&setup.bouncer, 4).unwrap());
    polling_worker_drains(&setup, backend.clone(), SyncPool(backend), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pgbouncer),
    ignore = "pgbouncer is not installed: apt-get install pgbouncer"
)]
async fn diesel_worker_polls_through_pgbouncer() {
    let setup = setup().await;
    let pool =
        jobq_diesel::PoolExecutor::new(diesel_pool(4).build(diesel_manager(&setup)).unwrap())
            .transaction_pooling();
    polling_worker_drains(&setup, pool.clone(), DieselPool(pool), false).await;
}

/// The setup docs/operations.md recommends: the pool through PgBouncer, LISTEN on a direct connection.
/// Polling is set to an hour, so once the worker idles only a notification can wake it.
async fn listening_worker_wakes<B: Backend, R: Runner>(setup: &Setup, backend: B, runner: R) {
    let jobq = Jobq::default();
    let runs = Runs::default();
    let worker = start(backend, runs.clone(), true, Duration::from_secs(3600));
    // The worker has registered (through PgBouncer) and its LISTEN connection is up (direct).
    setup
        .wait_for("SELECT count(*) = 1 FROM jobq.workers")
        .await;
    setup
        .wait_for(&format!(
            "SELECT count(*) = 1 FROM pg_stat_activity
             WHERE datname = '{}' AND query LIKE 'LISTEN%' AND state = 'idle'",
            setup.db.name()
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    runner
        .run(jobq.defer(&Work { n: 7 }).into_query())
        .await
        .unwrap();
    setup
        .wait_for("SELECT count(*) = 1 FROM jobq.jobs WHERE status = 'succeeded'")
        .await;
    worker.stop().await;
    assert_eq!(runs.lock().unwrap().get(&7), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pgbouncer),
    ignore = "pgbouncer is not installed: apt-get install pgbouncer"
)]
async fn tokio_postgres_worker_listens_directly_beside_pgbouncer() {
    let setup = setup().await;
    let pool = jobq_tokio_postgres::pool(&setup.bouncer, 4).unwrap();
    let backend = jobq_tokio_postgres::PoolExecutor::new(pool.clone())
        .transaction_pooling()
        .listen_with(setup.db.url().parse().unwrap());
    listening_worker_wakes(&setup, backend, TokioPool::new(pool)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pgbouncer),
    ignore = "pgbouncer is not installed: apt-get install pgbouncer"
)]
async fn postgres_worker_listens_directly_beside_pgbouncer() {
    let setup = setup().await;
    let backend = jobq_postgres::PoolExecutor::new(jobq_postgres::pool(&setup.bouncer, 4).unwrap())
        .listen_with(setup.db.url().parse().unwrap());
    listening_worker_wakes(&setup, backend.clone(), SyncPool(backend)).await;
}

/// A diesel pool of `size` as `docs/operations.md` says to build one behind PgBouncer: without r2d2's check
/// on checkout.
fn diesel_pool(size: usize) -> diesel::r2d2::Builder<DieselManager> {
    diesel::r2d2::Pool::builder()
        .max_size(u32::try_from(size).unwrap())
        .test_on_check_out(false)
}

type DieselManager = diesel::r2d2::ConnectionManager<diesel::PgConnection>;

fn diesel_manager(setup: &Setup) -> DieselManager {
    DieselManager::new(&setup.bouncer)
}

/// Counts the connections an r2d2 pool makes.
#[derive(Debug)]
struct Made(Arc<AtomicUsize>);

impl<C, E> diesel::r2d2::CustomizeConnection<C, E> for Made {
    fn on_acquire(&self, _: &mut C) -> Result<(), E> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// r2d2 checks each diesel connection it hands out with diesel's `SELECT 1`, a cached named statement,
/// which behind PgBouncer meets other clients' statements of the same name: with that check on, 8 threads
/// of 300 statements made about 2,000 connections (each failed check drops one), with it off as
/// `docs/operations.md` says, 8. This keeps the documented pool to its 8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(pgbouncer),
    ignore = "pgbouncer is not installed: apt-get install pgbouncer"
)]
async fn a_diesel_pool_built_for_pgbouncer_keeps_its_connections() {
    let setup = setup().await;
    let jobq = Jobq::default();
    let id = jobq
        .defer_job(order_job(1))
        .run(&setup.observer)
        .await
        .unwrap();
    let made = Arc::new(AtomicUsize::new(0));
    let pool = diesel_pool(CLIENTS)
        .connection_customizer(Box::new(Made(made.clone())))
        .build(diesel_manager(&setup))
        .unwrap();
    let pool = jobq_diesel::PoolExecutor::new(pool).transaction_pooling();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (pool, jobq) = (pool.clone(), jobq.clone());
            std::thread::spawn(move || {
                (0..100).all(|_| {
                    jobq.status(id)
                        .run_blocking(&pool)
                        .is_ok_and(|s| s == Status::Todo)
                })
            })
        })
        .collect();
    let all_ok = blocking(move || threads.into_iter().all(|t| t.join().unwrap())).await;
    assert!(all_ok, "every status read through the pool");
    assert!(
        made.load(Ordering::Relaxed) <= CLIENTS,
        "made {made:?} connections"
    );
}
