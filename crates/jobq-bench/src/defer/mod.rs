//! Deferral figures, per adapter: on the caller's connection against a hand-written INSERT, through the
//! adapter's pool by concurrent callers, and in batches of 1,000 against the server's own generated INSERT.
//!
//! The timing, the rounds and the ratios are written once here; each adapter's module only says how its
//! driver runs one transaction, pooled deferrals and one batch ([`Driver`]). All four adapters run on one
//! database and their loops are interleaved in rounds (which adapter goes first rotates), so every adapter's
//! figures come from the same minutes: on a shared machine the single-row transaction rate moves by a factor
//! of two from one minute to the next, and only same-minute figures compare.

mod diesel;
mod postgres;
mod sqlx;
mod tokio_postgres;

pub(crate) use self::diesel::Diesel;
pub(crate) use self::postgres::SyncPostgres;
pub(crate) use self::sqlx::Sqlx;
pub(crate) use self::tokio_postgres::TokioPostgres;

use crate::report::{Figure, Report, Target, number};
use crate::{BoxError, Plan};
use jobq_core::{Jobq, NewJob};
use serde_json::{Value, json};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// The tables the loops write besides jobq's: the caller's own rows, and a table shaped like `jobq.jobs`
/// (same columns, defaults, constraints and indexes) for the hand-written INSERTs.
const TABLES: &str = "CREATE TABLE orders (id bigserial PRIMARY KEY, item text NOT NULL);
    CREATE TABLE raw_jobs (LIKE jobq.jobs INCLUDING ALL);";

/// The caller's row in every transaction.
const ORDER: &str = "INSERT INTO orders (item) VALUES ($1)";

/// The hand-written job row: what a user would write without jobq.
const RAW_JOB: &str =
    "INSERT INTO raw_jobs (queue, task, args) VALUES ('default', $1, ($2::text)::jsonb)";

/// The reference for `batch_defer`: the server generating the same 1,000 jobs itself and inserting them
/// into the jobs-shaped table in one statement, with nothing to parse or send.
const GENERATED_INSERT: &str = "INSERT INTO raw_jobs (task, args)
    SELECT 'process_order', jsonb_build_object('order_id', g) FROM generate_series(1, 1000) g";

/// The second reference for `batch_defer`: the same jobs sent as two text arrays (tasks and arguments, the
/// arguments JSON text for the server to parse, as jobq's are) and inserted through `unnest`, answering
/// their ids, as a careful hand-written batch would. It pays what any batch sent by the client pays (the
/// data on the wire, its parse on the server) and what a generated INSERT does not.
const UNNEST_INSERT: &str = "INSERT INTO raw_jobs (task, args)
    SELECT t, a::jsonb FROM unnest($1::text[], $2::text[]) AS n(t, a) RETURNING id";

/// The pool size of the pooled figures.
pub(crate) const POOL: usize = 4;

/// How many callers share the pool in `defer_pool`: twice the pool, so callers wait for connections as
/// they do in a busy application.
pub(crate) const CALLERS: usize = 8;

/// The jobs in one batch of `batch_defer`.
const BATCH: usize = 1_000;

/// How one driver does the work the figures time. Sync drivers run as they are; async ones block on a
/// current-thread runtime of their own, which costs the same on both sides of a ratio.
pub(crate) trait Driver {
    /// The adapter's name in the figures.
    fn name(&self) -> &'static str;

    /// BEGIN; the order row; `job` through jobq's adapter on the same connection; COMMIT.
    fn jobq_in_tx(&mut self, jobq: &Jobq, job: NewJob) -> Result<(), BoxError>;

    /// BEGIN; the order row; the job row by a hand-written INSERT ([`RAW_JOB`] or the driver's own
    /// query builder) into `raw_jobs`; COMMIT.
    fn raw_in_tx(&mut self, args: &Value) -> Result<(), BoxError>;

    /// `n` single-job deferrals through the adapter's pool of [`POOL`], by `callers` concurrent callers
    /// (threads for the sync adapters, tasks for the async ones); returns the time they took.
    fn defer_pooled(&mut self, jobq: &Jobq, callers: usize, n: usize)
    -> Result<Duration, BoxError>;

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

/// Times `n` calls of `f` shared out among `callers` threads (caller `k` makes calls `k`, `k + callers`, …).
fn threads(
    callers: usize,
    n: usize,
    f: impl Fn(usize) -> Result<(), BoxError> + Sync,
) -> Result<Duration, BoxError> {
    let start = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..callers)
            .map(|k| {
                let f = &f;
                scope.spawn(move || (k..n).step_by(callers).try_for_each(f))
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| BoxError::from("a caller panicked"))?)
    })?;
    Ok(start.elapsed())
}

