//! What the fault tests and their worker processes share: the task they run, which records every start and
//! finish in a `runs` table, so the tests can check at-least-once delivery and lock exclusion from outside;
//! and [`proxy::FaultProxy`], a TCP proxy that pauses, cuts or blackholes connections to the server.

pub mod proxy;

use jobq_core::worker::{Backoff, JobContext, JobError, RetryStrategy, Worker, WorkerBuilder};
use jobq_core::{Operation, Task};
use jobq_tokio_postgres::PoolExecutor;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The table the task writes to; create it before starting workers.
pub const RUNS_TABLE: &str = "CREATE TABLE IF NOT EXISTS runs (
    job_id bigint NOT NULL, attempt int NOT NULL, lock text,
    started_at timestamptz NOT NULL, finished_at timestamptz)";

/// Sleeps `ms`, fails its first attempt when `fail_first`, and records the run.
#[derive(Debug, Serialize, Deserialize)]
pub struct Slow {
    /// How long the handler takes.
    pub ms: u64,
    /// Fail the first attempt (a retry follows).
    pub fail_first: bool,
}

impl Task for Slow {
    const NAME: &'static str = "slow";
    fn retry() -> RetryStrategy {
        RetryStrategy::new(5).backoff(Backoff::Constant(Duration::from_millis(10)))
    }
}

/// A worker over `url` that runs [`Slow`] jobs, with fast heartbeats and a short stall timeout.
pub fn worker(
    url: &str,
    concurrency: usize,
) -> Result<Worker<PoolExecutor>, jobq_core::ConnectorError> {
    worker_via(url, url, concurrency)
}

/// A worker whose own connections go to `url` (through a fault proxy, say) while its handlers record their
/// runs over `runs_url`: the faults hit jobq, not the test's bookkeeping.
pub fn worker_via(
    url: &str,
    runs_url: &str,
    concurrency: usize,
) -> Result<Worker<PoolExecutor>, jobq_core::ConnectorError> {
    Ok(worker_builder(url, runs_url, concurrency)?.build())
}

/// The builder of [`worker_via`], for a test to change a setting.
pub fn worker_builder(
    url: &str,
    runs_url: &str,
    concurrency: usize,
) -> Result<WorkerBuilder<PoolExecutor>, jobq_core::ConnectorError> {
    worker_on(PoolExecutor::connect(url, 4)?, runs_url, concurrency)
}

/// The builder of [`worker_via`] on a backend of the test's own.
pub fn worker_on(
    backend: PoolExecutor,
    runs_url: &str,
    concurrency: usize,
) -> Result<WorkerBuilder<PoolExecutor>, jobq_core::ConnectorError> {
    let runs = jobq_tokio_postgres::pool(runs_url, 4)?;
    Ok(Worker::builder(jobq_core::Jobq::default(), backend)
        .concurrency(concurrency)
        .poll_interval(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_millis(200))
        .stalled_after(Duration::from_secs(2))
        .statement_timeout(Duration::from_secs(2))
        .shutdown_timeout(Duration::from_secs(5))
        .task(move |slow: Slow, ctx: JobContext| {
            let runs = runs.clone();
            async move {
                let db = runs.get().await.map_err(|e| JobError::new(e.to_string()))?;
                let (id, attempt, lock) = (ctx.id().0, ctx.attempt(), ctx.job.lock.clone());
                db.execute(
                    "INSERT INTO runs (job_id, attempt, lock, started_at) VALUES ($1, $2, $3, clock_timestamp())",
                    &[&id, &attempt, &lock],
                )
                .await?;
                tokio::time::sleep(Duration::from_millis(slow.ms)).await;
                db.execute(
                    "UPDATE runs SET finished_at = clock_timestamp() WHERE job_id = $1 AND attempt = $2",
                    &[&id, &attempt],
                )
                .await?;
                if slow.fail_first && attempt == 1 {
                    return Err(JobError::new("failing the first attempt on purpose"));
                }
                Ok(())
            }
        })
        )
}

/// A worker running in the background until stopped.
#[derive(Debug)]
pub struct Running {
    /// Cancelled to ask the worker to shut down.
    pub stop: tokio_util::sync::CancellationToken,
    /// The worker's task: its `run_until` result.
    pub handle: tokio::task::JoinHandle<Result<(), jobq_core::Error>>,
}

impl Running {
    /// Spawns `worker` on the current runtime.
    pub fn start(worker: Worker<PoolExecutor>) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let handle = tokio::spawn(worker.run_until(stop.clone().cancelled_owned()));
        Self { stop, handle }
    }

    /// Asks it to shut down and waits for it; panics when it did not stop cleanly.
    pub async fn stop(self) {
        self.stop.cancel();
        self.handle.await.unwrap().unwrap();
    }
}

/// `SELECT count(*)` of the rows of `sql` on `client`.
pub async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM ({sql}) s"), &[])
        .await
        .unwrap()
        .get(0)
}

/// Polls `sql` (one boolean column) on `client` until it is true; panics with the query after `limit`.
/// A query that fails counts as not yet (the server may be restarting).
pub async fn wait_until(client: &tokio_postgres::Client, sql: &str, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if client
            .query_one(sql, &[])
            .await
            .map(|r| r.get::<_, bool>(0))
            .unwrap_or(false)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition never held: {sql}");
}

/// A plain tokio-postgres connection to `url`, driven on the current runtime.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Defers `n` copies of `job`, one per transaction on `url`, reconnecting and retrying through errors (a
/// server restarting, say); returns the ids whose COMMIT was acknowledged and how many attempts failed.
pub async fn defer_one_by_one(
    url: String,
    n: usize,
    job: jobq_core::NewJob,
) -> (Vec<jobq_core::JobId>, usize) {
    let jobq = jobq_core::Jobq::default();
    let mut acknowledged = Vec::new();
    let mut failures = 0;
    let mut client = None;
    while acknowledged.len() < n {
        if client.is_none() {
            client = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .ok()
                .map(|(c, conn)| {
                    tokio::spawn(conn);
                    c
                });
        }
        let Some(c) = client.as_mut() else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let attempt = async {
            let tx = c.transaction().await.map_err(|e| e.to_string())?;
            let id = jobq
                .defer_job(job.clone())
                .run(&tx)
                .await
                .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(id)
        };
        match attempt.await {
            Ok(id) => acknowledged.push(id),
            Err(_) => {
                failures += 1;
                client = None;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (acknowledged, failures)
}
