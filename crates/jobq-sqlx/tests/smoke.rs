//! What the conformance suite does not reach: the `Any` driver's refusal of other backends, savepoints,
//! prepared statements left on a caller's connection (or not, under `TransactionPooling`), pool and
//! connection failures, the LISTEN connection's life.

use jobq_core::worker::Backend;
use jobq_core::{CancelOutcome, ErrorKind};
use jobq_sqlx::prelude::*;
use serde::Serialize;
#[cfg(feature = "any")]
use sqlx::AnyConnection;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, Row};
use std::time::Duration;

#[derive(Serialize)]
struct ProcessOrder {
    order_id: i64,
}

impl Task for ProcessOrder {
    const NAME: &'static str = "process_order";
}

fn connector_error(result: Result<impl std::fmt::Debug, Error>) -> jobq_core::ConnectorError {
    match result {
        Err(Error::Connector(e)) => e,
        other => panic!("expected a connector error, got {other:?}"),
    }
}

async fn job_ids(observer: &mut PgConnection) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM jobq.jobs ORDER BY id")
        .fetch_all(observer)
        .await
        .unwrap()
}

#[cfg(feature = "any")]
#[tokio::test]
async fn an_any_connection_to_another_backend_is_refused_before_any_sql() {
    sqlx::any::install_default_drivers();
    let jobq = Jobq::default();
    let mut conn = AnyConnection::connect("sqlite::memory:").await.unwrap();
    assert_eq!(conn.backend_name(), "SQLite");

    let e = connector_error(jobq.status(JobId(1)).run(&mut conn).await);
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert_eq!(e.connector, "jobq-sqlx");
    assert!(e.message.contains("AnyConnection to SQLite"), "{e}");
    assert!(e.sqlstate.is_none(), "nothing reached the database: {e}");

    let mut tx = conn.begin().await.unwrap();
    let e = connector_error(
        jobq.defer(&ProcessOrder { order_id: 1 })
            .run(&mut *tx)
            .await,
    );
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
    let e = connector_error(jobq.defer(&ProcessOrder { order_id: 1 }).run(&mut tx).await);
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
    let one: i64 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(one, 1, "the caller's transaction is untouched");
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn a_rolled_back_savepoint_takes_only_its_own_jobs() {
    let db = jobq_tempdb::database();
    let mut observer = PgConnection::connect(db.url()).await.unwrap();
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    let jobq = Jobq::default();

    let mut tx = conn.begin().await.unwrap();
    let kept = jobq
        .defer(&ProcessOrder { order_id: 1 })
        .run(&mut *tx)
        .await
        .unwrap();
    let mut savepoint = tx.begin().await.unwrap();
    let dropped = jobq
        .defer(&ProcessOrder { order_id: 2 })
        .run(&mut *savepoint)
        .await
        .unwrap();
    assert_eq!(
        jobq.status(dropped).run(&mut savepoint).await.unwrap(),
        Status::Todo
    );
    savepoint.rollback().await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(job_ids(&mut observer).await, vec![kept.0]);

    // Outside any transaction, on the bare connection: each statement commits on its own.
    assert_eq!(
        jobq.cancel(kept).run(&mut conn).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(
        jobq.status(kept).run(&mut conn).await.unwrap(),
        Status::Cancelled
    );
}

/// The statements prepared on `conn`, counted with the simple protocol so the count prepares nothing.
async fn prepared(conn: &mut PgConnection) -> i64 {
    let row = sqlx::raw_sql("SELECT count(*)::text FROM pg_prepared_statements")
        .fetch_one(conn)
        .await
        .unwrap();
    row.get::<String, _>(0).parse().unwrap()
}

#[tokio::test]
async fn statements_are_cached_on_a_callers_connection_unless_wrapped_for_transaction_pooling() {
    let db = jobq_tempdb::database();
    let jobq = Jobq::default();

    // By default sqlx prepares jobq's statements under a name and keeps them on the connection.
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    assert_eq!(prepared(&mut conn).await, 0);
    let mut tx = conn.begin().await.unwrap();
    let id = jobq
        .defer(&ProcessOrder { order_id: 1 })
        .run(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let cached = prepared(&mut conn).await;
    assert!(cached > 0, "nothing prepared on the default path");
    // Run again, the cached statement is reused, not prepared once more.
    jobq.status(id).run(&mut conn).await.unwrap();
    jobq.status(id).run(&mut conn).await.unwrap();
    assert_eq!(
        prepared(&mut conn).await,
        cached + 1,
        "status prepared once"
    );

    // Wrapped, every conversion runs unnamed statements: nothing stays prepared.
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let id = jobq
        .defer(&ProcessOrder { order_id: 2 })
        .run(TransactionPooling(&mut *tx))
        .await
        .unwrap();
    assert_eq!(
        jobq.status(id)
            .run(TransactionPooling(&mut tx))
            .await
            .unwrap(),
        Status::Todo
    );
    tx.commit().await.unwrap();
    assert_eq!(
        jobq.cancel(id)
            .run(TransactionPooling(&mut conn))
            .await
            .unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(prepared(&mut conn).await, 0, "statements left prepared");

    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(db.url())
        .await
        .unwrap();
    let mut pooled = pool.acquire().await.unwrap();
    assert_eq!(
        jobq.status(id)
            .run(TransactionPooling(&mut pooled))
            .await
            .unwrap(),
        Status::Cancelled
    );
    assert_eq!(prepared(&mut pooled).await, 0, "statements left prepared");

    #[cfg(feature = "any")]
    {
        sqlx::any::install_default_drivers();
        let mut any = AnyConnection::connect(db.url()).await.unwrap();
        assert_eq!(
            jobq.status(id)
                .run(TransactionPooling(&mut any))
                .await
                .unwrap(),
            Status::Cancelled
        );
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_prepared_statements")
            .persistent(false)
            .fetch_one(&mut any)
            .await
            .unwrap();
        assert_eq!(left, 0, "statements left prepared on the AnyConnection");
    }
}

#[tokio::test]
async fn an_exhausted_pool_reports_a_pool_timeout() {
    let db = jobq_tempdb::database();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(100))
        .connect(db.url())
        .await
        .unwrap();
    let jobq = Jobq::default();
    let mut held = pool.acquire().await.unwrap();
    let e = connector_error(jobq.status(JobId(1)).run(&pool).await);
    assert_eq!(e.kind, ErrorKind::PoolTimeout, "{e}");
    assert_eq!(e.connector, "jobq-sqlx");

    // The held connection itself is still usable, and so is the pool once it is back.
    assert!(matches!(
        jobq.status(JobId(1)).run(&mut held).await,
        Err(Error::JobNotFound(_))
    ));
    drop(held);
    assert!(matches!(
        jobq.status(JobId(1)).run(&pool).await,
        Err(Error::JobNotFound(_))
    ));

    pool.close().await;
    let e = connector_error(jobq.status(JobId(1)).run(&pool).await);
    assert_eq!(e.kind, ErrorKind::Connection, "a closed pool: {e}");
}

#[tokio::test]
async fn a_lost_connection_is_a_connection_error() {
    let db = jobq_tempdb::database();
    let mut observer = PgConnection::connect(db.url()).await.unwrap();
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut observer)
        .await
        .unwrap();
    assert!(terminated);
    let e = connector_error(Jobq::default().status(JobId(1)).run(&mut conn).await);
    assert_eq!(e.kind, ErrorKind::Connection, "{e}");

    // sqlx retries a refused connection until the pool's acquire timeout, so an unreachable server is
    // reported as a pool timeout.
    let unreachable = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .unwrap();
    let e = connector_error(Jobq::default().status(JobId(1)).run(&unreachable).await);
    assert_eq!(e.kind, ErrorKind::PoolTimeout, "{e}");
}

#[tokio::test]
async fn listen_uses_a_connection_of_its_own_and_closes_it_when_dropped() {
    let db = jobq_tempdb::database();
    let mut observer = PgConnection::connect(db.url()).await.unwrap();
    let executor = PoolExecutor::connect(db.url(), 2).unwrap();
    let mut notifications = executor
        .listen(vec!["jobq".into(), "other \"channel\"".into()])
        .await
        .unwrap();
    assert_eq!(executor.pool().size(), 0, "the pool lent no connection");
    sqlx::query("SELECT pg_notify('other \"channel\"', 'hi')")
        .execute(&mut observer)
        .await
        .unwrap();
    let received = notifications.recv().await.unwrap();
    assert_eq!(
        (received.channel.as_str(), received.payload.as_str()),
        ("other \"channel\"", "hi")
    );

    drop(notifications);
    let listening = "SELECT count(*) FROM pg_stat_activity \
                     WHERE query LIKE 'LISTEN%' AND datname = current_database()";
    for _ in 0..600 {
        let open: i64 = sqlx::query_scalar(listening)
            .fetch_one(&mut observer)
            .await
            .unwrap();
        if open == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the LISTEN connection stayed open after its receiver was dropped");
}

/// A statement abandoned mid-flight (its future dropped, as a worker does past its statement timeout)
/// leaves no connection behind in the pool: its connection is closed, and the next statement gets a new one.
#[tokio::test]
async fn an_abandoned_statement_closes_its_connection() {
    use jobq_core::AsyncExecutor;
    let db = jobq_tempdb::database();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(db.url())
        .await
        .unwrap();
    let mut pool = PoolExecutor::new(pool);
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
    .expect("the next statement does not wait for the abandoned one")
    .unwrap();
    assert_ne!(first, next, "a new connection");
}
