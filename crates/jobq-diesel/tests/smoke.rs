//! What the async conformance suite does not reach: plain blocking use without any runtime, through
//! `conn.transaction(|conn| …)` itself (and its nested savepoints), r2d2's pooled connections, and pool
//! failures. Every effect is observed from a second connection.

use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel::sql_types::BigInt;
use jobq_core::{CancelOutcome, ErrorKind};
use jobq_diesel::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Serialize, Deserialize)]
struct ProcessOrder {
    order_id: i64,
}

impl Task for ProcessOrder {
    const NAME: &'static str = "process_order";
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Counts the rows of `sql` as another connection sees them.
fn count(observer: &mut PgConnection, sql: &str) -> i64 {
    diesel::sql_query(format!("SELECT count(*) AS n FROM ({sql}) s"))
        .get_result::<Count>(observer)
        .unwrap()
        .n
}

/// A database with an `orders` table, a caller connection and an observer connection.
fn setup() -> (jobq_tempdb::TestDatabase, PgConnection, PgConnection) {
    let db = jobq_tempdb::database();
    let mut conn = PgConnection::establish(db.url()).unwrap();
    diesel::sql_query("CREATE TABLE orders (id bigint PRIMARY KEY)")
        .execute(&mut conn)
        .unwrap();
    let observer = PgConnection::establish(db.url()).unwrap();
    (db, conn, observer)
}

#[test]
fn defer_commits_or_rolls_back_with_the_order_row() {
    let (_db, mut conn, mut observer) = setup();
    let jobq = Jobq::default();

    let id = conn
        .transaction::<_, BoxError, _>(|conn| {
            diesel::sql_query("INSERT INTO orders VALUES (1)").execute(conn)?;
            let id = jobq
                .defer(&ProcessOrder { order_id: 1 })
                .run_blocking(&mut *conn)?;
            assert_eq!(jobq.status(id).run_blocking(&mut *conn)?, Status::Todo);
            assert_eq!(count(&mut observer, "SELECT * FROM jobq.jobs"), 0);
            Ok(id)
        })
        .unwrap();
    assert_eq!(count(&mut observer, "SELECT * FROM jobq.jobs"), 1);
    assert_eq!(count(&mut observer, "SELECT * FROM orders"), 1);

    let refused = conn.transaction::<(), BoxError, _>(|conn| {
        diesel::sql_query("INSERT INTO orders VALUES (2)").execute(conn)?;
        jobq.defer(&ProcessOrder { order_id: 2 })
            .run_blocking(&mut *conn)?;
        Err("the order was refused".into())
    });
    assert!(refused.is_err());
    assert_eq!(count(&mut observer, "SELECT * FROM jobq.jobs"), 1);
    assert_eq!(count(&mut observer, "SELECT * FROM orders"), 1);
    assert_eq!(
        jobq.status(id).run_blocking(&mut observer).unwrap(),
        Status::Todo
    );
}

#[test]
fn a_queueing_lock_conflict_leaves_the_transaction_committable() {
    let (_db, mut conn, mut observer) = setup();
    let jobq = Jobq::default();
    let defer = |order_id: i64| {
        jobq.defer(&ProcessOrder { order_id })
            .queueing_lock("customer-7")
    };

    conn.transaction::<_, BoxError, _>(|conn| {
        diesel::sql_query("INSERT INTO orders VALUES (1)").execute(conn)?;
        defer(1).run_blocking(&mut *conn)?;
        let again = defer(2).run_blocking(&mut *conn);
        assert!(
            matches!(&again, Err(Error::AlreadyEnqueued { queueing_lock }) if queueing_lock == "customer-7"),
            "{again:?}"
        );
        diesel::sql_query("INSERT INTO orders VALUES (2)").execute(conn)?;
        Ok(())
    })
    .unwrap();
    assert_eq!(count(&mut observer, "SELECT * FROM orders"), 2);
    assert_eq!(count(&mut observer, "SELECT * FROM jobq.jobs"), 1);
}

#[test]
fn a_rolled_back_nested_transaction_takes_only_its_own_job() {
    let (_db, mut conn, mut observer) = setup();
    let jobq = Jobq::default();

    let kept = conn
        .transaction::<_, BoxError, _>(|conn| {
            let kept = jobq
                .defer(&ProcessOrder { order_id: 1 })
                .run_blocking(&mut *conn)?;
            // diesel runs a nested `transaction` as a savepoint.
            let inner = conn.transaction::<(), BoxError, _>(|conn| {
                jobq.defer(&ProcessOrder { order_id: 2 })
                    .run_blocking(&mut *conn)?;
                Err("undo the second job".into())
            });
            assert!(inner.is_err());
            Ok(kept)
        })
        .unwrap();
    let ids: Vec<JobId> = jobq
        .list(&JobFilter::default())
        .run_blocking(&mut observer)
        .unwrap()
        .into_iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(ids, [kept]);
}

#[test]
fn pooled_connections_status_and_cancel() {
    let (db, _conn, mut observer) = setup();
    let pool = jobq_diesel::pool(db.url(), 2).unwrap();
    let jobq = Jobq::default();

    let mut pooled = pool.get().unwrap();
    let id = pooled
        .transaction::<_, BoxError, _>(|conn| {
            Ok(jobq
                .defer(&ProcessOrder { order_id: 1 })
                .run_blocking(conn)?)
        })
        .unwrap();
    assert_eq!(count(&mut observer, "SELECT * FROM jobq.jobs"), 1);
    assert_eq!(
        jobq.status(id).run_blocking(&mut pooled).unwrap(),
        Status::Todo
    );
    assert_eq!(
        jobq.cancel(id).run_blocking(&mut *pooled).unwrap(),
        CancelOutcome::Cancelled
    );
    drop(pooled);
    assert_eq!(
        jobq.status(id).run_blocking(&pool).unwrap(),
        Status::Cancelled
    );
    let executor = PoolExecutor(pool);
    assert_eq!(
        jobq.cancel(id).run_blocking(&executor).unwrap(),
        CancelOutcome::Unchanged
    );
    assert_eq!(
        jobq.status(id).run_blocking(&mut observer).unwrap(),
        Status::Cancelled
    );
}

#[test]
fn an_exhausted_pool_times_out() {
    let db = jobq_tempdb::database();
    let pool = Pool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_millis(300))
        .build(ConnectionManager::<PgConnection>::new(db.url()))
        .unwrap();
    let _held = pool.get().unwrap();
    let err = Jobq::default()
        .status(JobId(1))
        .run_blocking(&pool)
        .unwrap_err();
    assert_eq!(err.connector_kind(), Some(ErrorKind::PoolTimeout), "{err}");
}

#[test]
fn an_unreachable_server_is_a_connection_error() {
    let db = jobq_tempdb::database();
    // The same server with a database that does not exist: every connection attempt fails.
    let url = format!("{}_missing", db.url());
    let pool = Pool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_millis(300))
        .build_unchecked(ConnectionManager::<PgConnection>::new(url));
    let err = Jobq::default()
        .status(JobId(1))
        .run_blocking(&pool)
        .unwrap_err();
    assert_eq!(err.connector_kind(), Some(ErrorKind::Connection), "{err}");
}
