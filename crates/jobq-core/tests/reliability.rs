//! The worker never strands or loses a job: the server and the worker agree on what is running, a
//! completion is never dropped nor poisoned by one bad value, back-offs never overflow, bad settings are
//! refused, and no job runs twice at once. Each case ends with the same check: nothing left `doing`.

mod common;

use common::{Async, Backend, connect};
use jobq_core::prelude::*;
use jobq_core::worker::{Backoff, JobContext, JobError, RetryStrategy, Worker, WorkerBuilder};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Succeeds, or fails with `error` (retried per `Fails::retry`).
#[derive(Serialize, Deserialize)]
struct Fails {
    error: Option<String>,
}

impl Task for Fails {
    const NAME: &'static str = "fails";
    fn retry() -> RetryStrategy {
        RetryStrategy::new(3)
    }
}

/// Fails once, to be retried after a very long back-off.
#[derive(Serialize, Deserialize)]
struct FarRetry;

impl Task for FarRetry {
    const NAME: &'static str = "far_retry";
}

/// A blocking handler that sleeps `ms` and ignores its abort flag.
#[derive(Serialize, Deserialize)]
struct Stubborn {
    ms: u64,
}

impl Task for Stubborn {
    const NAME: &'static str = "stubborn";
    fn retry() -> RetryStrategy {
        RetryStrategy::new(5)
    }
}

/// Waits until `n` jobs of this task have started, then fails (retried).
#[derive(Serialize, Deserialize)]
struct Together;

impl Task for Together {
    const NAME: &'static str = "together";
    fn retry() -> RetryStrategy {
        RetryStrategy::new(5).backoff(Backoff::Constant(Duration::from_secs(3600)))
    }
}

fn builder(backend: Backend, runs: Arc<AtomicUsize>) -> WorkerBuilder<Backend> {
    let together = Arc::new(tokio::sync::Barrier::new(2));
    let counted = runs.clone();
    Worker::builder(Jobq::default(), backend)
        .poll_interval(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_millis(100))
        .concurrency(50)
        .task(move |f: Fails, _ctx: JobContext| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                // All jobs of a burst end at about the same moment, so they share completion batches.
                tokio::time::sleep(Duration::from_millis(50)).await;
                match f.error {
                    // Arguments cannot hold a NUL; the handler's message can.
                    Some(e) => Err(JobError::new(e.replace("<NUL>", "\0"))),
                    None => Ok(()),
                }
            }
        })
        .task(|_: FarRetry, ctx: JobContext| async move {
            Err(JobError::new(format!("attempt {}", ctx.attempt())))
        })
        .task(move |_: Together, _ctx: JobContext| {
            let together = together.clone();
            async move {
                together.wait().await;
                Err(JobError::new("failing together"))
            }
        })
        .blocking_task(|s: Stubborn, _ctx: JobContext| {
            std::thread::sleep(Duration::from_millis(s.ms));
            Ok(())
        })
}

type Running = tokio::task::JoinHandle<Result<(), Error>>;

fn start<B: jobq_core::worker::Backend>(worker: Worker<B>) -> (CancellationToken, Running) {
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let handle = tokio::spawn(async move { worker.run_until(stopped.cancelled_owned()).await });
    (stop, handle)
}

