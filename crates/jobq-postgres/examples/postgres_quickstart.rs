//! Starts a throwaway PostgreSQL (the jobq schema is already applied there), defers a job in the same
//! transaction as an order row, and reads it back. Plain blocking code: no async runtime.
//!
//! ```sh
//! cargo run -p jobq-postgres --example postgres_quickstart
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = jobq_tempdb::database();
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls)?;
    client.batch_execute("CREATE TABLE orders (id bigint PRIMARY KEY, item text NOT NULL)")?;

    let jobq = Jobq::default();
    let mut tx = client.transaction()?;
    tx.execute("INSERT INTO orders VALUES ($1, $2)", &[&42_i64, &"book"])?;
    let id = jobq
        .defer(&ProcessOrder { order_id: 42 })
        .queue("orders")
        .run_blocking(&mut tx)?;
    tx.commit()?;

    let job = jobq.job(id).run_blocking(&mut client)?;
    println!(
        "job {} ({}) in queue {:?} is {:?}, args {}",
        job.id, job.task, job.queue, job.status, job.args
    );
    Ok(())
}
