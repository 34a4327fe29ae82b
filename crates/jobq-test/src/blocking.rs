//! The helpers for the sync adapters (`jobq-postgres`, `jobq-diesel`): the same as the crate root's, on a
//! blocking connection, and [`drain`] without an async runtime of your own.
//!
//! ```no_run
//! use jobq_core::prelude::*;
//! use jobq_postgres::prelude::*;
//! use jobq_test::Expect;
//! use serde_json::json;
//!
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let db = jobq_test::database();
//! let mut client = postgres::Client::connect(db.url(), postgres::NoTls)?;
//! let jobq = Jobq::default();
//!
//! let mut tx = client.transaction()?;
//! jobq.defer_job(NewJob::new("send_email", json!({"to": "a@example.com"}))).run_blocking(&mut tx)?;
//! jobq_test::blocking::assert_deferred(&jobq, &mut tx, Expect::task("send_email"));
//! tx.rollback()?;
//! jobq_test::blocking::refute_deferred(&jobq, &mut client, Expect::task("send_email"));
//! # Ok(()) }
//! ```

use crate::expect::{self, Expect};
use crate::{DrainSummary, read_failed};
use jobq_core::worker::{Backend, WorkerBuilder};
use jobq_core::{Error, IntoBlockingExecutor, Job, Jobq};

/// The jobs matching `expect`, oldest first, read through `conn` (inside its transaction, if it has one):
/// the blocking twin of [`crate::deferred_jobs`] (change both).
pub fn deferred_jobs<Via, C>(jobq: &Jobq, conn: C, expect: &Expect) -> Result<Vec<Job>, Error>
where
    C: IntoBlockingExecutor<Via>,
{
    let mut executor = conn.into_executor()?;
    let mut found = Vec::new();
    let mut after = None;
    loop {
        let page = jobq
            .list(&expect.filter(after))
            .run_blocking(&mut executor)?;
        let full = page.len() >= expect::PAGE as usize;
        after = page.last().map(|job| job.id);
        found.extend(page.into_iter().filter(|job| expect.matches(job)));
        if !full {
            return Ok(found);
        }
    }
}

/// Asserts that exactly one job matches `expect`, read through `conn`, and returns it: the blocking twin of
/// [`crate::assert_deferred`].
///
/// # Panics
///
/// When no job or several match, with a message that lists the jobs of the expected status that were
/// deferred, and when the jobs cannot be read.
pub fn assert_deferred<Via, C>(jobq: &Jobq, conn: C, expect: Expect) -> Job
where
    C: IntoBlockingExecutor<Via>,
{
    let mut executor = conn
        .into_executor()
        .unwrap_or_else(|e| read_failed(&e.into()));
    let matching = deferred_jobs(jobq, &mut executor, &expect).unwrap_or_else(|e| read_failed(&e));
    if let [job] = matching.as_slice() {
        return job.clone();
    }
    let others = deferred_jobs(jobq, &mut executor, &expect.same_status())
        .unwrap_or_else(|e| read_failed(&e));
    panic!("{}", expect::one_expected(&expect, &matching, &others))
}

/// Asserts that no job matches `expect`, read through `conn`: the blocking twin of
/// [`crate::refute_deferred`].
///
/// # Panics
///
/// When some job matches (the message lists them), and when the jobs cannot be read.
pub fn refute_deferred<Via, C>(jobq: &Jobq, conn: C, expect: Expect)
where
    C: IntoBlockingExecutor<Via>,
{
    let matching = deferred_jobs(jobq, conn, &expect).unwrap_or_else(|e| read_failed(&e));
    if !matching.is_empty() {
        panic!("{}", expect::none_expected(&expect, &matching));
    }
}

/// [`crate::drain`] from sync code: runs it on a tokio runtime of its own (two worker threads), which
/// blocking handlers and the sync adapters' pools run on.
///
/// # Panics
///
/// When called from inside an async runtime (call [`crate::drain`] there), or when the runtime cannot be
/// started.
pub fn drain<B: Backend>(worker: WorkerBuilder<B>) -> Result<DrainSummary, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("jobq-test: could not start a tokio runtime: {e}"));
    runtime.block_on(crate::drain(worker))
}