async fn wait_for(client: &tokio_postgres::Client, sql: &str) {
    for _ in 0..600 {
        if client.query_one(sql, &[]).await.unwrap().get::<_, bool>(0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition never held: {sql}");
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM ({sql}) s"), &[])
        .await
        .unwrap()
        .get(0)
}

async fn nothing_doing(client: &tokio_postgres::Client) {
    assert_eq!(
        count(client, "SELECT 1 FROM jobq.jobs WHERE status = 'doing'").await,
        0,
        "no job is left doing"
    );
}

fn fails(error: Option<&str>) -> NewJob {
    NewJob::from_task(&Fails {
        error: error.map(str::to_owned),
    })
    .unwrap()
}

/// A fetch (or hand-over) whose answer was lost has committed on the server: jobs `doing` for a live worker
/// that never heard of them. The worker's heartbeat puts them back, the attempt not charged, and they run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_a_worker_does_not_know_it_holds_are_put_back_uncharged_and_run() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let (stop, handle) = start(builder(Backend::connect(db.url()).await, runs.clone()).build());
    wait_for(&client, "SELECT count(*) = 1 FROM jobq.workers").await;
    // As a fetch whose answer never arrived leaves them: `doing` for this worker, attempt counted.
    let jobq = Jobq::default();
    let ids = jobq
        .defer_batch((0..5).map(|_| {
            let mut job = fails(None);
            job.options.scheduled_at = Some(chrono::Utc::now() + chrono::Duration::hours(1));
            job
        }))
        .run(Async(&client))
        .await
        .unwrap();
    let list = ids
        .iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",");
    client
        .batch_execute(&format!(
            "UPDATE jobq.jobs SET status = 'doing', attempts = attempts + 1, started_at = now(),
                 scheduled_at = now(), worker_id = (SELECT id FROM jobq.workers)
             WHERE id IN ({list})"
        ))
        .await
        .unwrap();
    wait_for(
        &client,
        "SELECT count(*) = 5 FROM jobq.jobs WHERE status = 'succeeded'",
    )
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();
    assert_eq!(
        count(
            &client,
            "SELECT 1 FROM jobq.jobs WHERE attempts = 1 AND errors = '[]'"
        )
        .await,
        5,
        "each ran once, and the lost hand-over was not charged"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 5);
    nothing_doing(&client).await;
}

/// One error message with a NUL character, which `jsonb` refuses, among two dozen successes that end in the
/// same moment: the successes are stored, and the bad message is stored with the NUL replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_an_error_message_poisons_nothing() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let mut batch: Vec<NewJob> = (0..24).map(|_| fails(None)).collect();
    batch.push(fails(Some("bad<NUL>byte")));
    let ids = jobq.defer_batch(batch).run(Async(&client)).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let w = builder(Backend::connect(db.url()).await, runs.clone())
        .retry("fails", RetryStrategy::none())
        .build();
    let (stop, handle) = start(w);
    wait_for(
        &client,
        "SELECT count(*) = 25 FROM jobq.jobs WHERE status IN ('succeeded', 'failed')",
    )
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();
    assert_eq!(
        count(
            &client,
            "SELECT 1 FROM jobq.jobs WHERE status = 'succeeded'"
        )
        .await,
        24
    );
    let bad = jobq.job(ids[24]).run(Async(&client)).await.unwrap();
    assert_eq!(bad.status, Status::Failed);
    assert_eq!(bad.last_error.as_deref(), Some("bad\u{FFFD}byte"));
    assert_eq!(runs.load(Ordering::SeqCst), 25, "each ran exactly once");
    nothing_doing(&client).await;
}

/// Back-offs of 10,000 years and of `Duration::MAX` (with jitter) retry "practically never": at the latest
/// time PostgreSQL reads back, not now, and without a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_back_offs_retry_practically_never() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let year = Duration::from_secs(366 * 86_400);
    for backoff in [
        RetryStrategy::new(2).backoff(Backoff::Constant(year * 10_000)),
        RetryStrategy::new(2).backoff(Backoff::Constant(Duration::MAX)),
        RetryStrategy::new(2)
            .backoff(Backoff::Constant(Duration::MAX))
            .jitter(0.1),
    ] {
        let id = jobq.defer(&FarRetry).run(Async(&client)).await.unwrap();
        let w = builder(Backend::connect(db.url()).await, Arc::default())
            .retry("far_retry", backoff)
            .build();
        let (stop, handle) = start(w);
        wait_for(
            &client,
            &format!("SELECT status = 'todo' AND attempts = 1 FROM jobq.jobs WHERE id = {id}"),
        )
        .await;
        stop.cancel();
        handle.await.unwrap().unwrap();
        let job = jobq.job(id).run(Async(&client)).await.unwrap();
        assert_eq!(job.scheduled_at, jobq_core::limits::LATEST, "{job:?}");
    }
    nothing_doing(&client).await;
}

