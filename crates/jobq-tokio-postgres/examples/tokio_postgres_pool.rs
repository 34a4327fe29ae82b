//! Deferring through a deadpool pool, and through a pooled connection's transaction; then a worker on the
//! same pool runs the jobs.
//!
//! ```sh
//! cargo run -p jobq-tokio-postgres --example tokio_postgres_pool
//! ```

use jobq_tokio_postgres::PoolExecutor;
use jobq_tokio_postgres::core::worker::{JobContext, Worker};
use jobq_tokio_postgres::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Serialize, Deserialize)]
struct SendEmail {
    to: String,
}

impl Task for SendEmail {
    const NAME: &'static str = "send_email";
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = jobq_tempdb::database();
    let pool = jobq_tokio_postgres::pool(db.url(), 8)?;
    let jobq = Jobq::default();

    // Outside a transaction: each statement takes a connection from the pool and gives it back.
    jobq.check_schema().run(&pool).await?;
    let first = jobq
        .defer(&SendEmail {
            to: "ada@example.com".into(),
        })
        .run(&pool)
        .await?;
    let batch = jobq
        .defer_batch(["bob", "cy"].map(|n| {
            NewJob::from_task(&SendEmail {
                to: format!("{n}@example.com"),
            })
            .unwrap()
        }))
        .run(&pool)
        .await?;
    println!("deferred {first} and {batch:?} through the pool");

    // Inside a transaction on a pooled connection: pass deadpool's transaction.
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let last = jobq
        .defer(&SendEmail {
            to: "dee@example.com".into(),
        })
        .priority(10)
        .run(&tx)
        .await?;
    tx.commit().await?;
    drop(conn);

    // A worker on the same pool runs them; it LISTENs, so committed jobs start at once.
    let (done, mut sent) = tokio::sync::mpsc::unbounded_channel();
    let backend = PoolExecutor::new(pool.clone()).listen_with(db.url().parse()?);
    let worker = Worker::builder(jobq.clone(), backend)
        .task(move |email: SendEmail, ctx: JobContext| {
            let done = done.clone();
            async move {
                println!("job {}: mailing {}", ctx.id(), email.to);
                done.send(()).ok();
                Ok(())
            }
        })
        .build();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run_until(async move {
        stopped.await.ok();
    }));
    for _ in 0..4 {
        tokio::time::timeout(Duration::from_secs(30), sent.recv()).await?;
    }
    stop.send(()).ok();
    running.await??;
    println!("job {last} is {:?}", jobq.status(last).run(&pool).await?);
    Ok(())
}
