//! The maintenance loop: every heartbeat interval, tell the server this worker is alive and which jobs it
//! holds (the server puts back any other it has `doing` here), pick up abort requests, recover the jobs of
//! stalled workers and prune.

use super::Backend;
use super::JobError;
use super::metrics::QueueGauges;
use super::shared::Shared;
use crate::Error;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Runs [`maintain_once`] every heartbeat interval, for as long as the worker lives (shutdown included);
/// with [`queue_metrics`](super::WorkerBuilder::queue_metrics), also [`queue_metrics_once`] at its interval,
/// beside it in the same task (so a slow count never delays a heartbeat, and both stop together).
pub(super) async fn maintain<B: Backend>(shared: Arc<Shared<B>>) {
    tokio::join!(heartbeats(&shared), queue_metrics(&shared));
}

fn every(period: Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

async fn heartbeats<B: Backend>(shared: &Shared<B>) {
    let mut ticker = every(shared.config.heartbeat_interval);
    loop {
        ticker.tick().await;
        if let Err(e) = maintain_once(shared).await {
            tracing::warn!(error = %e, "worker maintenance failed; trying again next heartbeat");
        }
    }
}

/// Sets the queue gauges at every tick of `queue_metrics`; returns at once when it is not set.
async fn queue_metrics<B: Backend>(shared: &Shared<B>) {
    let Some(interval) = shared.config.queue_metrics else {
        return;
    };
    let mut ticker = every(interval);
    let mut gauges = QueueGauges::default();
    loop {
        ticker.tick().await;
        if let Err(e) = queue_metrics_once(shared, &mut gauges).await {
            tracing::warn!(error = %e, "reading the queue gauges failed; trying again at the next interval");
        }
    }
}

/// Reads [`Jobq::queue_lag`](crate::Jobq::queue_lag), one statement that reads only waiting and running jobs
/// (through partial indexes, so finished jobs cost it nothing), and sets the queue gauges from it
/// ([`crate::metrics::queue_gauges`]).
async fn queue_metrics_once<B: Backend>(
    shared: &Shared<B>,
    gauges: &mut QueueGauges,
) -> Result<(), Error> {
    let lag = shared.run(shared.jobq.queue_lag()).await?;
    gauges.set(crate::metrics::queue_gauges(&lag));
    Ok(())
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
                let completion = shared.after_failure(&job, &error);
                shared.metrics.ended_unstarted(&job, completion.end());
                shared.end(completion);
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