/// Times `n` calls of `f` shared out among `callers` concurrent tasks on `rt`.
fn tasks<Fut: Future<Output = Result<(), BoxError>>>(
    rt: &Runtime,
    callers: usize,
    n: usize,
    f: impl Fn(usize) -> Fut,
) -> Result<Duration, BoxError> {
    let start = Instant::now();
    rt.block_on(futures_util::future::try_join_all((0..callers).map(|k| {
        let f = &f;
        async move {
            for i in (k..n).step_by(callers) {
                f(i).await?;
            }
            Ok::<_, BoxError>(())
        }
    })))?;
    Ok(start.elapsed())
}

/// What one adapter's loops took, summed over the rounds.
#[derive(Debug, Default)]
struct Times {
    jobq: Duration,
    raw: Duration,
    pooled: Duration,
    batches: Duration,
}

/// `defer_external.A`, `defer_external_ratio.A`, `defer_pool.A`, `batch_defer.A` and
/// `batch_defer_vs_insert_ratio.A` for every adapter, and the reference `batch_insert_generated`, on a fresh
/// database at `url`.
pub(crate) fn measure(url: &str, plan: &Plan, report: &Report) -> Result<Vec<Figure>, BoxError> {
    let mut setup = ::postgres::Client::connect(url, ::postgres::NoTls)?;
    setup.batch_execute(TABLES)?;
    let generated = setup.prepare(GENERATED_INSERT)?;
    let unnest = setup.prepare(UNNEST_INSERT)?;
    let mut drivers: Vec<Box<dyn Driver>> = vec![
        Box::new(SyncPostgres::connect(url)?),
        Box::new(TokioPostgres::connect(url)?),
        Box::new(Sqlx::connect(url)?),
        Box::new(Diesel::connect(url)?),
    ];
    let jobq = Jobq::default();
    let batch: Vec<NewJob> = (0..BATCH).map(job).collect();

    // Warm every path up (connections, statement caches, plans) before anything is timed.
    for d in &mut drivers {
        timed(50, |i| d.jobq_in_tx(&jobq, job(i)))?;
        timed(50, |i| d.raw_in_tx(&args(i)))?;
        d.defer_pooled(&jobq, CALLERS, 4 * CALLERS)?;
        d.defer_batch(&jobq, batch.clone())?;
    }
    let references = References {
        generated,
        unnest,
        batch: &batch,
    };
    references.time(&mut setup, 1)?;

    let mut times: Vec<Times> = drivers.iter().map(|_| Times::default()).collect();
    let count = drivers.len();
    // The adapters in the order round `round` runs them: the first one rotates.
    let order = move |round: usize| (0..count).map(move |k| (k + round) % count);

    // Single-row transactions: within an adapter the jobq loop and the hand-written one alternate which
    // goes first, so drift (and the tables growing) hits both alike.
    let (rounds, n) = (plan.defer_rounds, plan.defer_per_round);
    for round in 0..rounds {
        report.detail(format!(
            "defer on the caller's connection, all adapters: round {}/{rounds}",
            round + 1
        ));
        for k in order(round) {
            let (d, t) = (&mut drivers[k], &mut times[k]);
            for raw in [round % 2 == 1, round % 2 == 0] {
                if raw {
                    t.raw += timed(n, |i| d.raw_in_tx(&args(i)))?;
                } else {
                    t.jobq += timed(n, |i| d.jobq_in_tx(&jobq, job(i)))?;
                }
            }
        }
    }

    // Pooled deferrals by concurrent callers.
    let pool_rounds = plan.batch_rounds;
    let per_pool_round = plan.defer_pool / pool_rounds;
    for round in 0..pool_rounds {
        report.detail(format!(
            "defer through the pool, {CALLERS} callers, all adapters: round {}/{pool_rounds}",
            round + 1
        ));
        for k in order(round) {
            times[k].pooled += drivers[k].defer_pooled(&jobq, CALLERS, per_pool_round)?;
        }
    }

    // Batches, with the server's generated INSERT as one more loop in every round.
    let per_batch_round = plan.batches / plan.batch_rounds;
    let (mut generated_time, mut unnest_time) = (Duration::ZERO, Duration::ZERO);
    for round in 0..plan.batch_rounds {
        report.detail(format!(
            "batch defer and the generated INSERT: round {}/{}",
            round + 1,
            plan.batch_rounds
        ));
        // The reference goes first, last, or between the adapters as the rounds go by.
        let slot = round % (count + 1);
        for (place, k) in order(round).enumerate() {
            if place == slot {
                let (generated, unnest) = references.time(&mut setup, per_batch_round)?;
                generated_time += generated;
                unnest_time += unnest;
            }
            let d = &mut drivers[k];
            times[k].batches += timed(per_batch_round, |_| d.defer_batch(&jobq, batch.clone()))?;
        }
        if slot == count {
            let (generated, unnest) = references.time(&mut setup, per_batch_round)?;
            generated_time += generated;
            unnest_time += unnest;
        }
    }

    let rate = |jobs: usize, took: Duration| jobs as f64 / took.as_secs_f64();
    let batch_jobs = plan.batch_rounds * per_batch_round * BATCH;
    let generated_rate = rate(batch_jobs, generated_time);
    let unnest_rate = rate(batch_jobs, unnest_time);
    let interleaved = format!(
        "the four adapters interleaved in rounds, the first rotating; {}",
        if plan.quick { "quick run" } else { "full run" }
    );
    let mut figures = Vec::new();
    for (d, t) in drivers.iter().zip(&times) {
        let name = d.name();
        let (jobq_rate, raw_rate) = (rate(rounds * n, t.jobq), rate(rounds * n, t.raw));
        let pooled_rate = rate(pool_rounds * per_pool_round, t.pooled);
        let batch_rate = rate(batch_jobs, t.batches);
        figures.extend([
            Figure::new(format!("defer_external.{name}"), jobq_rate, "jobs/s").note(format!(
                "BEGIN; order row; defer; COMMIT; {} transactions in {rounds} rounds; {interleaved}",
                rounds * n
            )),
            Figure::new(
                format!("defer_external_ratio.{name}"),
                jobq_rate / raw_rate,
                "ratio",
            )
            .target(Target::AtLeast(0.90))
            .note(format!(
                "hand-written INSERT into a jobs-shaped table instead, alternating with it: {} jobs/s",
                number(raw_rate)
            )),
            Figure::new(format!("defer_pool.{name}"), pooled_rate, "jobs/s").note(format!(
                "one job per call, {CALLERS} concurrent callers sharing a pool of {POOL}, {} calls in \
                 {pool_rounds} rounds",
                pool_rounds * per_pool_round
            )),
            Figure::new(format!("batch_defer.{name}"), batch_rate, "jobs/s")
                .target(Target::AtLeast(100_000.0))
                .note(format!(
                    "{} batches of {BATCH} through the pool in {} rounds",
                    plan.batch_rounds * per_batch_round,
                    plan.batch_rounds
                )),
            Figure::new(
                format!("batch_defer_vs_insert_ratio.{name}"),
                batch_rate / generated_rate,
                "ratio",
            )
            .target(Target::AtLeast(0.85))
            .note(format!(
                "the server's own generated {BATCH}-row INSERT into a jobs-shaped table, in the same \
                 rounds: {} rows/s",
                number(generated_rate)
            )),
            Figure::new(
                format!("batch_defer_vs_unnest_insert_ratio.{name}"),
                batch_rate / unnest_rate,
                "ratio",
            )
            .note(format!(
                "a hand-written INSERT … unnest of the same jobs' tasks and arguments, sent as text \
                 arrays, answering ids, in the same rounds: {} rows/s",
                number(unnest_rate)
            )),
        ]);
    }
    figures.push(
        Figure::new("batch_insert_unnest", unnest_rate, "rows/s").note(format!(
            "reference: INSERT INTO raw_jobs (task, args) SELECT … FROM unnest($1::text[], $2::text[]) \
             RETURNING id, the arrays built from the same jobs, prepared, {} times, interleaved with \
             batch_defer",
            plan.batch_rounds * per_batch_round
        )),
    );
    figures.push(
        Figure::new("batch_insert_generated", generated_rate, "rows/s").note(format!(
            "reference: INSERT INTO raw_jobs (task, args) SELECT … FROM generate_series(1, {BATCH}), \
             prepared, one round trip per batch, \
             {} times, interleaved with batch_defer",
            plan.batch_rounds * per_batch_round
        )),
    );
    Ok(figures)
}

