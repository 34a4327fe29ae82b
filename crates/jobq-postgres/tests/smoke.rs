//! What the conformance suite does not reach: plain blocking use without any async runtime, r2d2's pooled
//! connections, savepoints, pool and connection failures. The worker cases are in the conformance suite.

use jobq_core::{CancelOutcome, ErrorKind};
use jobq_postgres::prelude::*;
use postgres::{Client, NoTls};
use r2d2_postgres::PostgresConnectionManager;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Serialize, Deserialize)]
struct ProcessOrder {
    order_id: i64,
}

impl Task for ProcessOrder {
    const NAME: &'static str = "process_order";
}

fn count(observer: &mut Client, sql: &str) -> i64 {
    observer
        .query_one(&format!("SELECT count(*) FROM ({sql}) s"), &[])
        .unwrap()
        .get(0)
}

#[test]
fn pooled_connection_and_its_transaction() {
    let db = jobq_tempdb::database();
    let mut observer = Client::connect(db.url(), NoTls).unwrap();
    let pool = jobq_postgres::pool(db.url(), 2).unwrap();
    let jobq = Jobq::default();

    let mut conn = pool.get().unwrap();
    let mut tx = conn.transaction().unwrap();
    let id = jobq
        .defer(&ProcessOrder { order_id: 1 })
        .run_blocking(&mut tx)
        .unwrap();
    assert_eq!(jobq.status(id).run_blocking(&mut tx).unwrap(), Status::Todo);
    assert_eq!(count(&mut observer, "SELECT * FROM jobq.jobs"), 0);
    tx.commit().unwrap();
    assert_eq!(count(&mut observer, "SELECT * FROM jobq.jobs"), 1);

    assert_eq!(
        jobq.cancel(id).run_blocking(&mut conn).unwrap(),
        CancelOutcome::Cancelled
    );
    drop(conn);
    assert_eq!(
        jobq.status(id).run_blocking(&pool).unwrap(),
        Status::Cancelled
    );
    let executor = PoolExecutor::new(pool);
    assert_eq!(
        jobq.status(id).run_blocking(&executor).unwrap(),
        Status::Cancelled
    );
}

#[test]
fn a_rolled_back_savepoint_takes_only_its_own_jobs() {
    let db = jobq_tempdb::database();
    let mut client = Client::connect(db.url(), NoTls).unwrap();
    let jobq = Jobq::default();

    let mut tx = client.transaction().unwrap();
    let kept = jobq
        .defer(&ProcessOrder { order_id: 1 })
        .run_blocking(&mut tx)
        .unwrap();
    let mut savepoint = tx.savepoint("maybe").unwrap();
    jobq.defer(&ProcessOrder { order_id: 2 })
        .run_blocking(&mut savepoint)
        .unwrap();
    savepoint.rollback().unwrap();
    tx.commit().unwrap();

    let ids: Vec<i64> = client
        .query("SELECT id FROM jobq.jobs", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![kept.0]);
}

#[test]
fn pool_failures_are_told_apart() {
    let db = jobq_tempdb::database();
    let manager = PostgresConnectionManager::new(db.url().parse().unwrap(), NoTls);
    let pool = r2d2::Pool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_millis(100))
        .build(manager)
        .unwrap();
    let held = pool.get().unwrap();
    let err = Jobq::default()
        .status(JobId(1))
        .run_blocking(&pool)
        .unwrap_err();
    match err {
        Error::Connector(e) => {
            assert_eq!(e.kind, ErrorKind::PoolTimeout, "{e}");
            assert_eq!(e.connector, "jobq-postgres");
        }
        other => panic!("expected a pool timeout, got {other:?}"),
    }
    drop(held);
    assert!(matches!(
        Jobq::default().status(JobId(1)).run_blocking(&pool),
        Err(Error::JobNotFound(_))
    ));

    let manager = PostgresConnectionManager::new(
        "postgres://nobody@127.0.0.1:1/none".parse().unwrap(),
        NoTls,
    );
    let unreachable = r2d2::Pool::builder()
        .min_idle(Some(0))
        .connection_timeout(Duration::from_millis(500))
        .build(manager)
        .unwrap();
    let err = Jobq::default()
        .status(JobId(1))
        .run_blocking(&unreachable)
        .unwrap_err();
    assert_eq!(err.connector_kind(), Some(ErrorKind::Connection), "{err}");
}

#[test]
fn a_lost_connection_is_a_connection_error() {
    let db = jobq_tempdb::database();
    let mut client = Client::connect(db.url(), NoTls).unwrap();
    let mut observer = Client::connect(db.url(), NoTls).unwrap();
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    observer
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    let err = Jobq::default()
        .status(JobId(1))
        .run_blocking(&mut client)
        .unwrap_err();
    assert_eq!(err.connector_kind(), Some(ErrorKind::Connection), "{err}");
}

#[test]
fn a_statement_cache_prepares_each_statement_once_per_connection() {
    let db = jobq_tempdb::database();
    let mut client = Client::connect(db.url(), NoTls).unwrap();
    let mut other = Client::connect(db.url(), NoTls).unwrap();
    let jobq = Jobq::default();
    let mut statements = StatementCache::new();

    for order_id in 1..=3 {
        let mut tx = client.transaction().unwrap();
        let id = jobq
            .defer(&ProcessOrder { order_id })
            .run_blocking(statements.on(&mut tx))
            .unwrap();
        let status = jobq.status(id).run_blocking(statements.on(&mut tx));
        assert_eq!(status.unwrap(), Status::Todo);
        tx.commit().unwrap();
    }
    assert_eq!(statements.len(), 2, "one defer and one status statement");
    let prepared: i64 = client
        .query_one("SELECT count(*) FROM pg_prepared_statements WHERE statement NOT LIKE '%pg_prepared_statements%'", &[])
        .unwrap()
        .get(0);
    assert_eq!(prepared, 2, "the server holds the same two statements");

    // The cache belongs to `client`: on another connection its statements do not exist.
    let err = jobq
        .status(JobId(1))
        .run_blocking(statements.on(&mut other))
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    let jobs: i64 = other
        .query_one("SELECT count(*) FROM jobq.jobs", &[])
        .unwrap()
        .get(0);
    assert_eq!(jobs, 3);

    // A statement dropped on the server fails once (the status one was forgotten above), then is prepared
    // again.
    client.batch_execute("DEALLOCATE ALL").unwrap();
    let err = jobq
        .defer(&ProcessOrder { order_id: 4 })
        .run_blocking(statements.on(&mut client));
    assert!(err.unwrap_err().to_string().contains("does not exist"));
    let id = jobq
        .defer(&ProcessOrder { order_id: 4 })
        .run_blocking(statements.on(&mut client));
    assert_eq!(id.unwrap(), JobId(4));
    assert_eq!(statements.len(), 1, "the defer statement, prepared again");
}