/// Settings that would panic a worker's task, or contradict each other, are refused at start with the
/// setting's name, and leave no worker registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_and_contradictory_settings_are_refused_at_start() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let backend = Backend::connect(db.url()).await;
    let cases: [(&str, WorkerBuilder<Backend>); 4] = [
        (
            "heartbeat_interval",
            builder(backend.clone(), Arc::default()).heartbeat_interval(Duration::ZERO),
        ),
        (
            "poll_interval",
            builder(backend.clone(), Arc::default()).poll_interval(Duration::ZERO),
        ),
        (
            "stalled_after",
            builder(backend.clone(), Arc::default())
                .heartbeat_interval(Duration::from_secs(5))
                .stalled_after(Duration::from_secs(2)),
        ),
        (
            "statement_timeout",
            builder(backend.clone(), Arc::default()).statement_timeout(Duration::ZERO),
        ),
    ];
    for (setting, w) in cases {
        let err = w
            .build()
            .run_until(std::future::pending())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput(m) if m.contains(setting)),
            "{setting}: {err:?}"
        );
    }
    assert_eq!(count(&client, "SELECT 1 FROM jobq.workers").await, 0);
}

/// A blocking handler that ignores its abort flag past the shutdown timeout: `run_until` returns on time and
/// says which job it left, the worker stays registered and heartbeating while the handler runs (so no one
/// recovers the job and runs it a second time meanwhile), and the job ends `succeeded` when the handler does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_left_running_at_shutdown_keeps_its_worker_alive() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let id = jobq
        .defer(&Stubborn { ms: 4_000 })
        .run(Async(&client))
        .await
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let w = builder(Backend::connect(db.url()).await, runs.clone())
        .shutdown_timeout(Duration::from_millis(200))
        .build();
    let (stop, handle) = start(w);
    wait_for(
        &client,
        &format!("SELECT status = 'doing' FROM jobq.jobs WHERE id = {id}"),
    )
    .await;
    // A second worker that declares others dead after one second of silence.
    let (stop_other, other) = start(
        builder(Backend::connect(db.url()).await, runs.clone())
            .stalled_after(Duration::from_secs(1))
            .name("other")
            .build(),
    );
    let asked = std::time::Instant::now();
    stop.cancel();
    let err = handle.await.unwrap().unwrap_err();
    assert!(asked.elapsed() < Duration::from_secs(3), "returned on time");
    assert!(
        matches!(&err, Error::ShutdownIncomplete { left_running, .. } if left_running == &[id]),
        "{err:?}"
    );
    // Well past `stalled_after`, the job is still this worker's.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(
        jobq.status(id).run(Async(&client)).await.unwrap(),
        Status::Doing
    );
    wait_for(
        &client,
        &format!("SELECT status = 'succeeded' FROM jobq.jobs WHERE id = {id}"),
    )
    .await;
    wait_for(
        &client,
        "SELECT count(*) = 0 FROM jobq.workers WHERE name <> 'other'",
    )
    .await;
    stop_other.cancel();
    other.await.unwrap().unwrap();
    let job = jobq.job(id).run(Async(&client)).await.unwrap();
    assert_eq!((job.attempts, job.errors.len()), (1, 0), "{job:?}");
    nothing_doing(&client).await;
}

