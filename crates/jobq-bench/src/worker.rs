//! `worker_throughput`, `worker_vs_raw_sql_ratio` and `worker_vs_runner_loop_ratio`: one worker draining
//! queued no-op jobs, against hand-written loops of batched `FOR UPDATE SKIP LOCKED` fetches and batched
//! completions on the same data: one that takes only the ids, and one that also takes what running a job
//! needs (its task and its arguments, read as JSON).

use crate::queue::{self, Noop};
use crate::report::{Figure, Report, Target, number};
use crate::{BoxError, Plan};
use jobq_core::worker::JobContext;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Takes up to `$1` due jobs, highest priority first, marks them running for worker `$2` and answers
/// `$returning` of each. It walks the same partial index as jobq's fetch (waiting jobs not blocked behind a
/// lock; the benchmark has no locks).
macro_rules! raw_fetch {
    ($returning:literal) => {
        concat!(
            "UPDATE jobq.jobs SET status = 'doing', attempts = attempts + 1, started_at = now(),
                worker_id = $2
            WHERE id = ANY (ARRAY(
                SELECT id FROM jobq.jobs WHERE status = 'todo' AND NOT blocked AND scheduled_at <= now()
                ORDER BY priority DESC, id LIMIT $1 FOR UPDATE SKIP LOCKED))
            RETURNING ",
            $returning
        )
    };
}

/// The raw loop's fetch: ids only.
const RAW_FETCH: &str = raw_fetch!("id");

/// The runner loop's fetch: what running a job needs, its task and arguments, besides its id.
const RUNNER_FETCH: &str = raw_fetch!("id, task, args::text");

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
    let mut times = [Duration::ZERO; 3];
    for round in 0..plan.worker_rounds {
        let rounds = plan.worker_rounds;
        // Each round runs the three in another order, so none always runs first.
        for turn in 0..3 {
            let which = (round + turn) % 3;
            queue::reset(&client).await?;
            queue::fill(&client, n).await?;
            let (what, took) = match which {
                0 => ("worker draining", drain(url, plan, &client, n, None).await?),
                1 => (
                    "raw SKIP LOCKED loop (ids only):",
                    raw_loop(&client, RAW_FETCH, plan.worker.fetch_batch).await?,
                ),
                _ => (
                    "runner loop (ids, tasks, arguments):",
                    raw_loop(&client, RUNNER_FETCH, plan.worker.fetch_batch).await?,
                ),
            };
            report.detail(format!("{what} {n} jobs, round {}/{rounds}", round + 1));
            times[which] += took;
        }
    }
    let [worker_time, raw_time, runner_time] = times;
    let total = (n * plan.worker_rounds) as f64;
    let rate = |time: Duration| total / time.as_secs_f64();
    let (worker_rate, raw_rate, runner_rate) =
        (rate(worker_time), rate(raw_time), rate(runner_time));
    let quick = if plan.quick {
        " (quick: fewer jobs)"
    } else {
        ""
    };
    Ok(vec![
        Figure::new("worker_throughput", worker_rate, "jobs/s")
            .target(Target::AtLeast(20_000.0))
            .note(format!(
                "{}; {} rounds of {n} no-op jobs{quick}, each timed from its first job's start",
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
        Figure::new(
            "worker_vs_runner_loop_ratio",
            worker_rate / runner_rate,
            "ratio",
        )
        .note(format!(
            "the raw loop also answering each job's task and arguments (read as JSON): {} jobs/s",
            number(runner_rate)
        )),
    ])
}

/// Starts a worker of `queues` (every queue when `None`) on `n` queued jobs and times it from its first
/// job's start until every job is ended in the database. The worker's own start (its pool's first
/// connections, its registration, its LISTEN connection and probe) is left out, as the raw loop's connection
/// and prepared statements are.
pub(crate) async fn drain(
    url: &str,
    plan: &Plan,
    client: &tokio_postgres::Client,
    n: usize,
    queues: Option<Vec<String>>,
) -> Result<Duration, BoxError> {
    let ran = Arc::new(AtomicUsize::new(0));
    let all_ran = Arc::new(Notify::new());
    let first = Arc::new(OnceLock::new());
    let (counter, done, started) = (ran.clone(), all_ran.clone(), first.clone());
    let mut builder = plan.worker.builder(url)?;
    if let Some(queues) = queues {
        builder = builder.queues(queues);
    }
    let worker = builder
        .task(move |_: Noop, _: JobContext| {
            started.get_or_init(Instant::now);
            if counter.fetch_add(1, Ordering::Relaxed) + 1 == n {
                done.notify_one();
            }
            async { Ok(()) }
        })
        .build();
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run_until(stop.clone().cancelled_owned()));
    // Only poll the database once every handler ran, so the polling does not compete with the worker.
    all_ran.notified().await;
    queue::drained(client).await?;
    let took = first.get().ok_or("no job started")?.elapsed();
    stop.cancel();
    running.await??;
    Ok(took)
}

/// Drains the queue by hand on one connection with `fetch` (ids first, then for [`RUNNER_FETCH`] each job's
/// task and arguments, read as a runner would): fetch a batch, complete it, until nothing is left.
async fn raw_loop(
    client: &tokio_postgres::Client,
    fetch: &str,
    batch: usize,
) -> Result<Duration, BoxError> {
    let fetch = client.prepare(fetch).await?;
    let complete = client.prepare(RAW_COMPLETE).await?;
    let limit = i64::try_from(batch)?;
    let start = Instant::now();
    loop {
        let rows = client.query(&fetch, &[&limit, &0_i64]).await?;
        if rows.is_empty() {
            return Ok(start.elapsed());
        }
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            ids.push(row.get::<_, i64>(0));
            if row.len() > 1 {
                let task: &str = row.get(1);
                let args: serde_json::Value = serde_json::from_str(row.get(2))?;
                std::hint::black_box((task, args));
            }
        }
        client.execute(&complete, &[&ids]).await?;
    }
}
