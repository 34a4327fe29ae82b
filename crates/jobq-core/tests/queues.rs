//! Steering queues against a real server: pause and resume (what running workers do), and queue lag.

mod common;

use common::{Async, Backend, connect};
use jobq_core::AsyncExecutor;
use jobq_core::prelude::*;
use jobq_core::worker::{JobContext, Worker};
use postgres::fallible_iterator::FallibleIterator;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Serialize, Deserialize)]
struct Noop {}

impl Task for Noop {
    const NAME: &'static str = "noop";
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

async fn status(client: &tokio_postgres::Client, id: JobId) -> Status {
    Jobq::default().status(id).run(Async(client)).await.unwrap()
}

/// A worker of `queues` (every queue when `None`) that polls only once an hour, so after its first fetch
/// only a notification makes it fetch again. It is LISTENing once its row is in `jobq.workers`.
async fn start_idle_worker(
    client: &tokio_postgres::Client,
    url: &str,
    queues: Option<&[&str]>,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), Error>>,
) {
    let mut builder = Worker::builder(Jobq::default(), Backend::connect(url).await)
        .poll_interval(Duration::from_secs(3600))
        .heartbeat_interval(Duration::from_millis(200))
        .task(|_: Noop, _ctx: JobContext| async { Ok(()) });
    if let Some(queues) = queues {
        builder = builder.queues(queues.iter().copied());
    }
    let worker = builder.build();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let handle = tokio::spawn(worker.run_until(async move { stopped.cancelled().await }));
    wait_for(client, "SELECT count(*) = 1 FROM jobq.workers").await;
    (stop, handle)
}

/// A running worker stops taking a paused queue's jobs while it runs the other queues' jobs, and takes
/// them once the queue is resumed: woken by the resume's notification, as it polls only once an hour.
async fn a_running_worker_honours_pause_and_resume(queues: Option<&[&str]>) {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let (stop, handle) = start_idle_worker(&client, db.url(), queues).await;

    assert!(jobq.pause_queue("slow").run(Async(&client)).await.unwrap());
    let slow = jobq
        .defer(&Noop {})
        .queue("slow")
        .run(Async(&client))
        .await
        .unwrap();
    let fast = jobq
        .defer(&Noop {})
        .queue("fast")
        .run(Async(&client))
        .await
        .unwrap();
    // The fast job was deferred after the slow one, so the fetch that took it saw both.
    wait_for(
        &client,
        &format!("SELECT status = 'succeeded' FROM jobq.jobs WHERE id = {fast}"),
    )
    .await;
    assert_eq!(
        status(&client, slow).await,
        Status::Todo,
        "a paused queue's job waits"
    );
    let again = jobq
        .defer(&Noop {})
        .queue("fast")
        .run(Async(&client))
        .await
        .unwrap();
    wait_for(
        &client,
        &format!("SELECT status = 'succeeded' FROM jobq.jobs WHERE id = {again}"),
    )
    .await;
    assert_eq!(status(&client, slow).await, Status::Todo, "still waiting");

    assert!(jobq.resume_queue("slow").run(Async(&client)).await.unwrap());
    wait_for(
        &client,
        &format!("SELECT status = 'succeeded' FROM jobq.jobs WHERE id = {slow}"),
    )
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_of_every_queue_honours_pause_and_resume() {
    a_running_worker_honours_pause_and_resume(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_of_chosen_queues_honours_pause_and_resume() {
    a_running_worker_honours_pause_and_resume(Some(&["slow", "fast"])).await;
}

/// How many jobs one fetch takes, from every queue or from `queues`.
async fn fetch(client: &tokio_postgres::Client, queues: Option<&[&str]>) -> i64 {
    let queues = queues.map(|q| serde_json::json!(q));
    let arg = serde_json::json!({ "worker_id": 1, "queues": queues, "tasks": null, "limit": 100 });
    client
        .query_one(
            "SELECT count(*) FROM jobq.fetch_jobs(($1::text)::jsonb)",
            &[&arg.to_string()],
        )
        .await
        .unwrap()
        .get(0)
}

/// A queue with no jobs can be paused; its future jobs wait, from every queue and from chosen queues. Pause
/// and resume say whether they changed anything, and `paused_queues` lists what is paused.
#[tokio::test]
async fn an_empty_queue_can_be_paused_and_its_future_jobs_wait() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let c = || Async(&client);
    assert!(jobq.paused_queues().run(c()).await.unwrap().is_empty());
    assert!(jobq.pause_queue("later").run(c()).await.unwrap());
    assert!(
        !jobq.pause_queue("later").run(c()).await.unwrap(),
        "paused already"
    );
    let paused = jobq.paused_queues().run(c()).await.unwrap();
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0].queue, "later");

    for queue in ["later", "later", "other"] {
        jobq.defer(&Noop {}).queue(queue).run(c()).await.unwrap();
    }
    assert_eq!(fetch(&client, Some(&["later"])).await, 0);
    assert_eq!(fetch(&client, None).await, 1, "only the other queue's job");
    assert_eq!(fetch(&client, Some(&["later", "other"])).await, 0);

    assert!(jobq.resume_queue("later").run(c()).await.unwrap());
    assert!(
        !jobq.resume_queue("later").run(c()).await.unwrap(),
        "running already"
    );
    assert!(
        !jobq.resume_queue("never_paused").run(c()).await.unwrap(),
        "never paused"
    );
    assert!(jobq.paused_queues().run(c()).await.unwrap().is_empty());
    assert_eq!(fetch(&client, Some(&["later"])).await, 2);

    // Paused again after a resume (its row is kept): it changes again.
    assert!(jobq.pause_queue("later").run(c()).await.unwrap());
    jobq.defer(&Noop {}).queue("later").run(c()).await.unwrap();
    assert_eq!(fetch(&client, None).await, 0);
}

