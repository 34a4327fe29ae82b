//! What the conformance suite does not reach: deadpool's own connection and transaction types, savepoints,
//! pool and connection failures, and a worker on the pool executor woken by LISTEN.

use jobq_core::worker::{JobContext, Worker};
use jobq_core::{ErrorKind, Status};
use jobq_tokio_postgres::PoolExecutor;
use jobq_tokio_postgres::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio_postgres::{Client, NoTls};

#[derive(Serialize, Deserialize)]
struct ProcessOrder {
    order_id: i64,
}

impl Task for ProcessOrder {
    const NAME: &'static str = "process_order";
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn count(observer: &Client, sql: &str) -> i64 {
    observer
        .query_one(&format!("SELECT count(*) FROM ({sql}) s"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn deadpool_object_and_transaction() {
    let db = jobq_tempdb::database();
    let observer = connect(db.url()).await;
    let pool = jobq_tokio_postgres::pool(db.url(), 2).unwrap();
    let jobq = Jobq::default();

    let mut object = pool.get().await.unwrap();
    let tx = object.transaction().await.unwrap();
    let id = jobq
        .defer(&ProcessOrder { order_id: 1 })
        .run(&tx)
        .await
        .unwrap();
    assert_eq!(jobq.status(id).run(&tx).await.unwrap(), Status::Todo);
    assert_eq!(count(&observer, "SELECT * FROM jobq.jobs").await, 0);
    tx.commit().await.unwrap();
    assert_eq!(count(&observer, "SELECT * FROM jobq.jobs").await, 1);

    assert_eq!(jobq.status(id).run(&object).await.unwrap(), Status::Todo);
    let cancelled = jobq.cancel(id).run(&object).await.unwrap();
    assert_eq!(cancelled, jobq_core::CancelOutcome::Cancelled);
    assert_eq!(jobq.status(id).run(&pool).await.unwrap(), Status::Cancelled);
}

#[tokio::test]
async fn a_rolled_back_savepoint_takes_only_its_own_jobs() {
    let db = jobq_tempdb::database();
    let observer = connect(db.url()).await;
    let mut client = connect(db.url()).await;
    let jobq = Jobq::default();

    let mut tx = client.transaction().await.unwrap();
    let kept = jobq
        .defer(&ProcessOrder { order_id: 1 })
        .run(&tx)
        .await
        .unwrap();
    let savepoint = tx.savepoint("maybe").await.unwrap();
    jobq.defer(&ProcessOrder { order_id: 2 })
        .run(&savepoint)
        .await
        .unwrap();
    savepoint.rollback().await.unwrap();
    tx.commit().await.unwrap();

    let ids: Vec<i64> = observer
        .query("SELECT id FROM jobq.jobs", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![kept.0]);
}

#[tokio::test]
async fn an_exhausted_pool_reports_a_pool_timeout() {
    let db = jobq_tempdb::database();
    let config: tokio_postgres::Config = db.url().parse().unwrap();
    let pool = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(config, NoTls))
        .max_size(1)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_millis(50)))
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    let err = Jobq::default()
        .status(JobId(1))
        .run(&pool)
        .await
        .unwrap_err();
    match err {
        Error::Connector(e) => {
            assert_eq!(e.kind, ErrorKind::PoolTimeout, "{e}");
            assert_eq!(e.connector, "jobq-tokio-postgres");
        }
        other => panic!("expected a pool timeout, got {other:?}"),
    }
    drop(held);
    assert!(matches!(
        Jobq::default().status(JobId(1)).run(&pool).await,
        Err(Error::JobNotFound(_))
    ));
}

#[tokio::test]
async fn a_lost_connection_is_a_connection_error() {
    let db = jobq_tempdb::database();
    let (client, connection) = tokio_postgres::connect(db.url(), NoTls).await.unwrap();
    let task = tokio::spawn(connection);
    task.abort();
    let _ = task.await;
    let err = Jobq::default()
        .status(JobId(1))
        .run(&client)
        .await
        .unwrap_err();
    assert_eq!(err.connector_kind(), Some(ErrorKind::Connection), "{err}");

    let unreachable = jobq_tokio_postgres::pool("postgres://nobody@127.0.0.1:1/none", 1).unwrap();
    let err = Jobq::default()
        .status(JobId(1))
        .run(&unreachable)
        .await
        .unwrap_err();
    assert_eq!(err.connector_kind(), Some(ErrorKind::Connection), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_on_the_pool_runs_a_job_committed_by_the_caller() {
    let db = jobq_tempdb::database();
    let backend = PoolExecutor::connect(db.url(), 4).unwrap();
    let (done, mut ran) = tokio::sync::mpsc::unbounded_channel();
    // Polling is effectively off: only the NOTIFY at the caller's commit can wake the worker.
    let worker = Worker::builder(Jobq::default(), backend)
        .poll_interval(Duration::from_secs(3600))
        .task(move |order: ProcessOrder, _ctx: JobContext| {
            let done = done.clone();
            async move {
                done.send(order.order_id).unwrap();
                Ok(())
            }
        })
        .build();
    let stop = shutdown_trigger();
    let handle = tokio::spawn(worker.run_until(stop.1));

    let mut client = connect(db.url()).await;
    let jobq = Jobq::default();
    // Let the worker start listening: its first fetch finds nothing, then it waits.
    wait_for_worker(&client).await;
    let tx = client.transaction().await.unwrap();
    let id = jobq
        .defer(&ProcessOrder { order_id: 7 })
        .run(&tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let order = tokio::time::timeout(Duration::from_secs(60), ran.recv())
        .await
        .expect("the committed job runs")
        .unwrap();
    assert_eq!(order, 7);
    stop.0.send(()).unwrap();
    handle.await.unwrap().unwrap();
    assert_eq!(
        jobq.status(id).run(&client).await.unwrap(),
        Status::Succeeded
    );
}

/// A shutdown future and its trigger.
fn shutdown_trigger() -> (
    tokio::sync::oneshot::Sender<()>,
    impl std::future::Future<Output = ()> + Send,
) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    (tx, async move {
        let _ = rx.await;
    })
}

/// Waits until the worker has registered and LISTENs.
async fn wait_for_worker(client: &Client) {
    for _ in 0..600 {
        let listening: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if listening > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the worker never listened");
}
