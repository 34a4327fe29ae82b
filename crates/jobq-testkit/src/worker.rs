//! Worker cases of the conformance suite: jobs deferred through an adapter run on a worker over that
//! adapter's pool. An adapter opts in by implementing [`WorkerHarness`] and calling
//! [`worker_tests!`](crate::worker_tests).

use crate::observer::Observer;
use crate::{CallerConnection, Harness};
use jobq_core::CancelOutcome;
use jobq_core::prelude::*;
use jobq_core::worker::{Backend, JobContext, JobError, RetryStrategy, Worker};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// An adapter whose pool can carry a worker.
pub trait WorkerHarness: Harness {
    /// The adapter's worker backend.
    type Backend: Backend;
    /// Whether the backend LISTENs (an idle worker then wakes without polling).
    const LISTENS: bool;
    /// A backend on a pool of a few connections to `url`.
    fn backend(url: &str) -> impl Future<Output = Self::Backend> + Send;
}

#[derive(Serialize, Deserialize)]
struct Count {
    n: u32,
}

impl Task for Count {
    const NAME: &'static str = "count";
}

#[derive(Serialize, Deserialize)]
struct Wait {}

impl Task for Wait {
    const NAME: &'static str = "wait";
}

type Runs = Arc<Mutex<HashMap<u32, u32>>>;

struct Running {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), Error>>,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        self.handle
            .await
            .expect("worker task")
            .expect("worker ends cleanly");
    }
}

async fn start<H: WorkerHarness>(url: &str, runs: Runs, poll: Duration) -> Running {
    let worker = Worker::builder(Jobq::default(), H::backend(url).await)
        .concurrency(8)
        .poll_interval(poll)
        .heartbeat_interval(Duration::from_millis(100))
        .task(move |c: Count, _ctx: JobContext| {
            let runs = runs.clone();
            async move {
                *runs.lock().unwrap().entry(c.n).or_default() += 1;
                Ok(())
            }
        })
        .task(|_: Wait, ctx: JobContext| async move {
            ctx.aborted().await;
            Ok(())
        })
        .build();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let handle = tokio::spawn(worker.run_until(async move { stopped.cancelled().await }));
    Running { stop, handle }
}

