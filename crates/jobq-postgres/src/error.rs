//! postgres's errors as [`ConnectorError`]s, in this one place.

use crate::CONNECTOR;
use jobq_core::{ConnectorError, ErrorKind};

/// The one place a `postgres::Error` becomes a [`ConnectorError`].
pub(crate) fn connector_error(e: postgres::Error) -> ConnectorError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code().to_owned();
        let constraint = db.constraint().map(str::to_owned);
        let message = db.message().to_owned();
        return ConnectorError::from_server(CONNECTOR, &code, constraint.as_deref(), message, e);
    }
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    let message = with_causes(&e);
    // A failed TLS handshake is the connection's failure: the driver's own text names it.
    let kind = if e.is_closed() || io || message.starts_with("error performing TLS handshake") {
        ErrorKind::Connection
    } else {
        ErrorKind::Other
    };
    ConnectorError::new(CONNECTOR, kind, message).with_source(e)
}

/// The error's text followed by each of its causes' that it does not already contain: the driver says
/// `error performing TLS handshake`, its cause says why (`invalid peer certificate: UnknownIssuer`).
/// (Twin of `with_causes` in jobq-tokio-postgres: change both.)
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    message
}
