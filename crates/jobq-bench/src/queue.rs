//! What the worker figures share: the no-op task, a worker built as configured, filling the queue through
//! jobq's own batch deferral, and waiting for it to drain.

use crate::BoxError;
use jobq_core::Task;
use jobq_core::worker::{Worker, WorkerBuilder};
use jobq_tokio_postgres::PoolExecutor;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio_postgres::{Client, NoTls};

/// A worker statement of `sql/queries/` rendered for `jobq`'s schema, as jobq-core renders its own (the
/// quoted schema name, the schema's NOTIFY channel).
pub(crate) fn render(sql: &str, jobq: &jobq_core::Jobq) -> String {
    sql.replace("{schema}", &format!("\"{}\"", jobq.schema()))
        .replace("{channel}", jobq.channel())
}

/// The task of every queued benchmark job; its handler does nothing (or what the figure needs).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Noop {}

impl Task for Noop {
    const NAME: &'static str = "noop";
}

/// How the benchmark's workers are set up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerConfig {
    /// Jobs running at once.
    pub(crate) concurrency: usize,
    /// The most jobs one fetch takes.
    pub(crate) fetch_batch: usize,
    /// Connections in the worker's pool (its LISTEN connection comes on top).
    pub(crate) pool: usize,
}

impl WorkerConfig {
    /// A worker builder on a tokio-postgres `PoolExecutor`, with this configuration.
    pub(crate) fn builder(&self, url: &str) -> Result<WorkerBuilder<PoolExecutor>, BoxError> {
        Ok(Worker::builder(
            jobq_core::Jobq::default(),
            PoolExecutor::connect(url, self.pool)?,
        )
        .concurrency(self.concurrency)
        .fetch_batch(self.fetch_batch))
    }

    /// How the table describes it.
    pub(crate) fn describe(&self) -> String {
        format!(
            "tokio-postgres PoolExecutor of {}, concurrency {}, fetch_batch {}",
            self.pool, self.concurrency, self.fetch_batch
        )
    }
}

/// A plain tokio-postgres connection, driven on the current runtime.
pub(crate) async fn connect(url: &str) -> Result<Client, BoxError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Empties `jobq.jobs` and vacuums it, so every measurement starts from the same table.
pub(crate) async fn reset(client: &Client) -> Result<(), BoxError> {
    client.batch_execute("DELETE FROM jobq.jobs").await?;
    client.batch_execute("VACUUM ANALYZE jobq.jobs").await?;
    Ok(())
}

/// The jobs in one `defer_batch` when a queue is filled.
pub(crate) const FILL_BATCH: usize = 1_000;

/// Queues `n` no-op jobs through jobq's own deferral (`defer_batch` of [`FILL_BATCH`] jobs at a time, as a
/// producer would), then ANALYZEs. Rows land as deferred rows do, not packed by one generated INSERT.
pub(crate) async fn fill(client: &Client, n: usize) -> Result<(), BoxError> {
    let jobq = jobq_core::Jobq::default();
    let job = jobq_core::NewJob::from_task(&Noop {})?;
    let mut left = n;
    while left > 0 {
        let take = left.min(FILL_BATCH);
        jobq.defer_batch(std::iter::repeat_n(job.clone(), take))
            .run(client)
            .await?;
        left -= take;
    }
    client.batch_execute("ANALYZE jobq.jobs").await?;
    Ok(())
}

/// Waits until no job is waiting or running. Each check reads only a partial index (waiting jobs not
/// blocked, blocked ones through the lock index, running ones), so polling costs the worker next to nothing.
pub(crate) async fn drained(client: &Client) -> Result<(), BoxError> {
    loop {
        let busy: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM jobq.jobs WHERE status = 'todo' AND NOT blocked)
                     OR EXISTS (SELECT 1 FROM jobq.jobs
                                WHERE status = 'todo' AND blocked AND lock IS NOT NULL)
                     OR EXISTS (SELECT 1 FROM jobq.jobs WHERE status = 'doing')",
                &[],
            )
            .await?
            .get(0);
        if !busy {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
