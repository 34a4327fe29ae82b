//! What the conformance suite does not reach: deadpool's own connection and transaction types, savepoints,
//! pool and connection failures. The worker cases are in the conformance suite.

use jobq_core::{ErrorKind, Status};
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
    // defer, status and cancel, each prepared once in the connection's deadpool cache.
    assert_eq!(object.statement_cache.size(), 3);
    // A statement dropped on the server fails once, then is prepared again.
    object.batch_execute("DEALLOCATE ALL").await.unwrap();
    let err = jobq.status(id).run(&object).await.unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert_eq!(
        jobq.status(id).run(&object).await.unwrap(),
        Status::Cancelled
    );
}

#[tokio::test]
async fn transaction_pooling_leaves_nothing_prepared() {
    let db = jobq_tempdb::database();
    let pool = jobq_tokio_postgres::pool(db.url(), 1).unwrap();
    let jobq = Jobq::default();
    let prepared = "SELECT * FROM pg_prepared_statements WHERE statement NOT LIKE '%pg_prepared%'";

    let mut object = pool.get().await.unwrap();
    let tx = object.transaction().await.unwrap();
    let id = jobq
        .defer(&ProcessOrder { order_id: 1 })
        .run(TransactionPooling(&tx))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let status = jobq.status(id).run(TransactionPooling(&object)).await;
    assert_eq!(status.unwrap(), Status::Todo);
    assert_eq!(object.statement_cache.size(), 0);
    assert_eq!(count(&object, prepared).await, 0);
    drop(object);

    let executor = PoolExecutor::new(pool.clone()).transaction_pooling();
    assert_eq!(jobq.status(id).run(&executor).await.unwrap(), Status::Todo);
    let object = pool.get().await.unwrap();
    assert_eq!(
        count(&object, prepared).await,
        0,
        "the same, only connection"
    );
    drop(object);
    assert_eq!(jobq.status(id).run(&pool).await.unwrap(), Status::Todo);
    let object = pool.get().await.unwrap();
    assert_eq!(
        count(&object, prepared).await,
        1,
        "a pool prepares by default"
    );
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

#[tokio::test]
async fn a_statement_cache_prepares_each_statement_once_per_connection() {
    let db = jobq_tempdb::database();
    let mut client = connect(db.url()).await;
    let other = connect(db.url()).await;
    let jobq = Jobq::default();
    let statements = StatementCache::new();

    for order_id in 1..=3 {
        let tx = client.transaction().await.unwrap();
        let id = jobq
            .defer(&ProcessOrder { order_id })
            .run(statements.on(&tx))
            .await
            .unwrap();
        assert_eq!(
            jobq.status(id).run(statements.on(&tx)).await.unwrap(),
            Status::Todo
        );
        tx.commit().await.unwrap();
    }
    assert_eq!(statements.len(), 2, "one defer and one status statement");
    let prepared = count(
        &client,
        "SELECT * FROM pg_prepared_statements WHERE statement NOT LIKE '%pg_prepared_statements%'",
    )
    .await;
    assert_eq!(prepared, 2, "the server holds the same two statements");

    // The cache belongs to `client`: on another connection its statements do not exist.
    let err = jobq
        .status(JobId(1))
        .run(statements.on(&other))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert_eq!(count(&other, "SELECT * FROM jobq.jobs").await, 3);

    // A statement dropped on the server fails once (the status one was forgotten above), then is prepared
    // again.
    client.batch_execute("DEALLOCATE ALL").await.unwrap();
    let err = jobq
        .defer(&ProcessOrder { order_id: 4 })
        .run(statements.on(&client))
        .await;
    assert!(err.unwrap_err().to_string().contains("does not exist"));
    let id = jobq
        .defer(&ProcessOrder { order_id: 4 })
        .run(statements.on(&client))
        .await;
    assert_eq!(id.unwrap(), JobId(4));
    assert_eq!(statements.len(), 1, "the defer statement, prepared again");
}

/// A statement abandoned mid-flight (its future dropped, as a worker does past its statement timeout)
/// leaves no connection behind in the pool: its connection is closed, and the next statement gets a new one.
#[tokio::test]
async fn an_abandoned_statement_closes_its_connection() {
    use jobq_core::AsyncExecutor;
    let db = jobq_tempdb::database();
    let mut pool = PoolExecutor::new(jobq_tokio_postgres::pool(db.url(), 1).unwrap());
    let first = pool
        .query("SELECT pg_backend_pid()::text", None)
        .await
        .unwrap();
    let abandoned = tokio::time::timeout(
        Duration::from_millis(200),
        pool.query("SELECT pg_sleep(30)::text", None),
    )
    .await;
    assert!(abandoned.is_err(), "the sleep was abandoned");
    let next = tokio::time::timeout(
        Duration::from_secs(10),
        pool.query("SELECT pg_backend_pid()::text", None),
    )
    .await
    .expect("the next statement does not queue behind the abandoned one")
    .unwrap();
    assert_ne!(first, next, "a new connection");
}
