//! The fetch loop: takes jobs in batches and starts them as slots free up.

use super::Backend;
use super::complete::{Completion, End};
use super::execute::start_waiting;
use super::shared::Shared;
use super::statements::Fetched;
use crate::{Error, Job};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How soon a failed fetch is tried again (or at the poll interval, when that is sooner).
const FETCH_RETRY: Duration = Duration::from_millis(500);

/// Fetches jobs and starts them as slots free up, until `shutdown`; returns the jobs fetched but not
/// started yet.
///
/// Besides the free slots, a fetch takes as many jobs as the worker is expected to end during one fetch's
/// round trip (the recent rate of ended jobs times the last round trip, at most `fetch_batch`). Short jobs
/// thus get full batches and the next fetch overlaps the running ones; the jobs that wait here are about
/// what the worker ends while a fetch is on the way. Long jobs get no extra, so no worker hoards jobs
/// another could run.
pub(super) async fn fetch_loop<B: Backend>(
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
        let mut pause = config.poll_interval;
        if want >= low_water || (!busy && want > 0) {
            (since, ended_since) = (Instant::now(), ended);
            let fetched = fetch(shared, want).await;
            round_trip = since.elapsed();
            if fetched.is_none() {
                // A failed fetch is tried again soon, not only at the next poll or notification.
                pause = pause.min(FETCH_RETRY);
            }
            if let Some(jobs) = fetched {
                let full = jobs.len() == want;
                waiting.extend(jobs);
                start_waiting(shared, semaphore, &mut waiting);
                // A full batch means more may be due: look again at once.
                if full {
                    continue;
                }
            }
        }
        tokio::select! {
            biased;
            () = &mut shutdown => {
                // The shutdown puts them back uncharged.
                shared.metrics.released_unstarted(&waiting);
                return waiting;
            }
            () = shared.wake.notified() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// One fetch of up to `want` jobs for the fetch loop: `None` when the fetch failed; whatever it may have
/// taken on the server, the next heartbeat puts back.
async fn fetch<B: Backend>(shared: &Shared<B>, want: usize) -> Option<Vec<Job>> {
    match take(shared, want).await {
        Ok(jobs) => Some(jobs),
        Err(e) => {
            tracing::warn!(error = %e, "fetching jobs failed; retrying");
            None
        }
    }
}

/// One fetch of up to `want` jobs, which the worker holds from the moment their answer arrives. A row it
/// cannot read is already `doing` here: it fails at once with the reason rather than waiting forever.
pub(super) async fn take<B: Backend>(shared: &Shared<B>, want: usize) -> Result<Vec<Job>, Error> {
    let queues = shared.config.queues.as_deref();
    let tasks = shared.fetched_tasks.as_deref();
    let _turn = shared.handover.lock().await;
    let sent = Instant::now();
    let rows = shared
        .run(shared.jobq.fetch(shared.worker_id(), queues, tasks, want))
        .await?;
    shared.metrics.fetched(rows.len(), sent.elapsed());
    let mut jobs = Vec::with_capacity(rows.len());
    for row in rows {
        match row {
            Fetched::Job(job) => {
                shared.hold([job.id]);
                jobs.push(job);
            }
            Fetched::Unreadable {
                id,
                attempt,
                reason,
            } => {
                tracing::error!(%id, %reason, "a fetched job could not be read; failing it");
                shared.hold([id]);
                shared.end(Completion::new(id, attempt, End::Failed, Some(&reason)));
            }
        }
    }
    Ok(jobs)
}
