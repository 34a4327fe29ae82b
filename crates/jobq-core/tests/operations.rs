//! Every job operation through a blocking and an async executor; the conformance suite through a minimal
//! tokio-postgres harness (each adapter runs the same suite through its own public API).

mod common;

use common::{Async, Blocking, connect};
use jobq_core::prelude::*;
use jobq_core::{CancelOutcome, Query, RetryOutcome};
use postgres::fallible_iterator::FallibleIterator;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Serialize, Deserialize)]
struct SendEmail {
    to: String,
}

impl Task for SendEmail {
    const NAME: &'static str = "send_email";
    fn options(&self) -> JobOptions {
        JobOptions {
            queue: Some("emails".into()),
            priority: Some(3),
            ..JobOptions::default()
        }
    }
}

#[test]
fn every_operation_through_a_blocking_executor() {
    let db = jobq_tempdb::database();
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    let jobq = Jobq::default();
    let id = jobq
        .defer(&SendEmail {
            to: "a@example.com".into(),
        })
        .run_blocking(Blocking(&mut client))
        .unwrap();
    let job = jobq.job(id).run_blocking(Blocking(&mut client)).unwrap();
    assert_eq!(
        (job.task.as_str(), job.queue.as_str(), job.priority),
        ("send_email", "emails", 3)
    );
    assert_eq!(job.args, serde_json::json!({"to": "a@example.com"}));
    let ids = jobq
        .defer_batch((0..3).map(|n| NewJob::new("t", serde_json::json!({ "n": n }))))
        .run_blocking(Blocking(&mut client))
        .unwrap();
    assert_eq!(ids.len(), 3);
    let listed = jobq
        .list(&JobFilter {
            task: Some("t".into()),
            ..JobFilter::default()
        })
        .run_blocking(Blocking(&mut client))
        .unwrap();
    assert_eq!(listed.iter().map(|j| j.id).collect::<Vec<_>>(), ids);
    assert_eq!(
        jobq.cancel(id).run_blocking(Blocking(&mut client)).unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(
        jobq.status(id).run_blocking(Blocking(&mut client)).unwrap(),
        Status::Cancelled
    );
    assert_eq!(
        jobq.retry(id).run_blocking(Blocking(&mut client)).unwrap(),
        RetryOutcome::Retried
    );
    assert_eq!(
        jobq.status(id).run_blocking(Blocking(&mut client)).unwrap(),
        Status::Todo
    );
}

#[tokio::test]
async fn every_operation_through_an_async_executor() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let id = jobq
        .defer(&SendEmail {
            to: "b@example.com".into(),
        })
        .queue("urgent")
        .at(later)
        .run(Async(&client))
        .await
        .unwrap();
    let job = jobq.job(id).run(Async(&client)).await.unwrap();
    assert_eq!(
        job.queue, "urgent",
        "the deferral overrides the task's queue"
    );
    assert!(
        (job.scheduled_at - later).num_milliseconds().abs() < 1,
        "{} vs {later}",
        job.scheduled_at
    );
    let ids = jobq
        .defer_batch([NewJob::new("t", serde_json::json!(null))])
        .run(Async(&client))
        .await
        .unwrap();
    assert_eq!(
        jobq.cancel(ids[0])
            .delete()
            .run(Async(&client))
            .await
            .unwrap(),
        CancelOutcome::Deleted
    );
    assert!(matches!(
        jobq.status(ids[0]).run(Async(&client)).await,
        Err(Error::JobNotFound(_))
    ));
    let all = jobq
        .list(&JobFilter::default())
        .run(Async(&client))
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
}

struct Minimal;

struct MinimalConn(tokio_postgres::Client);

struct MinimalPool(String);

impl jobq_testkit::Harness for Minimal {
    const CONNECTOR: &'static str = "test";
    type Conn = MinimalConn;
    type Pool = MinimalPool;
    async fn connect(url: &str) -> MinimalConn {
        MinimalConn(connect(url).await)
    }
    async fn pool(url: &str) -> MinimalPool {
        MinimalPool(url.to_owned())
    }
}

impl jobq_testkit::CallerConnection for MinimalConn {
    async fn begin(&mut self) {
        self.0.batch_execute("BEGIN").await.unwrap();
    }
    async fn commit(&mut self) {
        self.0.batch_execute("COMMIT").await.unwrap();
    }
    async fn rollback(&mut self) {
        self.0.batch_execute("ROLLBACK").await.unwrap();
    }
    async fn sql(&mut self, sql: &str) -> Result<Option<String>, String> {
        let rows = self.0.query(sql, &[]).await.map_err(|e| e.to_string())?;
        Ok(rows
            .first()
            .and_then(|r| r.columns().first().map(|_| r.get(0))))
    }
    async fn run<T: Send + 'static>(&mut self, query: Query<T>) -> Result<T, Error> {
        query.run(Async(&self.0)).await
    }
}

