//! `sustained_ratio`: continuous deferral and work at a steady rate, well below capacity, for 30 minutes
//! (`--quick`: 3), with autovacuum as the server configures it by default; the jobs run in the last window
//! (5 minutes; quick: 1) ÷ those in the first. Every sample (30 s; quick: 10 s) prints the jobs deferred and
//! run, the waiting backlog, `pg_stat_user_tables.n_dead_tup` and `pg_total_relation_size` of `jobq.jobs`,
//! and the samples go into the figures' notes.
//!
//! The rate is half of what the same worker drains from a filled queue, measured first in the same run. A
//! producer defers it in `defer_batch` calls every 100 ms on a pool of its own; one worker
//! (tokio-postgres, as configured) runs the jobs and prunes finished jobs older than a minute, as a
//! long-running deployment would, so the table churns (updates, deletes, autovacuum) instead of only growing.

use crate::queue::{self, Noop};
use crate::report::{Figure, Report, Target, count, number};
use crate::{BoxError, Plan};
use jobq_core::worker::JobContext;
use jobq_core::{Jobq, NewJob};
use jobq_tokio_postgres::PoolExecutor;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often the producer defers a batch.
const TICK: Duration = Duration::from_millis(100);

/// The age at which the worker prunes finished jobs.
const PRUNE_AFTER: Duration = Duration::from_secs(60);

/// What the sampler reads every interval.
#[derive(Debug)]
struct Sample {
    at: Duration,
    deferred: usize,
    ran: usize,
    waiting: i64,
    dead: i64,
    live: i64,
    autovacuums: i64,
    bytes: i64,
}

