//! `fetch_flatness_ratio`: the time to fetch and complete a batch with millions of finished jobs in the table,
//! divided by the same with none. It runs the worker's own statements (`sql/queries/fetch.sql` and
//! `complete.sql`) through the tokio-postgres adapter, as the worker does, with the worker's arguments.
//!
//! The two tables are two jobq schemas in one database, `jobq` (no finished jobs) and `jobq_finished`, and
//! their batches alternate (which goes first alternates too), so both medians come from the same minutes:
//! on a shared machine the speed of one batch moves by a factor of two from one minute to the next.

use crate::queue;
use crate::report::{Figure, Report, Target, number};
use crate::{BoxError, Plan};
use jobq_core::{AsyncExecutor, IntoAsyncExecutor, Job, Jobq};
use jobq_tokio_postgres::TokioPostgres;
use serde_json::json;
use std::time::Instant;
use tokio_postgres::Client;

/// The schema holding the finished jobs.
const FINISHED_SCHEMA: &str = "jobq_finished";

/// Warm-up batches of each table, not timed.
const WARM_UP: usize = 3;

/// The median times of batches alternating between a table without finished jobs and one with
/// `plan.finished_rows` of them.
pub(crate) async fn measure(
    url: &str,
    plan: &Plan,
    report: &Report,
) -> Result<Vec<Figure>, BoxError> {
    let client = queue::connect(url).await?;
    let batch = plan.worker.fetch_batch.min(plan.worker.concurrency);
    let batches = plan.flatness_reps + WARM_UP;
    report.detail("fetch and complete: the table without finished jobs".to_owned());
    let empty = Table::set_up(&client, "jobq", 0, batches * batch).await?;
    report.detail(format!(
        "fetch and complete: inserting {} finished jobs into {FINISHED_SCHEMA}",
        number(plan.finished_rows as f64)
    ));
    let finished = Table::set_up(
        &client,
        FINISHED_SCHEMA,
        plan.finished_rows,
        batches * batch,
    )
    .await?;
    report.detail(format!(
        "fetch and complete: {} batches of {batch} from each table, alternating",
        plan.flatness_reps
    ));
    let mut times = [Vec::new(), Vec::new()];
    for rep in 0..batches {
        let order = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let table = [&empty, &finished][which];
            let took = table.batch(&client, batch).await?;
            if rep >= WARM_UP {
                times[which].push(took);
            }
        }
    }
    for table in [&empty, &finished] {
        table.check_ended(&client, batches * batch).await?;
    }
    let [without, with] = times.map(median);
    let quick = if plan.quick {
        " (quick: fewer finished rows)"
    } else {
        ""
    };
    Ok(vec![
        Figure::new("fetch_flatness_ratio", with / without, "ratio")
            .target(Target::AtMost(1.2))
            .note(format!(
                "median of {} batches of {batch} from each table, alternating, fetch.sql + complete.sql: \
                 {with:.2} ms with {} finished jobs{quick}, {without:.2} ms with none",
                plan.flatness_reps,
                number(plan.finished_rows as f64),
            )),
    ])
}

/// The median of `times`, in milliseconds.
fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// One jobq schema with its waiting (and finished) jobs, a registered worker and the worker's statements
/// rendered for it.
struct Table {
    schema: &'static str,
    worker_id: i64,
    fetch: String,
    complete: String,
}

impl Table {
    /// Migrates `schema`, empties its jobs table, inserts `finished` finished jobs and `waiting` waiting ones,
    /// vacuums it and registers a worker.
    async fn set_up(
        client: &Client,
        schema: &'static str,
        finished: u64,
        waiting: usize,
    ) -> Result<Self, BoxError> {
        let jobq = Jobq::with_schema(schema)?;
        jobq.migrate().run(client).await?;
        client
            .batch_execute(&format!("DELETE FROM {schema}.jobs"))
            .await?;
        if finished > 0 {
            client
                .batch_execute(&format!(
                    "INSERT INTO {schema}.jobs (task, args, status, attempts, scheduled_at, started_at,
                         finished_at, created_at)
                     SELECT 'noop', '{{}}', 'succeeded', 1, t, t, t, t
                     FROM generate_series(1, {finished}), (SELECT now() - interval '1 day' AS t) at"
                ))
                .await?;
        }
        client
            .batch_execute(&format!(
                "INSERT INTO {schema}.jobs (task, args) SELECT 'noop', '{{}}' FROM generate_series(1, {waiting})"
            ))
            .await?;
        // Also sets the hint bits and the visibility map, as autovacuum would have by then.
        client
            .batch_execute(&format!("VACUUM ANALYZE {schema}.jobs"))
            .await?;
        let worker_id: i64 = client
            .query_one(
                &format!("INSERT INTO {schema}.workers (name) VALUES ('jobq-bench') RETURNING id"),
                &[],
            )
            .await?
            .get(0);
        Ok(Self {
            schema,
            worker_id,
            fetch: queue::render(include_str!("../../jobq-core/sql/queries/fetch.sql"), &jobq),
            complete: queue::render(
                include_str!("../../jobq-core/sql/queries/complete.sql"),
                &jobq,
            ),
        })
    }

    /// Fetches `batch` jobs and completes them as succeeded, as the worker does; returns the milliseconds
    /// both took.
    async fn batch(&self, client: &Client, batch: usize) -> Result<f64, BoxError> {
        let mut executor = IntoAsyncExecutor::<TokioPostgres>::into_executor(client)?;
        let fetch_arg =
            json!({ "worker_id": self.worker_id, "queues": null, "limit": batch }).to_string();
        let start = Instant::now();
        let jobs = executor
            .query(&self.fetch, Some(&fetch_arg))
            .await?
            .iter()
            .map(|row| serde_json::from_str::<Job>(row))
            .collect::<Result<Vec<_>, _>>()?;
        if jobs.len() != batch {
            return Err(format!("fetched {} jobs, expected {batch}", jobs.len()).into());
        }
        // What the worker sends for jobs that succeeded (`Completion` in jobq-core's worker).
        let ended: Vec<_> = jobs
            .iter()
            .map(|job| json!({ "id": job.id, "attempt": job.attempts, "end": "succeeded" }))
            .collect();
        let complete_arg = json!({ "worker_id": self.worker_id, "jobs": ended }).to_string();
        executor.query(&self.complete, Some(&complete_arg)).await?;
        Ok(start.elapsed().as_secs_f64() * 1_000.0)
    }

    /// Checks that all `fetched` jobs ended as succeeded: the figure times real completions, not statements
    /// that changed nothing.
    async fn check_ended(&self, client: &Client, fetched: usize) -> Result<(), BoxError> {
        let ended: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.jobs WHERE status = 'succeeded' AND worker_id IS NULL \
                     AND finished_at > now() - interval '1 hour'",
                    self.schema
                ),
                &[],
            )
            .await?
            .get(0);
        if usize::try_from(ended)? != fetched {
            return Err(format!(
                "{ended} of the {fetched} fetched jobs of {} ended as succeeded",
                self.schema
            )
            .into());
        }
        Ok(())
    }
}