/// Two running jobs of one queueing lock fail at the same moment and both ask for a retry, beside ten quick
/// jobs: their retries collide on the queueing lock. One is retried, the other fails saying why, and the
/// batch around them is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colliding_retries_of_one_queueing_lock_strand_nothing() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let runs = Arc::new(AtomicUsize::new(0));
    let (stop, handle) = start(builder(Backend::connect(db.url()).await, runs.clone()).build());
    let first = jobq
        .defer(&Together)
        .queueing_lock("k")
        .run(Async(&client))
        .await
        .unwrap();
    wait_for(
        &client,
        &format!("SELECT status = 'doing' FROM jobq.jobs WHERE id = {first}"),
    )
    .await;
    // The first is running, so the queueing lock is free again.
    let second = jobq
        .defer(&Together)
        .queueing_lock("k")
        .run(Async(&client))
        .await
        .unwrap();
    jobq.defer_batch((0..10).map(|_| fails(None)))
        .run(Async(&client))
        .await
        .unwrap();
    wait_for(
        &client,
        "SELECT count(*) = 0 FROM jobq.jobs WHERE status = 'doing' OR (status = 'todo' AND task = 'fails')",
    )
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();
    let statuses: Vec<(Status, Option<String>)> = {
        let mut out = Vec::new();
        for id in [first, second] {
            let job = jobq.job(id).run(Async(&client)).await.unwrap();
            out.push((job.status, job.last_error));
        }
        out
    };
    assert!(
        statuses.iter().filter(|(s, _)| *s == Status::Todo).count() == 1
            && statuses.iter().any(|(s, e)| *s == Status::Failed
                && e.as_deref().is_some_and(|e| e.contains("queueing lock"))),
        "{statuses:?}"
    );
    assert_eq!(
        count(
            &client,
            "SELECT 1 FROM jobq.jobs WHERE task = 'fails' AND status = 'succeeded'"
        )
        .await,
        10
    );
    nothing_doing(&client).await;
}

/// Waits for the test's gate, then succeeds.
#[derive(Serialize, Deserialize)]
struct Gated;

impl Task for Gated {
    const NAME: &'static str = "gated";
}

/// A batch of successes ends in one statement that skips the rows it cannot lock (and, from migration 10,
/// updates the rows it locked by their address); a row another transaction holds must hold up only its own
/// job's end, not the rest of the batch, and that job ends once the row is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_row_held_by_another_transaction_holds_up_only_its_own_end() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let opened = gate.clone();
    let worker = Worker::builder(Jobq::default(), Backend::connect(db.url()).await)
        .poll_interval(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_millis(100))
        .concurrency(50)
        .task(move |_: Gated, _ctx: JobContext| {
            let gate = opened.clone();
            async move {
                gate.acquire().await.expect("the gate stays open").forget();
                Ok(())
            }
        })
        .build();
    let (stop, handle) = start(worker);
    let ids = jobq
        .defer_batch((0..20).map(|_| NewJob::from_task(&Gated).unwrap()))
        .run(Async(&client))
        .await
        .unwrap();
    wait_for(
        &client,
        "SELECT count(*) = 20 FROM jobq.jobs WHERE status = 'doing'",
    )
    .await;
    let held = ids[7];
    let blocker = connect(db.url()).await;
    blocker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM jobq.jobs WHERE id = {held} FOR UPDATE"
        ))
        .await
        .unwrap();
    // Every handler returns at once: their ends share a batch.
    gate.add_permits(20);
    wait_for(
        &client,
        "SELECT count(*) = 19 FROM jobq.jobs WHERE status = 'succeeded'",
    )
    .await;
    assert_eq!(
        jobq.status(held).run(Async(&client)).await.unwrap(),
        Status::Doing,
        "the held job cannot end while its row is held"
    );
    blocker.batch_execute("ROLLBACK").await.unwrap();
    wait_for(
        &client,
        &format!("SELECT status = 'succeeded' FROM jobq.jobs WHERE id = {held}"),
    )
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();
    nothing_doing(&client).await;
}

/// Ends a batch through the worker's own `complete` as worker `worker`: `(id, attempt, delete)` each.
async fn report_successes(
    client: &tokio_postgres::Client,
    worker: i64,
    ends: &[(i64, i64, bool)],
) -> serde_json::Value {
    let jobs: Vec<_> = ends
        .iter()
        .map(|&(id, attempt, delete)| {
            serde_json::json!({"id": id, "attempt": attempt, "end": "succeeded", "delete": delete})
        })
        .collect();
    let arg = serde_json::json!({"worker_id": worker, "jobs": jobs}).to_string();
    let answer: String = client
        .query_one("SELECT jobq.complete($1::text::jsonb)::text", &[&arg])
        .await
        .unwrap()
        .get(0);
    serde_json::from_str(&answer).unwrap()
}