/// A resume NOTIFYs the queue's name on jobq's channel, at commit; a pause and a resume that changes nothing
/// send nothing.
#[test]
fn a_resume_notifies_the_queue_at_commit() {
    let db = jobq_tempdb::database();
    let mut listener = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    let jobq = Jobq::default();
    listener
        .batch_execute(&format!("LISTEN {}", jobq.channel()))
        .unwrap();
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    let mut run =
        |q: jobq_core::Query<bool>| q.run_blocking(common::Blocking(&mut client)).unwrap();
    assert!(run(jobq.pause_queue("emails")));
    assert!(!run(jobq.resume_queue("other")));
    assert!(run(jobq.resume_queue("emails")));
    let payloads: Vec<String> = listener
        .notifications()
        .timeout_iter(Duration::from_secs(3))
        .iterator()
        .take(2)
        .map(|n| n.unwrap().payload().to_owned())
        .collect();
    assert_eq!(
        payloads,
        ["emails"],
        "one notification, for the resumed queue"
    );
}

/// Bad queue names are refused before any SQL is sent, in the caller's transaction, which stays usable.
#[tokio::test]
async fn bad_queue_names_are_refused_before_any_sql() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    client.batch_execute("BEGIN").await.unwrap();
    let long = "q".repeat(jobq_core::limits::MAX_NAME_BYTES + 1);
    for (name, says) in [("a\0b", "NUL"), (long.as_str(), "MAX_NAME_BYTES")] {
        for query in [jobq.pause_queue(name), jobq.resume_queue(name)] {
            match query.run(Async(&client)).await {
                Err(Error::InvalidInput(m)) => assert!(m.contains(says), "{m}"),
                other => panic!("refused with InvalidInput, not {other:?}"),
            }
        }
    }
    let rows: i64 = client
        .query_one("SELECT count(*) FROM jobq.queues", &[])
        .await
        .expect("the transaction is still usable")
        .get(0);
    assert_eq!(rows, 0);
    client.batch_execute("COMMIT").await.unwrap();
}

