//! The fetch at scale: `fetch_other_tasks_ratio` (a fetch of 10 for a worker knowing `noop` with many jobs of
//! another task ahead of its own, from every queue and from a named one, divided by the same without them),
//! `fetch_lock_backlog_ratio` (a fetch of 10 with a long backlog behind one running lock,
//! from every queue and from a named one, divided by the same without the backlog), `multi_queue_fetch_ratio`
//! (a fetch of 10 from 3 large queues divided by one from one of them) and `many_queues_ratio` (a worker of
//! 10,000 one-job queues draining them, divided by a worker of one queue draining as many jobs). The fetches
//! run the worker's own statement (`sql/queries/fetch.sql`, `fetch_jobs`) through the tokio-postgres adapter
//! with the worker's arguments (its known tasks, `["noop"]`); every queue is filled through `defer_batch`.

use crate::queue::{self, FILL_BATCH, Noop};
use crate::report::{Figure, Report, Target, number};
use crate::{BoxError, Plan};
use jobq_core::{AsyncExecutor, IntoAsyncExecutor, Job, NewJob, Task};
use jobq_tokio_postgres::TokioPostgres;
use serde_json::json;
use std::time::Instant;
use tokio_postgres::Client;

/// The sizes of the scale figures.
#[derive(Debug)]
pub(crate) struct ScalePlan {
    /// Jobs of another task waiting ahead of the fetching worker's own.
    pub(crate) other_tasks: usize,
    /// Jobs waiting behind the running head of one lock.
    pub(crate) lock_backlog: usize,
    /// Timed fetches per case (the median is reported).
    pub(crate) fetch_samples: usize,
    /// One-job queues the many-queues worker serves (and jobs it drains).
    pub(crate) queues: usize,
    /// Jobs waiting in each of the 3 queues of the multi-queue fetch.
    pub(crate) multi_queue_jobs: usize,
}

/// The jobs one timed fetch asks for.
const FETCH: usize = 10;

/// Untimed fetches before the samples, which warm the cache and PL/pgSQL's plans.
const WARMUP: usize = 3;

/// The named queue of the lock-backlog figure's jobs (not `default`, so a fetch from it walks the queue
/// index, as a worker of chosen queues does).
const QUEUE: &str = "scale";

/// The queues of the multi-queue figure.
const MULTI: [&str; 3] = ["multi-a", "multi-b", "multi-c"];

/// Puts fetched jobs back as they were before the fetch, outside the timed part.
const PUT_BACK: &str =
    "UPDATE jobq.jobs SET status = 'todo', attempts = attempts - 1, started_at = NULL,
        worker_id = NULL
    WHERE id = ANY ($1)";

/// The three figures, each on a freshly emptied table.
pub(crate) async fn measure(
    url: &str,
    plan: &Plan,
    report: &Report,
) -> Result<Vec<Figure>, BoxError> {
    let client = queue::connect(url).await?;
    let mut figures = lock_backlog(&client, plan, report).await?;
    figures.extend(multi_queue(&client, plan, report).await?);
    figures.extend(many_queues(url, &client, plan, report).await?);
    figures.extend(other_tasks(&client, plan, report).await?);
    Ok(figures)
}

/// A no-op job in `queue`, under `lock` when given.
fn job(queue: &str, lock: Option<&str>) -> Result<NewJob, BoxError> {
    let mut job = NewJob::from_task(&Noop {})?;
    job.options.queue = Some(queue.to_owned());
    job.options.lock = lock.map(str::to_owned);
    Ok(job)
}

/// Defers `jobs` through jobq's `defer_batch`, [`FILL_BATCH`] at a time, as a producer would.
async fn defer_all(
    client: &Client,
    jobs: impl IntoIterator<Item = NewJob>,
) -> Result<(), BoxError> {
    let jobq = jobq_core::Jobq::default();
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        jobq.defer_batch(jobs.by_ref().take(FILL_BATCH))
            .run(client)
            .await?;
    }
    Ok(())
}

/// A worker row, as a running worker has, for the fetches' `worker_id`.
async fn register(client: &Client) -> Result<i64, BoxError> {
    Ok(client
        .query_one(
            "INSERT INTO jobq.workers (name) VALUES ('jobq-bench') RETURNING id",
            &[],
        )
        .await?
        .get(0))
}

