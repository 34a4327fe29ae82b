//! Running every due job to its end and returning: [`Worker::run_until_idle`], for tests.
//!
//! The worker's own pieces do the work (its fetch statement, `start_waiting`, the completer, the
//! heartbeat), in rounds instead of the endless fetch loop: fetch what is due, run it, wait until every end
//! is stored, and again, until a fetch finds nothing. A job that a handler defers, or a retry due at once,
//! is due by the next round, so it runs too; a job scheduled later (a retry with back-off, say) is not.

use super::complete::{Completion, End, complete_loop};
use super::execute::start_waiting;
use super::fetch::take;
use super::maintain::maintain;
use super::shared::{Shared, within};
use super::{Backend, Worker};
use crate::{Error, Job};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// How often the drain looks whether the ends of a round are stored.
const REPORTED_POLL: Duration = Duration::from_millis(5);

/// What [`Worker::run_until_idle`] ran: how each attempt ended.
///
/// A job counts once per attempt: a job that failed, was retried at once and then succeeded counts once
/// in `retried` and once in `succeeded`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainSummary {
    /// Attempts whose handler succeeded.
    pub succeeded: usize,
    /// Attempts that failed for good (no retry left, a permanent error, an unknown task, an unreadable row).
    pub failed: usize,
    /// Attempts that failed and were put back to run again (due at once, or later per the retry strategy).
    pub retried: usize,
    /// Attempts stopped on request ([`Jobq::cancel`](crate::Jobq::cancel) with `abort`).
    pub aborted: usize,
}

impl DrainSummary {
    /// Every attempt that ran.
    pub fn total(&self) -> usize {
        self.succeeded + self.failed + self.retried + self.aborted
    }

    /// Counts one end.
    fn count(&mut self, completion: &Completion) {
        match completion.end() {
            End::Succeeded => self.succeeded += 1,
            End::Failed => self.failed += 1,
            End::Retry => self.retried += 1,
            End::Aborted => self.aborted += 1,
            // Put back uncharged: it never ran to an end.
            End::Release => {}
        }
    }
}

impl<B: Backend> Worker<B> {
    /// Runs every due job to its end, then the jobs that became due meanwhile (deferred by a handler,
    /// retried at once), until no job is due, and returns how the attempts ended. Meant for tests: a test
    /// defers jobs, drains, and checks what the handlers did.
    ///
    /// The worker's settings apply (queues, tasks, concurrency, job timeouts, retry strategies); it runs in
    /// rounds of at most `concurrency` jobs and returns once every end is stored. It does not LISTEN and
    /// does not defer [`periodic`](super::WorkerBuilder::periodic) jobs. Jobs scheduled later (a retry with
    /// back-off) are left waiting and counted as `retried`. A handler that always defers another due job
    /// never lets it return.
    ///
    /// Fails when a statement fails (the worker then unregisters and the jobs it held go back), with
    /// [`Error::InvalidInput`] for contradicting settings, and with [`Error::ShutdownIncomplete`] when the
    /// ends of a round could not be stored within the statement timeout.
    ///
    /// ```no_run
    /// # async fn demo<B: jobq_core::worker::Backend>(backend: B) -> Result<(), jobq_core::Error> {
    /// use jobq_core::worker::{JobContext, Worker};
    /// use jobq_core::Task;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct SendEmail { to: String }
    /// impl Task for SendEmail { const NAME: &'static str = "send_email"; }
    ///
    /// let summary = Worker::builder(jobq_core::Jobq::default(), backend)
    ///     .task(|_: SendEmail, _: JobContext| async { Ok(()) })
    ///     .build()
    ///     .run_until_idle()
    ///     .await?;
    /// assert_eq!(summary.failed, 0);
    /// # Ok(()) }
    /// ```
    pub async fn run_until_idle(self) -> Result<DrainSummary, Error> {
        let Worker {
            jobq,
            backend,
            tasks,
            periodic: _,
            config,
        } = self;
        config.check()?;
        let limit = config.statement_timeout;
        within(limit, jobq.check_schema().run(backend.executor())).await?;
        let id = within(
            limit,
            jobq.register_worker(&config.name, config.queues.as_deref())
                .run(backend.executor()),
        )
        .await?;
        // The ends go through a counter on their way to the completer.
        let (completions, mut ends) = mpsc::unbounded_channel::<Completion>();
        let (to_completer, completed) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(jobq, backend, tasks, config, id, completions));
        let summary = Arc::new(Mutex::new(DrainSummary::default()));
        let counter = tokio::spawn({
            let summary = summary.clone();
            async move {
                while let Some(completion) = ends.recv().await {
                    lock(&summary).count(&completion);
                    if to_completer.send(completion).is_err() {
                        return;
                    }
                }
            }
        });
        let stop_completer = CancellationToken::new();
        let completer = tokio::spawn(complete_loop(
            shared.clone(),
            completed,
            stop_completer.clone(),
        ));
        let maintainer = tokio::spawn(maintain(shared.clone()));

