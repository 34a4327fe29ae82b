//! LISTEN: new jobs wake the fetch loop at once, abort requests reach running jobs at once. Polling covers
//! whatever LISTEN misses.

use super::shared::{Shared, within};
use super::{Backend, Notification};
use crate::{Error, ErrorKind, JobId, Jobq};
use chrono::Utc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};

/// How long a starting worker waits to hear its own probe NOTIFY.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What probe payloads start with; workers ignore them as wake-ups.
const PROBE_PREFIX: &str = "jobq-probe-";

/// Checks that a running worker's LISTEN connection still hears: every heartbeat sends a probe NOTIFY
/// through the pool unless one is still out; one unheard for longer than a heartbeat and a statement
/// timeout means the connection went silent (a lost host whose sockets stay open, say), and the listener
/// opens a new one. Polling covers the gap meanwhile.
#[derive(Debug, Default)]
pub(super) struct Probe {
    /// The LISTEN connection is open.
    listening: AtomicBool,
    /// The probe sent and not heard yet, with when it was sent.
    out: Mutex<Option<(String, Instant)>>,
    /// Tells the listener its connection went silent.
    silent: Notify,
}

impl Probe {
    fn out(&self) -> std::sync::MutexGuard<'_, Option<(String, Instant)>> {
        self.out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A notification arrived: whether it was the probe (which is then heard).
    fn heard(&self, payload: &str) -> bool {
        if !payload.starts_with(PROBE_PREFIX) {
            return false;
        }
        let mut out = self.out();
        if out.as_ref().is_some_and(|(token, _)| token == payload) {
            *out = None;
        }
        true
    }
}

/// A token no other probe has.
fn probe_token() -> String {
    format!(
        "{PROBE_PREFIX}{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )
}

/// Sends a probe, or, when the last one went unheard for longer than `patience`, tells the listener to
/// open a new connection. Called by every heartbeat.
pub(super) async fn probe<B: Backend>(shared: &Shared<B>, patience: Duration) -> Result<(), Error> {
    let probe = &shared.probe;
    // A stopping worker has stopped listening.
    if !probe.listening.load(Ordering::Relaxed) || shared.stopping.load(Ordering::Relaxed) {
        return Ok(());
    }
    let token = {
        let mut out = probe.out();
        match out.as_ref() {
            Some((_, sent)) if sent.elapsed() > patience => {
                tracing::warn!("the LISTEN connection no longer hears; opening a new one");
                *out = None;
                probe.listening.store(false, Ordering::Relaxed);
                probe.silent.notify_one();
                return Ok(());
            }
            Some(_) => return Ok(()),
            None => {
                let token = probe_token();
                *out = Some((token.clone(), Instant::now()));
                token
            }
        }
    };
    shared.run(shared.jobq.notify_probe(&token)).await
}

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
    let token = probe_token();
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
        shared.probe.listening.store(true, Ordering::Relaxed);
        loop {
            let n = tokio::select! {
                n = notifications.recv() => n,
                () = shared.probe.silent.notified() => None,
            };
            let Some(n) = n else { break };
            if shared.probe.heard(&n.payload) {
                continue;
            }
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
        shared.probe.listening.store(false, Ordering::Relaxed);
        // Dropping the receiver closes the connection.
        drop(notifications);
        tracing::warn!("the LISTEN connection was lost; polling until it is back");
        notifications = loop {
            let opened = within(
                shared.config.statement_timeout,
                shared.backend.listen(channels(&shared.jobq)),
            )
            .await;
            match opened {
                Ok(notifications) => break notifications,
                Err(e) => tracing::warn!(error = %e, "LISTEN failed; polling meanwhile"),
            }
            tokio::time::sleep(shared.config.poll_interval).await;
        };
        // Jobs deferred while the connection was down were not announced.
        shared.wake.notify_one();
    }
}
