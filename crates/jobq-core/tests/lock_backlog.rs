//! Jobs waiting behind a busy lock (migration 7): they stay out of the fetch's indexes, and every way the
//! lock frees gives it its next head, so a backlog still runs one job at a time, the head first (priority,
//! then age), and nothing is left waiting. Each test ends with the same check: every job ran, in its lock's
//! order, none `failed` or `doing`.

mod common;

use common::{Async, Backend, connect};
use jobq_core::prelude::*;
use jobq_core::worker::{JobContext, Worker};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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

/// Each run's job name and when its handler started and returned.
type Log = Arc<Mutex<Vec<(String, Instant, Instant)>>>;

/// The names of the jobs that ran, in the order they started.
fn names(log: &Log) -> Vec<String> {
    log.lock().unwrap().iter().map(|r| r.0.clone()).collect()
}

fn step(name: &str, lock: &str, priority: i32) -> NewJob {
    let mut job = NewJob::from_task(&Step { name: name.into() }).unwrap();
    job.options.lock = Some(lock.into());
    job.options.priority = Some(priority);
    job
}

/// A worker of `Step` jobs, four at a time (so only the lock keeps them apart), fast intervals.
fn worker(backend: Backend, log: Log) -> Worker<Backend> {
    Worker::builder(Jobq::default(), backend)
        .concurrency(4)
        .poll_interval(Duration::from_millis(50))
        .heartbeat_interval(Duration::from_millis(100))
        .stalled_after(Duration::from_secs(1))
        .task(move |s: Step, _ctx: JobContext| {
            let log = log.clone();
            async move {
                let started = Instant::now();
                tokio::time::sleep(Duration::from_millis(2)).await;
                log.lock().unwrap().push((s.name, started, Instant::now()));
                Ok(())
            }
        })
        .build()
}

/// Runs `worker` until every job is finished, then stops it.
async fn drain(client: &Client, worker: Worker<Backend>) {
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let handle = tokio::spawn(worker.run_until(async move { stopped.cancelled().await }));
    wait_for(
        client,
        "SELECT NOT EXISTS (SELECT 1 FROM jobq.jobs WHERE status IN ('todo', 'doing'))",
    )
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();
}

