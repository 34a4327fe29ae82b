//! The worker's loops: fetch, run, complete, listen, heartbeat and recover, periodic deferral.

use super::task::{JobContext, JobError, Registered};
use super::{Backend, Config, Notification, Worker, panic_message};
use crate::{Error, ErrorKind, Job, JobId, Jobq, Query};
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How a job ends, as sent to the completer.
#[derive(Debug, Serialize)]
struct Completion {
    id: JobId,
    status: &'static str,
    error: Option<String>,
    scheduled_at: Option<DateTime<Utc>>,
    queue: Option<String>,
    priority: Option<i32>,
    lock: Option<String>,
    delete: bool,
}

impl Completion {
    fn new(id: JobId, status: &'static str, error: Option<String>) -> Self {
        Self {
            id,
            status,
            error,
            scheduled_at: None,
            queue: None,
            priority: None,
            lock: None,
            delete: false,
        }
    }
}

struct Running {
    abort: CancellationToken,
    by_shutdown: Arc<AtomicBool>,
}

struct Shared<B> {
    jobq: Jobq,
    backend: B,
    tasks: HashMap<String, Registered>,
    config: Config,
    worker_id: AtomicI64,
    running: Mutex<HashMap<JobId, Running>>,
    wake: Notify,
    /// Jobs ended so far, to size the next fetch.
    ended: AtomicUsize,
    completions: mpsc::UnboundedSender<Completion>,
}

impl<B: Backend> Shared<B> {
    fn worker_id(&self) -> i64 {
        self.worker_id.load(Ordering::Relaxed)
    }

    async fn run<T: Send>(&self, query: Query<T>) -> Result<T, Error> {
        query.run(self.backend.executor()).await
    }

    /// The completion of a failed attempt: a retry per the task's strategy, or `failed`.
    fn after_failure(&self, job: &Job, error: &JobError) -> Completion {
        let attempt = u32::try_from(job.attempts).unwrap_or(0);
        let decision = self
            .tasks
            .get(&job.task)
            .and_then(|t| t.retry.after_failure(attempt, error));
        match decision {
            Some(d) => Completion {
                scheduled_at: d.at,
                queue: d.queue,
                priority: d.priority,
                lock: d.lock,
                ..Completion::new(job.id, "todo", Some(error.message().to_owned()))
            },
            None => Completion::new(job.id, "failed", Some(error.message().to_owned())),
        }
    }

    fn abort(&self, id: JobId, by_shutdown: bool) {
        if let Some(running) = self.running.lock().expect("running jobs").get(&id) {
            running.by_shutdown.store(by_shutdown, Ordering::Relaxed);
            running.abort.cancel();
        }
    }
}

fn register(jobq: &Jobq, config: &Config) -> Query<i64> {
    let arg = json!({ "name": &*config.name, "queues": config.queues });
    jobq.json_query(&jobq.statements().worker_register, arg, |rows: Vec<i64>| {
        rows.first()
            .copied()
            .ok_or_else(|| Error::InvalidInput("the server returned no worker id".into()))
    })
}

