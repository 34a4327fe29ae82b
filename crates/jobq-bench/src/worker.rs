//! `worker_throughput` and `worker_vs_raw_sql_ratio`: one worker draining queued no-op jobs, against a
//! hand-written loop of batched `FOR UPDATE SKIP LOCKED` fetches and batched completions on the same data.

use crate::queue::{self, Noop};
use crate::report::{Figure, Report, Target, number};
use crate::{BoxError, Plan};
use jobq_core::worker::JobContext;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Takes up to `$1` due jobs, highest priority first, and marks them running for worker `$2`. It walks the
/// same partial index as jobq's fetch (waiting jobs not blocked behind a lock; the benchmark has no locks).
const RAW_FETCH: &str =
    "UPDATE jobq.jobs SET status = 'doing', attempts = attempts + 1, started_at = now(),
        worker_id = $2
    WHERE id = ANY (ARRAY(
        SELECT id FROM jobq.jobs WHERE status = 'todo' AND NOT blocked AND scheduled_at <= now()
        ORDER BY priority DESC, id LIMIT $1 FOR UPDATE SKIP LOCKED))
    RETURNING id";

/// Ends a batch of jobs as succeeded.
const RAW_COMPLETE: &str =
    "UPDATE jobq.jobs SET status = 'succeeded', finished_at = now(), worker_id = NULL
    WHERE id = ANY ($1)";

/// Both figures, alternating the worker and the raw loop in rounds on freshly filled queues.
pub(crate) async fn throughput(
    url: &str,
    plan: &Plan,
    report: &Report,
) -> Result<Vec<Figure>, BoxError> {
    let client = queue::connect(url).await?;
    let n = plan.worker_jobs;
    let (mut worker_time, mut raw_time) = (Duration::ZERO, Duration::ZERO);
    for round in 0..plan.worker_rounds {
        let rounds = plan.worker_rounds;
        for raw in if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        } {
            queue::reset(&client).await?;
            queue::fill(&client, n).await?;
            if raw {
                report.detail(format!(
                    "raw SKIP LOCKED loop: {n} jobs, round {}/{rounds}",
                    round + 1
                ));
                raw_time += raw_loop(&client, plan.worker.fetch_batch).await?;
            } else {
                report.detail(format!(
                    "worker draining {n} jobs, round {}/{rounds}",
                    round + 1
                ));
                worker_time += drain(url, plan, &client, n).await?;
            }
        }
    }
    let total = (n * plan.worker_rounds) as f64;
    let (worker_rate, raw_rate) = (
        total / worker_time.as_secs_f64(),
        total / raw_time.as_secs_f64(),
    );
    let quick = if plan.quick {
        " (quick: fewer jobs)"
    } else {
        ""
    };
    Ok(vec![
        Figure::new("worker_throughput", worker_rate, "jobs/s")
            .target(Target::AtLeast(20_000.0))
            .note(format!(
                "{}; {} rounds of {n} no-op jobs{quick}",
                plan.worker.describe(),
                plan.worker_rounds
            )),
        Figure::new("worker_vs_raw_sql_ratio", worker_rate / raw_rate, "ratio")
            .target(Target::AtLeast(0.9))
            .note(format!(
                "raw loop, one connection, batches of {}: {} jobs/s",
                plan.worker.fetch_batch,
                number(raw_rate)
            )),
    ])
}

/// Starts a worker on `n` queued jobs and times it until every one is ended in the database.
pub(crate) async fn drain(
    url: &str,
    plan: &Plan,
    client: &tokio_postgres::Client,
    n: usize,
) -> Result<Duration, BoxError> {
    let ran = Arc::new(AtomicUsize::new(0));
    let all_ran = Arc::new(Notify::new());
    let (counter, done) = (ran.clone(), all_ran.clone());
    let worker = plan
        .worker
        .builder(url)?
        .task(move |_: Noop, _: JobContext| {
            if counter.fetch_add(1, Ordering::Relaxed) + 1 == n {
                done.notify_one();
            }
            async { Ok(()) }
        })
        .build();
    let stop = CancellationToken::new();
    let start = Instant::now();
    let running = tokio::spawn(worker.run_until(stop.clone().cancelled_owned()));
    // Only poll the database once every handler ran, so the polling does not compete with the worker.
    all_ran.notified().await;
    queue::drained(client).await?;
    let took = start.elapsed();
    stop.cancel();
    running.await??;
    Ok(took)
}

/// Drains the queue by hand on one connection: fetch a batch, complete it, until nothing is left.
async fn raw_loop(client: &tokio_postgres::Client, batch: usize) -> Result<Duration, BoxError> {
    let fetch = client.prepare(RAW_FETCH).await?;
    let complete = client.prepare(RAW_COMPLETE).await?;
    let limit = i64::try_from(batch)?;
    let start = Instant::now();
    loop {
        let ids: Vec<i64> = client
            .query(&fetch, &[&limit, &0_i64])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        if ids.is_empty() {
            return Ok(start.elapsed());
        }
        client.execute(&complete, &[&ids]).await?;
    }
}
