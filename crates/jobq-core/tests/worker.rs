//! The worker against a real server: order, locks, schedules, retries, errors, abort, shutdown, stalled
//! workers, cron and retention.

mod common;

use common::{Backend, connect};
use jobq_core::prelude::*;
use jobq_core::worker::{
    Backoff, JobContext, JobError, Periodic, RetryStrategy, Worker, WorkerBuilder,
};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Serialize, Deserialize)]
struct Record {
    name: String,
}

impl Task for Record {
    const NAME: &'static str = "record";
}

#[derive(Serialize, Deserialize)]
struct Flaky {
    fail_times: i32,
}

impl Task for Flaky {
    const NAME: &'static str = "flaky";
    fn retry() -> RetryStrategy {
        RetryStrategy::new(3).backoff(Backoff::Constant(Duration::from_millis(10)))
    }
}

#[derive(Serialize, Deserialize)]
struct Forever;

impl Task for Forever {
    const NAME: &'static str = "forever";
}

#[derive(Serialize, Deserialize)]
struct Spin;

impl Task for Spin {
    const NAME: &'static str = "spin";
}

#[derive(Serialize, Deserialize)]
struct Panics;

impl Task for Panics {
    const NAME: &'static str = "panics";
    fn retry() -> RetryStrategy {
        RetryStrategy::none()
    }
}

type Log = Arc<Mutex<Vec<String>>>;

/// A worker that records `Record` jobs and knows the other test tasks; fast intervals.
fn worker(backend: Backend, log: Log) -> WorkerBuilder<Backend> {
    Worker::builder(Jobq::default(), backend)
        .poll_interval(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_millis(100))
        .task(move |r: Record, _ctx: JobContext| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(r.name);
                Ok(())
            }
        })
        .task(|f: Flaky, ctx: JobContext| async move {
            if ctx.attempt() <= f.fail_times {
                Err(JobError::new(format!("attempt {} failed", ctx.attempt())))
            } else {
                Ok(())
            }
        })
        .task(|_: Forever, ctx: JobContext| async move {
            ctx.aborted().await;
            std::future::pending::<()>().await;
            Ok(())
        })
        .blocking_task(|_: Spin, ctx: JobContext| {
            while !ctx.is_aborted() {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        })
        .task(|_: Panics, _ctx: JobContext| async move { panic!("handler blew up") })
}

/// Runs a worker in the background; the returned token stops it.
fn start(
    worker: Worker<Backend>,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), Error>>,
) {
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let handle = tokio::spawn(async move {
        let result = worker
            .run_until(async move { stopped.cancelled().await })
            .await;
        if let Err(e) = &result {
            eprintln!("worker stopped with an error: {e:?}");
        }
        result
    });
    (stop, handle)
}

/// Runs `worker` until `sql` (a boolean query) holds, then stops it and waits for it to return.
async fn run_until(client: &tokio_postgres::Client, worker: Worker<Backend>, sql: &str) {
    let (stop, handle) = start(worker);
    wait_for(client, sql).await;
    stop.cancel();
    handle.await.unwrap().unwrap();
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

async fn job(client: &tokio_postgres::Client, jobq: &Jobq, id: JobId) -> Job {
    jobq.job(id).run(common::Async(client)).await.unwrap()
}

fn record(name: &str) -> NewJob {
    NewJob::from_task(&Record { name: name.into() }).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_jobs_by_priority_then_age_and_skips_future_ones() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let c = common::Async(&client);
    jobq.defer_job(record("low"))
        .priority(-1)
        .run(c)
        .await
        .unwrap();
    jobq.defer_job(record("first-high"))
        .priority(5)
        .run(common::Async(&client))
        .await
        .unwrap();
    jobq.defer_job(record("second-high"))
        .priority(5)
        .run(common::Async(&client))
        .await
        .unwrap();
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let future = jobq
        .defer_job(record("future"))
        .at(later)
        .priority(100)
        .run(common::Async(&client))
        .await
        .unwrap();
    let log = Log::default();
    run_until(
        &client,
        worker(Backend::connect(db.url()).await, log.clone())
            .concurrency(1)
            .build(),
        "SELECT count(*) = 3 FROM jobq.jobs WHERE status = 'succeeded'",
    )
    .await;
    assert_eq!(*log.lock().unwrap(), ["first-high", "second-high", "low"]);
    assert_eq!(
        job(&client, &jobq, future).await.status,
        Status::Todo,
        "a job scheduled later waits"
    );
}

/// With polling an hour away, only LISTEN/NOTIFY can start these jobs: each one deferred to an idle
/// worker must run (a fetched job once waited for the next wake-up before it started).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_starts_each_notified_job() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let log = Log::default();
    let (stop, handle) = start(
        worker(Backend::connect(db.url()).await, log.clone())
            .poll_interval(Duration::from_secs(3600))
            .build(),
    );
    for n in 1..=5 {
        // Let the worker go idle (its first fetch finds nothing) before each deferral.
        tokio::time::sleep(Duration::from_millis(200)).await;
        jobq.defer_job(record(&format!("job {n}")))
            .run(common::Async(&client))
            .await
            .unwrap();
        wait_for(
            &client,
            &format!("SELECT count(*) = {n} FROM jobq.jobs WHERE status = 'succeeded'"),
        )
        .await;
    }
    stop.cancel();
    handle.await.unwrap().unwrap();
    assert_eq!(log.lock().unwrap().len(), 5);
}

