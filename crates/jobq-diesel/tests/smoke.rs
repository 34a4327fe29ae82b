//! What the async conformance suite does not reach: plain blocking use without any runtime, through
//! `conn.transaction(|conn| …)` itself (and its nested savepoints), r2d2's pooled connections, the
//! prepared statements left on a caller's connection and the pool's (or not, under `TransactionPooling`
//! and `PoolExecutor::transaction_pooling`), and pool failures. Every effect is observed from a second
//! connection.

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
    let executor = PoolExecutor::new(pool);
    assert_eq!(
        jobq.cancel(id).run_blocking(&executor).unwrap(),
        CancelOutcome::Unchanged
    );
    assert_eq!(
        jobq.status(id).run_blocking(&mut observer).unwrap(),
        Status::Cancelled
    );
}

/// jobq's statements prepared on `conn`, counted through `sql_query`, which prepares nothing under a name.
/// (Pooled connections also hold r2d2's connection check, diesel's `SELECT 1`.)
fn prepared(conn: &mut PgConnection) -> i64 {
    count(
        conn,
        "SELECT * FROM pg_prepared_statements WHERE statement LIKE '%\"jobq\".%'",
    )
}

#[test]
fn statements_are_cached_on_a_callers_connection_unless_wrapped_for_transaction_pooling() {
    let (db, mut conn, _observer) = setup();
    let jobq = Jobq::default();
    let defer_in_tx = |conn: &mut PgConnection, order_id: i64| {
        conn.transaction::<_, BoxError, _>(|conn| {
            diesel::sql_query(format!("INSERT INTO orders VALUES ({order_id})")).execute(conn)?;
            Ok(jobq.defer(&ProcessOrder { order_id }).run_blocking(conn)?)
        })
        .unwrap()
    };

    // By default diesel prepares jobq's statements under a name and keeps them on the connection.
    assert_eq!(prepared(&mut conn), 0);
    let id = defer_in_tx(&mut conn, 1);
    let cached = prepared(&mut conn);
    assert!(cached > 0, "nothing prepared on the default path");
    // Run again, the cached statement is reused, not prepared once more.
    defer_in_tx(&mut conn, 2);
    assert_eq!(prepared(&mut conn), cached, "defer prepared once");
    jobq.status(id).run_blocking(&mut conn).unwrap();
    jobq.status(id).run_blocking(&mut conn).unwrap();
    assert_eq!(prepared(&mut conn), cached + 1, "status prepared once");

    // Wrapped, statements are unnamed, inside a transaction and outside one: nothing stays prepared.
    let mut conn = PgConnection::establish(db.url()).unwrap();
    let id = conn
        .transaction::<_, BoxError, _>(|conn| {
            let id = jobq
                .defer(&ProcessOrder { order_id: 3 })
                .run_blocking(TransactionPooling(&mut *conn))?;
            assert_eq!(
                jobq.status(id).run_blocking(TransactionPooling(conn))?,
                Status::Todo
            );
            Ok(id)
        })
        .unwrap();
    assert_eq!(
        jobq.cancel(id)
            .run_blocking(TransactionPooling(&mut conn))
            .unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(prepared(&mut conn), 0, "statements left prepared");

    let pool = jobq_diesel::pool(db.url(), 1).unwrap();
    let mut pooled = pool.get().unwrap();
    assert_eq!(
        jobq.status(id)
            .run_blocking(TransactionPooling(&mut pooled))
            .unwrap(),
        Status::Cancelled
    );
    assert_eq!(prepared(&mut pooled), 0, "statements left prepared");
}

#[test]
fn pool_statements_are_cached_unless_the_pool_is_set_for_transaction_pooling() {
    let (db, _conn, _observer) = setup();
    let jobq = Jobq::default();
    let defer = |executor: &PoolExecutor, order_id: i64| {
        jobq.defer(&ProcessOrder { order_id })
            .run_blocking(executor)
            .unwrap()
    };

    // One connection, so every statement runs on the one whose statements are counted.
    let cached = PoolExecutor::new(jobq_diesel::pool(db.url(), 1).unwrap());
    let id = defer(&cached, 1);
    let after_one = prepared(&mut cached.pool().get().unwrap());
    assert!(after_one > 0, "nothing prepared on the default path");
    defer(&cached, 2);
    assert_eq!(
        jobq.status(id).run_blocking(cached.pool()).unwrap(),
        Status::Todo
    );
    assert_eq!(
        prepared(&mut cached.pool().get().unwrap()),
        after_one + 1,
        "defer prepared once, status once"
    );

    let unnamed = PoolExecutor::new(jobq_diesel::pool(db.url(), 1).unwrap()).transaction_pooling();
    let id = defer(&unnamed, 3);
    assert_eq!(
        jobq.status(id).run_blocking(&unnamed).unwrap(),
        Status::Todo
    );
    assert_eq!(
        prepared(&mut unnamed.pool().get().unwrap()),
        0,
        "statements left prepared"
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