/// Queue lag counts waiting jobs due now and scheduled later and running jobs per queue, ignores finished
/// ones, gives the oldest due job's age (at least how long ago it was scheduled) and lists paused queues,
/// jobs or not, and queues whose only jobs are running.
#[tokio::test]
async fn queue_lag_counts_due_and_scheduled_jobs_and_the_oldest_age() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let c = || Async(&client);
    assert!(jobq.queue_lag().run(c()).await.unwrap().is_empty());

    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    jobq.defer(&Noop {})
        .queue("a")
        .at(hour_ago)
        .run(c())
        .await
        .unwrap();
    jobq.defer(&Noop {}).queue("a").run(c()).await.unwrap();
    jobq.defer(&Noop {})
        .queue("a")
        .after(Duration::from_secs(3600))
        .run(c())
        .await
        .unwrap();
    jobq.defer(&Noop {})
        .after(Duration::from_secs(60))
        .run(c())
        .await
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO jobq.jobs (queue, task, status, finished_at, scheduled_at)
             SELECT 'a', 'noop', 'succeeded', now(), now() - interval '1 day'
             FROM generate_series(1, 100);
             INSERT INTO jobq.jobs (queue, task, status, started_at, worker_id, scheduled_at)
             VALUES ('a', 'noop', 'doing', now(), 1, now() - interval '1 day'),
                    ('c', 'noop', 'doing', now(), 1, now() - interval '1 day'),
                    ('c', 'noop', 'doing', now(), 1, now() + interval '1 day')",
        )
        .await
        .unwrap();
    jobq.pause_queue("b").run(c()).await.unwrap();

    let lag = jobq.queue_lag().run(c()).await.unwrap();
    let queues: Vec<&str> = lag.iter().map(|l| l.queue.as_str()).collect();
    assert_eq!(queues, ["a", "b", "c", "default"], "{lag:?}");
    let (a, b, running_only, default) = (&lag[0], &lag[1], &lag[2], &lag[3]);
    assert_eq!((a.due, a.scheduled, a.running), (2, 1, 1), "{a:?}");
    assert!(
        a.oldest_due_age.unwrap() >= Duration::from_secs(3600),
        "{a:?}"
    );
    let oldest = a.oldest_due_at.unwrap();
    assert!(
        (oldest - hour_ago).abs() < chrono::Duration::milliseconds(1),
        "{a:?}"
    );
    assert!(!a.paused());
    assert_eq!((b.due, b.scheduled, b.running), (0, 0, 0), "{b:?}");
    assert_eq!((b.oldest_due_at, b.oldest_due_age), (None, None));
    assert!(b.paused(), "{b:?}");
    // Only running jobs: listed, none waiting, whatever their scheduled_at.
    assert_eq!(
        (
            running_only.due,
            running_only.scheduled,
            running_only.running
        ),
        (0, 0, 2),
        "{running_only:?}"
    );
    assert_eq!(
        (running_only.oldest_due_at, running_only.oldest_due_age),
        (None, None)
    );
    assert!(!running_only.paused());
    assert_eq!(
        (default.due, default.scheduled, default.running),
        (0, 1, 0),
        "{default:?}"
    );
    assert_eq!(default.oldest_due_age, None);

    jobq.resume_queue("b").run(c()).await.unwrap();
    let lag = jobq.queue_lag().run(c()).await.unwrap();
    assert!(
        lag.iter().all(|l| l.queue != "b"),
        "a resumed queue without jobs is gone: {lag:?}"
    );
    client
        .batch_execute(
            "UPDATE jobq.jobs SET status = 'succeeded', finished_at = now() WHERE queue = 'c'",
        )
        .await
        .unwrap();
    let lag = jobq.queue_lag().run(c()).await.unwrap();
    assert!(
        lag.iter().all(|l| l.queue != "c"),
        "a queue whose running jobs ended is gone: {lag:?}"
    );
}

/// An executor that records the statements it is given and answers each with no row: how a test gets the
/// SQL text an operation sends.
struct Recorder<'a>(&'a mut Vec<String>);

