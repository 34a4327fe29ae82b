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
    let version_1 = include_str!("../sql/migrations/0001_initial.sql")
        .replace("{schema}", "\"jobq\"")
        .replace("{channel}", "jobq_jobq");
    client
        .batch_execute(&format!(
            "CREATE SCHEMA jobq;
             CREATE TABLE jobq.migrations (version integer PRIMARY KEY, name text NOT NULL,
                                           applied_at timestamptz NOT NULL DEFAULT now());
             {version_1}
             INSERT INTO jobq.migrations (version, name) VALUES (1, '0001_initial');"
        ))
        .await
        .unwrap();
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
    // The rows as they were: version 6's `trace_context` aside, which is checked to be NULL below.
    let rows =
        "SELECT jsonb_agg(to_jsonb(j) - 'trace_context' ORDER BY j.id)::text FROM jobq.jobs j";
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
    let mut setup = String::from(
        "CREATE SCHEMA jobq;
         CREATE TABLE jobq.migrations (version integer PRIMARY KEY, name text NOT NULL,
                                       applied_at timestamptz NOT NULL DEFAULT now());",
    );
    let old = [
        (
            1,
            "0001_initial",
            include_str!("../sql/migrations/0001_initial.sql"),
        ),
        (
            2,
            "0002_reliable_worker",
            include_str!("../sql/migrations/0002_reliable_worker.sql"),
        ),
        (
            3,
            "0003_caller_safety",
            include_str!("../sql/migrations/0003_caller_safety.sql"),
        ),
        (
            4,
            "0004_known_tasks",
            include_str!("../sql/migrations/0004_known_tasks.sql"),
        ),
        (
            5,
            "0005_queue_pause",
            include_str!("../sql/migrations/0005_queue_pause.sql"),
        ),
    ];
    for (version, name, sql) in old {
        let sql = sql
            .replace("{schema}", "\"jobq\"")
            .replace("{channel}", "jobq_jobq");
        setup.push_str(&format!(
            "{sql};\nINSERT INTO jobq.migrations (version, name) VALUES ({version}, '{name}');\n"
        ));
    }
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
    let rows =
        "SELECT jsonb_agg(to_jsonb(j) - 'trace_context' ORDER BY j.id)::text FROM jobq.jobs j";
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
