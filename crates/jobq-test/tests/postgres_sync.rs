//! jobq-test's helpers through a sync adapter, `postgres`: the blocking assertions inside a
//! `postgres::Transaction`, and `blocking::drain` on an r2d2 pool with a blocking handler that defers.

use jobq_core::prelude::*;
use jobq_core::worker::{JobContext, JobError, Worker};
use jobq_test::Expect;
use jobq_test::blocking::{assert_deferred, deferred_jobs, drain, refute_deferred};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Serialize, Deserialize)]
struct Invoice {
    customer: String,
}
impl Task for Invoice {
    const NAME: &'static str = "invoice";
}

#[derive(Debug, Serialize, Deserialize)]
struct Receipt {
    customer: String,
}
impl Task for Receipt {
    const NAME: &'static str = "receipt";
}

#[test]
fn blocking_assertions_see_the_jobs_of_the_open_transaction() {
    let db = jobq_test::database();
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    let jobq = Jobq::default();

    let mut tx = client.transaction().unwrap();
    let id = jobq
        .defer(&Invoice {
            customer: "ada".into(),
        })
        .queue("billing")
        .lock("ada")
        .run_blocking(&mut tx)
        .unwrap();
    let job = assert_deferred(
        &jobq,
        &mut tx,
        Expect::task("invoice")
            .args_containing(json!({"customer": "ada"}))
            .queue("billing")
            .lock("ada"),
    );
    assert_eq!(job.id, id);
    refute_deferred(&jobq, &mut tx, Expect::task("invoice").queue("default"));
    refute_deferred(&jobq, &mut tx, Expect::task("receipt"));
    tx.commit().unwrap();

    // Committed: a pool sees it too.
    let pool = jobq_postgres::pool(db.url(), 1).unwrap();
    assert_deferred(
        &jobq,
        &pool,
        Expect::of(&Invoice {
            customer: "ada".into(),
        })
        .queue("billing"),
    );

    let message = std::panic::catch_unwind(|| {
        let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
        assert_deferred(&Jobq::default(), &mut client, Expect::task("receipt"));
    })
    .expect_err("the assertion passed");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.starts_with(
            r#"expected a deferred job with task "receipt", status todo, found none."#
        ),
        "{message}"
    );
    assert!(
        message.contains(r#"task "invoice", args {"customer":"ada"}, queue "billing""#),
        "{message}"
    );
    assert!(message.contains(r#"lock "ada""#), "{message}");
}

#[test]
fn blocking_drain_runs_blocking_handlers_and_what_they_defer() {
    let db = jobq_test::database();
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    let jobq = Jobq::default();
    for customer in ["ada", "grace"] {
        jobq.defer(&Invoice {
            customer: customer.into(),
        })
        .run_blocking(&mut client)
        .unwrap();
    }

    let pool = jobq_postgres::PoolExecutor::connect(db.url(), 3).unwrap();
    let deferring = pool.clone();
    let worker = Worker::builder(jobq.clone(), pool)
        .blocking_task(move |invoice: Invoice, _: JobContext| {
            let mut pool = deferring.clone();
            Jobq::default()
                .defer(&Receipt {
                    customer: invoice.customer,
                })
                .run_blocking(&mut pool)
                .map_err(|e| JobError::new(e.to_string()))?;
            Ok(())
        })
        .blocking_task(|receipt: Receipt, _: JobContext| {
            if receipt.customer == "grace" {
                Err(JobError::permanent("no address for grace"))
            } else {
                Ok(())
            }
        });
    let summary = drain(worker).unwrap();
    let counts = (
        summary.succeeded,
        summary.failed,
        summary.retried,
        summary.aborted,
    );
    assert_eq!(counts, (3, 1, 0, 0), "{summary:?}");

    let receipts =
        deferred_jobs(&jobq, &mut client, &Expect::task("receipt").any_status()).unwrap();
    assert_eq!(receipts.len(), 2);
    let failed = assert_deferred(
        &jobq,
        &mut client,
        Expect::task("receipt").status(Status::Failed),
    );
    assert_eq!(failed.args, json!({"customer": "grace"}));
    refute_deferred(&jobq, &mut client, Expect::any());
}
