//! A worker's life: start (check, listen, register), the loops, and [`stop`].

use super::complete::{Completion, End, complete_loop};
use super::fetch::fetch_loop;
use super::listen::{listen, open_listener};
use super::maintain::maintain;
use super::periodic::defer_periodic;
use super::shared::{Shared, within};
use super::{Backend, Worker};
use crate::{Error, Job, JobId};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long blocking handlers get to notice an abort at shutdown, after the shutdown timeout.
const ABORT_GRACE: Duration = Duration::from_secs(1);

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
    config.check()?;
    within(
        config.statement_timeout,
        jobq.check_schema().run(backend.executor()),
    )
    .await?;
    let listening = if config.listen {
        open_listener(&jobq, &backend, config.statement_timeout).await?
    } else {
        None
    };
    let id = within(
        config.statement_timeout,
        jobq.register_worker(&config.name, config.queues.as_deref())
            .run(backend.executor()),
    )
    .await?;
    let (completions, completed) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared::new(jobq, backend, tasks, config, id, completions));
    tracing::info!(worker = %shared.config.name, id, "jobq worker started");
    let stop_completer = CancellationToken::new();
    let loops = Loops {
        completer: tokio::spawn(complete_loop(
            shared.clone(),
            completed,
            stop_completer.clone(),
        )),
        stop_completer,
        maintainer: tokio::spawn(maintain(shared.clone())),
        helpers: [
            listening.map(|notifications| tokio::spawn(listen(shared.clone(), notifications))),
            (!periodic.is_empty()).then(|| tokio::spawn(defer_periodic(shared.clone(), periodic))),
        ]
        .into_iter()
        .flatten()
        .collect(),
    };
    let semaphore = Arc::new(Semaphore::new(shared.config.concurrency));
    let waiting = fetch_loop(&shared, &semaphore, shutdown).await;
    stop(shared, semaphore, waiting, loops).await
}

/// The worker's background tasks.
struct Loops {
    completer: JoinHandle<()>,
    stop_completer: CancellationToken,
    maintainer: JoinHandle<()>,
    helpers: Vec<JoinHandle<()>>,
}

/// Stops the worker, returning within the shutdown timeout plus [`ABORT_GRACE`] plus one statement
/// timeout, even when the server is silent:
///
/// 1. jobs fetched but not started go back at once, their attempt not charged;
/// 2. running jobs get the shutdown timeout to finish, then are aborted, and go back uncharged too (it was
///    not their fault); blocking handlers get [`ABORT_GRACE`] to notice;
/// 3. the ends are reported, for at most one statement timeout, and the worker unregisters.
///
/// A blocking handler that ignores its abort is left running: the worker then stays registered and keeps
/// heartbeating in the background until the handler returns (so no other worker takes the job and runs
/// it a second time meanwhile), reports its end and unregisters. Either way, what could not be finished
/// is returned as [`Error::ShutdownIncomplete`].
async fn stop<B: Backend>(
    shared: Arc<Shared<B>>,
    semaphore: Arc<Semaphore>,
    waiting: VecDeque<Job>,
    loops: Loops,
) -> Result<(), Error> {
    tracing::info!(worker = %shared.config.name, "jobq worker stopping");
    shared
        .stopping
        .store(true, std::sync::atomic::Ordering::Relaxed);
    for helper in &loops.helpers {
        helper.abort();
    }
    for job in waiting {
        shared.end(Completion::new(job.id, job.attempts, End::Release, None));
    }
    let all = u32::try_from(shared.config.concurrency).unwrap_or(u32::MAX);
    let finished = |limit| tokio::time::timeout(limit, semaphore.acquire_many(all));
    if finished(shared.config.shutdown_timeout).await.is_err() {
        let ids: Vec<JobId> = shared.running().keys().copied().collect();
        tracing::warn!(jobs = ids.len(), "shutdown timeout: aborting running jobs");
        for id in ids {
            shared.abort(id, true);
        }
        let _ = finished(ABORT_GRACE).await;
    }
    let left_running: Vec<JobId> = shared.running().keys().copied().collect();
    if !left_running.is_empty() {
        tracing::error!(
            jobs = ?left_running,
            "blocking handlers ignored their abort; the worker stays registered until they return"
        );
        tokio::spawn(keep_alive_until_done(shared, semaphore, loops, all));
        return Err(Error::ShutdownIncomplete {
            unreported: Vec::new(),
            left_running,
        });
    }
    finish(&shared, loops).await;
    let unreported = shared.held();
    if unreported.is_empty() {
        Ok(())
    } else {
        tracing::error!(
            jobs = unreported.len(),
            "job ends that could not be reported before the shutdown bound; the next worker recovers them"
        );
        Err(Error::ShutdownIncomplete {
            unreported,
            left_running: Vec::new(),
        })
    }
}

/// Reports what is left and unregisters, in one statement timeout at most; then stops the loops.
async fn finish<B: Backend>(shared: &Shared<B>, loops: Loops) {
    let Loops {
        mut completer,
        stop_completer,
        maintainer,
        ..
    } = loops;
    stop_completer.cancel();
    let flushed = tokio::time::timeout(shared.config.statement_timeout, &mut completer).await;
    completer.abort();
    maintainer.abort();
    if flushed.is_ok() {
        let unregister = shared.jobq.unregister_worker(shared.worker_id());
        if let Err(e) = shared.run(unregister).await {
            tracing::warn!(error = %e, "unregistering the worker failed; others will declare it dead");
        }
    }
}

/// Heartbeats (the maintainer goes on) until the handlers left running return, then finishes.
async fn keep_alive_until_done<B: Backend>(
    shared: Arc<Shared<B>>,
    semaphore: Arc<Semaphore>,
    loops: Loops,
    all: u32,
) {
    let _ = semaphore.acquire_many(all).await;
    tracing::info!("the handlers left running at shutdown have returned");
    finish(&shared, loops).await;
}
