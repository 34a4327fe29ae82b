//! jobq's demo, the README's "run it" command: the transactional outbox through every driver, then a
//! worker that drains what was committed.
//!
//! With no `DATABASE_URL` it starts a throwaway PostgreSQL. With one, it works in a schema of its own,
//! `jobq_demo`, refuses to touch an existing one, and drops it at the end.

mod adapters;

use adapters::{ProcessOrder, Tally};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use indicatif::{ProgressBar, ProgressStyle};
use jobq_core::worker::{JobContext, Worker};
use jobq_tokio_postgres::prelude::*;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bulk jobs each driver batch-defers, to show throughput.
const BULK: usize = 5_000;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jobq-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let configured = ["DATABASE_URL", "JOBQ_DATABASE_URL"]
        .iter()
        .find_map(|k| std::env::var(k).ok());
    let (url, _throwaway) = match configured {
        Some(url) => {
            println!("Using the database in DATABASE_URL, in a schema of its own (jobq_demo).");
            (url, None)
        }
        None => {
            println!("Starting a throwaway PostgreSQL (set DATABASE_URL to use your own)…");
            let db = tokio::task::spawn_blocking(|| jobq_tempdb::try_database(false)).await??;
            (db.url().to_owned(), Some(db))
        }
    };
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'jobq_demo')",
            &[],
        )
        .await?
        .get(0);
    if exists {
        return Err("schema jobq_demo already exists; drop it first (the demo never touches data it did not make)".into());
    }
    let result = demo(&url, &client).await;
    client
        .batch_execute("DROP SCHEMA IF EXISTS jobq_demo CASCADE")
        .await?;
    println!("\nDropped the demo's schema jobq_demo.");
    result
}

async fn demo(url: &str, client: &tokio_postgres::Client) -> Result<(), BoxError> {
    let jobq = Jobq::with_schema("jobq_demo")?;
    jobq.migrate().run(client).await?;
    client
        .batch_execute(
            "CREATE TABLE jobq_demo.orders (
                id bigint PRIMARY KEY, adapter text NOT NULL, item text NOT NULL, processed_at timestamptz)",
        )
        .await?;
    println!(
        "Applied the jobq schema (version {}) and created an orders table.\n",
        jobq.required_version()
    );

    let mut stories = Vec::new();
    stories.push((
        "tokio-postgres",
        adapters::tokio_postgres::story(url, &jobq, 1, BULK).await?,
    ));
    let (u, j) = (url.to_owned(), jobq.clone());
    stories.push((
        "postgres",
        tokio::task::spawn_blocking(move || adapters::postgres::story(&u, &j, 2, BULK)).await??,
    ));
    stories.push(("sqlx", adapters::sqlx::story(url, &jobq, 3, BULK).await?));
    let (u, j) = (url.to_owned(), jobq.clone());
    stories.push((
        "diesel",
        tokio::task::spawn_blocking(move || adapters::diesel::story(&u, &j, 4, BULK)).await??,
    ));
    for (adapter, story) in &stories {
        println!("{adapter}:");
        for line in &story.lines {
            println!("  - {line}");
        }
    }

    let total: i64 = client
        .query_one(
            "SELECT count(*) FROM jobq_demo.jobs WHERE status = 'todo'",
            &[],
        )
        .await?
        .get(0);
    println!("\nStarting a worker for {total} waiting jobs…");
    let orders = jobq_tokio_postgres::pool(url, 4)?;
    let worker = Worker::builder(jobq.clone(), PoolExecutor::connect(url, 4)?)
        .name("demo-worker")
        .concurrency(50)
        .fetch_batch(200)
        .poll_interval(Duration::from_millis(200))
        .task(move |order: ProcessOrder, _ctx: JobContext| {
            let orders = orders.clone();
            async move {
                let db = orders
                    .get()
                    .await
                    .map_err(|e| jobq_core::worker::JobError::new(e.to_string()))?;
                db.execute(
                    "UPDATE jobq_demo.orders SET processed_at = now() WHERE id = $1",
                    &[&order.order_id],
                )
                .await?;
                Ok(())
            }
        })
        .task(|_: Tally, _ctx: JobContext| async { Ok(()) })
        .build();
    let stop = CancellationToken::new();
    let started = Instant::now();
    let handle = tokio::spawn(worker.run_until(stop.clone().cancelled_owned()));

    let bar = ProgressBar::new(u64::try_from(total).unwrap_or(0));
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} jobs ({per_sec})",
    )?);
    loop {
        let waiting: i64 = client
            .query_one(
                "SELECT count(*) FROM jobq_demo.jobs WHERE status IN ('todo', 'doing')",
                &[],
            )
            .await?
            .get(0);
        bar.set_position(u64::try_from(total - waiting).unwrap_or(0));
        if waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    bar.finish();
    stop.cancel();
    handle.await??;

    let rows = client
        .query(
            "SELECT args->>'adapter', task, status, count(*) FROM jobq_demo.jobs
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            &[],
        )
        .await?;
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(vec!["adapter", "task", "status", "jobs"]);
    for row in rows {
        let (adapter, task, status, count): (String, String, String, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        table.add_row(vec![adapter, task, status, count.to_string()]);
    }
    println!("\n{table}");
    let processed: i64 = client
        .query_one(
            "SELECT count(*) FROM jobq_demo.orders WHERE processed_at IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    let orders: i64 = client
        .query_one("SELECT count(*) FROM jobq_demo.orders", &[])
        .await?
        .get(0);
    println!(
        "{processed} of {orders} orders processed; {total} jobs in {:.2} s = {:.0} jobs/s on one worker.",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
