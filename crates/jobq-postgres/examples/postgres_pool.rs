//! Deferring through an r2d2 pool from several threads, and through a pooled connection's transaction;
//! then a worker on the same pool runs the jobs.
//!
//! ```sh
//! cargo run -p jobq-postgres --example postgres_pool
//! ```

use jobq_postgres::PoolExecutor;
use jobq_postgres::core::worker::{JobContext, Worker};
use jobq_postgres::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Serialize, Deserialize)]
struct SendEmail {
    to: String,
}

impl Task for SendEmail {
    const NAME: &'static str = "send_email";
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = jobq_tempdb::database();
    let pool = jobq_postgres::pool(db.url(), 8)?;
    let jobq = Jobq::default();
    jobq.check_schema().run_blocking(&pool)?;

    // Outside a transaction: each statement takes a connection from the pool and gives it back.
    let threads: Vec<_> = ["ada", "bob", "cy"]
        .into_iter()
        .map(|name| {
            let (pool, jobq) = (pool.clone(), jobq.clone());
            std::thread::spawn(move || {
                let email = SendEmail {
                    to: format!("{name}@example.com"),
                };
                jobq.defer(&email).run_blocking(&pool)
            })
        })
        .collect();
    for thread in threads {
        println!("deferred job {} through the pool", thread.join().unwrap()?);
    }

    // Inside a transaction on a pooled connection.
    let mut conn = pool.get()?;
    let mut tx = conn.transaction()?;
    let last = jobq
        .defer(&SendEmail {
            to: "dee@example.com".into(),
        })
        .priority(10)
        .run_blocking(&mut tx)?;
    tx.commit()?;
    drop(conn);

    // A worker on the same pool runs them. The worker is async, so it gets a runtime of its own; its
    // statements run on the runtime's blocking threads, and it LISTENs, so committed jobs start at once.
    let backend = PoolExecutor::new(pool.clone()).listen_with(db.url().parse()?);
    let (done, sent) = std::sync::mpsc::channel();
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
    let runtime = tokio::runtime::Runtime::new()?;
    let running = runtime.spawn(worker.run_until(async move {
        stopped.await.ok();
    }));
    for _ in 0..4 {
        sent.recv_timeout(Duration::from_secs(30))?;
    }
    stop.send(()).ok();
    runtime.block_on(running)??;
    println!("job {last} is {:?}", jobq.status(last).run_blocking(&pool)?);
    Ok(())
}