/// A success ends only the attempt that reported it, of the worker that runs it: an end from another
/// worker, or for an attempt the job has left, changes nothing; the right one ends or deletes the job and
/// leaves the rest of its batch alone (the success path of `end_jobs`, which migration 10 made update the
/// rows it locked by address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_ends_only_its_own_workers_attempt() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let ids = jobq
        .defer_batch((0..4).map(|_| fails(None)))
        .run(Async(&client))
        .await
        .unwrap();
    let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
    let mut workers = Vec::new();
    for name in ["mine", "theirs"] {
        let row = client
            .query_one(
                "INSERT INTO jobq.workers (name) VALUES ($1) RETURNING id",
                &[&name],
            )
            .await
            .unwrap();
        workers.push(row.get::<_, i64>(0));
    }
    let (mine, theirs) = (workers[0], workers[1]);
    let fetched = client
        .query(
            "SELECT id, attempts FROM jobq.fetch_jobs(jsonb_build_object('worker_id', $1::bigint, 'limit', 10))",
            &[&mine],
        )
        .await
        .unwrap();
    assert_eq!(fetched.len(), 4, "the worker holds every job");
    assert!(fetched.iter().all(|r| r.get::<_, i32>(1) == 1));

    let doing = "SELECT count(*) = 4 FROM jobq.jobs WHERE status = 'doing'";
    // Another worker's word, and a word for an attempt these jobs are not at, end nothing and are not busy.
    let answer = report_successes(&client, theirs, &[(ids[0], 1, false), (ids[1], 1, true)]).await;
    assert_eq!(answer, serde_json::json!({"busy": []}));
    let answer = report_successes(&client, mine, &[(ids[0], 2, false), (ids[1], 0, true)]).await;
    assert_eq!(answer, serde_json::json!({"busy": []}));
    wait_for(&client, doing).await;

    // The right word ends one job and deletes another, and leaves the other two running.
    let answer = report_successes(&client, mine, &[(ids[0], 1, false), (ids[1], 1, true)]).await;
    assert_eq!(answer, serde_json::json!({"busy": []}));
    let row = client
        .query_one(
            "SELECT status, worker_id, finished_at IS NOT NULL, abort_requested FROM jobq.jobs WHERE id = $1",
            &[&ids[0]],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "succeeded");
    assert_eq!(row.get::<_, Option<i64>>(1), None, "no worker holds it");
    assert!(row.get::<_, bool>(2), "it has a finishing time");
    assert!(!row.get::<_, bool>(3));
    assert_eq!(
        count(
            &client,
            &format!("SELECT 1 FROM jobq.jobs WHERE id = {}", ids[1])
        )
        .await,
        0,
        "the success asked to delete its job deleted it"
    );
    assert_eq!(
        count(
            &client,
            &format!(
                "SELECT 1 FROM jobq.jobs WHERE id IN ({}, {}) AND status = 'doing' AND worker_id = {mine}",
                ids[2], ids[3]
            )
        )
        .await,
        2,
        "the jobs not reported still run"
    );

    // A job whose row another transaction changed and committed after the fetch still ends.
    client
        .execute(
            "UPDATE jobq.jobs SET abort_requested = true WHERE id = $1",
            &[&ids[2]],
        )
        .await
        .unwrap();
    let answer = report_successes(&client, mine, &[(ids[2], 1, false), (ids[3], 1, false)]).await;
    assert_eq!(answer, serde_json::json!({"busy": []}));
    assert_eq!(
        count(
            &client,
            "SELECT 1 FROM jobq.jobs WHERE status = 'succeeded'"
        )
        .await,
        3
    );
    nothing_doing(&client).await;
}
