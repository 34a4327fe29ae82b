//! Every job operation through a blocking and an async executor; the conformance suite through a minimal
//! tokio-postgres harness (each adapter runs the same suite through its own public API).

mod common;

use common::{Async, Blocking, connect};
use jobq_core::prelude::*;
use jobq_core::{CancelOutcome, Query, RetryOutcome};
use serde::{Deserialize, Serialize};

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
