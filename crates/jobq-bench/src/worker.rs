//! Worker figures: throughput against a raw batched SQL loop, and commit-to-start latency.

use crate::{BoxError, Figure, figure};
use jobq_core::worker::{JobContext, Worker};
use jobq_tokio_postgres::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Serialize, Deserialize)]
struct Noop {}

impl Task for Noop {
    const NAME: &'static str = "noop";
}

const BATCH: usize = 200;

async fn connect(url: &str) -> Result<tokio_postgres::Client, BoxError> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn fill(url: &str, n: usize) -> Result<(), BoxError> {
    let client = connect(url).await?;
    let sql = format!(
        "INSERT INTO jobq.jobs (task, args) SELECT 'noop', '{{}}' FROM generate_series(1, {n}); ANALYZE jobq.jobs"
    );
    client.batch_execute(&sql).await?;
    Ok(())
}

async fn waiting(client: &tokio_postgres::Client) -> Result<i64, BoxError> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM jobq.jobs WHERE status IN ('todo', 'doing')",
            &[],
        )
        .await?
        .get(0))
}

/// `worker_throughput` and `worker_vs_raw_sql_ratio`, on the same number of queued no-op jobs.
pub(crate) async fn throughput(url: &str, n: usize) -> Result<Vec<Figure>, BoxError> {
    fill(url, n).await?;
    let observer = connect(url).await?;
    let worker = Worker::builder(Jobq::default(), PoolExecutor::connect(url, 8)?)
        .concurrency(100)
        .fetch_batch(BATCH)
        .task(|_: Noop, _ctx: JobContext| async { Ok(()) })
        .build();
    let stop = CancellationToken::new();
    let start = Instant::now();
    let handle = tokio::spawn(worker.run_until(stop.clone().cancelled_owned()));
    while waiting(&observer).await? > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let worker_rate = n as f64 / start.elapsed().as_secs_f64();
    stop.cancel();
    handle.await??;

    // The same work by hand: batched SKIP LOCKED fetch, then one completing UPDATE per batch.
    observer.batch_execute("DELETE FROM jobq.jobs").await?;
    fill(url, n).await?;
    let fetch = format!(
        "UPDATE jobq.jobs SET status = 'doing', attempts = attempts + 1, started_at = now() WHERE id = ANY(ARRAY(
            SELECT id FROM jobq.jobs WHERE status = 'todo' ORDER BY priority DESC, id LIMIT {BATCH}
            FOR UPDATE SKIP LOCKED)) RETURNING id"
    );
    let complete =
        "UPDATE jobq.jobs SET status = 'succeeded', finished_at = now() WHERE id = ANY($1)";
    let start = Instant::now();
    loop {
        let ids: Vec<i64> = observer
            .query(&fetch, &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if ids.is_empty() {
            break;
        }
        observer.execute(complete, &[&ids]).await?;
    }
    let raw_rate = n as f64 / start.elapsed().as_secs_f64();
    Ok(vec![
        figure(
            "worker_throughput",
            worker_rate,
            "jobs/s",
            ">= 20000",
            format!("tokio-postgres pool of 8, concurrency 100, batch {BATCH}, {n} jobs"),
        ),
        figure(
            "worker_vs_raw_sql_ratio",
            worker_rate / raw_rate,
            "ratio",
            ">= 0.5",
            format!("raw loop: {raw_rate:.0} jobs/s"),
        ),
    ])
}

/// `latency_p50_ms` and `latency_p99_ms`: from a defer's COMMIT to its handler starting, idle worker.
pub(crate) async fn latency(url: &str, samples: usize) -> Result<Vec<Figure>, BoxError> {
    let started: Arc<Mutex<Option<Instant>>> = Arc::default();
    let seen = started.clone();
    let worker = Worker::builder(Jobq::default(), PoolExecutor::connect(url, 4)?)
        .poll_interval(Duration::from_secs(10))
        .task(move |_: Noop, _ctx: JobContext| {
            let seen = seen.clone();
            async move {
                *seen.lock().unwrap() = Some(Instant::now());
                Ok(())
            }
        })
        .build();
    let stop = CancellationToken::new();
    let handle = tokio::spawn(worker.run_until(stop.clone().cancelled_owned()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut client = connect(url).await?;
    let jobq = Jobq::default();
    let mut millis = Vec::with_capacity(samples);
    for _ in 0..samples {
        *started.lock().unwrap() = None;
        let tx = client.transaction().await?;
        jobq.defer(&Noop {}).run(&tx).await?;
        tx.commit().await?;
        let committed = Instant::now();
        let begun = loop {
            if let Some(at) = *started.lock().unwrap() {
                break at;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        millis.push(begun.saturating_duration_since(committed).as_secs_f64() * 1_000.0);
    }
    stop.cancel();
    handle.await??;
    millis.sort_by(f64::total_cmp);
    let at = |q: f64| millis[((millis.len() as f64 - 1.0) * q).round() as usize];
    Ok(vec![
        figure(
            "latency_p50_ms",
            at(0.5),
            "ms",
            "<= 5",
            format!("{samples} samples, LISTEN/NOTIFY"),
        ),
        figure("latency_p99_ms", at(0.99), "ms", "<= 25", ""),
    ])
}