async fn wait_for(observer: &Observer, sql: &str) {
    for _ in 0..1200 {
        if observer.text(sql).await.as_deref() == Some("true") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition never held: {sql}");
}

/// Jobs deferred in the caller's transaction run once each on a worker over the adapter's pool.
pub async fn worker_runs_each_committed_job_once<H: WorkerHarness>() {
    let db = jobq_tempdb::database();
    let observer = Observer::connect(db.url()).await;
    let jobq = Jobq::default();
    let mut conn = H::connect(db.url()).await;
    conn.begin().await;
    let jobs = (0..200).map(|n| NewJob::from_task(&Count { n }).unwrap());
    conn.run(jobq.defer_batch(jobs)).await.unwrap();
    conn.run(jobq.defer(&Count { n: 200 }).into_query())
        .await
        .unwrap();
    conn.commit().await;
    conn.begin().await;
    conn.run(jobq.defer(&Count { n: 999 }).into_query())
        .await
        .unwrap();
    conn.rollback().await;
    let runs = Runs::default();
    let worker = start::<H>(db.url(), runs.clone(), Duration::from_millis(100)).await;
    wait_for(
        &observer,
        "SELECT (count(*) = 201)::text FROM jobq.jobs WHERE status = 'succeeded'",
    )
    .await;
    worker.stop().await;
    let runs = runs.lock().unwrap().clone();
    assert_eq!(
        runs.len(),
        201,
        "every committed job ran, the rolled-back one did not"
    );
    assert!(runs.values().all(|&n| n == 1), "each exactly once");
    assert_eq!(
        observer
            .count("SELECT * FROM jobq.jobs WHERE status = 'doing'")
            .await,
        0
    );
}

/// An idle worker wakes on the commit's NOTIFY (polling is set to a minute, so only LISTEN can wake it);
/// an abort requested through the adapter stops the running job.
pub async fn worker_wakes_on_commit_and_obeys_aborts<H: WorkerHarness>() {
    let db = jobq_tempdb::database();
    let observer = Observer::connect(db.url()).await;
    let jobq = Jobq::default();
    let poll = if H::LISTENS {
        Duration::from_secs(60)
    } else {
        Duration::from_millis(100)
    };
    let worker = start::<H>(db.url(), Runs::default(), poll).await;
    // Let the worker settle into waiting, so the job below can only be found through a notification.
    wait_for(&observer, "SELECT (count(*) = 1)::text FROM jobq.workers").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut conn = H::connect(db.url()).await;
    conn.begin().await;
    let id = conn.run(jobq.defer(&Wait {}).into_query()).await.unwrap();
    conn.commit().await;
    wait_for(
        &observer,
        &format!("SELECT (status = 'doing')::text FROM jobq.jobs WHERE id = {id}"),
    )
    .await;
    conn.begin().await;
    conn.run(jobq.cancel(id).abort().into_query())
        .await
        .unwrap();
    conn.commit().await;
    wait_for(
        &observer,
        &format!("SELECT (status = 'aborted')::text FROM jobq.jobs WHERE id = {id}"),
    )
    .await;
    worker.stop().await;
}

#[derive(Serialize, Deserialize)]
struct FailWhenTold {}

impl Task for FailWhenTold {
    const NAME: &'static str = "fail_when_told";
    fn retry() -> RetryStrategy {
        RetryStrategy::new(3)
    }
}

/// A caller's open transaction and the worker never deadlock. The caller defers job B with queueing lock
/// K and keeps its transaction open; meanwhile a worker runs job A, which also has queueing lock K, and A's
/// handler fails, so the worker wants A back in `todo` (its strategy retries), which needs K. Then the
/// caller cancels A with abort in the same transaction. The caller's cancel, next statement and commit
/// succeed (no `deadlock detected`, which would abort the caller's transaction), B exists, and A ends: it
/// failed, saying its queueing lock is taken, or it was retried; nothing is left `doing`.
pub async fn a_callers_open_transaction_does_not_deadlock_with_the_worker<H: WorkerHarness>() {
    let db = jobq_tempdb::database();
    let observer = Observer::connect(db.url()).await;
    observer
        .execute("CREATE TABLE orders (id bigint PRIMARY KEY)")
        .await;
    let jobq = Jobq::default();
    let lock = "order-7";
    let mut conn = H::connect(db.url()).await;
    let a = conn
        .run(
            jobq.defer(&FailWhenTold {})
                .queue("work")
                .queueing_lock(lock)
                .into_query(),
        )
        .await
        .unwrap();

    let (tell, told) = tokio::sync::watch::channel(false);
    let worker = Worker::builder(jobq.clone(), H::backend(db.url()).await)
        .queues(["work"])
        .poll_interval(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_millis(100))
        .task(move |_: FailWhenTold, _ctx: JobContext| {
            let mut told = told.clone();
            async move {
                let _ = told.wait_for(|&fail| fail).await;
                Err(JobError::new("told to fail"))
            }
        })
        .build();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let handle = tokio::spawn(worker.run_until(async move { stopped.cancelled().await }));
    let worker = Running { stop, handle };
    wait_for(
        &observer,
        &format!("SELECT (status = 'doing')::text FROM jobq.jobs WHERE id = {a}"),
    )
    .await;

    conn.begin().await;
    conn.sql("INSERT INTO orders VALUES (1)").await.unwrap();
    // B: in a queue this worker does not serve, so it stays waiting, holding K.
    let b = conn
        .run(
            jobq.defer(&FailWhenTold {})
                .queue("elsewhere")
                .queueing_lock(lock)
                .into_query(),
        )
        .await
        .unwrap();
    tell.send(true).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cancel = tokio::time::timeout(
        Duration::from_secs(30),
        conn.run(jobq.cancel(a).abort().into_query()),
    )
    .await
    .expect("the cancel returns");
    assert!(
        matches!(
            cancel,
            Ok(CancelOutcome::AbortRequested | CancelOutcome::Unchanged)
        ),
        "the caller's cancel in its open transaction: {cancel:?}"
    );
    conn.sql("INSERT INTO orders VALUES (2)")
        .await
        .expect("the caller's next statement succeeds");
    conn.commit().await;
    assert_eq!(observer.count("SELECT * FROM orders").await, 2);
    assert_eq!(
        observer
            .text(&format!("SELECT status FROM jobq.jobs WHERE id = {b}"))
            .await
            .as_deref(),
        Some("todo"),
        "B exists, waiting"
    );

    wait_for(
        &observer,
        "SELECT (count(*) = 0)::text FROM jobq.jobs WHERE status = 'doing'",
    )
    .await;
    let ended = observer
        .text(&format!(
            "SELECT status || ': ' || coalesce(last_error, '') || ' ' || errors::text || ' attempts ' || attempts FROM jobq.jobs WHERE id = {a}"
        ))
        .await
        .expect("A exists");
    assert!(
        (ended.starts_with("failed") && ended.contains("queueing lock is taken"))
            || ended.starts_with("todo"),
        "A ended as {ended}"
    );
    worker.stop().await;
}

/// Expands to one `#[tokio::test]` per worker case, run against the given [`WorkerHarness`].
#[macro_export]
macro_rules! worker_tests {
    ($harness:ty) => {
        $crate::worker_tests!(@cases $harness;
            worker_runs_each_committed_job_once,
            worker_wakes_on_commit_and_obeys_aborts,
            a_callers_open_transaction_does_not_deadlock_with_the_worker,
        );
    };
    (@cases $harness:ty; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::worker::$case::<$harness>().await;
            }
        )*
    };
}
