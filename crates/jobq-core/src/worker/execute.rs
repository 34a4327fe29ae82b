//! Running one job: its handler, its abort, and the end it reports.

use super::Backend;
use super::JobError;
use super::complete::{Completion, End};
use super::metrics::Ran;
use super::shared::{Running, Shared};
use super::task::JobContext;
use crate::Job;
use futures_util::FutureExt;
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Starts fetched jobs while slots are free.
pub(super) fn start_waiting<B: Backend>(
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
    TimedOut(std::time::Duration),
}

async fn execute<B: Backend>(shared: Arc<Shared<B>>, job: Job, permit: OwnedSemaphorePermit) {
    let abort = CancellationToken::new();
    let by_shutdown = Arc::new(AtomicBool::new(false));
    shared.running().insert(
        job.id,
        Running {
            abort: abort.clone(),
            by_shutdown: by_shutdown.clone(),
        },
    );
    let span = tracing::info_span!(
        "job",
        id = %job.id,
        task = %job.task,
        queue = %job.queue,
        attempt = job.attempts,
        // Recorded when the handler returns: its run time, and how it ended (a `Ran` label value).
        duration_ms = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    super::trace::link_to_deferral(&span, &job);
    let metrics = shared.metrics.started(&job);
    let started = Instant::now();
    let outcome = run_handler(&shared, &job, &abort)
        .instrument(span.clone())
        .await;
    let duration = started.elapsed();
    let ran = match outcome {
        Outcome::Succeeded => Ran::Succeeded,
        Outcome::Aborted if by_shutdown.load(Ordering::Relaxed) => Ran::Released,
        Outcome::Aborted => Ran::Aborted,
        Outcome::Failed(_) => Ran::Failed,
        Outcome::TimedOut(_) => Ran::TimedOut,
    };
    span.record("duration_ms", duration.as_secs_f64() * 1000.0);
    span.record("outcome", ran.as_str());
    let completion = span.in_scope(|| match outcome {
        Outcome::Succeeded => {
            tracing::info!("job succeeded");
            Completion::succeeded(job.id, job.attempts, shared.config.delete_succeeded)
        }
        Outcome::Aborted if ran == Ran::Released => {
            // Not the job's fault: back to the queue, the attempt not charged.
            tracing::warn!("job interrupted by worker shutdown; putting it back");
            Completion::new(
                job.id,
                job.attempts,
                End::Release,
                Some("interrupted by worker shutdown"),
            )
        }
        Outcome::Aborted => {
            tracing::info!("job aborted");
            Completion::new(
                job.id,
                job.attempts,
                End::Aborted,
                Some("aborted on request"),
            )
        }
        // `after_failure` emits the failed attempt's event: retried when, or final and why.
        Outcome::Failed(error) => shared.after_failure(&job, &error),
        Outcome::TimedOut(limit) => {
            let error = JobError::new(format!("timed out after {limit:?}")).with_kind("timeout");
            shared.after_failure(&job, &error)
        }
    });
    metrics.ended(&shared.metrics, ran, completion.end(), duration);
    shared.running().remove(&job.id);
    shared.end(completion);
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
        state: shared.config.state.clone(),
    };
    let handler = AssertUnwindSafe((task.run)(job.args.clone(), ctx)).catch_unwind();
    tokio::pin!(handler);
    let limit = task.timeout.or(shared.config.job_timeout);
    let timed_out = async {
        match limit {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        result = &mut handler => Some(result),
        () = abort.cancelled(), if !task.blocking => None,
        () = timed_out => {
            let limit = limit.unwrap_or_default();
            if task.blocking {
                // Its thread cannot be stopped: it sees the abort, and the job ends when it returns.
                abort.cancel();
                let _ = handler.await;
            }
            return Outcome::TimedOut(limit);
        }
    };
    match result {
        None => Outcome::Aborted,
        Some(_) if abort.is_cancelled() => Outcome::Aborted,
        Some(Ok(Ok(()))) => Outcome::Succeeded,
        Some(Ok(Err(error))) => Outcome::Failed(error),
        Some(Err(panic)) => Outcome::Failed(JobError::panicked(panic)),
    }
}
