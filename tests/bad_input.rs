//! Bad input the other suites do not cover (see the conformance suite for quotes, unicode, names at the
//! byte limit, extreme priorities, and the values jobq refuses before any SQL, and
//! `jobq-core/tests/worker.rs` for unknown tasks and bad arguments): a 10 MB argument payload, schedules in
//! the year 1000 and the year 9999, arguments nested 10,000 deep by another writer, and schema names that
//! an unquoted LISTEN would choke on. Through the tokio-postgres adapter, a real server and a real worker.

use jobq_core::prelude::*;
use jobq_core::worker::{Backend, JobContext, Worker};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobq_tests::connect;

/// Polls `sql` until it is true, for at most a minute.
async fn wait_for(client: &tokio_postgres::Client, sql: &str) {
    jobq_tests::wait_until(client, sql, Duration::from_secs(60)).await;
}

struct Running {
    stop: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), Error>>,
}

impl Running {
    fn start<B: Backend>(worker: Worker<B>) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let handle = tokio::spawn(worker.run_until(async move { stopped.cancelled().await }));
        Running { stop, handle }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.handle.await.unwrap().expect("the worker ends cleanly");
    }
}

/// Carries a large text.
#[derive(Debug, Serialize, Deserialize)]
struct Big {
    blob: String,
}

impl Task for Big {
    const NAME: &'static str = "big";
}

/// 10 MB of varied text (every printable ASCII character, and multi-byte ones), so truncation or
/// re-encoding anywhere would show.
fn ten_mb() -> String {
    let pattern: String = (0x20u8..0x7f)
        .map(char::from)
        .chain("äé✓𝄞\n\t\"\\".chars())
        .collect();
    let mut blob = String::with_capacity(10 << 20);
    while blob.len() < 10 << 20 {
        blob.push_str(&pattern);
    }
    blob
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mb_argument_is_stored_intact_and_run() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let blob = ten_mb();
    let id = jobq
        .defer(&Big { blob: blob.clone() })
        .run(&client)
        .await
        .unwrap();
    let intact: bool = client
        .query_one(
            "SELECT args->>'blob' = $1 FROM jobq.jobs WHERE id = $2",
            &[&blob, &id.0],
        )
        .await
        .unwrap()
        .get(0);
    assert!(intact, "the stored argument is the deferred one");
    let read = jobq.job(id).run(&client).await.unwrap();
    assert_eq!(read.args["blob"].as_str(), Some(blob.as_str()));

    let seen = Arc::new(Mutex::new(None));
    let backend = jobq_tokio_postgres::PoolExecutor::connect(db.url(), 4).unwrap();
    let worker = Worker::builder(jobq.clone(), backend)
        .poll_interval(Duration::from_millis(50))
        .task({
            let seen = seen.clone();
            move |big: Big, _ctx: JobContext| {
                let seen = seen.clone();
                async move {
                    *seen.lock().unwrap() = Some(big.blob);
                    Ok(())
                }
            }
        })
        .build();
    let worker = Running::start(worker);
    wait_for(
        &client,
        &format!("SELECT status = 'succeeded' FROM jobq.jobs WHERE id = {id}"),
    )
    .await;
    worker.stop().await;
    let seen = seen.lock().unwrap().take().expect("the handler ran");
    assert!(seen == blob, "the handler got the whole argument");
}

/// Records the schedules it ran.
#[derive(Debug, Serialize, Deserialize)]
struct When {
    label: String,
}

impl Task for When {
    const NAME: &'static str = "when";
}

fn utc(year: i32, month: u32, day: u32, h: u32, m: u32, s: u32) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc
        .with_ymd_and_hms(year, month, day, h, m, s)
        .single()
        .unwrap()
}