impl jobq_testkit::PooledConnection for MinimalPool {
    async fn run<T: Send + 'static>(&self, query: Query<T>) -> Result<T, Error> {
        let client = connect(&self.0).await;
        query.run(Async(&client)).await
    }
}

jobq_testkit::conformance_tests!(Minimal);

impl jobq_testkit::WorkerHarness for Minimal {
    type Backend = common::Backend;
    const LISTENS: bool = true;
    async fn backend(url: &str) -> common::Backend {
        common::Backend::connect(url).await
    }
}

jobq_testkit::worker_tests!(Minimal);

/// How many tiny jobs the huge batch holds, and the most client memory it may take beyond what the process
/// had before it: the statement text, the driver's copy of it and the ids, not a `serde_json::Value` per
/// job (about 0.9 kB each).
const HUGE_BATCH: usize = 1_000_000;
const HUGE_BATCH_MAX_MIB: u64 = 300;

/// The peak resident memory of this process so far, in KiB (`VmHWM`).
fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// One `defer_batch` of [`HUGE_BATCH`] tiny jobs, built lazily as a caller would, `(0..n).map(…)`, takes at
/// most [`HUGE_BATCH_MAX_MIB`] of client memory, in one statement (all or nothing), and stores every job. The
/// batch runs in a process of its own (this test binary again, running only [`huge_batch_in_a_process`]),
/// so the peak is the batch's alone.
#[test]
fn a_huge_batch_takes_bounded_client_memory() {
    let db = jobq_tempdb::database();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "huge_batch_in_a_process",
            "--ignored",
            "--nocapture",
        ])
        .env("JOBQ_HUGE_BATCH_URL", db.url())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let grew_kib: u64 = said
        .lines()
        .find_map(|l| l.strip_prefix("huge batch peak growth KiB: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no figure in {said}"));
    println!(
        "{HUGE_BATCH} jobs in one defer_batch: the client's peak grew by {} MiB ({} bytes a job)",
        grew_kib / 1024,
        grew_kib * 1024 / HUGE_BATCH as u64
    );
    assert!(
        grew_kib <= HUGE_BATCH_MAX_MIB * 1024,
        "{HUGE_BATCH} tiny jobs took {} MiB of client memory, more than {HUGE_BATCH_MAX_MIB} MiB",
        grew_kib / 1024
    );
}

/// The measured half of [`a_huge_batch_takes_bounded_client_memory`], which runs it in a process of its own.
#[test]
#[ignore = "run by a_huge_batch_takes_bounded_client_memory, in a process of its own"]
fn huge_batch_in_a_process() {
    let Ok(url) = std::env::var("JOBQ_HUGE_BATCH_URL") else {
        return;
    };
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let jobq = Jobq::default();
    jobq.check_schema()
        .run_blocking(Blocking(&mut client))
        .unwrap();
    let before = peak_kib();
    let ids = jobq
        .defer_batch((0..HUGE_BATCH).map(|n| NewJob::new("t", serde_json::json!({ "n": n }))))
        .run_blocking(Blocking(&mut client))
        .unwrap();
    let grew = peak_kib().saturating_sub(before);
    assert_eq!(ids.len(), HUGE_BATCH);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in input order");
    drop(ids);
    let stored: i64 = client
        .query_one("SELECT count(*) FROM jobq.jobs", &[])
        .unwrap()
        .get(0);
    assert_eq!(stored, HUGE_BATCH as i64);
    println!("huge batch peak growth KiB: {grew}");
}

