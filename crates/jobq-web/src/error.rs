//! What a page answers when it cannot show what was asked: a status and a message, rendered as a page.

use axum::http::StatusCode;
use jobq_core::{Error, ErrorKind};

/// A request the dashboard cannot serve, with the message shown to the user (escaped like every string).
#[derive(Debug)]
pub(crate) struct PageError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl PageError {
    pub(crate) fn bad_input(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl From<Error> for PageError {
    /// Input jobq refused is the user's (400); a missing job is 404; a queueing-lock conflict is 409;
    /// the database being unreachable, timing out or at another schema version is 503; anything else the
    /// server said is 502, with its message.
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::InvalidInput(_) => StatusCode::BAD_REQUEST,
            Error::JobNotFound(_) => StatusCode::NOT_FOUND,
            Error::AlreadyEnqueued { .. } => StatusCode::CONFLICT,
            Error::SchemaMissing { .. }
            | Error::SchemaOutdated { .. }
            | Error::SchemaNewer { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Connector(c)
                if matches!(
                    c.kind,
                    ErrorKind::Connection | ErrorKind::PoolTimeout | ErrorKind::Timeout
                ) =>
            {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::BAD_GATEWAY,
        };
        let message = match &e {
            Error::Connector(c) => format!("the database: {}", c.message),
            other => other.to_string(),
        };
        Self { status, message }
    }
}
