//! Ending jobs: what a finished job reports ([`Completion`]) and the loop that reports it until the server
//! has taken it.
//!
//! A completion is never dropped: a batch the server does not take because it cannot be reached is tried
//! again with capped back-off for as long as the process lives; a job someone else's lock holds up is tried
//! again later without holding up the rest; a batch the server refuses is split until the one job it
//! refuses is found, and that job fails with the server's reason.

use super::Backend;
use super::retry::RetryDecision;
use super::shared::Shared;
use crate::limits::{clamp_time, storable_text};
use crate::{Error, ErrorKind, JobId};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{HashSet, VecDeque};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The most completions in one statement.
const BATCH: usize = 1000;
/// The first and the longest wait before reporting again what the server did not take.
const FIRST_RETRY: Duration = Duration::from_millis(50);
const LONGEST_RETRY: Duration = Duration::from_secs(5);

/// How a job ends, as the server's `end_jobs` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum End {
    /// The handler succeeded.
    Succeeded,
    /// The handler failed, for good.
    Failed,
    /// Stopped on request.
    Aborted,
    /// The handler failed; run it again.
    Retry,
    /// Never ran here, or was stopped by this worker's shutdown: back to `todo`, the attempt not charged.
    Release,
}

/// One job's end, ready to store: every value is one PostgreSQL accepts.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Completion {
    pub(super) id: JobId,
    /// The attempt that ends: a later attempt of the same job is not touched.
    attempt: i32,
    end: End,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lock: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    delete: bool,
    /// This is already the failure that replaced a refused completion.
    #[serde(skip)]
    replaces_refused: bool,
}

impl Completion {
    /// How the job ends.
    pub(super) fn end(&self) -> End {
        self.end
    }

    /// When a retry runs again; `None` for now, or for an end that is not a retry.
    pub(super) fn scheduled_at(&self) -> Option<DateTime<Utc>> {
        self.scheduled_at
    }

    /// Attempt `attempt` of job `id` ends as `end`, with `error` (its NUL characters replaced).
    pub(super) fn new(id: JobId, attempt: i32, end: End, error: Option<&str>) -> Self {
        Self {
            id,
            attempt,
            end,
            error: error.map(|e| storable_text(e).into_owned()),
            scheduled_at: None,
            queue: None,
            priority: None,
            lock: None,
            delete: false,
            replaces_refused: false,
        }
    }

    /// A success, deleted instead of kept when `delete` is true.
    pub(super) fn succeeded(id: JobId, attempt: i32, delete: bool) -> Self {
        Self {
            delete,
            ..Self::new(id, attempt, End::Succeeded, None)
        }
    }

    /// A failure to run again as `decision` says; times beyond what PostgreSQL stores become the latest
    /// it stores.
    pub(super) fn retry(id: JobId, attempt: i32, error: &str, decision: RetryDecision) -> Self {
        Self {
            scheduled_at: decision.at.map(clamp_time),
            queue: decision.queue,
            priority: decision.priority,
            lock: decision.lock,
            ..Self::new(id, attempt, End::Retry, Some(error))
        }
    }

    /// The failure that replaces a completion the server refused, with its reason.
    fn refused(&self, error: &Error) -> Self {
        let reason = format!(
            "the worker could not store this job's end ({:?}): {error}",
            self.end
        );
        Self {
            replaces_refused: true,
            ..Self::new(self.id, self.attempt, End::Failed, Some(&reason))
        }
    }
}

/// Whether an error means "not now" (the server is unreachable, busy or restarting: try again) rather than
/// "never" (the server refused these values).
pub(super) fn is_transient(error: &Error) -> bool {
    let Error::Connector(e) = error else {
        return false;
    };
    match e.sqlstate.as_deref() {
        // Data exceptions, integrity violations, syntax or access rule violations but for missing objects
        // and privileges, program limits: the same values fail again.
        Some(code) => {
            let refused = ["22", "23", "42", "54"].iter().any(|c| code.starts_with(c))
                && !matches!(
                    e.kind,
                    ErrorKind::UndefinedObject | ErrorKind::InsufficientPrivilege
                );
            !refused
        }
        None => !matches!(
            e.kind,
            ErrorKind::Protocol | ErrorKind::InvalidInput | ErrorKind::Unsupported
        ),
    }
}

