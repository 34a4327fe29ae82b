//! Migrations against a real server: apply, re-apply, concurrent migrators, outdated and newer schemas.

mod common;

use common::{Async, Blocking, connect};
use jobq_core::{Error, Jobq, SCHEMA_VERSION};

#[tokio::test]
async fn migrations_apply_and_reapplying_is_a_no_op() {
    let db = jobq_tempdb::empty_database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    assert_eq!(
        jobq.schema_version().run(Async(&client)).await.unwrap(),
        None
    );
    assert!(matches!(
        jobq.check_schema().run(Async(&client)).await,
        Err(Error::SchemaMissing { .. })
    ));
    jobq.migrate().run(Async(&client)).await.unwrap();
    assert_eq!(
        jobq.check_schema().run(Async(&client)).await.unwrap(),
        SCHEMA_VERSION
    );
    jobq.migrate().run(Async(&client)).await.unwrap();
    let rows: i64 = client
        .query_one("SELECT count(*) FROM jobq.migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rows,
        i64::from(SCHEMA_VERSION),
        "one row per migration, none twice"
    );
}

#[test]
fn migrations_apply_through_a_blocking_executor_in_another_schema() {
    let db = jobq_tempdb::empty_database();
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    let jobq = Jobq::with_schema("app_jobs").unwrap();
    jobq.migrate().run_blocking(Blocking(&mut client)).unwrap();
    assert_eq!(
        jobq.check_schema()
            .run_blocking(Blocking(&mut client))
            .unwrap(),
        SCHEMA_VERSION
    );
    let found: Option<String> = client
        .query_one("SELECT to_regclass('app_jobs.jobs')::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(found.as_deref(), Some("app_jobs.jobs"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrators_do_not_collide() {
    let db = jobq_tempdb::empty_database();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let url = db.url().to_owned();
        tasks.push(tokio::spawn(async move {
            let client = connect(&url).await;
            Jobq::default().migrate().run(Async(&client)).await
        }));
    }
    for task in tasks {
        task.await.unwrap().expect("every migrator succeeds");
    }
    let client = connect(db.url()).await;
    let rows: i64 = client
        .query_one("SELECT count(*) FROM jobq.migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, i64::from(SCHEMA_VERSION));
}

#[tokio::test]
async fn outdated_and_newer_schemas_are_reported_with_what_to_do() {
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    client.batch_execute("DELETE FROM jobq.migrations WHERE version = (SELECT max(version) FROM jobq.migrations)").await.unwrap();
    let err = jobq.check_schema().run(Async(&client)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::SchemaOutdated {
                expected: SCHEMA_VERSION,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("jobq schema apply"), "{err}");

    client
        .batch_execute("INSERT INTO jobq.migrations (version, name) VALUES (9999, 'future')")
        .await
        .unwrap();
    let err = jobq.check_schema().run(Async(&client)).await.unwrap_err();
    assert!(
        matches!(err, Error::SchemaNewer { found: 9999, .. }),
        "{err:?}"
    );
    let err = jobq.migrate().run(Async(&client)).await.unwrap_err();
    assert!(
        matches!(err, Error::SchemaNewer { found: 9999, .. }),
        "migrate refuses too: {err:?}"
    );
    assert!(err.to_string().contains("upgrade jobq"), "{err}");
}

/// The SQL that builds schema `jobq` at `version` exactly as migrate.sql would have applied it: the
/// migrations table, each migration up to `version`, and its row.
fn schema_at(version: i32) -> String {
    let old = [
        (
            "0001_initial",
            include_str!("../sql/migrations/0001_initial.sql"),
        ),
        (
            "0002_reliable_worker",
            include_str!("../sql/migrations/0002_reliable_worker.sql"),
        ),
        (
            "0003_caller_safety",
            include_str!("../sql/migrations/0003_caller_safety.sql"),
        ),
        (
            "0004_known_tasks",
            include_str!("../sql/migrations/0004_known_tasks.sql"),
        ),
        (
            "0005_queue_pause",
            include_str!("../sql/migrations/0005_queue_pause.sql"),
        ),
        (
            "0006_trace_context",
            include_str!("../sql/migrations/0006_trace_context.sql"),
        ),
    ];
    let mut setup = String::from(
        "CREATE SCHEMA jobq;
         CREATE TABLE jobq.migrations (version integer PRIMARY KEY, name text NOT NULL,
                                       applied_at timestamptz NOT NULL DEFAULT now());",
    );
    for (n, (name, sql)) in (1..=version).zip(old) {
        let sql = sql
            .replace("{schema}", "\"jobq\"")
            .replace("{channel}", "jobq_jobq");
        setup.push_str(&format!(
            "{sql};\nINSERT INTO jobq.migrations (version, name) VALUES ({n}, '{name}');\n"
        ));
    }
    setup
}

/// Schema version 7 on a database at version 6 with backlogs: behind a running lock every waiting due job
/// is marked blocked (one scheduled for later is not), behind an idle lock all but its head (the first by
/// priority, then age); the rows are kept, and a worker then runs every lock's jobs in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_6_database_with_lock_backlogs_marks_them_blocked_and_runs_them_in_order() {
    use jobq_core::worker::{JobContext, Worker};
    use std::time::Duration;

    let db = jobq_tempdb::empty_database();
    let client = connect(db.url()).await;
    client.batch_execute(&schema_at(6)).await.unwrap();
    // Version 6's own functions: lock "busy" has a running head and 1,000 jobs behind it, and one for later;
    // lock "idle" three waiting jobs, the second of higher priority; and two jobs without a lock.
    client
        .batch_execute(
            r#"INSERT INTO jobq.workers (name, heartbeat_at) VALUES ('w', now());
               SELECT jobq.defer_job('{"task": "noop", "lock": "busy", "args": {"n": 0}}');
               SELECT count(*) FROM jobq.fetch_jobs('{"worker_id": 1, "queues": null, "tasks": null, "limit": 10}');
               SELECT jobq.defer_jobs(jsonb_agg(jsonb_build_object('task', 'noop', 'lock', 'busy',
                                                                   'args', jsonb_build_object('n', n))))
                   FROM generate_series(1, 1000) n;
               SELECT jobq.defer_job(jsonb_build_object('task', 'noop', 'lock', 'busy', 'args', '{}'::jsonb,
                                                        'scheduled_at', now() + interval '1 second'));
               SELECT jobq.defer_jobs('[{"task": "noop", "lock": "idle", "args": {"n": 1}},
                                        {"task": "noop", "lock": "idle", "args": {"n": 2}, "priority": 5},
                                        {"task": "noop", "lock": "idle", "args": {"n": 3}},
                                        {"task": "noop", "args": {}},
                                        {"task": "noop", "args": {}, "queue": "other"}]');"#,
        )
        .await
        .unwrap();
    let rows = "SELECT jsonb_agg(to_jsonb(j) - 'blocked' ORDER BY j.id)::text FROM jobq.jobs j";
    let before: String = client.query_one(rows, &[]).await.unwrap().get(0);
    let jobq = Jobq::default();
    jobq.migrate().run(Async(&client)).await.unwrap();
    assert_eq!(
        jobq.check_schema().run(Async(&client)).await.unwrap(),
        SCHEMA_VERSION
    );
    let after: String = client.query_one(rows, &[]).await.unwrap().get(0);
    assert_eq!(after, before, "every job kept as it was");
    let blocked: Vec<(String, i64)> = client
        .query(
            "SELECT lock, count(*) FROM jobq.jobs WHERE blocked GROUP BY lock ORDER BY lock",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(blocked, [("busy".to_owned(), 1000), ("idle".to_owned(), 2)]);
    let idle_head: i64 = client
        .query_one(
            "SELECT count(*) FROM jobq.jobs WHERE lock = 'idle' AND NOT blocked AND priority = 5",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(idle_head, 1, "the idle lock's head is not blocked");

    // The old worker's running head ends (through version 7's end), and a worker runs the rest.
    client
        .batch_execute(
            r#"SELECT jobq.complete('{"worker_id": 1, "jobs": [{"id": 1, "attempt": 1, "end": "succeeded"}]}');"#,
        )
        .await
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let worker = Worker::builder(jobq.clone(), common::Backend::connect(db.url()).await)
        .concurrency(8)
        .poll_interval(Duration::from_millis(50))
        .task(|_: Noop, _ctx: JobContext| async { Ok(()) })
        .build();
    let handle = tokio::spawn(worker.run_until(async move { stopped.cancelled().await }));
    let done = "SELECT count(*) FROM jobq.jobs WHERE status = 'succeeded'";
    for _ in 0..1200 {
        let n: i64 = client.query_one(done, &[]).await.unwrap().get(0);
        if n == 1007 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    handle.await.unwrap().unwrap();
    let n: i64 = client.query_one(done, &[]).await.unwrap().get(0);
    assert_eq!(n, 1007, "every job ran");
    // Each lock's jobs ran one after the other, in priority then age order.
    let order = |lock: &'static str| {
        let client = &client;
        async move {
            client
                .query(
                    "SELECT (args->>'n')::int FROM jobq.jobs WHERE lock = $1 AND args ? 'n'
                     ORDER BY started_at, id",
                    &[&lock],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, i32>(0))
                .collect::<Vec<i32>>()
        }
    };
    assert_eq!(order("busy").await, (0..=1000).collect::<Vec<i32>>());
    assert_eq!(order("idle").await, [2, 1, 3]);
}

/// An application role granted at version 6 (grants.sql then) keeps working after the owner migrates to
/// version 7: it defers into a lock, cancels a waiting job with a lock (which writes the new
/// `unsettled_locks`) and runs a worker that ends jobs with locks, with no grant run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_granted_at_version_6_keeps_working_after_version_7() {
    use jobq_core::prelude::*;
    use jobq_core::worker::{JobContext, Worker};
    use std::time::Duration;

    let db = jobq_tempdb::empty_database();
    let admin = connect(db.url()).await;
    admin.batch_execute(&schema_at(6)).await.unwrap();
    admin
        .batch_execute("CREATE ROLE jobq_old_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        .await
        .ok();
    // grants.sql as it was at version 6 (the same file: it has not changed since).
    let jobq = Jobq::default();
    admin
        .batch_execute(&jobq.grant_sql("jobq_old_app").unwrap())
        .await
        .unwrap();
    jobq.migrate().run(Async(&admin)).await.unwrap();

    let url = db
        .url()
        .replacen("postgres://postgres@", "postgres://jobq_old_app@", 1);
    let app = connect(&url).await;
    let locked = |n: i32| {
        let mut job = jobq_core::NewJob::new("noop", serde_json::json!({"n": n}));
        job.options.lock = Some("tenant".into());
        job
    };
    let first = jobq.defer_job(locked(1)).run(Async(&app)).await.unwrap();
    jobq.defer_batch([locked(2), locked(3)])
        .run(Async(&app))
        .await
        .unwrap();
    jobq.cancel(first).run(Async(&app)).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let worker = Worker::builder(jobq.clone(), common::Backend::connect(&url).await)
        .poll_interval(Duration::from_millis(50))
        .task(|_: Noop, _ctx: JobContext| async { Ok(()) })
        .build();
    let handle = tokio::spawn(worker.run_until(async move { stopped.cancelled().await }));
    let done = "SELECT count(*) FROM jobq.jobs WHERE status = 'succeeded'";
    for _ in 0..600 {
        let n: i64 = app.query_one(done, &[]).await.unwrap().get(0);
        if n == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    handle.await.unwrap().unwrap();
    let n: i64 = app.query_one(done, &[]).await.unwrap().get(0);
    assert_eq!(n, 2, "the jobs behind the cancelled head ran");
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Noop {}

impl jobq_core::Task for Noop {
    const NAME: &'static str = "noop";
}

/// A database at schema version 1, holding jobs in every state a running deployment has (waiting, with and
/// without a queueing lock, running on a worker, failed), migrates to the latest version with every job kept
/// as it was, and a worker then runs the waiting ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_with_jobs_migrates_and_keeps_them() {
    use jobq_core::prelude::*;
    use jobq_core::worker::{JobContext, Worker};
    use std::time::Duration;

    let db = jobq_tempdb::empty_database();
    let client = connect(db.url()).await;
    // Version 1 exactly as migrate.sql would have applied it: the migrations table, migration 1, its row.
    client.batch_execute(&schema_at(1)).await.unwrap();
    // Jobs written by version 1's own functions and by a version-1 worker.
    client
        .batch_execute(
            r#"SELECT jobq.defer_jobs('[{"task": "noop", "args": {"n": 1}},
                                        {"task": "noop", "args": {"n": 2}, "queueing_lock": "q"}]');
               SELECT jobq.defer_job('{"task": "noop", "args": {"n": 3}, "queue": "other"}');
               INSERT INTO jobq.workers (name, heartbeat_at) VALUES ('old worker', now());
               INSERT INTO jobq.jobs (task, status, attempts, started_at, worker_id)
                   VALUES ('noop', 'doing', 1, now(), (SELECT max(id) FROM jobq.workers));
               INSERT INTO jobq.jobs (task, status, attempts, finished_at, last_error, errors)
                   VALUES ('noop', 'failed', 1, now(), 'boom',
                           '[{"attempt": 1, "at": "2026-01-01T00:00:00Z", "error": "boom"}]');"#,
        )
        .await
        .unwrap();
    let jobq = Jobq::default();
    let err = jobq.check_schema().run(Async(&client)).await.unwrap_err();
    assert!(
        matches!(err, Error::SchemaOutdated { found: 1, .. }),
        "{err:?}"
    );
    // The rows as they were: version 6's `trace_context` aside, which is checked to be NULL below, and
    // version 7's `blocked` (no job of these has a lock).
    let rows = "SELECT jsonb_agg(to_jsonb(j) - 'trace_context' - 'blocked' ORDER BY j.id)::text \
                FROM jobq.jobs j";
    let before: String = client.query_one(rows, &[]).await.unwrap().get(0);

    jobq.migrate().run(Async(&client)).await.unwrap();
    assert_eq!(
        jobq.check_schema().run(Async(&client)).await.unwrap(),
        SCHEMA_VERSION
    );
    let after: String = client.query_one(rows, &[]).await.unwrap().get(0);
    assert_eq!(after, before, "every job kept as it was");
    let traced: i64 = client
        .query_one(
            "SELECT count(*) FROM jobq.jobs WHERE trace_context IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(traced, 0, "version 6: an old job has no trace context");
    let versions: Vec<i32> = client
        .query("SELECT version FROM jobq.migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    // Version 5's queue lag reads the old waiting jobs; no queue is paused by the migration.
    let lag = jobq.queue_lag().run(Async(&client)).await.unwrap();
    let due: Vec<(&str, i64, bool)> = lag
        .iter()
        .map(|l| (l.queue.as_str(), l.due, l.paused()))
        .collect();
    assert_eq!(due, [("default", 2, false), ("other", 1, false)]);
    // The migrated schema's deferrals see the old jobs: the old queueing lock is still taken.
    let again = jobq
        .defer(&Noop {})
        .queueing_lock("q")
        .run(Async(&client))
        .await;
    assert!(
        matches!(&again, Err(Error::AlreadyEnqueued { queueing_lock }) if queueing_lock == "q"),
        "{again:?}"
    );

    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let worker = Worker::builder(jobq.clone(), common::Backend::connect(db.url()).await)
        .poll_interval(Duration::from_millis(50))
        .task(|_: Noop, _ctx: JobContext| async { Ok(()) })
        .build();
    let handle = tokio::spawn(worker.run_until(async move { stopped.cancelled().await }));
    let waiting_done = "SELECT count(*) FROM jobq.jobs WHERE args ? 'n' AND status = 'succeeded'";
    for _ in 0..600 {
        let done: i64 = client.query_one(waiting_done, &[]).await.unwrap().get(0);
        if done == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    handle.await.unwrap().unwrap();
    let done: i64 = client.query_one(waiting_done, &[]).await.unwrap().get(0);
    assert_eq!(done, 3, "the worker ran the three waiting jobs");
    let failed: String = client
        .query_one(
            "SELECT status || ' ' || last_error FROM jobq.jobs WHERE last_error = 'boom'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(failed, "failed boom", "the failed job stays failed");
}

/// Schema version 6 on a database at version 5 that holds jobs: the new `trace_context` column is added
/// without rewriting the table (its file stays the same, so the migration costs no time per job), every old
/// job reads it as NULL, and the replaced deferral functions store it.
#[tokio::test]
async fn a_version_5_database_with_jobs_gains_trace_context_without_a_rewrite() {
    use jobq_core::prelude::*;

    let db = jobq_tempdb::empty_database();
    let client = connect(db.url()).await;
    // Versions 1 to 5 exactly as migrate.sql would have applied them.
    let setup = schema_at(5);
    client.batch_execute(&setup).await.unwrap();
    // Jobs written by version 5's own functions, a thousand of them, and a finished one.
    client
        .batch_execute(
            r#"SELECT jobq.defer_jobs(jsonb_agg(jsonb_build_object('task', 'noop', 'args', jsonb_build_object('n', n))))
                   FROM generate_series(1, 1000) n;
               SELECT jobq.defer_job('{"task": "noop", "queueing_lock": "q"}');
               INSERT INTO jobq.jobs (task, status, attempts, finished_at)
                   VALUES ('noop', 'succeeded', 1, now());"#,
        )
        .await
        .unwrap();
    let jobq = Jobq::default();
    let err = jobq.check_schema().run(Async(&client)).await.unwrap_err();
    assert!(
        matches!(err, Error::SchemaOutdated { found: 5, .. }),
        "{err:?}"
    );
    let file = "SELECT pg_relation_filenode('jobq.jobs')::text";
    let rows = "SELECT jsonb_agg(to_jsonb(j) - 'trace_context' - 'blocked' ORDER BY j.id)::text \
                FROM jobq.jobs j";
    let file_before: String = client.query_one(file, &[]).await.unwrap().get(0);
    let before: String = client.query_one(rows, &[]).await.unwrap().get(0);

    jobq.migrate().run(Async(&client)).await.unwrap();
    assert_eq!(
        jobq.check_schema().run(Async(&client)).await.unwrap(),
        SCHEMA_VERSION
    );
    let file_after: String = client.query_one(file, &[]).await.unwrap().get(0);
    assert_eq!(
        file_after, file_before,
        "adding the column did not rewrite the table"
    );
    let after: String = client.query_one(rows, &[]).await.unwrap().get(0);
    assert_eq!(after, before, "every job kept as it was");
    let traced: i64 = client
        .query_one(
            "SELECT count(*) FROM jobq.jobs WHERE trace_context IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(traced, 0);
    let listed = jobq
        .list(&JobFilter {
            limit: Some(5_000),
            ..JobFilter::default()
        })
        .run(Async(&client))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1002);
    assert!(listed.iter().all(|job| job.trace_context.is_none()));

    // The replaced functions store a trace context, one job or a batch, and the old queueing lock holds.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let one = jobq
        .defer(&Noop {})
        .trace_context(traceparent)
        .run(Async(&client))
        .await
        .unwrap();
    let batch = jobq
        .defer_batch([
            NewJob::new("noop", serde_json::json!({})).trace_context(traceparent),
            NewJob::new("noop", serde_json::json!({})),
        ])
        .run(Async(&client))
        .await
        .unwrap();
    let stored = |id| {
        let jobq = jobq.clone();
        let client = &client;
        async move { jobq.job(id).run(Async(client)).await.unwrap().trace_context }
    };
    assert_eq!(stored(one).await.as_deref(), Some(traceparent));
    assert_eq!(stored(batch[0]).await.as_deref(), Some(traceparent));
    assert_eq!(stored(batch[1]).await, None);
    let again = jobq
        .defer(&Noop {})
        .queueing_lock("q")
        .trace_context(traceparent)
        .run(Async(&client))
        .await;
    assert!(
        matches!(&again, Err(Error::AlreadyEnqueued { queueing_lock }) if queueing_lock == "q"),
        "{again:?}"
    );
}