/// Calibrates, runs the steady load for the plan's duration and reports the ratio and the samples.
pub(crate) async fn measure(
    url: &str,
    plan: &Plan,
    report: &Report,
) -> Result<Vec<Figure>, BoxError> {
    let client = queue::connect(url).await?;
    let (duration, window, every) = (
        plan.sustained.duration,
        plan.sustained.window,
        plan.sustained.sample,
    );

    // Capacity: the same worker draining a filled queue.
    let n = plan.worker_jobs;
    queue::reset(&client).await?;
    queue::fill(&client, n).await?;
    report.detail(format!(
        "sustained: measuring capacity on {} jobs",
        number(n as f64)
    ));
    let capacity = n as f64
        / crate::worker::drain(url, plan, &client, n, None)
            .await?
            .as_secs_f64();
    // Half of it, in whole batches per tick.
    let per_tick = ((capacity / 2.0) * TICK.as_secs_f64()).floor().max(1.0) as usize;
    let rate = per_tick as f64 / TICK.as_secs_f64();
    queue::reset(&client).await?;
    report.say(&format!(
        "sustained: capacity {} jobs/s, steady rate {} jobs/s for {} s",
        number(capacity),
        number(rate),
        duration.as_secs()
    ));

    let ran = Arc::new(AtomicUsize::new(0));
    let counter = ran.clone();
    let worker = plan
        .worker
        .builder(url)?
        .prune_after(PRUNE_AFTER)
        .task(move |_: Noop, _: JobContext| {
            counter.fetch_add(1, Ordering::Relaxed);
            async { Ok(()) }
        })
        .build();
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run_until(stop.clone().cancelled_owned()));

    let deferred = Arc::new(AtomicUsize::new(0));
    let producer = {
        let (deferred, stop) = (deferred.clone(), stop.clone());
        let pool = PoolExecutor::connect(url, 2)?;
        let job = NewJob::from_task(&Noop {})?;
        tokio::spawn(async move {
            let jobq = Jobq::default();
            let mut ticks = tokio::time::interval(TICK);
            while !stop.is_cancelled() {
                ticks.tick().await;
                jobq.defer_batch(std::iter::repeat_n(job.clone(), per_tick))
                    .run(&pool)
                    .await?;
                deferred.fetch_add(per_tick, Ordering::Relaxed);
            }
            Ok::<_, BoxError>(())
        })
    };

    let start = Instant::now();
    let mut samples = vec![sample(&client, Duration::ZERO, 0, 0).await?];
    let mut next = every;
    while next <= duration {
        tokio::time::sleep_until((start + next).into()).await;
        if producer.is_finished() || running.is_finished() {
            break;
        }
        let s = sample(
            &client,
            start.elapsed(),
            deferred.load(Ordering::Relaxed),
            ran.load(Ordering::Relaxed),
        )
        .await?;
        report.say(&format!(
            "sustained: {:>5} s: deferred {}, ran {}, waiting {}, dead tuples {}, live {}, \
             autovacuums {}, jobs table + indexes {:.1} MiB",
            s.at.as_secs(),
            count(s.deferred as i64),
            count(s.ran as i64),
            count(s.waiting),
            count(s.dead),
            count(s.live),
            s.autovacuums,
            mib(s.bytes)
        ));
        report.detail(format!(
            "sustained: {} of {} s",
            s.at.as_secs(),
            duration.as_secs()
        ));
        samples.push(s);
        next += every;
    }
    stop.cancel();
    producer.await??;
    running.await??;
    let covered = samples.last().map_or(Duration::ZERO, |s| s.at);
    if covered + every < duration {
        return Err(format!("the load stopped after {} s", covered.as_secs()).into());
    }

    // Jobs run (and deferred) between two sample times (the samples fall on multiples of `every`).
    let at = |t: Duration| {
        samples
            .iter()
            .min_by_key(|s| s.at.abs_diff(t))
            .map_or((0, 0), |s| (s.ran, s.deferred))
    };
    let between = |from: Duration, to: Duration| {
        let ((ran_from, deferred_from), (ran_to, deferred_to)) = (at(from), at(to));
        (ran_to - ran_from, deferred_to - deferred_from)
    };
    let ((first, first_deferred), (last, last_deferred)) = (
        between(Duration::ZERO, window),
        between(duration.saturating_sub(window), duration),
    );
    // The ratio compares the windows' throughput only; whether the worker kept up with the steady rate in
    // each, and how it went between them, is the evidence beside it: a window that fell behind (a stall,
    // a growing backlog) makes the ratio low, or above 1 when the first window is the one that did.
    let kept_up = |ran: usize, deferred: usize| 100.0 * ran as f64 / deferred.max(1) as f64;
    let slowest = samples
        .windows(2)
        .map(|w| {
            let seconds = (w[1].at - w[0].at).as_secs_f64().max(f64::EPSILON);
            ((w[1].ran - w[0].ran) as f64 / seconds, w[1].at)
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap_or((0.0, Duration::ZERO));
    let backlog_max = samples
        .iter()
        .max_by_key(|s| s.waiting)
        .map_or((0, Duration::ZERO), |s| (s.waiting, s.at));
    let per_second = |jobs: usize| jobs as f64 / window.as_secs_f64();
    let mut series = String::new();
    for s in &samples {
        let _ = write!(
            series,
            "{}s: waiting {}, dead {}, {:.1} MiB; ",
            s.at.as_secs(),
            s.waiting,
            s.dead,
            mib(s.bytes)
        );
    }
    let end = samples.last().ok_or("no samples")?;
    let quick = if plan.quick { "quick run: " } else { "" };
    Ok(vec![
        Figure::new(
            "sustained_ratio",
            last as f64 / first.max(1) as f64,
            "ratio",
        )
        .target(Target::AtLeast(0.9))
        .note(format!(
            "{quick}{} s of defer + work at {} jobs/s (half the measured capacity of {} jobs/s); \
                 last {} s: {} jobs/s run ({:.0}% of those deferred in it), first {} s: {} jobs/s \
                 ({:.0}%); slowest {} s: {} jobs/s (to {} s); waiting at most {} (at {} s), at the end \
                 {}; {}; prune_after {} s; autovacuum as configured by default",
            duration.as_secs(),
            number(rate),
            number(capacity),
            window.as_secs(),
            number(per_second(last)),
            kept_up(last, last_deferred),
            window.as_secs(),
            number(per_second(first)),
            kept_up(first, first_deferred),
            every.as_secs(),
            number(slowest.0),
            slowest.1.as_secs(),
            count(backlog_max.0),
            backlog_max.1.as_secs(),
            count(end.waiting),
            plan.worker.describe(),
            PRUNE_AFTER.as_secs()
        )),
        Figure::new("sustained_backlog_max", backlog_max.0 as f64, "jobs").note(format!(
            "jobs waiting (status todo), sampled every {} s: at most {} at {} s, {} at the end",
            every.as_secs(),
            count(backlog_max.0),
            backlog_max.1.as_secs(),
            count(end.waiting)
        )),
        Figure::new(
            "sustained_dead_tuples_max",
            samples.iter().map(|s| s.dead).max().unwrap_or(0) as f64,
            "rows",
        )
        .note(format!(
            "n_dead_tup of jobq.jobs, sampled every {} s; {} autovacuums of it in the run",
            every.as_secs(),
            end.autovacuums - samples[0].autovacuums
        )),
        Figure::new("sustained_table_mib", mib(end.bytes), "MiB").note(format!(
            "pg_total_relation_size('jobq.jobs') at the end; over time: {}",
            series.trim_end_matches("; ")
        )),
    ])
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Reads the table's statistics and the backlog.
async fn sample(
    client: &tokio_postgres::Client,
    at: Duration,
    deferred: usize,
    ran: usize,
) -> Result<Sample, BoxError> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM jobq.jobs WHERE status = 'todo'),
                    n_dead_tup, n_live_tup, autovacuum_count,
                    pg_total_relation_size('jobq.jobs')
             FROM pg_stat_user_tables WHERE schemaname = 'jobq' AND relname = 'jobs'",
            &[],
        )
        .await?;
    Ok(Sample {
        at,
        deferred,
        ran,
        waiting: row.try_get(0)?,
        dead: row.try_get(1)?,
        live: row.try_get(2)?,
        autovacuums: row.try_get(3)?,
        bytes: row.try_get(4)?,
    })
}
