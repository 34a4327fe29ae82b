//! LISTEN: new jobs wake the fetch loop at once, abort requests reach running jobs at once. Polling covers
//! whatever LISTEN misses.

use super::shared::{Shared, within};
use super::{Backend, Notification};
use crate::{Error, ErrorKind, JobId, Jobq};
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a starting worker waits to hear its own probe NOTIFY.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the LISTEN connection and checks that it hears: a NOTIFY sent through the pool must arrive. `None`
/// when the backend cannot LISTEN (the worker polls).
pub(super) async fn open_listener<B: Backend>(
    jobq: &Jobq,
    backend: &B,
    statement_timeout: Duration,
) -> Result<Option<mpsc::UnboundedReceiver<Notification>>, Error> {
    let mut notifications = match within(statement_timeout, backend.listen(channels(jobq))).await {
        Ok(notifications) => notifications,
        Err(e) if e.connector_kind() == Some(ErrorKind::Unsupported) => return Ok(None),
        Err(e) => return Err(e),
    };
    let token = format!(
        "jobq-probe-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    within(
        statement_timeout,
        jobq.notify_probe(&token).run(backend.executor()),
    )
    .await?;
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
pub(super) async fn listen<B: Backend>(
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
            let opened = within(
                shared.config.statement_timeout,
                shared.backend.listen(channels(&shared.jobq)),
            )
            .await;
            match opened {
                Ok(notifications) => break notifications,
                Err(e) => tracing::warn!(error = %e, "LISTEN failed; polling meanwhile"),
            }
        };
        // Jobs deferred while the connection was down were not announced.
        shared.wake.notify_one();
    }
}