async fn wait_for(client: &Client, sql: &str) {
    for _ in 0..600 {
        if client.query_one(sql, &[]).await.unwrap().get::<_, bool>(0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition never held: {sql}");
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// A registered worker row for fetching by hand.
async fn register(client: &Client, name: &str) -> i64 {
    client
        .query_one(
            "INSERT INTO jobq.workers (name, heartbeat_at) VALUES ($1, now()) RETURNING id",
            &[&name],
        )
        .await
        .unwrap()
        .get(0)
}

/// The ids one fetch of `limit` takes for `worker`, from every queue.
async fn fetch(client: &Client, worker: i64, limit: i32) -> Vec<i64> {
    let input =
        serde_json::json!({"worker_id": worker, "queues": null, "tasks": null, "limit": limit});
    client
        .query(
            "SELECT id FROM jobq.fetch_jobs($1::text::jsonb)",
            &[&input.to_string()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Ends `id`, running on `worker`, as succeeded.
async fn succeed(client: &Client, worker: i64, id: i64) {
    let input = serde_json::json!({"worker_id": worker,
                                   "jobs": [{"id": id, "attempt": 1, "end": "succeeded"}]});
    client
        .execute(
            "SELECT jobq.complete($1::text::jsonb)",
            &[&input.to_string()],
        )
        .await
        .unwrap();
}

/// Waiting jobs of `lock` the fetch's indexes hold (not blocked).
async fn visible(client: &Client, lock: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM jobq.jobs WHERE lock = $1 AND status = 'todo' AND NOT blocked",
            &[&lock],
        )
        .await
        .unwrap()
        .get(0)
}

/// The end check: every job succeeded, none failed or left waiting or running.
async fn all_succeeded(client: &Client, expected: i64) {
    let by_status: String = client
        .query_one(
            "SELECT coalesce(string_agg(status || '=' || n, ',' ORDER BY status), '')
             FROM (SELECT status, count(*) AS n FROM jobq.jobs GROUP BY status) s",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(by_status, format!("succeeded={expected}"));
}

/// With the lock's head running, a backlog deferred one by one and in batches, at several priorities, stays
/// out of the fetch's indexes (so no fetch walks it); once the head ends the backlog runs one job at a time,
/// highest priority first, then oldest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_behind_a_running_lock_is_kept_out_of_the_fetch_and_runs_in_order() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let w = register(&client, "by hand").await;
    jobq.defer_job(step("head", "tenant", 0))
        .run(Async(&client))
        .await
        .unwrap();
    let head = fetch(&client, w, 10).await;
    assert_eq!(head.len(), 1);

    let mut expected: Vec<(i32, i64, String)> = Vec::new();
    for n in 0..50 {
        let (name, priority) = (format!("one-{n}"), n % 3);
        let id = jobq
            .defer_job(step(&name, "tenant", priority))
            .run(Async(&client))
            .await
            .unwrap();
        expected.push((priority, id.0, name));
    }
    for batch in 0..4 {
        let jobs: Vec<NewJob> = (0..250)
            .map(|n| step(&format!("batch-{batch}-{n}"), "tenant", (n % 5) - 2))
            .collect();
        let ids = jobq
            .defer_batch(jobs.clone())
            .run(Async(&client))
            .await
            .unwrap();
        for (job, id) in jobs.iter().zip(ids) {
            let name = job.args["name"].as_str().unwrap().to_owned();
            expected.push((job.options.priority.unwrap(), id.0, name));
        }
    }
    assert_eq!(
        visible(&client, "tenant").await,
        0,
        "the backlog is blocked"
    );
    assert_eq!(
        fetch(&client, w, 10).await,
        Vec::<i64>::new(),
        "nothing of the lock runs"
    );

    // The head ends: the first of the backlog (highest priority, then oldest) is its new head.
    succeed(&client, w, head[0]).await;
    expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    assert_eq!(visible(&client, "tenant").await, 1);
    let log = Log::default();
    drain(
        &client,
        worker(Backend::connect(db.url()).await, log.clone()),
    )
    .await;
    let ran = names(&log);
    let order: Vec<String> = expected.into_iter().map(|e| e.2).collect();
    assert_eq!(ran, order, "the backlog ran in its lock's order");
    all_succeeded(&client, 1 + 50 + 1000).await;
}

/// A job of higher priority deferred into a backlog runs next; a job scheduled for later is not blocked
/// (nothing happens when it becomes due) and runs when due, still one at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_and_scheduled_jobs_keep_the_lock_order() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let w = register(&client, "by hand").await;
    jobq.defer_job(step("head", "l", 0))
        .run(Async(&client))
        .await
        .unwrap();
    let head = fetch(&client, w, 1).await;
    for n in 0..5 {
        jobq.defer_job(step(&format!("low-{n}"), "l", 0))
            .run(Async(&client))
            .await
            .unwrap();
    }
    jobq.defer_job(step("urgent", "l", 10))
        .run(Async(&client))
        .await
        .unwrap();
    let mut later = step("later", "l", 100);
    later.options.scheduled_at = Some(chrono::Utc::now() + chrono::Duration::milliseconds(1500));
    jobq.defer_job(later).run(Async(&client)).await.unwrap();
    assert_eq!(
        visible(&client, "l").await,
        1,
        "only the scheduled job is in the indexes"
    );
    succeed(&client, w, head[0]).await;
    let log = Log::default();
    drain(
        &client,
        worker(Backend::connect(db.url()).await, log.clone()),
    )
    .await;
    let ran = names(&log);
    assert_eq!(ran[0], "urgent", "{ran:?}");
    let lows: Vec<&String> = ran.iter().filter(|n| n.starts_with("low")).collect();
    assert_eq!(lows, ["low-0", "low-1", "low-2", "low-3", "low-4"]);
    assert!(ran.contains(&"later".to_owned()));
    all_succeeded(&client, 8).await;
}

/// A waiting head that is cancelled, deleted, or cancelled or deleted in bulk hands the lock to the next
/// job; so does a running head that is aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_deleting_or_aborting_the_head_frees_the_lock() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let w = register(&client, "by hand").await;
    // Lock e: its head runs, a job waits behind it.
    let e_head = jobq
        .defer_job(step("e-head", "e", 0))
        .run(Async(&client))
        .await
        .unwrap();
    assert_eq!(fetch(&client, w, 10).await, [e_head.0]);
    jobq.defer_job(step("e-next", "e", 0))
        .run(Async(&client))
        .await
        .unwrap();
    // Locks a to d: a waiting head, and a job blocked behind it.
    let mut heads = Vec::new();
    for lock in ["a", "b", "c", "d"] {
        let head = jobq
            .defer_job(step(&format!("{lock}-head"), lock, 0))
            .run(Async(&client))
            .await
            .unwrap();
        jobq.defer_job(step(&format!("{lock}-next"), lock, 0))
            .run(Async(&client))
            .await
            .unwrap();
        heads.push(head);
    }
    assert_eq!(
        count(&client, "SELECT count(*) FROM jobq.jobs WHERE blocked").await,
        5
    );
    jobq.cancel(heads[0]).run(Async(&client)).await.unwrap();
    jobq.cancel(heads[1])
        .delete()
        .run(Async(&client))
        .await
        .unwrap();
    let c = jobq
        .cancel_matching(&JobFilter {
            lock: Some("c".into()),
            limit: Some(1),
            ..JobFilter::default()
        })
        .run(Async(&client))
        .await
        .unwrap();
    assert_eq!(c.changed, 1);
    let d = jobq
        .delete_matching(&JobFilter {
            lock: Some("d".into()),
            limit: Some(1),
            ..JobFilter::default()
        })
        .run(Async(&client))
        .await
        .unwrap();
    assert_eq!(d.changed, 1);
    // e's running head is asked to abort, and its worker ends it as aborted.
    jobq.cancel(e_head)
        .abort()
        .run(Async(&client))
        .await
        .unwrap();
    let input = serde_json::json!({"worker_id": w, "jobs": [{"id": e_head.0, "attempt": 1,
                                   "end": "aborted", "error": "aborted"}]});
    client
        .execute(
            "SELECT jobq.complete($1::text::jsonb)",
            &[&input.to_string()],
        )
        .await
        .unwrap();

    let log = Log::default();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let worker = worker(Backend::connect(db.url()).await, log.clone());
    let handle = tokio::spawn(worker.run_until(async move { stopped.cancelled().await }));
    wait_for(
        &client,
        "SELECT count(*) = 5 FROM jobq.jobs WHERE status = 'succeeded'",
    )
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();
    let mut ran = names(&log);
    ran.sort();
    assert_eq!(ran, ["a-next", "b-next", "c-next", "d-next", "e-next"]);
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM jobq.jobs WHERE status IN ('todo', 'doing')"
        )
        .await,
        0
    );
}

/// A head left `doing` by a dead worker: its backlog runs once the stalled job is recovered (and retried).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_behind_a_stalled_head_runs_after_recovery() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let dead = register(&client, "dead").await;
    jobq.defer_job(step("head", "l", 0))
        .run(Async(&client))
        .await
        .unwrap();
    assert_eq!(fetch(&client, dead, 1).await.len(), 1);
    for n in 0..20 {
        jobq.defer_job(step(&format!("next-{n}"), "l", 0))
            .run(Async(&client))
            .await
            .unwrap();
    }
    assert_eq!(visible(&client, "l").await, 0);
    client
        .execute(
            "UPDATE jobq.workers SET heartbeat_at = now() - interval '1 hour' WHERE id = $1",
            &[&dead],
        )
        .await
        .unwrap();
    let log = Log::default();
    drain(
        &client,
        worker(Backend::connect(db.url()).await, log.clone()),
    )
    .await;
    // Recovery charges the head an attempt and retries it later (the default strategy's back-off), so the
    // lock is free meanwhile and its due backlog runs, in order; the head runs when due.
    let ran = names(&log);
    let next: Vec<String> = ran.iter().filter(|n| *n != "head").cloned().collect();
    assert_eq!(
        next,
        (0..20).map(|n| format!("next-{n}")).collect::<Vec<_>>()
    );
    assert_eq!(ran.iter().filter(|n| *n == "head").count(), 1);
    all_succeeded(&client, 21).await;
}

