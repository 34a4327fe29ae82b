//! Starts a throwaway PostgreSQL (the jobq schema is already applied there), defers a job in the same
//! transaction as an order row, and reads it back.
//!
//! ```sh
//! cargo run -p jobq-tokio-postgres --example quickstart
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = jobq_tempdb::database();
    let (mut client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute("CREATE TABLE orders (id bigint PRIMARY KEY, item text NOT NULL)")
        .await?;

    let jobq = Jobq::default();
    let tx = client.transaction().await?;
    tx.execute("INSERT INTO orders VALUES ($1, $2)", &[&42_i64, &"book"])
        .await?;
    let id = jobq
        .defer(&ProcessOrder { order_id: 42 })
        .queue("orders")
        .run(&tx)
        .await?;
    tx.commit().await?;

    let job = jobq.job(id).run(&client).await?;
    println!(
        "job {} ({}) in queue {:?} is {:?}, args {}",
        job.id, job.task, job.queue, job.status, job.args
    );
    Ok(())
}