/// A batch stores every field of every job exactly as one deferral per job stores it (schema 9 sends a batch
/// as a text array literal, a single job as JSON): awkward arguments and names (quotes, backslashes, braces,
/// commas, `NULL` as a name, non-ASCII, null arguments), every option, a schedule with microseconds, a
/// trace context; and a batch holding a lock among plain jobs, which the client rebuilds as JSON for
/// `defer_jobs`. The ids come back in input order. `defer_columns` itself refuses lock rows.
#[tokio::test]
async fn a_batch_stores_every_field_as_single_deferrals_do() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let at = chrono::DateTime::parse_from_rfc3339("2031-05-06T07:08:09.123456Z")
        .unwrap()
        .to_utc();
    let job = |task: &str, args: serde_json::Value, options: JobOptions| NewJob {
        task: task.into(),
        args,
        options,
    };
    let plain = vec![
        job("t", serde_json::json!({"n": 1}), JobOptions::default()),
        job(
            "q\"uo\\te{,}",
            serde_json::json!({"s": "a\"b\\c{d}, e", "u": "é€😀", "l": [1, null, {"x": []}]}),
            JobOptions::default(),
        ),
        job("NULL", serde_json::json!(null), JobOptions::default()),
        job(
            "opts",
            serde_json::json!("text"),
            JobOptions {
                queue: Some("NULL".into()),
                priority: Some(-7),
                scheduled_at: Some(at),
                trace_context: Some(
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
                ),
                ..JobOptions::default()
            },
        ),
        job("empty", serde_json::json!({}), JobOptions::default()),
    ];
    let mut with_lock = plain.clone();
    with_lock.insert(
        2,
        job(
            "locked",
            serde_json::json!([1]),
            JobOptions {
                lock: Some("l,\"{}\"".into()),
                queue: Some("other".into()),
                ..JobOptions::default()
            },
        ),
    );
    let fields = "SELECT jsonb_agg(to_jsonb(j) - 'id' - 'created_at' - 'scheduled_at' - 'blocked' \
                  || jsonb_build_object('later', j.scheduled_at > now() + interval '1 day', \
                                        'at', CASE WHEN j.scheduled_at > now() + interval '1 day' \
                                              THEN j.scheduled_at END) ORDER BY j.id)::text \
                  FROM jobq.jobs j WHERE j.id = ANY ($1)";
    for batch in [plain, with_lock] {
        let mut singles = Vec::new();
        for j in batch.clone() {
            singles.push(jobq.defer_job(j).run(Async(&client)).await.unwrap().0);
        }
        let ids: Vec<i64> = jobq
            .defer_batch(batch.clone())
            .run(Async(&client))
            .await
            .unwrap()
            .into_iter()
            .map(|id| id.0)
            .collect();
        assert_eq!(ids.len(), batch.len());
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in input order");
        let tasks: Vec<String> = client
            .query(
                "SELECT task FROM jobq.jobs WHERE id = ANY ($1) ORDER BY id",
                &[&ids],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let wanted: Vec<&str> = batch.iter().map(|j| j.task.as_str()).collect();
        assert_eq!(tasks, wanted, "each id is its job's");
        let single: String = client.query_one(fields, &[&singles]).await.unwrap().get(0);
        let batched: String = client.query_one(fields, &[&ids]).await.unwrap().get(0);
        assert_eq!(batched, single);
    }
    // An empty batch inserts nothing and answers no ids.
    let none = jobq
        .defer_batch(Vec::new())
        .run(Async(&client))
        .await
        .unwrap();
    assert!(none.is_empty());
    let refused = client
        .query_one(
            r#"SELECT jobq.defer_columns('{{"t"},{"1"},{NULL},{NULL},{NULL},{NULL},{"l"}}')"#,
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PARAMETER_VALUE),
        "{refused}"
    );
}

/// A large batch (schema 11 inserts it without sorting) gives each job the id at its place in the batch,
/// with its own options, and NOTIFYs each of its queues once at commit: only the default queue when no job
/// names one, every distinct queue (the default among them) when some do, and nothing for an empty batch.
#[test]
fn a_large_batch_keeps_each_job_in_its_place_and_notifies_its_queues() {
    const JOBS: usize = 5_000;
    let db = jobq_tempdb::database();
    let jobq = Jobq::default();
    let mut listener = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    listener
        .batch_execute(&format!("LISTEN {}", jobq.channel()))
        .unwrap();
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    let job = |i: usize, named: bool| NewJob {
        task: "t".into(),
        args: serde_json::json!({ "i": i }),
        options: JobOptions {
            queue: (named && i.is_multiple_of(5)).then(|| format!("q{}", i % 3)),
            priority: (named && i.is_multiple_of(11)).then(|| i32::try_from(i % 7).unwrap()),
            ..JobOptions::default()
        },
    };
    for (named, queues) in [
        (false, vec!["default"]),
        (true, vec!["default", "q0", "q1", "q2"]),
    ] {
        let batch: Vec<NewJob> = (0..JOBS).map(|i| job(i, named)).collect();
        let ids: Vec<i64> = jobq
            .defer_batch(batch.clone())
            .run_blocking(Blocking(&mut client))
            .unwrap()
            .into_iter()
            .map(|id| id.0)
            .collect();
        assert_eq!(ids.len(), JOBS);
        for row in client
            .query(
                "SELECT j.id, (j.args->>'i')::integer, j.queue, j.priority \
                 FROM jobq.jobs j WHERE j.id = ANY ($1)",
                &[&ids],
            )
            .unwrap()
        {
            let (id, i): (i64, i32) = (row.get(0), row.get(1));
            let i = usize::try_from(i).unwrap();
            assert_eq!(ids[i], id, "job {i} has the id at its place");
            let options = &batch[i].options;
            assert_eq!(
                row.get::<_, String>(2),
                options.queue.as_deref().unwrap_or("default")
            );
            assert_eq!(row.get::<_, i32>(3), options.priority.unwrap_or(0));
        }
        let mut heard: Vec<String> = listener
            .notifications()
            .timeout_iter(Duration::from_secs(2))
            .iterator()
            .map(|n| n.unwrap().payload().to_owned())
            .collect();
        heard.sort();
        assert_eq!(heard, queues, "one notification per queue of the batch");
    }
    let none: String = client
        .query_one("SELECT jobq.defer_columns('{}')", &[])
        .unwrap()
        .get(0);
    assert_eq!(none, "{}");
    let heard = listener
        .notifications()
        .timeout_iter(Duration::from_secs(1))
        .iterator()
        .count();
    assert_eq!(heard, 0, "an empty batch notifies no queue");
}
