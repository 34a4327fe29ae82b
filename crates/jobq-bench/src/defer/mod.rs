//! Deferral figures, per adapter: on the caller's connection against a hand-written INSERT, through the
//! adapter's pool, and in batches of 1,000.
//!
//! The timing, the rounds and the ratio are written once here; each adapter's module only says how its
//! driver runs one transaction, one pooled deferral and one batch ([`Driver`]).

mod diesel;
mod postgres;
mod sqlx;
mod tokio_postgres;

pub(crate) use self::diesel::Diesel;
pub(crate) use self::postgres::SyncPostgres;
pub(crate) use self::sqlx::Sqlx;
pub(crate) use self::tokio_postgres::TokioPostgres;

use crate::report::{Figure, Report, Target};
use crate::{BoxError, Plan};
use jobq_core::{Jobq, NewJob};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The tables the loops write besides jobq's: the caller's own rows, and a table shaped like `jobq.jobs`
/// (same columns, defaults, constraints and indexes) for the hand-written INSERT.
const TABLES: &str = "CREATE TABLE orders (id bigserial PRIMARY KEY, item text NOT NULL);
    CREATE TABLE raw_jobs (LIKE jobq.jobs INCLUDING ALL);";

/// The caller's row in every transaction.
const ORDER: &str = "INSERT INTO orders (item) VALUES ($1)";

/// The hand-written job row: what a user would write without jobq.
const RAW_JOB: &str =
    "INSERT INTO raw_jobs (queue, task, args) VALUES ('default', $1, ($2::text)::jsonb)";

/// The pool size of the pooled figures (one statement at a time uses one connection).
pub(crate) const POOL: usize = 4;

/// How one driver does the work the figures time. Sync drivers run as they are; async ones block on a
/// current-thread runtime of their own, which costs the same on both sides of a ratio.
pub(crate) trait Driver: Sized {
    /// The adapter's name in the figures.
    const NAME: &'static str;

    /// One connection for the transaction loops, and the adapter's pool of [`POOL`] connections.
    fn connect(url: &str) -> Result<Self, BoxError>;

    /// BEGIN; the order row; `job` through jobq's adapter on the same connection; COMMIT.
    fn jobq_in_tx(&mut self, jobq: &Jobq, job: NewJob) -> Result<(), BoxError>;

    /// BEGIN; the order row; the job row by a hand-written INSERT ([`RAW_JOB`] or the driver's own
    /// query builder) into `raw_jobs`; COMMIT.
    fn raw_in_tx(&mut self, args: &Value) -> Result<(), BoxError>;

    /// One job through the adapter's pool.
    fn defer_pooled(&mut self, jobq: &Jobq, job: NewJob) -> Result<(), BoxError>;

    /// `jobs` in one `defer_batch` through the adapter's pool.
    fn defer_batch(&mut self, jobq: &Jobq, jobs: Vec<NewJob>) -> Result<(), BoxError>;
}

fn job(n: usize) -> NewJob {
    NewJob::new("process_order", args(n))
}

fn args(n: usize) -> Value {
    json!({ "order_id": n })
}

/// Times `n` calls of `f`.
fn timed(n: usize, mut f: impl FnMut(usize) -> Result<(), BoxError>) -> Result<Duration, BoxError> {
    let start = Instant::now();
    for i in 0..n {
        f(i)?;
    }
    Ok(start.elapsed())
}

/// `defer_external.A`, `defer_external_ratio.A`, `defer_pool.A` and `batch_defer.A` for driver `D`, on a
/// fresh database at `url`.
pub(crate) fn measure<D: Driver>(
    url: &str,
    plan: &Plan,
    report: &Report,
) -> Result<Vec<Figure>, BoxError> {
    let mut setup = ::postgres::Client::connect(url, ::postgres::NoTls)?;
    setup.batch_execute(TABLES)?;
    let mut driver = D::connect(url)?;
    let jobq = Jobq::default();
    let name = D::NAME;

    // Warm both paths up (connections, statement caches, plans) before anything is timed.
    timed(50, |i| driver.jobq_in_tx(&jobq, job(i)))?;
    timed(50, |i| driver.raw_in_tx(&args(i)))?;

    // The two loops alternate in rounds, and which goes first alternates too, so drift on a shared
    // machine (and the tables growing) hits both alike.
    let (rounds, n) = (plan.defer_rounds, plan.defer_per_round);
    let (mut jobq_time, mut raw_time) = (Duration::ZERO, Duration::ZERO);
    for round in 0..rounds {
        report.detail(format!(
            "defer on the caller's connection, {name}: round {}/{rounds}",
            round + 1
        ));
        let jobq_side = |d: &mut D| timed(n, |i| d.jobq_in_tx(&jobq, job(i)));
        let raw_side = |d: &mut D| timed(n, |i| d.raw_in_tx(&args(i)));
        if round % 2 == 0 {
            jobq_time += jobq_side(&mut driver)?;
            raw_time += raw_side(&mut driver)?;
        } else {
            raw_time += raw_side(&mut driver)?;
            jobq_time += jobq_side(&mut driver)?;
        }
    }
    let total = (rounds * n) as f64;
    let (jobq_rate, raw_rate) = (
        total / jobq_time.as_secs_f64(),
        total / raw_time.as_secs_f64(),
    );

    report.detail(format!("defer through the pool, {name}"));
    let pooled = timed(plan.defer_pool, |i| driver.defer_pooled(&jobq, job(i)))?;
    let pooled_rate = plan.defer_pool as f64 / pooled.as_secs_f64();

    report.detail(format!("batch defer, {name}"));
    let batch: Vec<NewJob> = (0..1_000).map(job).collect();
    driver.defer_batch(&jobq, batch.clone())?;
    let batches = timed(plan.batches, |_| driver.defer_batch(&jobq, batch.clone()))?;
    let batch_rate = (plan.batches * 1_000) as f64 / batches.as_secs_f64();

    Ok(vec![
        Figure::new(format!("defer_external.{name}"), jobq_rate, "jobs/s").note(format!(
            "BEGIN; order row; defer; COMMIT; {} transactions in {rounds} rounds",
            rounds * n
        )),
        Figure::new(
            format!("defer_external_ratio.{name}"),
            jobq_rate / raw_rate,
            "ratio",
        )
        .target(Target::AtLeast(0.90))
        .note(format!(
            "hand-written INSERT into a jobs-shaped table instead: {} jobs/s",
            crate::report::number(raw_rate)
        )),
        Figure::new(format!("defer_pool.{name}"), pooled_rate, "jobs/s").note(format!(
            "one job per call, pool of {POOL}, {} calls",
            plan.defer_pool
        )),
        Figure::new(format!("batch_defer.{name}"), batch_rate, "jobs/s")
            .target(Target::AtLeast(100_000.0))
            .note(format!(
                "{} batches of 1,000 through the pool",
                plan.batches
            )),
    ])
}

/// A current-thread runtime for the async drivers: their calls block on it one at a time.
fn runtime() -> Result<tokio::runtime::Runtime, BoxError> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
