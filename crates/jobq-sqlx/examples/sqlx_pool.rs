//! Deferring through a `PgPool` from several tasks, then a worker on the same pool runs the jobs; it
//! LISTENs on a connection of its own, so committed jobs start at once.
//!
//! ```sh
//! cargo run -p jobq-sqlx --example sqlx_pool
//! ```

use jobq_sqlx::PoolExecutor;
use jobq_sqlx::core::worker::{JobContext, Worker};
use jobq_sqlx::prelude::*;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
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
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .connect(db.url())
        .await?;
    let jobq = Jobq::default();
    println!(
        "jobq schema version {}",
        jobq.check_schema().run(&pool).await?
    );

    // Outside a transaction: each statement takes a connection from the pool and gives it back.
    let tasks: Vec<_> = ["ada", "bob", "cy"]
        .into_iter()
        .map(|name| {
            let (pool, jobq) = (pool.clone(), jobq.clone());
            tokio::spawn(async move {
                let email = SendEmail {
                    to: format!("{name}@example.com"),
                };
                jobq.defer(&email).queue("emails").run(&pool).await
            })
        })
        .collect();
    for task in tasks {
        println!("deferred job {} through the pool", task.await??);
    }
    let batch = (0..3).map(|n| {
        NewJob::from_task(&SendEmail {
            to: format!("list-{n}@example.com"),
        })
    });
    let ids = jobq
        .defer_batch(batch.collect::<Result<Vec<_>, _>>()?)
        .run(&pool)
        .await?;
    println!("deferred a batch of {} in one statement", ids.len());

    // A worker on the same pool runs them.
    let (done, mut sent) = tokio::sync::mpsc::unbounded_channel();
    let worker = Worker::builder(jobq.clone(), PoolExecutor::new(pool.clone()))
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
    for _ in 0..6 {
        tokio::time::timeout(Duration::from_secs(30), sent.recv()).await?;
    }
    stop.send(()).ok();
    running.await??;
    for count in jobq.queue_counts().run(&pool).await? {
        println!("{count:?}");
    }
    Ok(())
}