        let drained = rounds(&shared).await;

        shared.stopping.store(true, Ordering::Relaxed);
        maintainer.abort();
        stop_completer.cancel();
        let flushed = tokio::time::timeout(limit, completer).await.is_ok();
        counter.abort();
        if flushed {
            let unregister = shared.jobq.unregister_worker(shared.worker_id());
            if let Err(e) = shared.run(unregister).await {
                tracing::warn!(error = %e, "unregistering the draining worker failed");
            }
        }
        drained?;
        let unreported = shared.held();
        if !unreported.is_empty() {
            return Err(Error::ShutdownIncomplete {
                unreported,
                left_running: Vec::new(),
            });
        }
        let summary = *lock(&summary);
        Ok(summary)
    }
}

fn lock(summary: &Mutex<DrainSummary>) -> std::sync::MutexGuard<'_, DrainSummary> {
    summary
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Fetches and runs rounds of due jobs until a fetch finds none, each round's ends stored before the next.
async fn rounds<B: Backend>(shared: &Arc<Shared<B>>) -> Result<(), Error> {
    let concurrency = shared.config.concurrency;
    let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
    let semaphore = Arc::new(Semaphore::new(concurrency));
    let want = concurrency.min(shared.config.fetch_batch);
    loop {
        stored(shared).await?;
        let mut waiting: VecDeque<Job> = take(shared, want).await?.into();
        if waiting.is_empty() && shared.held().is_empty() {
            return Ok(());
        }
        while !waiting.is_empty() {
            start_waiting(shared, &semaphore, &mut waiting);
            if !waiting.is_empty() {
                // Not reached while a round is at most `concurrency` jobs; kept so it never spins.
                drop(semaphore.acquire().await);
            }
        }
        // Every handler of the round has returned and handed its end over.
        drop(semaphore.acquire_many(all).await);
    }
}

/// Waits until the server has taken every end handed over so far, for at most one statement timeout.
async fn stored<B: Backend>(shared: &Shared<B>) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + shared.config.statement_timeout;
    loop {
        let held = shared.held();
        if held.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::ShutdownIncomplete {
                unreported: held,
                left_running: Vec::new(),
            });
        }
        tokio::time::sleep(REPORTED_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobId;

    #[test]
    fn every_end_is_counted_where_it_belongs() {
        let mut summary = DrainSummary::default();
        for end in [
            End::Succeeded,
            End::Succeeded,
            End::Failed,
            End::Retry,
            End::Aborted,
            End::Release,
        ] {
            summary.count(&Completion::new(JobId(1), 1, end, None));
        }
        summary.count(&Completion::succeeded(JobId(2), 1, true));
        let expected = DrainSummary {
            succeeded: 3,
            failed: 1,
            retried: 1,
            aborted: 1,
        };
        assert_eq!(summary, expected);
        assert_eq!(summary.total(), 6);
    }
}