/// The fetch function's candidate list has a fixed bound, and the requested limit applies outside it: only
/// that many jobs may be locked and marked `doing`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_takes_exactly_its_limit() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    client
        .batch_execute(
            "INSERT INTO jobq.jobs (task, args) SELECT 'record', '{}' FROM generate_series(1, 50)",
        )
        .await
        .unwrap();
    // (limit, jobs it takes, jobs doing afterwards) on 50 waiting jobs.
    for (limit, taken, total) in [(3, 3, 3), (1, 1, 4), (20, 20, 24), (1000, 26, 50)] {
        let fetched: i64 = client
            .query_one(
                "SELECT count(*) FROM jobq.fetch_jobs(jsonb_build_object('worker_id', 1, 'limit', $1::int))",
                &[&limit],
            )
            .await
            .unwrap()
            .get(0);
        let doing: i64 = client
            .query_one("SELECT count(*) FROM jobq.jobs WHERE status = 'doing'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!((fetched, doing), (taken, total), "limit {limit}");
    }
}

/// A row the model cannot read (here a schedule of `-infinity`, written by hand) fails with the reason
/// instead of staying `doing` on a live worker forever; the worker goes on with the next job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_job_fails_instead_of_staying_doing() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    client
        .batch_execute(
            "INSERT INTO jobq.jobs (task, args, scheduled_at) VALUES ('record', '{\"name\": \"odd\"}', '-infinity')",
        )
        .await
        .unwrap();
    let jobq = Jobq::default();
    let fine = jobq
        .defer_job(record("fine"))
        .run(common::Async(&client))
        .await
        .unwrap();
    let log = Log::default();
    run_until(
        &client,
        worker(Backend::connect(db.url()).await, log.clone()).build(),
        "SELECT count(*) = 2 FROM jobq.jobs WHERE status IN ('succeeded', 'failed')",
    )
    .await;
    assert_eq!(job(&client, &jobq, fine).await.status, Status::Succeeded);
    let row = client
        .query_one(
            "SELECT status, last_error FROM jobq.jobs WHERE scheduled_at = '-infinity'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    let error: String = row.get(1);
    assert!(
        error.contains("could not read the stored job") && error.contains("infinity"),
        "{error}"
    );
    assert_eq!(*log.lock().unwrap(), ["fine"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_runs_one_job_at_a_time_across_workers() {
    #[derive(Serialize, Deserialize)]
    struct Slow {
        n: u32,
    }
    impl Task for Slow {
        const NAME: &'static str = "slow";
    }
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let jobs = (0..8).map(|n| {
        let mut job = NewJob::from_task(&Slow { n }).unwrap();
        job.options.lock = Some("account-1".into());
        job
    });
    jobq.defer_batch(jobs)
        .run(common::Async(&client))
        .await
        .unwrap();
    let spans: Arc<Mutex<Vec<(u32, std::time::Instant, std::time::Instant)>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let spans = spans.clone();
        let w = Worker::builder(Jobq::default(), Backend::connect(db.url()).await)
            .concurrency(4)
            .poll_interval(Duration::from_millis(20))
            .task(move |s: Slow, _ctx: JobContext| {
                let spans = spans.clone();
                async move {
                    let start = std::time::Instant::now();
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    spans
                        .lock()
                        .unwrap()
                        .push((s.n, start, std::time::Instant::now()));
                    Ok(())
                }
            })
            .build();
        workers.push(start(w));
    }
    wait_for(
        &client,
        "SELECT count(*) = 8 FROM jobq.jobs WHERE status = 'succeeded'",
    )
    .await;
    for (stop, handle) in workers {
        stop.cancel();
        handle.await.unwrap().unwrap();
    }
    let mut spans = spans.lock().unwrap().clone();
    spans.sort_by_key(|s| s.1);
    assert_eq!(
        spans.iter().map(|s| s.0).collect::<Vec<_>>(),
        (0..8).collect::<Vec<_>>(),
        "age order within a lock"
    );
    for pair in spans.windows(2) {
        assert!(
            pair[0].2 <= pair[1].1,
            "jobs {} and {} of one lock overlapped",
            pair[0].0,
            pair[1].0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_per_strategy_and_stored() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let recovers = jobq
        .defer(&Flaky { fail_times: 2 })
        .run(common::Async(&client))
        .await
        .unwrap();
    let gives_up = jobq
        .defer(&Flaky { fail_times: 5 })
        .run(common::Async(&client))
        .await
        .unwrap();
    run_until(
        &client,
        worker(Backend::connect(db.url()).await, Log::default()).build(),
        "SELECT count(*) = 2 FROM jobq.jobs WHERE status IN ('succeeded', 'failed')",
    )
    .await;
    let ok = job(&client, &jobq, recovers).await;
    assert_eq!(
        (ok.status, ok.attempts, ok.errors.len()),
        (Status::Succeeded, 3, 2)
    );
    assert_eq!(ok.errors[1].error, "attempt 2 failed");
    let failed = job(&client, &jobq, gives_up).await;
    assert_eq!(
        (failed.status, failed.attempts),
        (Status::Failed, 3),
        "three attempts in all"
    );
    assert_eq!(failed.last_error.as_deref(), Some("attempt 3 failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tasks_bad_arguments_and_panics_fail_cleanly() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let unknown = jobq
        .defer_job(NewJob::new("nobody_knows", serde_json::json!({})))
        .run(common::Async(&client))
        .await
        .unwrap();
    let bad = jobq
        .defer_job(NewJob::new("record", serde_json::json!({"nom": 1})))
        .run(common::Async(&client))
        .await
        .unwrap();
    let panics = jobq
        .defer(&Panics)
        .run(common::Async(&client))
        .await
        .unwrap();
    let fine = jobq
        .defer(&Record {
            name: "fine".into(),
        })
        .run(common::Async(&client))
        .await
        .unwrap();
    // By default a worker leaves the jobs of tasks it does not know to a worker that does.
    run_until(
        &client,
        worker(Backend::connect(db.url()).await, Log::default()).build(),
        "SELECT count(*) = 3 FROM jobq.jobs WHERE status IN ('succeeded', 'failed')",
    )
    .await;
    let waiting = job(&client, &jobq, unknown).await;
    assert_eq!(
        (waiting.status, waiting.attempts),
        (Status::Todo, 0),
        "an unknown task is not fetched"
    );
    // Asked to, a worker takes it and fails it, naming the task.
    run_until(
        &client,
        worker(Backend::connect(db.url()).await, Log::default())
            .fetch_unknown_tasks(true)
            .build(),
        "SELECT count(*) = 4 FROM jobq.jobs WHERE status IN ('succeeded', 'failed')",
    )
    .await;
    let error = |j: Job| (j.status, j.last_error.unwrap_or_default());
    let (status, message) = error(job(&client, &jobq, unknown).await);
    assert!(
        status == Status::Failed && message.contains("no task named \"nobody_knows\""),
        "{message}"
    );
    let (status, message) = error(job(&client, &jobq, bad).await);
    assert!(
        status == Status::Failed && message.contains("arguments do not match"),
        "{message}"
    );
    let (status, message) = error(job(&client, &jobq, panics).await);
    assert!(
        status == Status::Failed && message.contains("handler blew up"),
        "{message}"
    );
    assert_eq!(
        job(&client, &jobq, fine).await.status,
        Status::Succeeded,
        "the worker kept going"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tasks_wait_for_a_worker_that_knows_them_and_keep_their_lock_order() {
    #[derive(Serialize, Deserialize)]
    struct Later;
    impl Task for Later {
        const NAME: &'static str = "later";
    }
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let locked = |job: NewJob| {
        let mut job = job;
        job.options.lock = Some("tenant".into());
        job
    };
    // The lock's head is a task the first worker does not know; a job it knows waits behind it.
    let head = jobq
        .defer_job(locked(NewJob::new("later", serde_json::json!(null))))
        .run(common::Async(&client))
        .await
        .unwrap();
    let behind = jobq
        .defer_job(locked(record("behind")))
        .run(common::Async(&client))
        .await
        .unwrap();
    let other = jobq
        .defer_job(record("other"))
        .run(common::Async(&client))
        .await
        .unwrap();
    let log = Log::default();
    let (stop, handle) = start(worker(Backend::connect(db.url()).await, log.clone()).build());
    wait_for(
        &client,
        &format!("SELECT status = 'succeeded' FROM jobq.jobs WHERE id = {other}"),
    )
    .await;
    // A few more fetches, to be sure the worker leaves both alone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    handle.await.unwrap().unwrap();
    for id in [head, behind] {
        let j = job(&client, &jobq, id).await;
        assert_eq!((j.status, j.attempts), (Status::Todo, 0), "{}", j.task);
    }
    // A worker that knows the head runs it, then the job behind it.
    run_until(
        &client,
        worker(Backend::connect(db.url()).await, log.clone())
            .task(|_: Later, _ctx: JobContext| async move { Ok(()) })
            .build(),
        "SELECT count(*) = 3 FROM jobq.jobs WHERE status = 'succeeded'",
    )
    .await;
    let (head, behind) = (
        job(&client, &jobq, head).await,
        job(&client, &jobq, behind).await,
    );
    assert!(
        head.finished_at.unwrap() <= behind.started_at.unwrap(),
        "the lock's head ran first"
    );
    assert_eq!(*log.lock().unwrap(), ["other", "behind"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_share_the_state_given_to_the_builder() {
    #[derive(Serialize, Deserialize)]
    struct Count;
    impl Task for Count {
        const NAME: &'static str = "count";
    }
    #[derive(Serialize, Deserialize)]
    struct CountBlocking;
    impl Task for CountBlocking {
        const NAME: &'static str = "count_blocking";
    }
    #[derive(Serialize, Deserialize)]
    struct NeedsMissing;
    impl Task for NeedsMissing {
        const NAME: &'static str = "needs_missing";
    }
    struct Counter(std::sync::atomic::AtomicUsize);
    struct Missing;
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    for _ in 0..3 {
        jobq.defer(&Count)
            .run(common::Async(&client))
            .await
            .unwrap();
        jobq.defer(&CountBlocking)
            .run(common::Async(&client))
            .await
            .unwrap();
    }
    let missing = jobq
        .defer(&NeedsMissing)
        .run(common::Async(&client))
        .await
        .unwrap();
    let counter = Arc::new(Counter(std::sync::atomic::AtomicUsize::new(0)));
    let (stop, handle) = start(
        worker(Backend::connect(db.url()).await, Log::default())
            .state(counter.clone())
            .task(|_: Count, ctx: JobContext| async move {
                ctx.state::<Arc<Counter>>()?
                    .0
                    .fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .blocking_task(|_: CountBlocking, ctx: JobContext| {
                ctx.state::<Arc<Counter>>()?
                    .0
                    .fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .task(|_: NeedsMissing, ctx: JobContext| async move {
                ctx.state::<Missing>()?;
                Ok(())
            })
            .build(),
    );
    wait_for(
        &client,
        "SELECT count(*) = 7 FROM jobq.jobs WHERE status IN ('succeeded', 'failed')",
    )
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();
    assert_eq!(counter.0.load(Ordering::SeqCst), 6);
    let failed = job(&client, &jobq, missing).await;
    let error = failed.last_error.unwrap_or_default();
    assert!(
        failed.status == Status::Failed
            && error.contains("Missing")
            && error.contains("WorkerBuilder::state"),
        "{:?} {error}",
        failed.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_stops_async_and_blocking_handlers() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let forever = jobq
        .defer(&Forever)
        .run(common::Async(&client))
        .await
        .unwrap();
    let spin = jobq.defer(&Spin).run(common::Async(&client)).await.unwrap();
    let (stop, handle) = start(worker(Backend::connect(db.url()).await, Log::default()).build());
    wait_for(
        &client,
        "SELECT count(*) = 2 FROM jobq.jobs WHERE status = 'doing'",
    )
    .await;
    for id in [forever, spin] {
        assert_eq!(
            jobq.cancel(id)
                .abort()
                .run(common::Async(&client))
                .await
                .unwrap(),
            jobq_core::CancelOutcome::AbortRequested
        );
    }
    wait_for(
        &client,
        "SELECT count(*) = 2 FROM jobq.jobs WHERE status = 'aborted'",
    )
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_then_puts_interrupted_jobs_back_uncharged() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let forever = jobq
        .defer(&Forever)
        .run(common::Async(&client))
        .await
        .unwrap();
    let w = worker(Backend::connect(db.url()).await, Log::default())
        .retry("forever", RetryStrategy::new(5))
        .shutdown_timeout(Duration::from_millis(200))
        .build();
    run_until(
        &client,
        w,
        "SELECT count(*) = 1 FROM jobq.jobs WHERE status = 'doing'",
    )
    .await;
    let j = job(&client, &jobq, forever).await;
    assert_eq!(
        j.status,
        Status::Todo,
        "back in the queue for another attempt"
    );
    assert_eq!(
        j.last_error.as_deref(),
        Some("interrupted by worker shutdown")
    );
    assert_eq!(
        (j.attempts, j.errors.len()),
        (0, 0),
        "not charged: the shutdown was not the job's fault"
    );
    let workers: i64 = client
        .query_one("SELECT count(*) FROM jobq.workers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(workers, 0, "the worker unregistered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_a_dead_worker_are_recovered() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let id = jobq
        .defer(&Flaky { fail_times: 0 })
        .run(common::Async(&client))
        .await
        .unwrap();
    let once = jobq
        .defer(&Record {
            name: "once".into(),
        })
        .run(common::Async(&client))
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO jobq.workers (name, heartbeat_at) VALUES ('dead', now() - interval '1 hour');
             UPDATE jobq.jobs SET status = 'doing', attempts = 1, worker_id = (SELECT id FROM jobq.workers)
             WHERE id IN ({id}, {once});"
        ))
        .await
        .unwrap();
    let w = worker(Backend::connect(db.url()).await, Log::default())
        .retry("record", RetryStrategy::none())
        .stalled_after(Duration::from_secs(1))
        .build();
    run_until(
        &client,
        w,
        "SELECT count(*) = 2 FROM jobq.jobs WHERE status IN ('succeeded', 'failed')",
    )
    .await;
    let retried = job(&client, &jobq, id).await;
    assert_eq!(
        (retried.status, retried.attempts),
        (Status::Succeeded, 2),
        "retried per its strategy"
    );
    assert!(retried.errors[0].error.contains("stalled"));
    let failed = job(&client, &jobq, once).await;
    assert_eq!(failed.status, Status::Failed, "no retries in its strategy");
    let dead: i64 = client
        .query_one("SELECT count(*) FROM jobq.workers WHERE name = 'dead'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(dead, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cron_tick_is_deferred_once_by_several_workers() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let mut workers = Vec::new();
    for _ in 0..3 {
        let every_second = Periodic::task(
            "* * * * * *",
            &Record {
                name: "tick".into(),
            },
        )
        .unwrap();
        let w = worker(Backend::connect(db.url()).await, Log::default())
            .periodic(every_second)
            .build();
        workers.push(start(w));
    }
    wait_for(&client, "SELECT count(*) >= 3 FROM jobq.periodic_ticks").await;
    for (stop, handle) in workers {
        stop.cancel();
        handle.await.unwrap().unwrap();
    }
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT scheduled_at), (SELECT count(*) FROM jobq.periodic_ticks)
             FROM jobq.jobs WHERE task = 'record'",
            &[],
        )
        .await
        .unwrap();
    let (jobs, ticks, claims): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(jobs, ticks, "one job per tick");
    assert_eq!(jobs, claims);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn succeeded_jobs_can_be_deleted_and_old_ones_pruned() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    jobq.defer(&Record {
        name: "gone".into(),
    })
    .run(common::Async(&client))
    .await
    .unwrap();
    let (stop, handle) = start(
        worker(Backend::connect(db.url()).await, Log::default())
            .delete_succeeded(true)
            .build(),
    );
    wait_for(&client, "SELECT count(*) = 0 FROM jobq.jobs").await;
    stop.cancel();
    handle.await.unwrap().unwrap();

    client
        .batch_execute(
            "INSERT INTO jobq.jobs (task, status, finished_at) VALUES
                ('old', 'succeeded', now() - interval '2 days'), ('old', 'failed', now() - interval '2 days'),
                ('new', 'succeeded', now()), ('waiting', 'todo', NULL)",
        )
        .await
        .unwrap();
    let pruned = jobq
        .prune(Duration::from_secs(86_400))
        .run(common::Async(&client))
        .await
        .unwrap();
    assert_eq!(pruned, 2);
    let left: i64 = client
        .query_one("SELECT count(*) FROM jobq.jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_counts_and_workers_are_reported() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    jobq.defer(&Forever)
        .queue("slow")
        .run(common::Async(&client))
        .await
        .unwrap();
    jobq.defer(&Record { name: "x".into() })
        .queue("slow")
        .at(chrono::Utc::now() + chrono::Duration::hours(1))
        .run(common::Async(&client))
        .await
        .unwrap();
    let (stop, handle) = start(
        worker(Backend::connect(db.url()).await, Log::default())
            .name("counter")
            .build(),
    );
    wait_for(
        &client,
        "SELECT count(*) = 1 FROM jobq.jobs WHERE status = 'doing'",
    )
    .await;
    let counts = jobq
        .queue_counts()
        .run(common::Async(&client))
        .await
        .unwrap();
    let pairs: Vec<_> = counts
        .iter()
        .map(|c| (c.queue.as_str(), c.status, c.count))
        .collect();
    assert_eq!(
        pairs,
        [("slow", Status::Doing, 1), ("slow", Status::Todo, 1)]
    );
    let workers = jobq.workers().run(common::Async(&client)).await.unwrap();
    assert_eq!(
        (workers.len(), workers[0].name.as_str(), workers[0].running),
        (1, "counter", 1)
    );
    stop.cancel();
    handle.await.unwrap().unwrap();
}

#[derive(Serialize, Deserialize)]
struct Hangs;

impl Task for Hangs {
    const NAME: &'static str = "hangs";
    fn retry() -> RetryStrategy {
        RetryStrategy::new(2)
    }
    fn timeout() -> Option<Duration> {
        Some(Duration::from_millis(200))
    }
}

#[derive(Serialize, Deserialize)]
struct SpinsForever;

impl Task for SpinsForever {
    const NAME: &'static str = "spins_forever";
    fn retry() -> RetryStrategy {
        RetryStrategy::none()
    }
}

/// A job past its task's timeout (or the worker's `job_timeout`) is aborted and fails with kind `timeout`,
/// retried per its strategy; an async one frees its slot at once, so the job behind it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_past_their_timeout_are_aborted_and_retried() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let hangs = jobq
        .defer(&Hangs)
        .run(common::Async(&client))
        .await
        .unwrap();
    let spins = jobq
        .defer(&SpinsForever)
        .run(common::Async(&client))
        .await
        .unwrap();
    let behind = jobq
        .defer(&Record {
            name: "behind".into(),
        })
        .run(common::Async(&client))
        .await
        .unwrap();
    let w = worker(Backend::connect(db.url()).await, Log::default())
        .concurrency(1)
        .job_timeout(Duration::from_millis(300))
        .task(|_: Hangs, _ctx: JobContext| async move {
            std::future::pending::<()>().await;
            Ok(())
        })
        .blocking_task(|_: SpinsForever, ctx: JobContext| {
            while !ctx.is_aborted() {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        })
        .build();
    run_until(
        &client,
        w,
        "SELECT count(*) = 3 FROM jobq.jobs WHERE status IN ('succeeded', 'failed')",
    )
    .await;
    let hung = job(&client, &jobq, hangs).await;
    assert_eq!(
        (hung.status, hung.attempts),
        (Status::Failed, 2),
        "retried once"
    );
    assert!(
        hung.errors
            .iter()
            .all(|e| e.error.contains("timed out after 200ms")),
        "{:?}",
        hung.errors
    );
    let spun = job(&client, &jobq, spins).await;
    assert_eq!(spun.status, Status::Failed);
    assert!(
        spun.last_error
            .as_deref()
            .is_some_and(|e| e.contains("timed out after 300ms")),
        "the worker-wide timeout: {:?}",
        spun.last_error
    );
    assert_eq!(job(&client, &jobq, behind).await.status, Status::Succeeded);
}

/// Fails its first attempt; on the second, shows the test the job it was handed and waits for the test.
#[derive(Serialize, Deserialize)]
struct Seen;

impl Task for Seen {
    const NAME: &'static str = "seen";
    fn retry() -> RetryStrategy {
        RetryStrategy::new(3).backoff(Backoff::Constant(Duration::from_millis(10)))
    }
}

/// The fetch sends each job as an array of its columns (`fetch.sql`), read by position into `Job`: every
/// field a handler is handed must be the stored one, none shifted into its neighbour's place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_is_handed_the_job_as_stored() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let seen: Arc<Mutex<Option<Arc<Job>>>> = Arc::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (shown, opened) = (seen.clone(), gate.clone());
    let worker = Worker::builder(Jobq::default(), Backend::connect(db.url()).await)
        .poll_interval(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_millis(100))
        .task(move |_: Seen, ctx: JobContext| {
            let (shown, gate) = (shown.clone(), opened.clone());
            async move {
                if ctx.attempt() == 1 {
                    return Err(JobError::new("first attempt\tfails"));
                }
                *shown.lock().unwrap() = Some(ctx.job.clone());
                gate.acquire().await.expect("the gate stays open").forget();
                Ok(())
            }
        })
        .build();
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let id = jobq
        .defer(&Seen)
        .queue("elsewhere")
        .priority(7)
        .lock("tenant \"a\"")
        .queueing_lock("once")
        .trace_context(traceparent)
        .run(common::Async(&client))
        .await
        .unwrap();
    let (stop, handle) = start(worker);
    let mut handed = None;
    for _ in 0..1500 {
        handed = seen.lock().unwrap().clone();
        if handed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let handed = handed.expect("the second attempt started within 30 s");
    let stored = job(&client, &jobq, id).await;
    gate.add_permits(1);
    assert_eq!(*handed, stored);
    assert_eq!(
        (
            handed.queue.as_str(),
            handed.priority,
            handed.lock.as_deref(),
            handed.queueing_lock.as_deref(),
            handed.attempts,
            handed.status,
            handed.trace_context.as_deref(),
            handed.errors.len(),
            handed.last_error.as_deref(),
        ),
        (
            "elsewhere",
            7,
            Some("tenant \"a\""),
            Some("once"),
            2,
            Status::Doing,
            Some(traceparent),
            1,
            Some("first attempt\tfails"),
        )
    );
    assert!(handed.started_at.is_some() && handed.worker_id.is_some());
    wait_for(
        &client,
        &format!("SELECT status = 'succeeded' FROM jobq.jobs WHERE id = {id}"),
    )
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();
}