impl AsyncExecutor for Recorder<'_> {
    async fn query(
        &mut self,
        sql: &str,
        _arg: Option<&str>,
    ) -> Result<Vec<String>, jobq_core::ConnectorError> {
        self.0.push(sql.to_owned());
        Ok(Vec::new())
    }
}

/// Every plan node of an `EXPLAIN (FORMAT JSON)` document, depth first.
fn plan_nodes(node: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
    out.push(node.clone());
    for child in node["Plans"].as_array().into_iter().flatten() {
        plan_nodes(child, out);
    }
}

/// The queue gauges' statement stays cheap however many finished jobs the table holds: with 200,000 of
/// them (ANALYZE'd) beside a few waiting, blocked and running ones, its plan reads the jobs table only
/// through the partial indexes of live jobs (no sequential scan of jobs), and it still counts right.
#[tokio::test]
async fn queue_lag_reads_no_finished_job_however_many() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    client
        .batch_execute(
            "INSERT INTO jobq.jobs (queue, task, status, finished_at, scheduled_at)
             SELECT 'q' || (i % 10), 'noop', CASE WHEN i % 7 = 0 THEN 'failed' ELSE 'succeeded' END,
                    now(), now() - interval '1 day'
             FROM generate_series(1, 200000) i;
             INSERT INTO jobq.jobs (queue, task, scheduled_at)
             SELECT 'q' || (i % 3), 'noop', now() + (i - 10) * interval '1 minute'
             FROM generate_series(1, 20) i;
             INSERT INTO jobq.jobs (queue, task, status, started_at, worker_id, lock)
             VALUES ('q1', 'noop', 'doing', now(), 1, 'l'), ('only_running', 'noop', 'doing', now(), 1, NULL);
             INSERT INTO jobq.jobs (queue, task, lock, blocked) VALUES ('q1', 'noop', 'l', true);
             ANALYZE jobq.jobs;",
        )
        .await
        .unwrap();

    let mut sent = Vec::new();
    let nothing = jobq.queue_lag().run(Recorder(&mut sent)).await.unwrap();
    assert!(nothing.is_empty());
    let [sql] = sent.as_slice() else {
        panic!("queue_lag is one statement: {sent:?}")
    };
    let plan = client
        .simple_query(&format!("EXPLAIN (FORMAT JSON) {sql}"))
        .await
        .unwrap()
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("EXPLAIN answers a row");
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let mut nodes = Vec::new();
    plan_nodes(&plan[0]["Plan"], &mut nodes);
    let on_jobs: Vec<&serde_json::Value> = nodes
        .iter()
        .filter(|n| n["Relation Name"] == "jobs" || n["Index Name"].is_string())
        .collect();
    assert!(!on_jobs.is_empty(), "{plan:#}");
    for node in &on_jobs {
        assert_ne!(
            node["Node Type"], "Seq Scan",
            "a sequential scan of jobs: {plan:#}"
        );
    }
    let mut indexes: Vec<&str> = on_jobs
        .iter()
        .filter_map(|n| n["Index Name"].as_str())
        .collect();
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(
        indexes,
        ["jobs_doing_idx", "jobs_fetch_idx", "jobs_todo_lock_idx"],
        "{plan:#}"
    );

    let lag = jobq.queue_lag().run(Async(&client)).await.unwrap();
    let got: Vec<(&str, i64, i64, i64)> = lag
        .iter()
        .map(|l| (l.queue.as_str(), l.due, l.scheduled, l.running))
        .collect();
    // q0..q2 share 20 jobs scheduled from 9 minutes ago to 10 minutes ahead (i = 1..=20, due while i <= 10),
    // plus q1's blocked job (due) and its running lock head.
    let due = |q: i64| (1..=10).filter(|i| i % 3 == q).count() as i64;
    let later = |q: i64| (11..=20).filter(|i| i % 3 == q).count() as i64;
    assert_eq!(
        got,
        [
            ("only_running", 0, 0, 1),
            ("q0", due(0), later(0), 0),
            ("q1", due(1) + 1, later(1), 1),
            ("q2", due(2), later(2), 0),
        ],
        "{lag:?}"
    );
}
