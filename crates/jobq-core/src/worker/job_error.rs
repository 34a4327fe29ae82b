//! What a handler returns when a job fails ([`JobError`]): its message, kind and whether a retry may help.

use std::fmt;

/// Why a job failed, as its handler says.
#[derive(Debug, Clone)]
pub struct JobError {
    message: String,
    kind: Option<String>,
    retryable: bool,
}

impl JobError {
    /// A failure that the task's retry strategy may retry.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: None,
            retryable: true,
        }
    }

    /// A failure that is never retried.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            ..Self::new(message)
        }
    }

    /// Tags the failure with a kind, which a strategy can choose to retry ([`RetryStrategy::only_kinds`](super::RetryStrategy::only_kinds)).
    pub fn with_kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// The message stored on the job.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The kind, if one was given.
    pub fn kind(&self) -> Option<&str> {
        self.kind.as_deref()
    }

    /// Whether a retry may help.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The failure of a handler that panicked, async or blocking alike: of kind `panic`, and retryable
    /// like any other failure (the task's strategy decides; [`RetryStrategy::only_kinds`](super::RetryStrategy::only_kinds) can leave panics
    /// out).
    #[cfg(feature = "worker")]
    pub(crate) fn panicked(payload: Box<dyn std::any::Any + Send>) -> Self {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-text panic payload".to_owned());
        Self::new(format!("the handler panicked: {text}")).with_kind("panic")
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for JobError {
    fn from(error: E) -> Self {
        Self::new(error.to_string())
    }
}
