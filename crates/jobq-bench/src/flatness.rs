//! `fetch_flatness_ratio`: the time to fetch and complete a batch with millions of finished jobs in the table,
//! divided by the same with none. It runs the worker's own statements (`sql/queries/fetch.sql` and
//! `complete.sql`) through the tokio-postgres adapter, as the worker does, with the worker's arguments.

use crate::queue;
use crate::report::{Figure, Report, Target, number};
use crate::{BoxError, Plan};
use jobq_core::{AsyncExecutor, IntoAsyncExecutor, Job};
use jobq_tokio_postgres::TokioPostgres;
use serde_json::json;
use std::time::Instant;
use tokio_postgres::Client;

/// A worker statement as jobq renders it for the schema `jobq`.
fn render(sql: &str) -> String {
    sql.replace("{schema}", "\"jobq\"")
        .replace("{channel}", "jobq_jobq")
}

/// The median time of one batch, empty table first, then with `plan.finished_rows` finished jobs.
pub(crate) async fn measure(
    url: &str,
    plan: &Plan,
    report: &Report,
) -> Result<Vec<Figure>, BoxError> {
    let client = queue::connect(url).await?;
    let batch = plan.worker.fetch_batch.min(plan.worker.concurrency);
    report.detail(format!(
        "fetch and complete, empty table: {} batches",
        plan.flatness_reps
    ));
    let empty = median_batch(&client, 0, batch, plan).await?;
    report.detail(format!(
        "inserting {} finished jobs in one statement",
        number(plan.finished_rows as f64)
    ));
    let full = median_batch(&client, plan.finished_rows, batch, plan).await?;
    let quick = if plan.quick {
        " (quick: fewer finished rows)"
    } else {
        ""
    };
    Ok(vec![
        Figure::new("fetch_flatness_ratio", full / empty, "ratio")
            .target(Target::AtMost(1.2))
            .note(format!(
                "median of {} batches of {batch}, fetch.sql + complete.sql: {:.2} ms with {} finished jobs{quick}, \
                 {:.2} ms with none",
                plan.flatness_reps,
                full,
                number(plan.finished_rows as f64),
                empty
            )),
    ])
}

/// Sets the table up with `finished` finished jobs and enough waiting ones, then times `reps` batches, each a
/// fetch of `batch` jobs and their completion; returns the median in milliseconds.
async fn median_batch(
    client: &Client,
    finished: u64,
    batch: usize,
    plan: &Plan,
) -> Result<f64, BoxError> {
    client.batch_execute("DELETE FROM jobq.jobs").await?;
    if finished > 0 {
        client
            .batch_execute(&format!(
                "INSERT INTO jobq.jobs (task, args, status, attempts, scheduled_at, started_at, finished_at,
                     created_at)
                 SELECT 'noop', '{{}}', 'succeeded', 1, t, t, t, t
                 FROM generate_series(1, {finished}), (SELECT now() - interval '1 day' AS t) at"
            ))
            .await?;
    }
    let waiting = (plan.flatness_reps + 3) * batch;
    client
        .batch_execute(&format!(
            "INSERT INTO jobq.jobs (task, args) SELECT 'noop', '{{}}' FROM generate_series(1, {waiting})"
        ))
        .await?;
    // Also sets the hint bits and the visibility map, as autovacuum would have by then.
    client.batch_execute("VACUUM ANALYZE jobq.jobs").await?;
    let worker_id: i64 = client
        .query_one(
            "INSERT INTO jobq.workers (name) VALUES ('jobq-bench') RETURNING id",
            &[],
        )
        .await?
        .get(0);
    let (fetch, complete) = (
        render(include_str!("../../jobq-core/sql/queries/fetch.sql")),
        render(include_str!("../../jobq-core/sql/queries/complete.sql")),
    );
    let mut executor = IntoAsyncExecutor::<TokioPostgres>::into_executor(client)?;
    let fetch_arg = json!({ "worker_id": worker_id, "queues": null, "limit": batch }).to_string();
    let mut times = Vec::new();
    for rep in 0..plan.flatness_reps + 3 {
        let start = Instant::now();
        let jobs = executor
            .query(&fetch, Some(&fetch_arg))
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
        let complete_arg = json!({ "worker_id": worker_id, "jobs": ended }).to_string();
        executor.query(&complete, Some(&complete_arg)).await?;
        if rep >= 3 {
            times.push(start.elapsed().as_secs_f64() * 1_000.0);
        }
    }
    // Every fetched job ended: the figure times real completions, not statements that changed nothing.
    let ended: i64 = client
        .query_one(
            "SELECT count(*) FROM jobq.jobs WHERE status = 'succeeded' AND worker_id IS NULL \
             AND finished_at > now() - interval '1 hour'",
            &[],
        )
        .await?
        .get(0);
    let fetched = (plan.flatness_reps + 3) * batch;
    if usize::try_from(ended)? != fetched {
        return Err(format!("{ended} of the {fetched} fetched jobs ended as succeeded").into());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
