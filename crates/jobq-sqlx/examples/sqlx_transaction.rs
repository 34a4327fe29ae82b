//! Deferring inside your own sqlx transaction (the transactional outbox), the way Procrastinate's guide
//! to external connections does it: the application opens the transaction, writes its own row, defers
//! the job on the same connection, and commits or rolls back itself.
//!
//! The order row and the job that processes it commit together or not at all: a rolled-back order leaves
//! no job behind, and no worker hears of a job before its transaction commits. jobq never commits or rolls
//! back for you.
//!
//! ```sh
//! cargo run -p jobq-sqlx --example sqlx_transaction
//! ```

use jobq_sqlx::prelude::*;
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};

#[derive(Serialize)]
struct ProcessOrder {
    order_id: i64,
}

impl Task for ProcessOrder {
    const NAME: &'static str = "process_order";
}

/// The application's own code: an order and its job in one transaction, on any `&mut PgConnection`.
async fn place_order(
    tx: &mut Transaction<'_, Postgres>,
    jobq: &Jobq,
    order_id: i64,
    item: &str,
) -> Result<JobId, Box<dyn std::error::Error>> {
    sqlx::query("INSERT INTO orders VALUES ($1, $2)")
        .bind(order_id)
        .bind(item)
        .execute(&mut **tx)
        .await?;
    let id = jobq
        .defer(&ProcessOrder { order_id })
        .queue("orders")
        // At most one waiting job per order: a second deferral is refused, the transaction stays usable.
        .queueing_lock(format!("order-{order_id}"))
        .run(&mut **tx)
        .await?;
    // The job is visible here, in this transaction, and nowhere else yet.
    assert_eq!(jobq.status(id).run(&mut **tx).await?, Status::Todo);
    Ok(id)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = jobq_tempdb::database();
    let pool = PgPool::connect(db.url()).await?;
    sqlx::query("CREATE TABLE orders (id bigint PRIMARY KEY, item text NOT NULL)")
        .execute(&pool)
        .await?;
    let jobq = Jobq::default();

    let mut tx = pool.begin().await?;
    let kept = place_order(&mut tx, &jobq, 1, "book").await?;
    tx.commit().await?;
    println!(
        "order 1 committed: job {kept} is {:?}",
        jobq.status(kept).run(&pool).await?
    );

    let mut tx = pool.begin().await?;
    let dropped = place_order(&mut tx, &jobq, 2, "pen").await?;
    tx.rollback().await?;
    match jobq.status(dropped).run(&pool).await {
        Err(Error::JobNotFound(id)) => println!("order 2 rolled back: job {id} never existed"),
        other => panic!("expected no job, got {other:?}"),
    }

    // A queueing-lock conflict is reported without poisoning the caller's transaction.
    let mut tx = pool.begin().await?;
    let again = jobq
        .defer(&ProcessOrder { order_id: 1 })
        .queueing_lock("order-1")
        .run(&mut *tx)
        .await;
    println!("deferring order 1 again: {}", again.unwrap_err());
    sqlx::query("INSERT INTO orders VALUES (3, 'ink')")
        .execute(&mut *tx)
        .await?;
    // Cancelling belongs in the caller's transaction too: it takes effect with the commit.
    jobq.cancel(kept).run(&mut *tx).await?;
    tx.commit().await?;

    // A connection checked out of the pool works the same way, with or without a transaction.
    let mut conn = pool.acquire().await?;
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&mut *conn)
        .await?;
    let jobs = jobq.list(&JobFilter::default()).run(&mut *conn).await?;
    println!("{orders} orders, {} job(s):", jobs.len());
    for job in jobs {
        println!(
            "  job {} {} {:?} {}",
            job.id, job.task, job.status, job.args
        );
    }
    Ok(())
}
