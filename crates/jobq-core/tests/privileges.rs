//! A role with exactly the documented grants (no superuser, no DDL) can use every operation (pausing and
//! resuming queues too) and run a worker.

mod common;

use common::{Async, Backend, connect};
use jobq_core::prelude::*;
use jobq_core::worker::{JobContext, Worker};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Serialize, Deserialize)]
struct Noop {}

impl Task for Noop {
    const NAME: &'static str = "noop";
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_role_with_the_documented_grants_suffices() {
    let db = jobq_tempdb::database();
    let admin = connect(db.url()).await;
    let jobq = Jobq::default();
    admin
        .batch_execute("CREATE ROLE jobq_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        .await
        .ok();
    admin
        .batch_execute(&jobq.grant_sql("jobq_app").unwrap())
        .await
        .unwrap();
    let url = db
        .url()
        .replacen("postgres://postgres@", "postgres://jobq_app@", 1);
    let app = connect(&url).await;
    let denied = app.batch_execute("CREATE TABLE jobq.sneaky (x int)").await;
    assert!(denied.is_err(), "no DDL for the application role");

    let id = jobq.defer(&Noop {}).run(Async(&app)).await.unwrap();
    jobq.defer_batch([NewJob::new("noop", serde_json::json!({}))])
        .run(Async(&app))
        .await
        .unwrap();
    assert_eq!(
        jobq.check_schema().run(Async(&app)).await.unwrap(),
        jobq_core::SCHEMA_VERSION
    );
    jobq.list(&JobFilter::default())
        .run(Async(&app))
        .await
        .unwrap();
    jobq.queue_counts().run(Async(&app)).await.unwrap();
    assert!(jobq.pause_queue("held").run(Async(&app)).await.unwrap());
    let held = jobq
        .defer(&Noop {})
        .queue("held")
        .run(Async(&app))
        .await
        .unwrap();
    assert_eq!(
        jobq.paused_queues().run(Async(&app)).await.unwrap().len(),
        1
    );
    let lag = jobq.queue_lag().run(Async(&app)).await.unwrap();
    assert!(
        lag.iter().any(|l| l.queue == "held" && l.paused()),
        "{lag:?}"
    );
    assert!(jobq.resume_queue("held").run(Async(&app)).await.unwrap());

    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let worker = Worker::builder(jobq.clone(), Backend::connect(&url).await)
        .poll_interval(Duration::from_millis(50))
        .task(|_: Noop, _ctx: JobContext| async { Ok(()) })
        .build();
    let handle = tokio::spawn(worker.run_until(async move { stopped.cancelled().await }));
    for _ in 0..600 {
        if jobq.status(id).run(Async(&app)).await.unwrap() == Status::Succeeded
            && jobq.status(held).run(Async(&app)).await.unwrap() == Status::Succeeded
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    handle.await.unwrap().unwrap();
    assert_eq!(
        jobq.status(id).run(Async(&app)).await.unwrap(),
        Status::Succeeded
    );
    assert_eq!(
        jobq.status(held).run(Async(&app)).await.unwrap(),
        Status::Succeeded,
        "the resumed queue's job ran"
    );
    assert_eq!(
        jobq.retry(id).run(Async(&app)).await.unwrap(),
        jobq_core::RetryOutcome::Retried
    );
    jobq.cancel(id).delete().run(Async(&app)).await.unwrap();
    // Cancelling a waiting job with a lock leaves the lock to be settled (migration 7's unsettled_locks).
    let mut locked = NewJob::new("noop", serde_json::json!({}));
    locked.options.lock = Some("tenant".into());
    let locked = jobq.defer_job(locked).run(Async(&app)).await.unwrap();
    jobq.cancel(locked).run(Async(&app)).await.unwrap();
    jobq.prune(Duration::ZERO).run(Async(&app)).await.unwrap();
}

/// The application role reads the schema version but cannot change it: with the documented grants it can
/// neither update, insert nor delete rows of `jobq.migrations`, nor truncate it, and it still defers, runs
/// a worker and prunes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_role_cannot_rewrite_the_schema_version() {
    let db = jobq_tempdb::database();
    let admin = connect(db.url()).await;
    let jobq = Jobq::default();
    admin
        .batch_execute("CREATE ROLE jobq_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        .await
        .ok();
    admin
        .batch_execute(&jobq.grant_sql("jobq_app").unwrap())
        .await
        .unwrap();
    let url = db
        .url()
        .replacen("postgres://postgres@", "postgres://jobq_app@", 1);
    let app = connect(&url).await;
    for write in [
        "UPDATE jobq.migrations SET version = 999 WHERE version = 1",
        "DELETE FROM jobq.migrations",
        "INSERT INTO jobq.migrations (version, name) VALUES (999, 'forged')",
        "TRUNCATE jobq.migrations",
    ] {
        let denied = app.batch_execute(write).await.expect_err(write);
        assert_eq!(
            denied.as_db_error().map(|e| e.code().code()),
            Some("42501"),
            "{write}: {denied}"
        );
    }
    assert_eq!(
        jobq.check_schema().run(Async(&app)).await.unwrap(),
        jobq_core::SCHEMA_VERSION,
        "the version is still read"
    );

    let id = jobq.defer(&Noop {}).run(Async(&app)).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let worker = Worker::builder(jobq.clone(), Backend::connect(&url).await)
        .poll_interval(Duration::from_millis(50))
        .task(|_: Noop, _ctx: JobContext| async { Ok(()) })
        .build();
    let handle = tokio::spawn(worker.run_until(async move { stopped.cancelled().await }));
    for _ in 0..600 {
        if jobq.status(id).run(Async(&app)).await.unwrap() == Status::Succeeded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    handle.await.unwrap().unwrap();
    assert_eq!(
        jobq.status(id).run(Async(&app)).await.unwrap(),
        Status::Succeeded
    );
    assert_eq!(
        jobq.prune(Duration::ZERO).run(Async(&app)).await.unwrap(),
        1
    );
    let versions: i64 = admin
        .query_one("SELECT count(*) FROM jobq.migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, i64::from(jobq_core::SCHEMA_VERSION));
}