/// The worker's fetch statement on one connection.
struct Fetcher<'c> {
    executor: <&'c Client as IntoAsyncExecutor<TokioPostgres>>::Executor,
    sql: String,
    worker_id: i64,
}

impl<'c> Fetcher<'c> {
    fn new(client: &'c Client, worker_id: i64) -> Result<Self, BoxError> {
        Ok(Self {
            executor: IntoAsyncExecutor::<TokioPostgres>::into_executor(client)?,
            sql: queue::render(
                include_str!("../../jobq-core/sql/queries/fetch.sql"),
                &jobq_core::Jobq::default(),
            ),
            worker_id,
        })
    }

    /// One fetch of up to `limit` jobs from `queues` (every queue when `None`), as the worker sends it.
    async fn fetch(&mut self, queues: Option<&[&str]>, limit: usize) -> Result<Vec<Job>, BoxError> {
        let arg = json!({ "worker_id": self.worker_id, "queues": queues, "tasks": [Noop::NAME],
                          "limit": limit })
        .to_string();
        Ok(self
            .executor
            .query(&self.sql, Some(&arg))
            .await?
            .iter()
            .map(|row| serde_json::from_str::<Job>(row))
            .collect::<Result<Vec<_>, _>>()?)
    }
}

/// Times a fetch of [`FETCH`] jobs from each of `cases` in turn, `samples` times (after [`WARMUP`] rounds),
/// putting the fetched jobs back after each; returns each case's median in milliseconds.
async fn median_fetches(
    client: &Client,
    fetcher: &mut Fetcher<'_>,
    cases: &[Option<&[&str]>],
    samples: usize,
) -> Result<Vec<f64>, BoxError> {
    let put_back = client.prepare(PUT_BACK).await?;
    let mut times = vec![Vec::with_capacity(samples); cases.len()];
    for round in 0..WARMUP + samples {
        for (case, queues) in cases.iter().enumerate() {
            let start = Instant::now();
            let jobs = fetcher.fetch(*queues, FETCH).await?;
            let took = start.elapsed().as_secs_f64() * 1_000.0;
            if jobs.len() != FETCH {
                return Err(format!("fetched {} jobs, expected {FETCH}", jobs.len()).into());
            }
            let ids: Vec<i64> = jobs.iter().map(|j| j.id.0).collect();
            client.execute(&put_back, &[&ids]).await?;
            if round >= WARMUP {
                times[case].push(took);
            }
        }
    }
    Ok(times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect())
}

/// `fetch_lock_backlog_ratio`, from every queue and from the named queue.
async fn lock_backlog(
    client: &Client,
    plan: &Plan,
    report: &Report,
) -> Result<Vec<Figure>, BoxError> {
    let scale = &plan.scale;
    let free = 1_000;
    let mut medians = Vec::new();
    for backlog in [0, scale.lock_backlog] {
        queue::reset(client).await?;
        let worker_id = register(client).await?;
        let mut fetcher = Fetcher::new(client, worker_id)?;
        report.detail(format!(
            "lock backlog: a running lock head, {} jobs behind it, {free} free jobs",
            number(backlog as f64)
        ));
        // The lock's head first, fetched so it runs (on a worker that stays registered); then its backlog, and
        // after it the jobs without a lock, so the fetch meets the backlog before the jobs it can take.
        defer_all(client, [job(QUEUE, Some("tenant"))?]).await?;
        let head = fetcher.fetch(None, 1).await?;
        if head.len() != 1 || head[0].lock.as_deref() != Some("tenant") {
            return Err("the lock's head was not fetched first".into());
        }
        let behind = job(QUEUE, Some("tenant"))?;
        defer_all(client, std::iter::repeat_n(behind, backlog)).await?;
        defer_all(client, std::iter::repeat_n(job(QUEUE, None)?, free)).await?;
        // Also sets the hint bits and the visibility map, as autovacuum would have by then.
        client.batch_execute("VACUUM ANALYZE jobq.jobs").await?;
        report.detail(format!(
            "lock backlog {}: {} fetches of {FETCH} from every queue and from {QUEUE}",
            number(backlog as f64),
            scale.fetch_samples
        ));
        medians.push(
            median_fetches(
                client,
                &mut fetcher,
                &[None, Some(&[QUEUE])],
                scale.fetch_samples,
            )
            .await?,
        );
    }
    let quick = if plan.quick {
        " (quick: a shorter backlog)"
    } else {
        ""
    };
    Ok(with_and_without(
        "fetch_lock_backlog",
        &medians,
        scale.fetch_samples,
        |with, without| {
            format!(
                "{with:.2} ms with {} jobs waiting behind one running lock{quick}, {without:.2} ms with the \
                 lock's head running and none behind; {free} jobs without a lock after the backlog",
                number(scale.lock_backlog as f64)
            )
        },
    ))
}

