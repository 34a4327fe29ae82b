//! Deferring inside your own transaction, on the connection you already hold (the transactional outbox).
//!
//! The order row and the job that processes it commit together or not at all: a rolled-back order leaves
//! no job behind, and no worker hears of a job before its transaction commits. jobq never commits or rolls
//! back for you.
//!
//! ```sh
//! cargo run -p jobq-tokio-postgres --example tokio_postgres_transaction
//! ```

use jobq_tokio_postgres::prelude::*;
use serde::Serialize;

#[derive(Serialize)]
struct ProcessOrder {
    order_id: i64,
}

impl Task for ProcessOrder {
    const NAME: &'static str = "process_order";
}

/// The application's own code: an order and its job in one transaction.
async fn place_order(
    client: &mut tokio_postgres::Client,
    jobq: &Jobq,
    order_id: i64,
    item: &str,
    commit: bool,
) -> Result<JobId, Box<dyn std::error::Error>> {
    let tx = client.transaction().await?;
    tx.execute("INSERT INTO orders VALUES ($1, $2)", &[&order_id, &item])
        .await?;
    let id = jobq
        .defer(&ProcessOrder { order_id })
        .queue("orders")
        // At most one waiting job per order: a second deferral is refused, the transaction stays usable.
        .queueing_lock(format!("order-{order_id}"))
        .run(&tx)
        .await?;
    // The job is visible here, in this transaction, and nowhere else yet.
    assert_eq!(jobq.status(id).run(&tx).await?, Status::Todo);
    if commit {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(id)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = jobq_tempdb::database();
    let (mut client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute("CREATE TABLE orders (id bigint PRIMARY KEY, item text NOT NULL)")
        .await?;
    let jobq = Jobq::default();

    let kept = place_order(&mut client, &jobq, 1, "book", true).await?;
    println!(
        "order 1 committed: job {kept} is {:?}",
        jobq.status(kept).run(&client).await?
    );

    let dropped = place_order(&mut client, &jobq, 2, "pen", false).await?;
    match jobq.status(dropped).run(&client).await {
        Err(Error::JobNotFound(id)) => println!("order 2 rolled back: job {id} never existed"),
        other => panic!("expected no job, got {other:?}"),
    }

    // A queueing-lock conflict is reported without poisoning the caller's transaction.
    let tx = client.transaction().await?;
    let again = jobq
        .defer(&ProcessOrder { order_id: 1 })
        .queueing_lock("order-1")
        .run(&tx)
        .await;
    println!("deferring order 1 again: {}", again.unwrap_err());
    tx.execute("INSERT INTO orders VALUES (3, 'ink')", &[])
        .await?;
    tx.commit().await?;

    let orders: i64 = client
        .query_one("SELECT count(*) FROM orders", &[])
        .await?
        .get(0);
    let jobs = jobq.list(&JobFilter::default()).run(&client).await?;
    println!("{orders} orders, {} job(s)", jobs.len());
    Ok(())
}
