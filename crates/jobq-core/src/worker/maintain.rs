//! The maintenance loop: every heartbeat interval, tell the server this worker is alive and which jobs it
//! holds (the server puts back any other it has `doing` here), pick up abort requests, recover the jobs of
//! stalled workers and prune.

use super::Backend;
use super::JobError;
use super::shared::Shared;
use crate::Error;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Runs [`maintain_once`] every heartbeat interval, for as long as the worker lives (shutdown included).
pub(super) async fn maintain<B: Backend>(shared: Arc<Shared<B>>) {
    let mut ticker = tokio::time::interval(shared.config.heartbeat_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(e) = maintain_once(&shared).await {
            tracing::warn!(error = %e, "worker maintenance failed; trying again next heartbeat");
        }
    }
}

/// One heartbeat; while the worker is not stopping, also stalled-job recovery and pruning.
pub(super) async fn maintain_once<B: Backend>(shared: &Shared<B>) -> Result<(), Error> {
    let stopping = shared.stopping.load(Ordering::Relaxed);
    {
        // No fetch or recovery of this worker is on its way while the heartbeat says what it holds.
        let _turn = shared.handover.lock().await;
        let held = shared.held();
        match shared
            .run(shared.jobq.heartbeat(shared.worker_id(), &held))
            .await?
        {
            Some(beat) => {
                beat.aborts
                    .into_iter()
                    .for_each(|id| shared.abort(id, false));
                if beat.released > 0 {
                    tracing::warn!(
                        jobs = beat.released,
                        "put back jobs the server had running here that this worker never received \
                         (an answer lost on the way); their attempt is not charged"
                    );
                }
            }
            None => {
                tracing::warn!("this worker was declared dead by another; registering again");
                let config = &shared.config;
                let id = shared
                    .run(
                        shared
                            .jobq
                            .register_worker(&config.name, config.queues.as_deref()),
                    )
                    .await?;
                shared.set_worker_id(id);
            }
        }
        if !stopping {
            let stalled = shared
                .run(
                    shared
                        .jobq
                        .recover_stalled(shared.worker_id(), shared.config.stalled_after),
                )
                .await?;
            shared.hold(stalled.iter().map(|job| job.id));
            for job in stalled {
                tracing::warn!(id = %job.id, task = %job.task, "recovering a job of a stalled worker");
                let error = JobError::new("its worker stopped heartbeating (stalled)");
                shared.end(shared.after_failure(&job, &error));
            }
        }
    }
    let patience = shared.config.heartbeat_interval + shared.config.statement_timeout;
    super::listen::probe(shared, patience).await?;
    if let Some(age) = shared.config.prune_after.filter(|_| !stopping) {
        let pruned = shared.run(shared.jobq.prune(age)).await?;
        if pruned > 0 {
            tracing::info!(pruned, "pruned finished jobs");
        }
    }
    Ok(())
}