/// Reports completions as they come until `stop`, then until every one is reported. The caller bounds how
/// long that last part may take; whatever is left is still in the worker's held set.
pub(super) async fn complete_loop<B: Backend>(
    shared: std::sync::Arc<Shared<B>>,
    mut incoming: mpsc::UnboundedReceiver<Completion>,
    stop: CancellationToken,
) {
    let mut later: VecDeque<Completion> = VecDeque::new();
    let mut retry_at: Option<Instant> = None;
    let mut wait = FIRST_RETRY;
    let mut stopping = false;
    loop {
        let mut batch = Vec::new();
        if retry_at.is_some_and(|at| at <= Instant::now()) {
            retry_at = None;
            batch.extend(later.drain(..later.len().min(BATCH)));
        }
        fill(&mut batch, &mut incoming);
        if batch.is_empty() {
            if stopping && later.is_empty() {
                return;
            }
            let due = retry_at.unwrap_or_else(|| Instant::now() + LONGEST_RETRY);
            tokio::select! {
                biased;
                completion = incoming.recv() => match completion {
                    Some(completion) => {
                        batch.push(completion);
                        fill(&mut batch, &mut incoming);
                    }
                    None => stopping = true,
                },
                () = stop.cancelled(), if !stopping => stopping = true,
                () = tokio::time::sleep_until(due), if !later.is_empty() => {
                    retry_at = Some(Instant::now());
                }
            }
            if batch.is_empty() {
                continue;
            }
        }
        let not_taken = report(&shared, batch).await;
        if not_taken.is_empty() && later.is_empty() {
            wait = FIRST_RETRY;
        } else if !not_taken.is_empty() {
            later.extend(not_taken);
            retry_at.get_or_insert_with(|| Instant::now() + wait);
            wait = (wait * 2).min(LONGEST_RETRY);
        } else {
            retry_at.get_or_insert_with(Instant::now);
        }
    }
}

/// Adds what has come meanwhile to `batch`, up to a full batch.
fn fill(batch: &mut Vec<Completion>, incoming: &mut mpsc::UnboundedReceiver<Completion>) {
    while batch.len() < BATCH {
        match incoming.try_recv() {
            Ok(completion) => batch.push(completion),
            Err(_) => return,
        }
    }
}

/// Reports `batch`; returns what the server did not take this time and must be reported again.
async fn report<B: Backend>(shared: &Shared<B>, batch: Vec<Completion>) -> Vec<Completion> {
    let mut again = Vec::new();
    let mut parts = vec![batch];
    while let Some(part) = parts.pop() {
        let sent = Instant::now();
        let answer = shared
            .run(shared.jobq.complete(shared.worker_id(), &part))
            .await;
        shared.metrics.completion_sent(sent.elapsed());
        match answer {
            Ok(busy) => {
                let busy: HashSet<JobId> = busy.into_iter().collect();
                let mut taken = 0;
                for completion in part {
                    if busy.contains(&completion.id) {
                        again.push(completion);
                    } else {
                        shared.let_go(completion.id);
                        taken += 1;
                    }
                }
                shared.metrics.pending_taken(taken);
            }
            Err(e) if is_transient(&e) => {
                tracing::warn!(error = %e, jobs = part.len(), "ending jobs failed; trying again");
                again.extend(part);
            }
            Err(e) if part.len() > 1 => {
                tracing::warn!(error = %e, jobs = part.len(), "the server refused a batch of job ends; splitting it");
                let mut part = part;
                let half = part.split_off(part.len() / 2);
                parts.push(part);
                parts.push(half);
            }
            Err(e) => {
                let Some(completion) = part.into_iter().next() else {
                    continue;
                };
                if completion.replaces_refused {
                    // Even the plain failure was refused: leave the job to the heartbeat, which puts it back.
                    tracing::error!(id = %completion.id, error = %e, "the server refused this job's end twice; it will run again");
                    shared.let_go(completion.id);
                    shared.metrics.pending_taken(1);
                } else {
                    tracing::error!(id = %completion.id, error = %e, "the server refused this job's end; failing it with the reason");
                    parts.push(vec![completion.refused(&e)]);
                }
            }
        }
    }
    again
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConnectorError;

    fn server(code: &str) -> Error {
        Error::Connector(ConnectorError {
            kind: ErrorKind::from_sqlstate(code),
            connector: "test",
            sqlstate: Some(code.into()),
            constraint: None,
            message: String::new(),
            source: None,
        })
    }

    #[test]
    fn refusals_are_told_from_passing_trouble() {
        for code in ["22P05", "22008", "23505", "54000", "42703"] {
            assert!(!is_transient(&server(code)), "{code}");
        }
        for code in [
            "57P01", "08006", "40001", "40P01", "53300", "55P03", "42P01", "42501", "25006",
            "XX000",
        ] {
            assert!(is_transient(&server(code)), "{code}");
        }
        let lost = ConnectorError::new("test", ErrorKind::Connection, "lost");
        assert!(is_transient(&Error::Connector(lost)));
        assert!(!is_transient(&Error::InvalidInput("x".into())));
    }

    #[test]
    fn stored_values_are_storable() {
        let far = RetryDecision {
            at: Some(DateTime::<Utc>::MAX_UTC),
            ..RetryDecision::default()
        };
        let c = Completion::retry(JobId(1), 1, "a\0b", far);
        assert_eq!(c.scheduled_at, Some(crate::limits::LATEST));
        assert_eq!(c.error.as_deref(), Some("a\u{FFFD}b"));
    }
}
