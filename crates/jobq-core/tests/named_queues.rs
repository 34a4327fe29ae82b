//! Workers of chosen queues (migration 7): a few queues are walked one queue index each and merged, many
//! (more than 16) through one walk of the priority index, with the list read from the worker's row. Either
//! way a worker takes only its queues' jobs, highest priority first, then oldest, across all of them, and
//! skips paused queues.

mod common;

use common::{Async, Backend, connect};
use jobq_core::prelude::*;
use jobq_core::worker::{JobContext, Worker};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

/// A job that records its name when it runs.
#[derive(Serialize, Deserialize)]
struct Step {
    name: String,
}

impl Task for Step {
    const NAME: &'static str = "step";
}

fn step(name: &str, queue: &str, priority: i32) -> NewJob {
    let mut job = NewJob::from_task(&Step { name: name.into() }).unwrap();
    job.options.queue = Some(queue.into());
    job.options.priority = Some(priority);
    job
}

/// Runs one worker of `queues`, one job at a time, until `expected` jobs ran; returns their names in the
/// order they ran.
async fn run(url: &str, queues: Vec<String>, expected: usize) -> Vec<String> {
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = log.clone();
    let worker = Worker::builder(Jobq::default(), Backend::connect(url).await)
        .queues(queues)
        .concurrency(1)
        .poll_interval(Duration::from_millis(50))
        .task(move |s: Step, _ctx: JobContext| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(s.name);
                Ok(())
            }
        })
        .build();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let handle = tokio::spawn(worker.run_until(async move { stopped.cancelled().await }));
    for _ in 0..600 {
        if log.lock().unwrap().len() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A few more polls, to see that nothing else is taken.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    handle.await.unwrap().unwrap();
    log.lock().unwrap().clone()
}

/// Names of the waiting jobs, by name.
async fn waiting(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT args->>'name' FROM jobq.jobs WHERE status = 'todo' ORDER BY args->>'name'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A worker of three queues, the default one among them: their jobs by priority then age, whatever the
/// queue; another queue's jobs, of higher priority, are left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_of_a_few_queues_takes_their_jobs_in_one_order() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let jobs = [
        step("a-low", "a", 0),
        step("other-top", "other", 100),
        step("b-high", "b", 5),
        step("default-mid", "default", 3),
        step("a-high", "a", 5),
        step("default-low", "default", 0),
        step("b-low", "b", 0),
    ];
    jobq.defer_batch(jobs).run(Async(&client)).await.unwrap();
    let queues = vec!["a".to_owned(), "b".to_owned(), "default".to_owned()];
    let ran = run(db.url(), queues, 6).await;
    assert_eq!(
        ran,
        [
            "b-high",
            "a-high",
            "default-mid",
            "a-low",
            "default-low",
            "b-low"
        ]
    );
    assert_eq!(waiting(&client).await, ["other-top"]);
}

/// A worker of 40 queues (more than 16: the list is read from its row, not sent with each fetch), one of
/// them paused: the other 39 queues' jobs by priority then age; the paused queue's and an unlisted queue's
/// jobs are left waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_of_many_queues_takes_only_theirs_in_one_order() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let queues: Vec<String> = (0..40).map(|n| format!("q{n:02}")).collect();
    let mut jobs = Vec::new();
    let mut expected = Vec::new();
    for (n, queue) in queues.iter().enumerate() {
        let priority = (n % 4) as i32;
        jobs.push(step(&format!("{queue}-job"), queue, priority));
        if queue != "q05" {
            expected.push((priority, n, format!("{queue}-job")));
        }
    }
    jobs.push(step("unlisted-job", "unlisted", 10));
    jobq.defer_batch(jobs).run(Async(&client)).await.unwrap();
    jobq.pause_queue("q05").run(Async(&client)).await.unwrap();
    expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let order: Vec<String> = expected.into_iter().map(|e| e.2).collect();
    let ran = run(db.url(), queues, order.len()).await;
    assert_eq!(ran, order);
    assert_eq!(waiting(&client).await, ["q05-job", "unlisted-job"]);
}

/// A fetch naming the registered queues of a worker that has no row (it was declared dead) takes nothing
/// and raises nothing; the worker registers again at its next heartbeat.
#[tokio::test]
async fn a_fetch_of_registered_queues_without_a_worker_row_takes_nothing() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    jobq.defer_job(step("job", "q", 0))
        .run(Async(&client))
        .await
        .unwrap();
    let taken: i64 = client
        .query_one(
            r#"SELECT count(*) FROM jobq.fetch_jobs('{"worker_id": 12345, "queues": "registered", "tasks": null, "limit": 10}')"#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(taken, 0);
    assert_eq!(waiting(&client).await, ["job"]);
}
