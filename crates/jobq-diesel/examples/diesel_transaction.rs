//! The SQLAlchemy example of Procrastinate's external-connection guide, in diesel: an order row and the job
//! that processes it, inside `conn.transaction(..)`, so both commit or neither does; then a worker on the
//! r2d2 pool runs it.
//!
//! ```sh
//! cargo run -p jobq-diesel --example diesel_transaction
//! ```

use diesel::prelude::*;
use jobq_core::worker::{JobContext, Worker};
use jobq_diesel::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Serialize, Deserialize)]
struct ProcessOrder {
    order_id: i64,
}

impl Task for ProcessOrder {
    const NAME: &'static str = "process_order";
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let db = jobq_tempdb::database();
    let mut conn = PgConnection::establish(db.url())?;
    diesel::sql_query("CREATE TABLE orders (id bigint PRIMARY KEY)").execute(&mut conn)?;
    let jobq = Jobq::default();

    let id = conn.transaction::<_, BoxError, _>(|conn| {
        diesel::sql_query("INSERT INTO orders VALUES (42)").execute(conn)?;
        Ok(jobq
            .defer(&ProcessOrder { order_id: 42 })
            .run_blocking(conn)?)
    })?;
    println!("committed order 42 with job {id}");

    let rolled_back = conn.transaction::<(), BoxError, _>(|conn| {
        diesel::sql_query("INSERT INTO orders VALUES (43)").execute(conn)?;
        jobq.defer(&ProcessOrder { order_id: 43 })
            .run_blocking(conn)?;
        Err("the order was refused".into())
    });
    println!(
        "order 43 rolled back ({}): no job",
        rolled_back.unwrap_err()
    );

    let pool = jobq_diesel::pool(db.url(), 4)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let worker = Worker::builder(jobq.clone(), jobq_diesel::PoolExecutor::new(pool))
            .poll_interval(Duration::from_millis(100))
            .task(|order: ProcessOrder, _ctx: JobContext| async move {
                println!("processing order {}", order.order_id);
                Ok(())
            })
            .build();
        let stop = tokio::time::sleep(Duration::from_secs(1));
        worker.run_until(stop).await
    })?;
    println!("job {id} is {}", jobq.status(id).run_blocking(&mut conn)?);
    Ok(())
}
