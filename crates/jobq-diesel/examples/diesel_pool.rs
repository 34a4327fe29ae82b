//! Deferring through diesel's r2d2 pool: straight on the pool (a connection per statement), and on a pooled
//! connection inside `transaction(..)` together with the order row; then reading the jobs back.
//!
//! ```sh
//! cargo run -p jobq-diesel --example diesel_pool
//! ```

use diesel::prelude::*;
use jobq_core::CancelOutcome;
use jobq_diesel::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct SendReceipt {
    order_id: i64,
}

impl Task for SendReceipt {
    const NAME: &'static str = "send_receipt";
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let db = jobq_tempdb::database();
    let pool = jobq_diesel::pool(db.url(), 4)?;
    let jobq = Jobq::default();

    // No transaction of yours: the pool lends a connection for the one statement.
    let first = jobq
        .defer(&SendReceipt { order_id: 1 })
        .run_blocking(&pool)?;
    println!("deferred job {first} on the pool");

    // A pooled connection is a PgConnection: the order row and its job commit together.
    let mut conn = pool.get()?;
    diesel::sql_query("CREATE TABLE orders (id bigint PRIMARY KEY)").execute(&mut conn)?;
    let second = conn.transaction::<_, BoxError, _>(|conn| {
        diesel::sql_query("INSERT INTO orders VALUES (2)").execute(conn)?;
        Ok(jobq
            .defer(&SendReceipt { order_id: 2 })
            .queueing_lock("receipt-2")
            .run_blocking(conn)?)
    })?;
    println!("committed order 2 with job {second}");

    // The same queueing lock again: refused, and this transaction still commits its own row.
    conn.transaction::<_, BoxError, _>(|conn| {
        diesel::sql_query("INSERT INTO orders VALUES (3)").execute(conn)?;
        match jobq
            .defer(&SendReceipt { order_id: 2 })
            .queueing_lock("receipt-2")
            .run_blocking(&mut *conn)
        {
            Err(Error::AlreadyEnqueued { queueing_lock }) => {
                println!("a receipt job with lock {queueing_lock:?} is already waiting")
            }
            other => return Err(format!("expected a conflict, got {other:?}").into()),
        }
        Ok(())
    })?;

    // Cancel on the pooled connection, read through the cloneable PoolExecutor.
    assert_eq!(
        jobq.cancel(first).run_blocking(&mut conn)?,
        CancelOutcome::Cancelled
    );
    drop(conn);
    let executor = PoolExecutor::new(pool);
    for job in jobq.list(&JobFilter::default()).run_blocking(&executor)? {
        println!("job {} {} {}: {}", job.id, job.task, job.args, job.status);
    }
    Ok(())
}
