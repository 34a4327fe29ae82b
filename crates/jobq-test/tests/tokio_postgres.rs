//! jobq-test's helpers through an async adapter, tokio-postgres: the assertions inside the caller's open
//! transaction and after it, their failure messages, and `drain` with handlers that defer, fail and retry.

use jobq_core::prelude::*;
use jobq_core::worker::{JobContext, JobError, RetryStrategy, Worker};
use jobq_test::{DrainSummary, Expect, assert_deferred, deferred_jobs, drain, refute_deferred};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Serialize, Deserialize)]
struct SendEmail {
    to: String,
}
impl Task for SendEmail {
    const NAME: &'static str = "send_email";
}

#[derive(Debug, Serialize, Deserialize)]
struct PlaceOrder {
    id: i64,
}
impl Task for PlaceOrder {
    const NAME: &'static str = "place_order";
}

#[derive(Debug, Serialize, Deserialize)]
struct Flaky {}
impl Task for Flaky {
    const NAME: &'static str = "flaky";
    fn retry() -> RetryStrategy {
        RetryStrategy::new(3)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Broken {}
impl Task for Broken {
    const NAME: &'static str = "broken";
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// The message of the panic `f` ends in.
async fn panic_message(f: impl Future<Output = ()> + Send + 'static) -> String {
    let error = tokio::spawn(f).await.expect_err("the assertion passed");
    let payload = error.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assertions_see_the_jobs_of_the_open_transaction() {
    let db = jobq_test::database();
    let mut client = connect(db.url()).await;
    let jobq = Jobq::default();

    let tx = client.transaction().await.unwrap();
    let id = jobq
        .defer(&SendEmail {
            to: "a@example.com".into(),
        })
        .queue("emails")
        .priority(5)
        .run(&tx)
        .await
        .unwrap();
    jobq.defer(&PlaceOrder { id: 7 }).run(&tx).await.unwrap();

    // Read through the transaction: the jobs are there before the commit.
    let job = assert_deferred(
        &jobq,
        &tx,
        Expect::task("send_email")
            .args(json!({"to": "a@example.com"}))
            .queue("emails")
            .priority(5),
    )
    .await;
    assert_eq!(job.id, id);
    assert_eq!(job.status, Status::Todo);
    let order = assert_deferred(&jobq, &tx, Expect::of(&PlaceOrder { id: 7 })).await;
    assert_eq!(order.queue, "default");
    assert_deferred(
        &jobq,
        &tx,
        Expect::task("send_email").args_containing(json!({})),
    )
    .await;
    refute_deferred(&jobq, &tx, Expect::task("send_email").queue("other")).await;
    refute_deferred(&jobq, &tx, Expect::of(&PlaceOrder { id: 8 })).await;
    refute_deferred(
        &jobq,
        &tx,
        Expect::task("send_email").status(Status::Succeeded),
    )
    .await;
    let all = deferred_jobs(&jobq, &tx, &Expect::any()).await.unwrap();
    assert_eq!(all.len(), 2);

    // Another connection sees nothing yet, and nothing at all once the transaction rolls back.
    let other = connect(db.url()).await;
    refute_deferred(&jobq, &other, Expect::any().any_status()).await;
    tx.rollback().await.unwrap();
    refute_deferred(&jobq, &client, Expect::any().any_status()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_assertion_lists_what_was_deferred() {
    let db = jobq_test::database();
    let client = Arc::new(connect(db.url()).await);
    let jobq = Jobq::default();
    jobq.defer(&SendEmail {
        to: "b@example.com".into(),
    })
    .run(&*client)
    .await
    .unwrap();

    let (c, j) = (client.clone(), jobq.clone());
    let message = panic_message(async move {
        assert_deferred(
            &j,
            &*c,
            Expect::task("send_email").args(json!({"to": "a@example.com"})),
        )
        .await;
    })
    .await;
    assert!(
        message.starts_with(
            r#"expected a deferred job with task "send_email", args {"to":"a@example.com"}, status todo, found none."#
        ),
        "{message}"
    );
    assert!(
        message.contains("The jobs with status todo (1):"),
        "{message}"
    );
    assert!(
        message.contains(r#"task "send_email", args {"to":"b@example.com"}, queue "default""#),
        "{message}"
    );

    let (c, j) = (client.clone(), jobq.clone());
    let message = panic_message(async move {
        refute_deferred(&j, &*c, Expect::task("send_email")).await;
    })
    .await;
    assert!(
        message.starts_with(
            r#"expected no deferred job with task "send_email", status todo, found 1:"#
        ),
        "{message}"
    );

    jobq.defer(&SendEmail {
        to: "c@example.com".into(),
    })
    .run(&*client)
    .await
    .unwrap();
    let (c, j) = (client.clone(), jobq.clone());
    let message = panic_message(async move {
        assert_deferred(&j, &*c, Expect::task("send_email")).await;
    })
    .await;
    assert!(
        message.starts_with(
            r#"expected one deferred job with task "send_email", status todo, found 2:"#
        ),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_runs_due_jobs_and_the_jobs_they_defer() {
    let db = jobq_test::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    for id in 1..=3 {
        jobq.defer(&PlaceOrder { id }).run(&client).await.unwrap();
    }
    jobq.defer(&Flaky {}).run(&client).await.unwrap();
    jobq.defer(&Broken {}).run(&client).await.unwrap();
    // Not due: it stays waiting.
    jobq.defer(&PlaceOrder { id: 99 })
        .after(std::time::Duration::from_secs(3600))
        .run(&client)
        .await
        .unwrap();

    let pool = jobq_tokio_postgres::PoolExecutor::connect(db.url(), 4).unwrap();
    let mailed = Arc::new(AtomicUsize::new(0));
    let flaky_runs = Arc::new(AtomicUsize::new(0));
    let (m, f) = (mailed.clone(), flaky_runs.clone());
    let deferring = pool.clone();
    let worker = Worker::builder(jobq.clone(), pool)
        .concurrency(2)
        .task(move |order: PlaceOrder, _: JobContext| {
            let (jobq, pool) = (Jobq::default(), deferring.clone());
            async move {
                // Each order defers its email: the drain runs those too.
                jobq.defer(&SendEmail {
                    to: format!("{}@example.com", order.id),
                })
                .run(&pool)
                .await
                .map_err(|e| JobError::new(e.to_string()))?;
                Ok(())
            }
        })
        .task(move |_: SendEmail, _: JobContext| {
            m.fetch_add(1, Ordering::Relaxed);
            async { Ok(()) }
        })
        .task(move |_: Flaky, _: JobContext| {
            let run = f.fetch_add(1, Ordering::Relaxed);
            async move {
                if run == 0 {
                    Err(JobError::new("first attempt fails"))
                } else {
                    Ok(())
                }
            }
        })
        .task(|_: Broken, _: JobContext| async { Err(JobError::permanent("never works")) });

    let summary = drain(worker).await.unwrap();
    let counts = (
        summary.succeeded,
        summary.failed,
        summary.retried,
        summary.aborted,
    );
    // Three orders, their three emails, the flaky job's second attempt; the broken job; the flaky one's
    // first attempt.
    assert_eq!(counts, (7, 1, 1, 0), "{summary:?}");
    assert_eq!(summary.total(), 9);
    assert_eq!(mailed.load(Ordering::Relaxed), 3);
    assert_eq!(flaky_runs.load(Ordering::Relaxed), 2);

    let succeeded = Expect::any().status(Status::Succeeded);
    assert_eq!(
        deferred_jobs(&jobq, &client, &succeeded)
            .await
            .unwrap()
            .len(),
        7
    );
    assert_deferred(
        &jobq,
        &client,
        Expect::task("broken").status(Status::Failed),
    )
    .await;
    let later = assert_deferred(&jobq, &client, Expect::any()).await;
    assert_eq!(later.args, json!({"id": 99}));
    // The drain's worker is gone.
    assert!(jobq.workers().run(&client).await.unwrap().is_empty());

    // Nothing due: a second drain runs nothing.
    let pool = jobq_tokio_postgres::PoolExecutor::connect(db.url(), 1).unwrap();
    let idle = drain(
        Worker::builder(jobq.clone(), pool).task(|_: PlaceOrder, _: JobContext| async { Ok(()) }),
    )
    .await
    .unwrap();
    assert_eq!(idle, DrainSummary::default());
}