/// The race the advisory locks close: a deferral that sees the lock's job running, while that job ends in
/// another transaction that cannot see the deferral yet. Both orders: the deferral's transaction is still
/// open when the end settles the lock (the next fetch settles it), and the end's transaction is still open
/// when the deferral comes (the deferral waits for it, then sees the lock free).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferral_racing_the_end_of_the_running_job_is_never_stranded() {
    race_deferral_and_end("read committed").await;
}

/// The same race where the worker's statements run at a higher isolation level (a database whose default
/// is SERIALIZABLE): their snapshot is older than the advisory lock, and a later fetch finishes settling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferral_racing_a_serializable_end_is_never_stranded() {
    race_deferral_and_end("serializable").await;
}

/// The race of the two tests above; the deferrals run at READ COMMITTED, the fetches and ends at
/// `isolation`.
async fn race_deferral_and_end(isolation: &str) {
    let db = jobq_tempdb::database();
    let deferring = connect(db.url()).await;
    let ending = connect(db.url()).await;
    let client = connect(db.url()).await;
    let set = format!("SET default_transaction_isolation = '{isolation}'");
    ending.batch_execute(&set).await.unwrap();
    client.batch_execute(&set).await.unwrap();
    let jobq = Jobq::default();
    let w = register(&client, "by hand").await;

    // The deferral's transaction stays open across the end.
    jobq.defer_job(step("first", "l", 0))
        .run(Async(&client))
        .await
        .unwrap();
    let first = fetch(&client, w, 1).await;
    deferring.batch_execute("BEGIN").await.unwrap();
    let behind = jobq
        .defer_job(step("behind", "l", 0))
        .run(Async(&deferring))
        .await
        .unwrap();
    succeed(&client, w, first[0]).await;
    deferring.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        fetch(&client, w, 10).await,
        [behind.0],
        "the next fetch settles the lock and takes the job"
    );

    // The end's transaction stays open when the deferral comes.
    ending.batch_execute("BEGIN").await.unwrap();
    let input = serde_json::json!({"worker_id": w, "jobs": [{"id": behind.0, "attempt": 1, "end": "succeeded"}]});
    ending
        .execute(
            "SELECT jobq.complete($1::text::jsonb)",
            &[&input.to_string()],
        )
        .await
        .unwrap();
    let url = db.url().to_owned();
    let deferral = tokio::spawn(async move {
        let client = connect(&url).await;
        Jobq::default()
            .defer_job(step("last", "l", 0))
            .run(Async(&client))
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !deferral.is_finished(),
        "the deferral waits for the settling transaction"
    );
    ending.batch_execute("COMMIT").await.unwrap();
    let last = tokio::time::timeout(Duration::from_secs(30), deferral)
        .await
        .expect("the deferral goes on once the end commits")
        .unwrap();
    assert_eq!(
        fetch(&client, w, 10).await,
        [last.0],
        "the deferral saw the lock free"
    );

    // The deferral commits after the fetch's snapshot was taken but before it tries the advisory lock
    // (the fetch's transaction began earlier): at READ COMMITTED its next statement sees the job; at a
    // higher level the fetch cannot, and a later fetch must settle the lock.
    succeed(&client, w, last.0).await;
    jobq.defer_job(step("third", "l", 0))
        .run(Async(&client))
        .await
        .unwrap();
    let third = fetch(&client, w, 1).await;
    deferring.batch_execute("BEGIN").await.unwrap();
    let fourth = jobq
        .defer_job(step("fourth", "l", 0))
        .run(Async(&deferring))
        .await
        .unwrap();
    succeed(&client, w, third[0]).await;
    client
        .batch_execute("BEGIN; SELECT count(*) FROM jobq.jobs")
        .await
        .unwrap();
    deferring.batch_execute("COMMIT").await.unwrap();
    let mut taken = fetch(&client, w, 10).await;
    client.batch_execute("COMMIT").await.unwrap();
    taken.extend(fetch(&client, w, 10).await);
    assert_eq!(taken, [fourth.0], "a fetch took the job behind the lock");
    fetch(&client, w, 10).await;
    assert_eq!(
        count(&client, "SELECT count(*) FROM jobq.unsettled_locks").await,
        0,
        "later fetches finished settling"
    );
}