/// The two references of `batch_defer`, prepared on the setup connection.
struct References<'a> {
    generated: ::postgres::Statement,
    unnest: ::postgres::Statement,
    batch: &'a [NewJob],
}

impl References<'_> {
    /// Times `n` generated INSERTs, then `n` unnest INSERTs of the batch (its arrays built from the jobs,
    /// the client's work as jobq's is).
    fn time(
        &self,
        setup: &mut ::postgres::Client,
        n: usize,
    ) -> Result<(Duration, Duration), BoxError> {
        let generated = timed(n, |_| {
            setup.execute(&self.generated, &[])?;
            Ok(())
        })?;
        let unnest = timed(n, |_| {
            let jobs = self.batch.to_vec();
            let tasks: Vec<&str> = jobs.iter().map(|j| j.task.as_str()).collect();
            let args = jobs
                .iter()
                .map(|j| serde_json::to_string(&j.args))
                .collect::<Result<Vec<String>, _>>()?;
            let ids = setup.query(&self.unnest, &[&tasks, &args])?;
            std::hint::black_box(ids.iter().map(|r| r.get::<_, i64>(0)).sum::<i64>());
            Ok(())
        })?;
        Ok((generated, unnest))
    }
}

/// A current-thread runtime for the async drivers: their calls block on it one at a time.
fn runtime() -> Result<Runtime, BoxError> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
