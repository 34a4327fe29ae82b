//! Errors: [`ConnectorError`] for what a driver reported, [`Error`] for everything an operation can return.

use std::fmt;

/// SQLSTATE 25006: a write sent to a server or session that is read-only, such as a standby.
const READ_ONLY_SQL_TRANSACTION: &str = "25006";

/// What kind of failure a driver reported, mapped from the SQLSTATE where there is one.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connection could not be made, was lost, or the pool gave none in time; or it reached a server
    /// that takes no writes (SQLSTATE 25006, a standby after a failover): retry on a new connection.
    Connection,
    /// A pool had no free connection before its timeout.
    PoolTimeout,
    /// The statement ran into `statement_timeout`, a lock timeout or a cancel request.
    Timeout,
    /// The connection is inside a transaction that already failed: roll it back first (SQLSTATE 25P02).
    InFailedTransaction,
    /// A unique constraint was violated (SQLSTATE 23505).
    UniqueViolation,
    /// Another integrity constraint was violated (SQLSTATE class 23).
    ConstraintViolation,
    /// A table or function jobq needs does not exist: the schema is missing (SQLSTATE 42P01, 42883, 3F000).
    UndefinedObject,
    /// The role lacks a privilege (SQLSTATE 42501).
    InsufficientPrivilege,
    /// A serialization failure or deadlock: retrying the transaction may succeed (SQLSTATE 40001, 40P01).
    SerializationFailure,
    /// The input was refused by the server (SQLSTATE class 22, data exception).
    InvalidInput,
    /// The connection given cannot be used by this connector.
    Unsupported,
    /// The server answered in a way jobq did not expect.
    Protocol,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Maps a five-character SQLSTATE to a kind.
    ///
    /// ```
    /// use jobq_core::ErrorKind;
    /// assert_eq!(ErrorKind::from_sqlstate("23505"), ErrorKind::UniqueViolation);
    /// assert_eq!(ErrorKind::from_sqlstate("25P02"), ErrorKind::InFailedTransaction);
    /// // A standby (or a read-only session) refused a write: the connection is on the wrong server.
    /// assert_eq!(ErrorKind::from_sqlstate("25006"), ErrorKind::Connection);
    /// ```
    pub fn from_sqlstate(code: &str) -> Self {
        match code {
            "25P02" => Self::InFailedTransaction,
            // read_only_sql_transaction: after a failover a connection may reach the old primary, now a
            // standby (or a pooled one may still be there). Not the job's fault: reconnect and retry.
            READ_ONLY_SQL_TRANSACTION => Self::Connection,
            "23505" => Self::UniqueViolation,
            "42P01" | "42883" | "3F000" => Self::UndefinedObject,
            "42501" => Self::InsufficientPrivilege,
            "40001" | "40P01" => Self::SerializationFailure,
            "57014" | "55P03" => Self::Timeout,
            c if c.starts_with("08") || c.starts_with("57P") => Self::Connection,
            c if c.starts_with("23") => Self::ConstraintViolation,
            c if c.starts_with("22") => Self::InvalidInput,
            _ => Self::Other,
        }
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error reported by a database driver, in driver-neutral form.
///
/// Each adapter builds these in one function from its driver's error type, which stays available as
/// [`std::error::Error::source`].
#[derive(Debug)]
pub struct ConnectorError {
    /// The kind of failure.
    pub kind: ErrorKind,
    /// The connector that reported it, such as `"jobq-sqlx"`.
    pub connector: &'static str,
    /// The server's SQLSTATE, when the server reported the error.
    pub sqlstate: Option<String>,
    /// The constraint that was violated, when the server named one.
    pub constraint: Option<String>,
    /// A human-readable message.
    pub message: String,
    /// The driver's own error.
    pub source: Option<Source>,
}

impl ConnectorError {
    /// An error of `kind` with a message and no driver error behind it.
    pub fn new(connector: &'static str, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            connector,
            sqlstate: None,
            constraint: None,
            message: message.into(),
            source: None,
        }
    }

    /// An error for a server error: the kind comes from `sqlstate`.
    pub fn from_server(
        connector: &'static str,
        sqlstate: &str,
        constraint: Option<&str>,
        message: impl Into<String>,
        source: impl Into<Source>,
    ) -> Self {
        Self {
            kind: ErrorKind::from_sqlstate(sqlstate),
            connector,
            sqlstate: Some(sqlstate.to_owned()),
            constraint: constraint.map(str::to_owned),
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// Attaches the driver's error as the source.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The error for a row that is not one non-null text column, which every jobq statement returns.
    pub fn unexpected_row(
        connector: &'static str,
        source: impl Into<Source> + fmt::Display,
    ) -> Self {
        Self::new(
            connector,
            ErrorKind::Protocol,
            format!("jobq expected one non-null text column: {source}"),
        )
        .with_source(source)
    }

    /// The error for a connection this connector cannot use, raised before any SQL is sent.
    pub fn unsupported(connector: &'static str, given: impl fmt::Display) -> Self {
        Self::new(
            connector,
            ErrorKind::Unsupported,
            format!("{connector} cannot use this connection: {given}"),
        )
    }
}

impl fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.connector, self.message)?;
        if let Some(code) = &self.sqlstate {
            write!(f, " (SQLSTATE {code})")?;
        }
        if self.kind == ErrorKind::InFailedTransaction {
            write!(
                f,
                "; the transaction already failed, roll it back before using the connection"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ConnectorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Everything a jobq operation can return as an error.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The driver or the server reported an error.
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    /// A job with this queueing lock is already waiting; nothing was inserted and the caller's transaction
    /// is still usable.
    #[error("a job with queueing lock {queueing_lock:?} is already waiting")]
    AlreadyEnqueued {
        /// The queueing lock that is taken.
        queueing_lock: String,
    },
    /// No job has this id.
    #[error("job {0} does not exist")]
    JobNotFound(crate::JobId),
    /// The jobq schema has not been applied to this database.
    #[error("the jobq schema {schema:?} is missing: run `jobq schema apply` (or `Jobq::migrate`)")]
    SchemaMissing {
        /// The schema that was looked for.
        schema: String,
    },
    /// The database's jobq schema is older than this library.
    #[error(
        "the jobq schema {schema:?} is at version {found}, this library needs {expected}: \
         run `jobq schema apply` (or `Jobq::migrate`)"
    )]
    SchemaOutdated {
        /// The schema.
        schema: String,
        /// The version applied in the database.
        found: i32,
        /// The version this library needs.
        expected: i32,
    },
    /// The database's jobq schema is newer than this library.
    #[error(
        "the jobq schema {schema:?} is at version {found}, newer than this library's {expected}: upgrade jobq"
    )]
    SchemaNewer {
        /// The schema.
        schema: String,
        /// The version applied in the database.
        found: i32,
        /// The newest version this library knows.
        expected: i32,
    },
    /// Input jobq refused before sending anything to the server.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A worker's LISTEN connection did not receive a NOTIFY sent through its pool: it does not hear the
    /// server, most likely because it goes through PgBouncer in transaction pooling mode.
    #[error(
        "the worker's LISTEN connection heard no notification within {} s of one sent through its pool; \
         is it connected through PgBouncer in transaction pooling mode? Give the worker a direct \
         connection for LISTEN (the adapter's `listen_with`), or turn listening off with \
         `.listen(false)` and rely on polling",
        waited.as_secs()
    )]
    ListenUnheard {
        /// How long the worker waited for its probe.
        waited: std::time::Duration,
    },
    /// A worker's shutdown could not finish everything in time. Jobs whose end went unreported stay `doing`
    /// until another worker recovers them (their handlers ran: at least once still holds); handlers left
    /// running keep the worker registered and heartbeating in the background until they return, for as
    /// long as the async runtime lives.
    #[error(
        "the worker stopped with {} job ends unreported and {} blocking handlers still running \
         (they ignored their abort){}",
        unreported.len(),
        left_running.len(),
        if left_running.is_empty() { "" } else { "; it stays registered until they return" }
    )]
    ShutdownIncomplete {
        /// Jobs whose end could not be reported to the server.
        unreported: Vec<crate::JobId>,
        /// Jobs whose blocking handler was still running.
        left_running: Vec<crate::JobId>,
    },
    /// Task arguments could not be turned into JSON, or a stored row could not be read.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// The kind of the driver error behind this error, if there is one.
    pub fn connector_kind(&self) -> Option<ErrorKind> {
        match self {
            Error::Connector(e) => Some(e.kind),
            _ => None,
        }
    }
}
