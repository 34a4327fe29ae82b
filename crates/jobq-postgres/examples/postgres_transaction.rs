//! Deferring inside your own transaction, on the connection you already hold (the transactional outbox),
//! with the blocking `postgres` client.
//!
//! The order row and the job that processes it commit together or not at all: a rolled-back order leaves
//! no job behind, and no worker hears of a job before its transaction commits. jobq never commits or rolls
//! back for you.
//!
//! ```sh
//! cargo run -p jobq-postgres --example postgres_transaction
//! ```

use jobq_postgres::prelude::*;
use serde::Serialize;

#[derive(Serialize)]
struct ProcessOrder {
    order_id: i64,
}

impl Task for ProcessOrder {
    const NAME: &'static str = "process_order";
}

/// The application's own code: an order and its job in one transaction.
fn place_order(
    client: &mut postgres::Client,
    jobq: &Jobq,
    order_id: i64,
    item: &str,
    commit: bool,
) -> Result<JobId, Box<dyn std::error::Error>> {
    let mut tx = client.transaction()?;
    tx.execute("INSERT INTO orders VALUES ($1, $2)", &[&order_id, &item])?;
    let id = jobq
        .defer(&ProcessOrder { order_id })
        .queue("orders")
        // At most one waiting job per order: a second deferral is refused, the transaction stays usable.
        .queueing_lock(format!("order-{order_id}"))
        .run_blocking(&mut tx)?;
    // The job is visible here, in this transaction, and nowhere else yet.
    assert_eq!(jobq.status(id).run_blocking(&mut tx)?, Status::Todo);
    if commit {
        tx.commit()?;
    } else {
        tx.rollback()?;
    }
    Ok(id)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = jobq_tempdb::database();
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls)?;
    client.batch_execute("CREATE TABLE orders (id bigint PRIMARY KEY, item text NOT NULL)")?;
    let jobq = Jobq::default();

    let kept = place_order(&mut client, &jobq, 1, "book", true)?;
    let status = jobq.status(kept).run_blocking(&mut client)?;
    println!("order 1 committed: job {kept} is {status:?}");

    let dropped = place_order(&mut client, &jobq, 2, "pen", false)?;
    match jobq.status(dropped).run_blocking(&mut client) {
        Err(Error::JobNotFound(id)) => println!("order 2 rolled back: job {id} never existed"),
        other => panic!("expected no job, got {other:?}"),
    }

    // A queueing-lock conflict is reported without poisoning the caller's transaction.
    let mut tx = client.transaction()?;
    let again = jobq
        .defer(&ProcessOrder { order_id: 1 })
        .queueing_lock("order-1")
        .run_blocking(&mut tx);
    println!("deferring order 1 again: {}", again.unwrap_err());
    tx.execute("INSERT INTO orders VALUES (3, 'ink')", &[])?;
    tx.commit()?;

    let orders: i64 = client.query_one("SELECT count(*) FROM orders", &[])?.get(0);
    let jobs = jobq.list(&JobFilter::default()).run_blocking(&mut client)?;
    println!("{orders} orders, {} job(s)", jobs.len());
    Ok(())
}
