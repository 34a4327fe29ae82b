//! Deferral figures: on the caller's connection against a hand-written INSERT, through the pool, in batches.

use crate::{BoxError, Figure, figure};
use jobq_tokio_postgres::prelude::*;
use std::time::Instant;

const ORDERS: &str = "CREATE TABLE orders (id bigserial PRIMARY KEY, item text NOT NULL);
    CREATE TABLE raw_jobs (LIKE jobq.jobs INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING INDEXES);";

async fn connect(url: &str) -> Result<tokio_postgres::Client, BoxError> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// `defer_external`, its ratio to a plain INSERT into a table shaped like jobq's, and `defer_pool`.
pub(crate) async fn tokio_postgres(url: &str, n: usize) -> Result<Vec<Figure>, BoxError> {
    let mut client = connect(url).await?;
    client.batch_execute(ORDERS).await?;
    let jobq = Jobq::default();
    let job = || NewJob::new("process_order", serde_json::json!({"order_id": 1}));
    let raw = "INSERT INTO raw_jobs (queue, task, args) VALUES ('default', 'process_order', $1::text::jsonb)";
    let (mut jobq_time, mut raw_time) = (0.0, 0.0);
    // Alternate the two loops in rounds, so drift on a shared machine hits both alike.
    for _ in 0..10 {
        let start = Instant::now();
        for _ in 0..n / 10 {
            let tx = client.transaction().await?;
            tx.execute("INSERT INTO orders (item) VALUES ('book')", &[])
                .await?;
            jobq.defer_job(job()).run(&tx).await?;
            tx.commit().await?;
        }
        jobq_time += start.elapsed().as_secs_f64();
        let start = Instant::now();
        for _ in 0..n / 10 {
            let tx = client.transaction().await?;
            tx.execute("INSERT INTO orders (item) VALUES ('book')", &[])
                .await?;
            tx.execute(raw, &[&r#"{"order_id": 1}"#]).await?;
            tx.commit().await?;
        }
        raw_time += start.elapsed().as_secs_f64();
    }
    let pool = PoolExecutor::connect(url, 4)?;
    let start = Instant::now();
    for _ in 0..n {
        jobq.defer_job(job()).run(&pool).await?;
    }
    let pooled = n as f64 / start.elapsed().as_secs_f64();
    Ok(vec![
        figure(
            "defer_external.tokio_postgres",
            n as f64 / jobq_time,
            "jobs/s",
            "",
            "",
        ),
        figure(
            "defer_external_ratio.tokio_postgres",
            raw_time / jobq_time,
            "ratio",
            ">= 0.90",
            "vs INSERT into a jobs-shaped table",
        ),
        figure(
            "defer_pool.tokio_postgres",
            pooled,
            "jobs/s",
            "",
            "one job per call, pool of 4",
        ),
    ])
}

/// `batch_defer`: batches of 1,000 jobs through the pool.
pub(crate) async fn batch(url: &str, batches: usize) -> Result<Vec<Figure>, BoxError> {
    let pool = PoolExecutor::connect(url, 2)?;
    let jobq = Jobq::default();
    let jobs: Vec<NewJob> = (0..1_000)
        .map(|n| NewJob::new("t", serde_json::json!({ "n": n })))
        .collect();
    let start = Instant::now();
    for _ in 0..batches {
        jobq.defer_batch(jobs.clone()).run(&pool).await?;
    }
    let rate = (batches * 1_000) as f64 / start.elapsed().as_secs_f64();
    Ok(vec![figure(
        "batch_defer.tokio_postgres",
        rate,
        "jobs/s",
        ">= 100000",
        "batches of 1,000",
    )])
}