/// A job scheduled in the year 1000 runs at once, one scheduled at the end of the year 9999 waits, and
/// both schedules read back exactly, with the server in time zone `zone`.
async fn schedules_far_away(zone: &str) {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    client
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET timezone = '{zone}'",
            db.name()
        ))
        .await
        .unwrap();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let (past, future) = (utc(1000, 1, 1, 0, 0, 0), utc(9999, 12, 31, 23, 59, 59));
    let waits = jobq
        .defer(&When {
            label: "future".into(),
        })
        .at(future)
        .run(&client)
        .await
        .unwrap();
    let ancient = jobq
        .defer(&When {
            label: "past".into(),
        })
        .at(past)
        .run(&client)
        .await
        .unwrap();
    let now = jobq
        .defer(&When {
            label: "now".into(),
        })
        .run(&client)
        .await
        .unwrap();
    let stored = |id: JobId| {
        let jobq = jobq.clone();
        let client = &client;
        async move { jobq.job(id).run(client).await }
    };
    assert_eq!(stored(ancient).await.unwrap().scheduled_at, past, "{zone}");
    assert_eq!(stored(waits).await.unwrap().scheduled_at, future, "{zone}");

    let ran = Arc::new(Mutex::new(Vec::new()));
    let backend = jobq_tokio_postgres::PoolExecutor::connect(db.url(), 4).unwrap();
    let worker = Worker::builder(jobq.clone(), backend)
        .concurrency(1)
        .poll_interval(Duration::from_millis(50))
        .task({
            let ran = ran.clone();
            move |when: When, _ctx: JobContext| {
                let ran = ran.clone();
                async move {
                    ran.lock().unwrap().push(when.label);
                    Ok(())
                }
            }
        })
        .build();
    let worker = Running::start(worker);
    wait_for(
        &client,
        &format!(
            "SELECT count(*) = 2 FROM jobq.jobs WHERE id IN ({ancient}, {now}) AND status = 'succeeded'"
        ),
    )
    .await;
    worker.stop().await;
    assert_eq!(
        *ran.lock().unwrap(),
        ["past", "now"],
        "{zone}: the ancient schedule ran first (same priority, older id), the future one not at all"
    );
    let waiting = stored(waits).await.unwrap();
    assert_eq!(
        (waiting.status, waiting.scheduled_at),
        (Status::Todo, future),
        "{zone}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_in_the_year_1000_run_at_once_and_in_9999_wait() {
    schedules_far_away("UTC").await;
}

/// The same with a server time zone whose offset in the year 1000 has seconds (local mean time):
/// PostgreSQL writes `1000-01-01T00:19:32+00:19:32`, beyond RFC 3339, and jobq reads it all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_in_the_year_1000_with_a_local_mean_time_zone() {
    schedules_far_away("Europe/Amsterdam").await;
}

/// How deep `{"a": {"a": …}}` goes, counted without recursion.
fn depth_of(mut value: &serde_json::Value) -> usize {
    let mut depth = 0;
    while let Some(inner) = value.get("a") {
        (value, depth) = (inner, depth + 1);
    }
    depth
}

/// Takes `value` apart without recursion: a `serde_json::Value`'s own drop recurses once per level, which
/// 10,000 levels would take more stack for than a test thread has.
fn drop_flat(value: serde_json::Value) {
    let mut stack = vec![value];
    while let Some(mut value) = stack.pop() {
        match &mut value {
            serde_json::Value::Array(items) => stack.append(items),
            serde_json::Value::Object(map) => {
                stack.extend(std::mem::take(map).into_iter().map(|(_, v)| v));
            }
            _ => {}
        }
    }
}

