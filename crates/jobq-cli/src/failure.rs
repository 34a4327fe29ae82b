//! What a failed command tells its caller: an exit code, and one line that carries the whole cause.

use jobq_core::Error;
use tokio_postgres::error::DbError;

/// A failure with the exit code scripts see and the one line printed on stderr.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The process's exit code (see the crate's documentation).
    pub(crate) code: u8,
    /// One line, without the `jobq: ` prefix.
    pub(crate) message: String,
}

/// Exit code of bad input: nothing was sent.
pub(crate) const BAD_INPUT: u8 = 2;
/// Exit code of a database, network or schema problem.
pub(crate) const DATABASE: u8 = 1;

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::AlreadyEnqueued { .. } => 3,
            Error::JobNotFound(_) => 4,
            Error::InvalidInput(_) => BAD_INPUT,
            // The arguments are parsed and checked before anything is sent, so a JSON error here is a
            // stored row this jobq could not read: not the caller's input.
            _ => DATABASE,
        };
        Failure {
            code,
            message: cause_chain(None, &e),
        }
    }
}

/// Bad input (exit 2), found before anything was sent.
pub(crate) fn bad_input(message: impl Into<String>) -> Failure {
    Failure {
        code: BAD_INPUT,
        message: message.into(),
    }
}

/// A database or network problem (exit 1): `context`, then `error` and every one of its sources.
pub(crate) fn database(context: &str, error: &(dyn std::error::Error + 'static)) -> Failure {
    Failure {
        code: DATABASE,
        message: cause_chain(Some(context), error),
    }
}

/// `context`, `error` and each [`source`](std::error::Error::source) in turn, on one line joined by `: `,
/// so the server's own words (`FATAL: role "x" does not exist`) reach the user instead of stopping at a
/// driver's summary (`db error`).
///
/// A part whose text the line already holds is left out (a wrapper that repeats its source's message, or
/// a source that repeats its parent's). tokio-postgres' `db error` only says that its source is the
/// server's error, so it gives way to that source, written as the server's severity, message, SQLSTATE,
/// detail and hint. Line breaks inside a part become `; `.
pub(crate) fn cause_chain(
    context: Option<&str>,
    error: &(dyn std::error::Error + 'static),
) -> String {
    let mut line = Line::default();
    if let Some(context) = context {
        line.push(": ", context);
    }
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(db) = e.downcast_ref::<DbError>() {
            line.server(db);
        } else if !is_db_error_summary(e) {
            line.push(": ", &e.to_string());
        }
        next = e.source();
    }
    line.0
}

/// Whether `e` is tokio-postgres' `db error`, which only says that its source is the server's error.
fn is_db_error_summary(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<tokio_postgres::Error>()
        .is_some_and(|pg| pg.as_db_error().is_some())
}

/// The line being built by [`cause_chain`].
#[derive(Default)]
struct Line(String);

impl Line {
    /// Appends `text` after `separator`, unless the line already says it.
    fn push(&mut self, separator: &str, text: &str) {
        let text = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        if text.is_empty() || self.0.contains(&text) {
            return;
        }
        if !self.0.is_empty() {
            self.0.push_str(separator);
        }
        self.0.push_str(&text);
    }

    /// Appends what the server said that the line does not say yet.
    fn server(&mut self, db: &DbError) {
        let code = db.code().code();
        if !self.0.contains(db.message()) {
            self.push(": ", &format!("{}: {}", db.severity(), db.message()));
        }
        if !self.0.contains(code) {
            self.push(" ", &format!("(SQLSTATE {code})"));
        }
        if let Some(detail) = db.detail() {
            self.push("; ", &format!("DETAIL: {detail}"));
        }
        if let Some(hint) = db.hint() {
            self.push("; ", &format!("HINT: {hint}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn every_source_is_printed_once_on_one_line() {
        let e = Layer(
            "error connecting to server",
            Some(Box::new(Layer(
                "Connection refused (os error 111)",
                Some(Box::new(Layer("Connection refused (os error 111)", None))),
            ))),
        );
        assert_eq!(
            cause_chain(Some("cannot connect to the database"), &e),
            "cannot connect to the database: error connecting to server: \
             Connection refused (os error 111)"
        );
        let e = Layer("first line\nsecond line", None);
        assert_eq!(cause_chain(None, &e), "first line; second line");
    }
}
