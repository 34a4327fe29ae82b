//! diesel's and r2d2's errors as [`ConnectorError`]s, in this one place.

use crate::CONNECTOR;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use jobq_core::{ConnectorError, ErrorKind};

/// Maps a diesel error, in this one place. diesel reports no SQLSTATE, so the kind comes from diesel's own
/// error kind and, for the cases it leaves as `Unknown`, from PostgreSQL's primary message.
pub(crate) fn connector_error(e: DieselError) -> ConnectorError {
    let (kind, message, constraint) = match &e {
        DieselError::DatabaseError(kind, info) => {
            let message = info.message().to_owned();
            let kind = match kind {
                DatabaseErrorKind::UniqueViolation => ErrorKind::UniqueViolation,
                DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::CheckViolation => ErrorKind::ConstraintViolation,
                DatabaseErrorKind::SerializationFailure => ErrorKind::SerializationFailure,
                DatabaseErrorKind::ClosedConnection => ErrorKind::Connection,
                _ => kind_from_message(&message),
            };
            (kind, message, info.constraint_name().map(str::to_owned))
        }
        // A row without a text column named `jobq`.
        DieselError::DeserializationError(_) => {
            return ConnectorError::unexpected_row(CONNECTOR, e);
        }
        DieselError::SerializationError(_) => (ErrorKind::Protocol, e.to_string(), None),
        _ => (ErrorKind::Other, e.to_string(), None),
    };
    ConnectorError {
        constraint,
        ..ConnectorError::new(CONNECTOR, kind, message).with_source(e)
    }
}

/// The kind for PostgreSQL's (English) primary message, for the SQLSTATEs diesel does not classify.
fn kind_from_message(message: &str) -> ErrorKind {
    let missing = |what: &str| message.starts_with(what) && message.ends_with(" does not exist");
    if message.starts_with("current transaction is aborted") {
        // 25P02
        ErrorKind::InFailedTransaction
    } else if missing("relation ") || missing("function ") || missing("schema ") {
        // 42P01, 42883, 3F000
        ErrorKind::UndefinedObject
    } else if message.starts_with("canceling statement due to")
        || message.starts_with("could not obtain lock")
    {
        // 57014, 55P03
        ErrorKind::Timeout
    } else if message.starts_with("deadlock detected") {
        // 40P01
        ErrorKind::SerializationFailure
    } else if message.starts_with("permission denied") {
        // 42501
        ErrorKind::InsufficientPrivilege
    } else if message.starts_with("terminating connection")
        || message.contains("server closed the connection")
    {
        // 57P01..57P03, or libpq's own message
        ErrorKind::Connection
    } else {
        ErrorKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_messages_get_their_kinds() {
        for (message, kind) in [
            (
                "current transaction is aborted, commands ignored until end of transaction block",
                ErrorKind::InFailedTransaction,
            ),
            (
                "relation \"jobq.jobs\" does not exist",
                ErrorKind::UndefinedObject,
            ),
            (
                "function jobq.defer(jsonb) does not exist",
                ErrorKind::UndefinedObject,
            ),
            ("schema \"jobq\" does not exist", ErrorKind::UndefinedObject),
            ("column \"x\" does not exist", ErrorKind::Other),
            ("role \"x\" does not exist", ErrorKind::Other),
            (
                "canceling statement due to statement timeout",
                ErrorKind::Timeout,
            ),
            (
                "could not obtain lock on row in relation \"jobs\"",
                ErrorKind::Timeout,
            ),
            ("deadlock detected", ErrorKind::SerializationFailure),
            (
                "permission denied for table jobs",
                ErrorKind::InsufficientPrivilege,
            ),
            (
                "terminating connection due to administrator command",
                ErrorKind::Connection,
            ),
            ("syntax error at or near \"x\"", ErrorKind::Other),
        ] {
            assert_eq!(kind_from_message(message), kind, "{message}");
        }
    }
}