pub(super) async fn run<B: Backend>(
    worker: Worker<B>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), Error> {
    let Worker {
        jobq,
        backend,
        tasks,
        periodic,
        config,
    } = worker;
    jobq.check_schema().run(backend.executor()).await?;
    let listening = if config.listen {
        open_listener(&jobq, &backend).await?
    } else {
        None
    };
    let id = register(&jobq, &config).run(backend.executor()).await?;
    let (completions, completed) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        jobq,
        backend,
        tasks,
        config,
        worker_id: AtomicI64::new(id),
        running: Mutex::new(HashMap::new()),
        wake: Notify::new(),
        ended: AtomicUsize::new(0),
        completions,
    });
    tracing::info!(worker = %shared.config.name, id, "jobq worker started");
    let stop_completer = CancellationToken::new();
    let completer = tokio::spawn(complete_loop(
        shared.clone(),
        completed,
        stop_completer.clone(),
    ));
    let mut helpers = vec![tokio::spawn(maintain(shared.clone()))];
    if let Some(notifications) = listening {
        helpers.push(tokio::spawn(listen(shared.clone(), notifications)));
    }
    if !periodic.is_empty() {
        helpers.push(tokio::spawn(defer_periodic(shared.clone(), periodic)));
    }

    let semaphore = Arc::new(Semaphore::new(shared.config.concurrency));
    let mut waiting = fetch_loop(&shared, &semaphore, shutdown).await;

    tracing::info!(worker = %shared.config.name, "jobq worker stopping");
    for helper in &helpers {
        helper.abort();
    }
    // The fetched jobs not started yet are about one fetch's round trip of work: run them too.
    let all = u32::try_from(shared.config.concurrency).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(shared.config.shutdown_timeout, async {
        while !waiting.is_empty() {
            start_waiting(&shared, &semaphore, &mut waiting);
            shared.wake.notified().await;
        }
        semaphore.acquire_many(all).await
    })
    .await;
    for job in waiting {
        let error = JobError::new("interrupted by worker shutdown before it started");
        let _ = shared.completions.send(shared.after_failure(&job, &error));
    }
    if drained.is_err() {
        let ids: Vec<JobId> = shared
            .running
            .lock()
            .expect("running jobs")
            .keys()
            .copied()
            .collect();
        tracing::warn!(jobs = ids.len(), "shutdown timeout: aborting running jobs");
        for id in ids {
            shared.abort(id, true);
        }
        // Async handlers stop at once; blocking ones get as long again to notice.
        let _ =
            tokio::time::timeout(shared.config.shutdown_timeout, semaphore.acquire_many(all)).await;
    }
    stop_completer.cancel();
    let _ = completer.await;
    let arg = json!({ "worker_id": shared.worker_id() });
    let unregister = shared.jobq.json_query(
        &shared.jobq.statements().worker_unregister,
        arg,
        |_: Vec<serde_json::Value>| Ok(()),
    );
    shared.run(unregister).await?;
    Ok(())
}