/// The figures of a fetch timed without and with what should not slow it (`medians[0]` and `[1]`, each
/// from every queue and from [`QUEUE`], as [`median_fetches`] gives them): `{name}_ratio` and
/// `{name}_ratio_named_queue` (with ÷ without, target ≤ 1.5), and `{name}_ms` and `{name}_named_queue_ms`
/// (with). `setting` describes the two cases, given their medians in milliseconds.
fn with_and_without(
    name: &str,
    medians: &[Vec<f64>],
    samples: usize,
    setting: impl Fn(f64, f64) -> String,
) -> Vec<Figure> {
    let (without, with) = (&medians[0], &medians[1]);
    let named = format!("the queue {QUEUE}");
    let cases = [("every queue", ""), (named.as_str(), "_named_queue")];
    let mut figures = Vec::new();
    for (case, (from, suffix)) in cases.into_iter().enumerate() {
        figures.push(
            Figure::new(
                format!("{name}_ratio{suffix}"),
                with[case] / without[case],
                "ratio",
            )
            .target(Target::AtMost(1.5))
            .note(format!(
                "median of {samples} fetches of {FETCH} from {from} (fetch.sql, tasks [noop]): {}; \
                 fetched jobs put back untimed",
                setting(with[case], without[case])
            )),
        );
        figures.push(
            Figure::new(format!("{name}{suffix}_ms"), with[case], "ms")
                .note(format!("from {from}, with what should not slow it")),
        );
    }
    figures
}

/// The task of the jobs a `noop` worker does not know.
const OTHER_TASK: &str = "other";

/// `fetch_other_tasks_ratio`, from every queue and from the named queue: a worker knowing only `noop`, with
/// `other_tasks` jobs of another task ahead of its own (half older at the same priority, half of a higher
/// priority), against the same fetch with none of them.
async fn other_tasks(
    client: &Client,
    plan: &Plan,
    report: &Report,
) -> Result<Vec<Figure>, BoxError> {
    let scale = &plan.scale;
    let own = 1_000;
    let mut medians = Vec::new();
    for others in [0, scale.other_tasks] {
        queue::reset(client).await?;
        report.detail(format!(
            "other tasks: {} jobs of the task {OTHER_TASK} ahead of {own} noop jobs",
            number(others as f64)
        ));
        let mut older = NewJob::new(OTHER_TASK, json!({}));
        older.options.queue = Some(QUEUE.to_owned());
        let mut higher = older.clone();
        higher.options.priority = Some(1);
        defer_all(client, std::iter::repeat_n(older, others / 2)).await?;
        defer_all(client, std::iter::repeat_n(job(QUEUE, None)?, own)).await?;
        defer_all(client, std::iter::repeat_n(higher, others - others / 2)).await?;
        // Also sets the hint bits and the visibility map, as autovacuum would have by then.
        client.batch_execute("VACUUM ANALYZE jobq.jobs").await?;
        let worker_id = register(client).await?;
        let mut fetcher = Fetcher::new(client, worker_id)?;
        report.detail(format!(
            "other tasks {}: {} fetches of {FETCH} from every queue and from {QUEUE}",
            number(others as f64),
            scale.fetch_samples
        ));
        medians.push(
            median_fetches(
                client,
                &mut fetcher,
                &[None, Some(&[QUEUE])],
                scale.fetch_samples,
            )
            .await?,
        );
    }
    let quick = if plan.quick {
        " (quick: fewer jobs of the other task)"
    } else {
        ""
    };
    Ok(with_and_without(
        "fetch_other_tasks",
        &medians,
        scale.fetch_samples,
        |with, without| {
            format!(
                "{with:.2} ms with {} jobs of the task {OTHER_TASK} ahead of {own} noop jobs (half older, \
                 half of a higher priority){quick}, {without:.2} ms with the noop jobs alone",
                number(scale.other_tasks as f64)
            )
        },
    ))
}

