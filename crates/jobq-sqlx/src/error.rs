//! sqlx's errors as [`ConnectorError`]s, in this one place.

use crate::CONNECTOR;
use jobq_core::{ConnectorError, ErrorKind};

/// The one place a [`sqlx::Error`] becomes a [`ConnectorError`].
pub(crate) fn connector_error(e: sqlx::Error) -> ConnectorError {
    if let sqlx::Error::Database(db) = &e
        && let Some(code) = db.code()
    {
        let code = code.into_owned();
        let constraint = db.constraint().map(str::to_owned);
        let message = db.message().to_owned();
        return ConnectorError::from_server(CONNECTOR, &code, constraint.as_deref(), message, e);
    }
    let kind = match &e {
        sqlx::Error::PoolTimedOut => ErrorKind::PoolTimeout,
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => ErrorKind::Connection,
        sqlx::Error::Protocol(_)
        | sqlx::Error::RowNotFound
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::AnyDriverError(_) => ErrorKind::Protocol,
        _ => ErrorKind::Other,
    };
    ConnectorError::new(CONNECTOR, kind, e.to_string()).with_source(e)
}