/// Fetches jobs and starts them as slots free up, until `shutdown`; returns the jobs fetched but not
/// started yet.
///
/// Besides the free slots, a fetch takes as many jobs as the worker is expected to end during one fetch's
/// round trip (the recent rate of ended jobs times the last round trip, at most `fetch_batch`). Short jobs
/// thus get full batches and the next fetch overlaps the running ones; the jobs that wait here are about
/// what the worker ends while a fetch is on the way. Long jobs get no extra, so no worker hoards jobs
/// another could run.
async fn fetch_loop<B: Backend>(
    shared: &Arc<Shared<B>>,
    semaphore: &Arc<Semaphore>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> VecDeque<Job> {
    tokio::pin!(shutdown);
    let config = &shared.config;
    // Under load, wait until half a batch can be fetched: a fetch costs about as much for one job as for
    // dozens, so small fetches would spend the database's time on overhead.
    let low_water = (config.fetch_batch.min(config.concurrency) / 2).max(1);
    let mut waiting = VecDeque::new();
    let mut round_trip = Duration::ZERO;
    let (mut since, mut ended_since) = (Instant::now(), 0);
    loop {
        start_waiting(shared, semaphore, &mut waiting);
        let free = semaphore.available_permits();
        let busy = free < config.concurrency;
        let ended = shared.ended.load(Ordering::Relaxed);
        let rate = (ended - ended_since) as f64 / since.elapsed().as_secs_f64().max(1e-6);
        let extra = ((rate * round_trip.as_secs_f64()) as usize).min(config.fetch_batch);
        let want = (free + extra)
            .saturating_sub(waiting.len())
            .min(config.fetch_batch);
        if want >= low_water || (!busy && want > 0) {
            let arg =
                json!({ "worker_id": shared.worker_id(), "queues": config.queues, "limit": want });
            let reader = shared.clone();
            let fetch = shared.jobq.query(
                &shared.jobq.statements().fetch,
                Some(arg.to_string()),
                move |rows| {
                    Ok::<Vec<Job>, _>(
                        rows.iter()
                            .filter_map(|row| readable(&reader, row))
                            .collect(),
                    )
                },
            );
            (since, ended_since) = (Instant::now(), ended);
            let result = shared.run(fetch).await;
            round_trip = since.elapsed();
            match result {
                Ok(jobs) => {
                    let full = jobs.len() == want;
                    waiting.extend(jobs);
                    start_waiting(shared, semaphore, &mut waiting);
                    // A full batch means more may be due: look again at once.
                    if full {
                        continue;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "fetching jobs failed; retrying"),
            }
        }
        tokio::select! {
            biased;
            () = &mut shutdown => return waiting,
            () = shared.wake.notified() => {}
            () = tokio::time::sleep(config.poll_interval) => {}
        }
    }
}

/// A fetched row as a [`Job`]. A row the worker cannot read is already `doing` on this worker: it fails at
/// once with the reason rather than waiting there forever.
fn readable<B: Backend>(shared: &Shared<B>, row: &str) -> Option<Job> {
    #[derive(Deserialize)]
    struct Id {
        id: JobId,
    }
    let error = match serde_json::from_str::<Job>(row) {
        Ok(job) => return Some(job),
        Err(e) => e,
    };
    match serde_json::from_str::<Id>(row) {
        Ok(Id { id }) => {
            tracing::error!(%id, %error, "a fetched job could not be read; failing it");
            let reason = format!("the worker could not read the stored job: {error}");
            let _ = shared
                .completions
                .send(Completion::new(id, "failed", Some(reason)));
        }
        Err(_) => tracing::error!(%error, "a fetched row could not be read at all"),
    }
    None
}

/// Starts fetched jobs while slots are free.
fn start_waiting<B: Backend>(
    shared: &Arc<Shared<B>>,
    semaphore: &Arc<Semaphore>,
    waiting: &mut VecDeque<Job>,
) {
    while !waiting.is_empty() {
        let Ok(permit) = semaphore.clone().try_acquire_owned() else {
            return;
        };
        if let Some(job) = waiting.pop_front() {
            tokio::spawn(execute(shared.clone(), job, permit));
        }
    }
}

enum Outcome {
    Succeeded,
    Failed(JobError),
    Aborted,
}

async fn execute<B: Backend>(
    shared: Arc<Shared<B>>,
    job: Job,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let abort = CancellationToken::new();
    let by_shutdown = Arc::new(AtomicBool::new(false));
    shared.running.lock().expect("running jobs").insert(
        job.id,
        Running {
            abort: abort.clone(),
            by_shutdown: by_shutdown.clone(),
        },
    );
    let span = tracing::info_span!("job", id = %job.id, task = %job.task, queue = %job.queue, attempt = job.attempts);
    let outcome = run_handler(&shared, &job, &abort)
        .instrument(span.clone())
        .await;
    let completion = match outcome {
        Outcome::Succeeded => {
            span.in_scope(|| tracing::info!("job succeeded"));
            Completion {
                delete: shared.config.delete_succeeded,
                ..Completion::new(job.id, "succeeded", None)
            }
        }
        Outcome::Aborted if by_shutdown.load(Ordering::Relaxed) => {
            span.in_scope(|| tracing::warn!("job interrupted by worker shutdown"));
            shared.after_failure(&job, &JobError::new("interrupted by worker shutdown"))
        }
        Outcome::Aborted => {
            span.in_scope(|| tracing::info!("job aborted"));
            Completion::new(job.id, "aborted", Some("aborted on request".into()))
        }
        Outcome::Failed(error) => {
            span.in_scope(|| tracing::warn!(error = %error, "job failed"));
            shared.after_failure(&job, &error)
        }
    };
    shared.running.lock().expect("running jobs").remove(&job.id);
    let _ = shared.completions.send(completion);
    drop(permit);
    shared.ended.fetch_add(1, Ordering::Relaxed);
    shared.wake.notify_one();
}

async fn run_handler<B: Backend>(
    shared: &Shared<B>,
    job: &Job,
    abort: &CancellationToken,
) -> Outcome {
    let Some(task) = shared.tasks.get(&job.task) else {
        return Outcome::Failed(JobError::permanent(format!(
            "no task named {:?} is registered on worker {}",
            job.task, shared.config.name
        )));
    };
    let ctx = JobContext {
        job: Arc::new(job.clone()),
        worker: shared.config.name.clone(),
        abort: abort.clone(),
    };
    let handler = AssertUnwindSafe((task.run)(job.args.clone(), ctx)).catch_unwind();
    let result = if task.blocking {
        Some(handler.await)
    } else {
        tokio::select! {
            result = handler => Some(result),
            () = abort.cancelled() => None,
        }
    };
    match result {
        None => Outcome::Aborted,
        Some(_) if abort.is_cancelled() => Outcome::Aborted,
        Some(Ok(Ok(()))) => Outcome::Succeeded,
        Some(Ok(Err(error))) => Outcome::Failed(error),
        Some(Err(panic)) => Outcome::Failed(JobError::new(panic_message(panic))),
    }
}

/// Ends jobs in batches: whatever has finished since the last statement goes in the next one.
async fn complete_loop<B: Backend>(
    shared: Arc<Shared<B>>,
    mut completed: mpsc::UnboundedReceiver<Completion>,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            biased;
            completion = completed.recv() => completion,
            () = stop.cancelled() => completed.try_recv().ok(),
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        while batch.len() < 1000 {
            match completed.try_recv() {
                Ok(completion) => batch.push(completion),
                Err(_) => break,
            }
        }
        let arg = json!({ "worker_id": shared.worker_id(), "jobs": batch });
        for attempt in 1.. {
            let complete = shared.jobq.json_query(
                &shared.jobq.statements().complete,
                &arg,
                |_: Vec<serde_json::Value>| Ok(()),
            );
            match shared.run(complete).await {
                Ok(()) => break,
                Err(e) if attempt < 10 => {
                    tracing::warn!(error = %e, attempt, "ending jobs failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100) * attempt).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, jobs = batch.len(), "ending jobs failed; they will be recovered as stalled");
                    break;
                }
            }
        }
    }
}

/// How long a starting worker waits to hear its own probe NOTIFY.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the LISTEN connection and checks that it hears: a NOTIFY sent through the pool must arrive. `None`
/// when the backend cannot LISTEN (the worker polls).
async fn open_listener<B: Backend>(
    jobq: &Jobq,
    backend: &B,
) -> Result<Option<mpsc::UnboundedReceiver<Notification>>, Error> {
    let mut notifications = match backend.listen(channels(jobq)).await {
        Ok(notifications) => notifications,
        Err(e) if e.kind == ErrorKind::Unsupported => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let token = format!(
        "jobq-probe-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let probe = jobq.query(&jobq.statements().notify_probe, Some(token.clone()), |_| {
        Ok(())
    });
    probe.run(backend.executor()).await?;
    let heard = tokio::time::timeout(PROBE_TIMEOUT, async {
        while let Some(n) = notifications.recv().await {
            if n.payload == token {
                return true;
            }
        }
        false
    })
    .await;
    match heard {
        Ok(true) => Ok(Some(notifications)),
        _ => Err(Error::ListenUnheard {
            waited: PROBE_TIMEOUT,
        }),
    }
}

/// The channels a worker LISTENs on: new jobs and abort requests.
fn channels(jobq: &Jobq) -> Vec<String> {
    vec![jobq.channel().to_owned(), jobq.abort_channel()]
}

/// Handles notifications, and LISTENs again by itself when the connection is lost; polling covers the gaps.
async fn listen<B: Backend>(
    shared: Arc<Shared<B>>,
    mut notifications: mpsc::UnboundedReceiver<Notification>,
) {
    let abort_channel = shared.jobq.abort_channel();
    loop {
        while let Some(n) = notifications.recv().await {
            if n.channel == abort_channel {
                if let Ok(id) = n.payload.parse() {
                    shared.abort(JobId(id), false);
                }
            } else if n.payload.is_empty()
                || shared
                    .config
                    .queues
                    .as_ref()
                    .is_none_or(|q| q.contains(&n.payload))
            {
                shared.wake.notify_one();
            }
        }
        tracing::warn!("the LISTEN connection was lost; polling until it is back");
        notifications = loop {
            tokio::time::sleep(shared.config.poll_interval).await;
            match shared.backend.listen(channels(&shared.jobq)).await {
                Ok(notifications) => break notifications,
                Err(e) => tracing::warn!(error = %e, "LISTEN failed; polling meanwhile"),
            }
        };
        // Jobs deferred while the connection was down were not announced.
        shared.wake.notify_one();
    }
}

/// Heartbeats, picks up abort requests, recovers stalled workers' jobs and prunes, every heartbeat interval.
async fn maintain<B: Backend>(shared: Arc<Shared<B>>) {
    let mut ticker = tokio::time::interval(shared.config.heartbeat_interval);
    loop {
        ticker.tick().await;
        if let Err(e) = maintain_once(&shared).await {
            tracing::warn!(error = %e, "worker maintenance failed; trying again next heartbeat");
        }
    }
}

async fn maintain_once<B: Backend>(shared: &Shared<B>) -> Result<(), Error> {
    let sql = shared.jobq.statements();
    let heartbeat = shared.jobq.json_query(
        &sql.worker_heartbeat,
        json!({ "worker_id": shared.worker_id() }),
        |rows: Vec<Vec<JobId>>| Ok(rows.into_iter().next()),
    );
    match shared.run(heartbeat).await? {
        Some(aborts) => aborts.into_iter().for_each(|id| shared.abort(id, false)),
        None => {
            tracing::warn!("this worker was declared dead by another; registering again");
            let id = shared.run(register(&shared.jobq, &shared.config)).await?;
            shared.worker_id.store(id, Ordering::Relaxed);
        }
    }
    let arg = json!({
        "worker_id": shared.worker_id(),
        "stalled_after_seconds": shared.config.stalled_after.as_secs_f64(),
    });
    let stalled = shared
        .run(
            shared
                .jobq
                .json_query(&sql.recover_stalled, arg, Ok::<Vec<Job>, Error>),
        )
        .await?;
    for job in stalled {
        tracing::warn!(id = %job.id, task = %job.task, "recovering a job of a stalled worker");
        let error = JobError::new("its worker stopped heartbeating (stalled)");
        let _ = shared.completions.send(shared.after_failure(&job, &error));
    }
    if let Some(age) = shared.config.prune_after {
        let pruned = shared.run(shared.jobq.prune(age)).await?;
        if pruned > 0 {
            tracing::info!(pruned, "pruned finished jobs");
        }
    }
    Ok(())
}

/// Defers each periodic task's job once per tick, whichever worker gets there first.
async fn defer_periodic<B: Backend>(shared: Arc<Shared<B>>, periodic: Vec<super::Periodic>) {
    let mut last = Utc::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticker.tick().await;
        let now = Utc::now();
        for p in &periodic {
            for tick in p.ticks(last, now) {
                let mut job = p.job.clone();
                job.options.scheduled_at = Some(tick);
                let arg = json!({ "task": p.key, "tick": tick, "job": job });
                let defer = shared.jobq.json_query(
                    &shared.jobq.statements().defer_periodic,
                    arg,
                    |_: Vec<serde_json::Value>| Ok(()),
                );
                if let Err(e) = shared.run(defer).await {
                    tracing::warn!(error = %e, task = %p.key, %tick, "deferring a periodic job failed");
                }
            }
        }
        last = now;
    }
}
