//! jobq-test's helpers through sqlx: the assertions take `&mut *tx` (reborrowed for each call) inside the
//! caller's transaction, and `drain` runs on sqlx's `PoolExecutor`.

use jobq_core::prelude::*;
use jobq_core::worker::{JobContext, Worker};
use jobq_test::{Expect, assert_deferred, deferred_jobs, drain, refute_deferred};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Serialize, Deserialize)]
struct Ship {
    order: i64,
}
impl Task for Ship {
    const NAME: &'static str = "ship";
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_transactions_and_drain() {
    let db = jobq_test::database();
    let pool = jobq_sqlx::pool(db.url(), 2).unwrap();
    let jobq = Jobq::default();

    let mut tx = pool.begin().await.unwrap();
    jobq.defer(&Ship { order: 1 })
        .queueing_lock("order-1")
        .run(&mut *tx)
        .await
        .unwrap();
    let job = assert_deferred(
        &jobq,
        &mut *tx,
        Expect::of(&Ship { order: 1 }).queueing_lock("order-1"),
    )
    .await;
    refute_deferred(
        &jobq,
        &mut *tx,
        Expect::task("ship").args(json!({"order": 2})),
    )
    .await;
    // The pool's connections do not see the uncommitted job.
    refute_deferred(&jobq, &pool, Expect::any()).await;
    tx.commit().await.unwrap();
    assert_eq!(
        deferred_jobs(&jobq, &pool, &Expect::task("ship"))
            .await
            .unwrap()[0]
            .id,
        job.id
    );

    let backend = jobq_sqlx::PoolExecutor::new(pool.clone());
    let summary = drain(
        Worker::builder(jobq.clone(), backend).task(|_: Ship, _: JobContext| async { Ok(()) }),
    )
    .await
    .unwrap();
    assert_eq!((summary.succeeded, summary.total()), (1, 1), "{summary:?}");
    assert_deferred(&jobq, &pool, Expect::task("ship").status(Status::Succeeded)).await;
}
