//! Test helpers for applications that use jobq, with any of its adapters: a throwaway PostgreSQL, assertions
//! that a transaction deferred a job, and running due jobs to their end inline.
//!
//! - [`database`] (from [`jobq-tempdb`](jobq_tempdb)) starts a throwaway PostgreSQL server once per test
//!   process and gives each test a fresh database with the jobq schema applied.
//! - [`assert_deferred`], [`refute_deferred`] and [`deferred_jobs`] read the jobs matching an [`Expect`]
//!   through the connection you pass, so inside your open transaction they see what it deferred and has
//!   not committed yet. The [`blocking`] module has the same for the sync adapters (`jobq-postgres`,
//!   `jobq-diesel`).
//! - [`drain`] runs every due job with your handlers, and the jobs they defer, until none is due, and
//!   returns a [`DrainSummary`].
//!
//! ```no_run
//! use jobq_core::worker::{JobContext, Worker};
//! use jobq_core::prelude::*;
//! use jobq_test::{Expect, assert_deferred, drain};
//! use serde::{Deserialize, Serialize};
//! use serde_json::json;
//!
//! #[derive(Serialize, Deserialize)]
//! struct SendEmail { to: String }
//! impl Task for SendEmail { const NAME: &'static str = "send_email"; }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let db = jobq_test::database();
//! let (mut client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await?;
//! tokio::spawn(connection);
//! let jobq = Jobq::default();
//!
//! // The code under test defers inside its transaction...
//! let tx = client.transaction().await?;
//! jobq.defer(&SendEmail { to: "a@example.com".into() })
//!     .queue("emails")
//!     .run(&tx)
//!     .await?;
//! // ...and the test checks it there, before the commit.
//! let job = assert_deferred(
//!     &jobq,
//!     &tx,
//!     Expect::task("send_email").args(json!({"to": "a@example.com"})).queue("emails"),
//! )
//! .await;
//! tx.commit().await?;
//!
//! // Run it with the real handler.
//! let pool = jobq_tokio_postgres::PoolExecutor::connect(db.url(), 2)?;
//! let summary = drain(
//!     Worker::builder(jobq.clone(), pool)
//!         .task(|email: SendEmail, _ctx: JobContext| async move {
//!             println!("mailing {}", email.to);
//!             Ok(())
//!         }),
//! )
//! .await?;
//! assert_eq!(summary.succeeded, 1);
//! # let _ = job; Ok(()) }
//! ```
//!
//! The guide's page on testing (`docs/testing.md` in jobq's repository) walks through each.

#![forbid(unsafe_code)]

pub mod blocking;
mod expect;

pub use expect::Expect;
pub use jobq_core::worker::drain::DrainSummary;
/// The throwaway PostgreSQL server: [`database`], [`empty_database`], [`TestDatabase`] and the rest.
pub use jobq_tempdb as tempdb;
pub use jobq_tempdb::{TestDatabase, database, empty_database};

use jobq_core::worker::{Backend, WorkerBuilder};
use jobq_core::{Error, IntoAsyncExecutor, Job, Jobq};

/// The jobs matching `expect`, oldest first, read through `conn` (inside its transaction, if it has one).
///
/// `conn` is anything the adapter runs jobq on: `&tx` for tokio-postgres, `&mut *tx` for sqlx, a pool.
/// Twin of [`blocking::deferred_jobs`] (change both).
pub async fn deferred_jobs<Via, C>(jobq: &Jobq, conn: C, expect: &Expect) -> Result<Vec<Job>, Error>
where
    C: IntoAsyncExecutor<Via>,
{
    let mut executor = conn.into_executor()?;
    let mut found = Vec::new();
    let mut after = None;
    loop {
        let page = jobq.list(&expect.filter(after)).run(&mut executor).await?;
        let full = page.len() >= expect::PAGE as usize;
        after = page.last().map(|job| job.id);
        found.extend(page.into_iter().filter(|job| expect.matches(job)));
        if !full {
            return Ok(found);
        }
    }
}

/// Asserts that exactly one job matches `expect`, read through `conn` (inside its transaction, if it has
/// one), and returns it.
///
/// # Panics
///
/// When no job or several match, with a message that lists the jobs of the expected status that were
/// deferred, and when the jobs cannot be read. Panicking is what a test assertion does: call it from tests.
pub async fn assert_deferred<Via, C>(jobq: &Jobq, conn: C, expect: Expect) -> Job
where
    C: IntoAsyncExecutor<Via>,
{
    let mut executor = conn
        .into_executor()
        .unwrap_or_else(|e| read_failed(&e.into()));
    let matching = deferred_jobs(jobq, &mut executor, &expect)
        .await
        .unwrap_or_else(|e| read_failed(&e));
    if let [job] = matching.as_slice() {
        return job.clone();
    }
    let others = deferred_jobs(jobq, &mut executor, &expect.same_status())
        .await
        .unwrap_or_else(|e| read_failed(&e));
    panic!("{}", expect::one_expected(&expect, &matching, &others))
}

/// Asserts that no job matches `expect`, read through `conn` (inside its transaction, if it has one).
///
/// # Panics
///
/// When some job matches (the message lists them), and when the jobs cannot be read.
pub async fn refute_deferred<Via, C>(jobq: &Jobq, conn: C, expect: Expect)
where
    C: IntoAsyncExecutor<Via>,
{
    let matching = deferred_jobs(jobq, conn, &expect)
        .await
        .unwrap_or_else(|e| read_failed(&e));
    if !matching.is_empty() {
        panic!("{}", expect::none_expected(&expect, &matching));
    }
}

/// Runs every due job with the handlers of `worker`, then the jobs that became due meanwhile (deferred by
/// a handler, retried at once), until none is due, and says how the attempts ended. See
/// [`Worker::run_until_idle`](jobq_core::worker::Worker::run_until_idle), which this calls.
///
/// Jobs scheduled for later (a retry with back-off) stay waiting; give the task a strategy without
/// back-off (`RetryStrategy::new(3)`) for its retries to run here too. For the sync adapters, see
/// [`blocking::drain`].
pub async fn drain<B: Backend>(worker: WorkerBuilder<B>) -> Result<DrainSummary, Error> {
    worker.build().run_until_idle().await
}

fn read_failed(error: &Error) -> ! {
    panic!("jobq-test: could not read the deferred jobs: {error}")
}