/// Arguments nested 10,000 deep, far past serde_json's default limit of 128 and jobq's own
/// `MAX_ARGS_DEPTH` (PostgreSQL stores them), written with SQL as another writer could: `list` still
/// returns every job, and `job` and `status` read this one, without overflowing the stack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_nested_10_000_deep_by_another_writer_are_read() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let first = jobq
        .defer_job(NewJob::new("t", serde_json::json!({})))
        .run(&client)
        .await
        .unwrap();
    let depth = 10_000;
    let text = format!("{}1{}", r#"{"a": "#.repeat(depth), "}".repeat(depth));
    let deep: i64 = client
        .query_one(
            "INSERT INTO jobq.jobs (task, args) VALUES ('deep', $1::text::jsonb) RETURNING id",
            &[&text],
        )
        .await
        .unwrap()
        .get(0);
    let deep = JobId(deep);

    let mut listed = jobq.list(&JobFilter::default()).run(&client).await.unwrap();
    assert_eq!(
        listed.iter().map(|j| j.id).collect::<Vec<_>>(),
        [first, deep]
    );
    assert_eq!(depth_of(&listed[1].args), depth);
    for job in &mut listed {
        drop_flat(std::mem::take(&mut job.args));
    }
    let mut read = jobq.job(deep).run(&client).await.unwrap();
    assert_eq!((read.task.as_str(), depth_of(&read.args)), ("deep", depth));
    drop_flat(std::mem::take(&mut read.args));
    assert_eq!(jobq.status(deep).run(&client).await.unwrap(), Status::Todo);
}

#[test]
fn schema_names_that_need_quoting_are_refused_clearly() {
    for bad in [
        "MyJobs",
        "jobs-2",
        "a\"b",
        "x y",
        "jobs;drop",
        "ünï",
        "2jobs",
        "",
        &"a".repeat(41),
    ] {
        let err = Jobq::with_schema(bad).expect_err(bad);
        let message = err.to_string();
        assert!(matches!(err, Error::InvalidInput(_)), "{bad:?}: {err:?}");
        assert!(
            message.contains(&format!("{bad:?}")) && message.contains("a-z, 0-9 and _"),
            "the message names the schema and the rule: {message}"
        );
    }
}

/// Schemas that are valid but awkward for LISTEN: a reserved word (`user`, which an unquoted `LISTEN user`
/// would reject were it the channel) and the longest name allowed, whose channels come near PostgreSQL's
/// 63-byte limit. jobq migrates them, the adapter's LISTEN receives their notifications, and a worker
/// runs their jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_valid_schemas_notify_and_run() {
    let longest = format!("s{}", "x".repeat(39));
    for schema in ["user", "select", longest.as_str()] {
        let db = jobq_tempdb::empty_database();
        let client = connect(db.url()).await;
        let jobq = Jobq::with_schema(schema).unwrap();
        assert!(jobq.abort_channel().len() <= 63, "{}", jobq.abort_channel());
        jobq.migrate().run(&client).await.unwrap();
        let backend = jobq_tokio_postgres::PoolExecutor::connect(db.url(), 4).unwrap();
        let mut notifications = backend
            .listen(vec![jobq.channel().to_owned(), jobq.abort_channel()])
            .await
            .unwrap();
        let id = jobq
            .defer(&When {
                label: schema.into(),
            })
            .queue("awkward")
            .run(&client)
            .await
            .unwrap();
        let n = tokio::time::timeout(Duration::from_secs(30), notifications.recv())
            .await
            .expect("a notification within 30 s")
            .expect("the LISTEN connection is up");
        assert_eq!(
            (n.channel.as_str(), n.payload.as_str()),
            (jobq.channel(), "awkward"),
            "{schema}"
        );
        drop(notifications);
        let worker = Worker::builder(jobq.clone(), backend)
            .poll_interval(Duration::from_millis(50))
            .task(|_: When, _ctx: JobContext| async move { Ok(()) })
            .build();
        let worker = Running::start(worker);
        wait_for(
            &client,
            &format!("SELECT status = 'succeeded' FROM \"{schema}\".jobs WHERE id = {id}"),
        )
        .await;
        worker.stop().await;
        assert_eq!(
            jobq.status(id).run(&client).await.unwrap(),
            Status::Succeeded
        );
    }
}