/// Deferrals into a few locks from several connections at once, some in batches, while two workers run
/// them: afterwards every job ran exactly once, one at a time per lock, and nothing waits or runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deferrals_and_workers_strand_nothing() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let log = Log::default();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let w = worker(Backend::connect(db.url()).await, log.clone());
        workers.push((
            stop,
            tokio::spawn(w.run_until(async move { stopped.cancelled().await })),
        ));
    }
    let mut deferrers = Vec::new();
    for d in 0..4 {
        let url = db.url().to_owned();
        deferrers.push(tokio::spawn(async move {
            let client = connect(&url).await;
            let jobq = Jobq::default();
            for n in 0..60 {
                let lock = ["x", "y", "z"][n % 3];
                if n % 10 == 0 {
                    let jobs = (0..5).map(|k| step(&format!("{d}-{n}-{k}"), lock, 0));
                    jobq.defer_batch(jobs).run(Async(&client)).await.unwrap();
                } else {
                    jobq.defer_job(step(&format!("{d}-{n}"), lock, (n % 2) as i32))
                        .run(Async(&client))
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for d in deferrers {
        d.await.unwrap();
    }
    let total = 4 * (54 + 6 * 5);
    wait_for(
        &client,
        &format!("SELECT count(*) = {total} FROM jobq.jobs WHERE status = 'succeeded'"),
    )
    .await;
    for (stop, handle) in workers {
        stop.cancel();
        handle.await.unwrap().unwrap();
    }
    all_succeeded(&client, total).await;
    let mut runs = log.lock().unwrap().clone();
    assert_eq!(runs.len() as i64, total, "every job ran exactly once");
    // One at a time per lock: no two handlers of a lock's jobs ran at once (a job's lock is its name's
    // number modulo 3, as deferred above).
    runs.sort_by_key(|r| r.1);
    let lock_of = |name: &str| name.split('-').nth(1).unwrap().parse::<usize>().unwrap() % 3;
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            assert!(
                lock_of(&a.0) != lock_of(&b.0) || a.2 <= b.1,
                "jobs {} and {} of one lock overlapped",
                a.0,
                b.0
            );
        }
    }
    assert_eq!(
        count(&client, "SELECT count(*) FROM jobq.unsettled_locks").await,
        0,
        "every unsettled lock was settled"
    );
}