/// `multi_queue_fetch_ratio`: 3 queues of `multi_queue_jobs` jobs each, deferred interleaved; a fetch from
/// the 3 and one from the first, alternating.
async fn multi_queue(
    client: &Client,
    plan: &Plan,
    report: &Report,
) -> Result<Vec<Figure>, BoxError> {
    let scale = &plan.scale;
    let n = scale.multi_queue_jobs;
    queue::reset(client).await?;
    report.detail(format!(
        "multi-queue: filling 3 queues of {} jobs through defer_batch",
        number(n as f64)
    ));
    let jobs: Vec<NewJob> = MULTI
        .iter()
        .map(|q| job(q, None))
        .collect::<Result<_, _>>()?;
    let fill = Instant::now();
    defer_all(
        client,
        (0..n * MULTI.len()).map(|i| jobs[i % MULTI.len()].clone()),
    )
    .await?;
    let fill = fill.elapsed();
    client.batch_execute("VACUUM ANALYZE jobq.jobs").await?;
    let worker_id = register(client).await?;
    let mut fetcher = Fetcher::new(client, worker_id)?;
    report.detail(format!(
        "multi-queue: {} fetches of {FETCH} from 3 queues and from one",
        scale.fetch_samples
    ));
    let medians = median_fetches(
        client,
        &mut fetcher,
        &[Some(&MULTI), Some(&MULTI[..1])],
        scale.fetch_samples,
    )
    .await?;
    let quick = if plan.quick {
        " (quick: smaller queues)"
    } else {
        ""
    };
    Ok(vec![
        Figure::new("multi_queue_fetch_ratio", medians[0] / medians[1], "ratio")
            .target(Target::AtMost(1.5))
            .note(format!(
                "median of {} fetches of {FETCH} (fetch.sql, tasks [noop]) naming 3 queues of {} waiting jobs \
                 each{quick}: {:.2} ms; naming one of them: {:.2} ms; the {} jobs (no others in the table) \
                 deferred interleaved through defer_batch of {FILL_BATCH} in {:.0} s, fetched jobs put back \
                 untimed",
                scale.fetch_samples,
                number(n as f64),
                medians[0],
                medians[1],
                number((n * MULTI.len()) as f64),
                fill.as_secs_f64()
            )),
    ])
}

/// `many_queues_ratio`: a worker naming `queues` queues of one job each drains them, against a worker of one
/// queue draining as many jobs.
async fn many_queues(
    url: &str,
    client: &Client,
    plan: &Plan,
    report: &Report,
) -> Result<Vec<Figure>, BoxError> {
    let n = plan.scale.queues;
    queue::reset(client).await?;
    report.detail(format!(
        "many queues: one worker of one queue draining {} jobs",
        number(n as f64)
    ));
    defer_all(client, std::iter::repeat_n(job(QUEUE, None)?, n)).await?;
    client.batch_execute("ANALYZE jobq.jobs").await?;
    let one = crate::worker::drain(url, plan, client, n, Some(vec![QUEUE.to_owned()])).await?;

    queue::reset(client).await?;
    let names: Vec<String> = (0..n).map(|i| format!("q{i:05}")).collect();
    defer_all(
        client,
        names
            .iter()
            .map(|q| job(q, None))
            .collect::<Result<Vec<_>, _>>()?,
    )
    .await?;
    client.batch_execute("ANALYZE jobq.jobs").await?;
    report.detail(format!(
        "many queues: one worker of {} queues draining one job from each",
        number(n as f64)
    ));
    let many = crate::worker::drain(url, plan, client, n, Some(names)).await?;
    let quick = if plan.quick && n < 10_000 {
        " (quick: fewer queues than the full run's 10,000)"
    } else {
        ""
    };
    Ok(vec![
        Figure::new(
            "many_queues_ratio",
            many.as_secs_f64() / one.as_secs_f64(),
            "ratio",
        )
        .target(Target::AtMost(3.0))
        .note(format!(
            "{n} jobs in {n} queues, one each, drained by one worker naming all {n} queues: {:.2} s; {n} jobs \
             in one queue by a worker of that queue: {:.2} s{quick}; {}; filled by defer_batch; each timed \
             from its first job's start",
            many.as_secs_f64(),
            one.as_secs_f64(),
            plan.worker.describe()
        )),
    ])
}
