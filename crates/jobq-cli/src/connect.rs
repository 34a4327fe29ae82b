//! The CLI's one connection: where its URL comes from, how it is opened, and how each command runs on it,
//! every wait bounded by `--timeout`.
//!
//! What bounds what:
//!
//! | wait | bound |
//! | --- | --- |
//! | the TCP (or Unix socket) connect | tokio-postgres' `connect_timeout` (the URL's, else jobq's 10 s network bound); it covers only the socket, per address |
//! | the startup handshake (TLS, authentication, the server's parameters) | nothing in tokio-postgres: `tokio::time::timeout` of `--timeout` around the whole connect |
//! | each statement, on the server | `statement_timeout` = `--timeout`, set local to the command's own transaction (`set_config(…, true)`, as `SET LOCAL`) |
//! | each command, on the client (a server that stops answering) | `tokio::time::timeout` of `--timeout` + [`GRACE`] around it, so the server's own message usually arrives first |
//! | a network gone silent | jobq's [network bounds](jobq_core::network): TCP keepalives and TCP user timeout |
//!
//! `statement_timeout` is set for the transaction only, not for the session, so that through
//! PgBouncer in transaction pooling it cannot stay behind on a server connection another client gets next.

use crate::failure::{self, Failure, bad_input};
use jobq_core::{Error, ErrorKind, Operation};
use std::time::Duration;
use tokio_postgres::types::Type;

/// How much longer than `--timeout` the client waits for a command, so that the server's own timeout
/// message (which names the statement's fate) normally reaches the user before the client gives up.
pub(crate) const GRACE: Duration = Duration::from_secs(1);

/// The shortest `--timeout`: PostgreSQL's `statement_timeout` counts milliseconds, and 0 would mean none.
pub(crate) const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// The longest `--timeout`: PostgreSQL's `statement_timeout` is at most `i32::MAX` milliseconds (24.8 days).
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// SQLSTATE of a statement stopped by `statement_timeout` (or a cancel request).
const QUERY_CANCELED: &str = "57014";

/// The environment variables read for the database URL when `--database-url` is not given, in order.
pub(crate) const URL_VARIABLES: [&str; 2] = ["JOBQ_DATABASE_URL", "DATABASE_URL"];

/// Parses `--timeout` / `JOBQ_TIMEOUT`: a humantime duration within [`MIN_TIMEOUT`]`..=`[`MAX_TIMEOUT`].
pub(crate) fn parse_timeout(s: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(s).map_err(|e| format!("{e}; e.g. 10s, 500ms, 2m"))?;
    if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&timeout) {
        return Err(format!(
            "must be from {} to {} (PostgreSQL's statement_timeout counts milliseconds up to 2^31 - 1)",
            humantime::format_duration(MIN_TIMEOUT),
            humantime::format_duration(MAX_TIMEOUT)
        ));
    }
    Ok(timeout)
}

/// The database URL: `--database-url`, else the first of [`URL_VARIABLES`] that is set and not empty.
pub(crate) fn database_url(flag: Option<String>) -> Result<String, Failure> {
    flag.filter(|url| !url.is_empty())
        .or_else(|| {
            URL_VARIABLES
                .iter()
                .find_map(|name| std::env::var(name).ok().filter(|url| !url.is_empty()))
        })
        .ok_or_else(|| {
            bad_input("no database: pass --database-url or set JOBQ_DATABASE_URL (or DATABASE_URL)")
        })
}

/// Checks `url` without sending anything: its TLS settings (`sslmode`, `sslrootcert`, read by
/// [`jobq_core::tls`]) and the rest as tokio-postgres parses it. A bad URL is bad input (exit 2).
pub(crate) fn check_url(url: &str) -> Result<(), Failure> {
    let invalid = |e: &(dyn std::error::Error + 'static)| Failure {
        code: failure::BAD_INPUT,
        ..failure::database("invalid database URL", e)
    };
    let (_policy, driver_url) =
        jobq_core::tls::TlsPolicy::from_url(url).map_err(|e| invalid(&e))?;
    driver_url
        .parse::<tokio_postgres::Config>()
        .map_err(|e| invalid(&e))?;
    Ok(())
}

/// The database a command runs on, connected when the command first needs it (after its input was checked).
pub(crate) struct Database {
    url: String,
    timeout: Duration,
    session: Option<Session>,
}

impl Database {
    /// The database `url` names (checked by [`check_url`]); nothing is sent until
    /// [`session`](Self::session).
    pub(crate) fn new(url: String, timeout: Duration) -> Self {
        Self {
            url,
            timeout,
            session: None,
        }
    }

    /// The open connection, opened now (within `--timeout`) if it is not yet.
    pub(crate) async fn session(&mut self) -> Result<&mut Session, Failure> {
        let session = match self.session.take() {
            Some(session) => session,
            None => connect(&self.url, self.timeout).await?,
        };
        Ok(self.session.insert(session))
    }
}

/// An open connection, and the bound on each command run on it.
pub(crate) struct Session {
    client: tokio_postgres::Client,
    timeout: Duration,
}

/// Opens the connection: socket, TLS, startup handshake and all, within `timeout`, as jobq opens its own
/// connections: with the URL's TLS policy and jobq's [network bounds](jobq_core::network) (keepalives, TCP
/// user timeout, a connect timeout) wherever the URL sets none.
pub(crate) async fn connect(url: &str, timeout: Duration) -> Result<Session, Failure> {
    // TLS: the URL's sslmode and sslrootcert (rustls), chosen by jobq-tokio-postgres.
    match tokio::time::timeout(timeout, jobq_tokio_postgres::connect(url)).await {
        Ok(Ok((client, connection))) => {
            // The connection's own error reaches the client's next call; nothing to report here.
            tokio::spawn(connection);
            Ok(Session { client, timeout })
        }
        Ok(Err(e)) => Err(connect_failure(&e)),
        Err(_elapsed) => Err(Failure {
            code: failure::DATABASE,
            message: format!(
                "cannot connect to the database: timed out after {} without an answer from the server \
                 (--timeout, JOBQ_TIMEOUT)",
                humantime::format_duration(timeout)
            ),
        }),
    }
}

/// What a failed connect says. The driver's error (the connector error's source) is printed with its
/// own sources, so the server's words come out whole (`FATAL: role "x" does not exist`); TLS settings
/// that cannot be followed (a root certificate that cannot be read) are bad input, found before anything
/// was sent.
fn connect_failure(e: &jobq_core::ConnectorError) -> Failure {
    let Some(source) = e.source.as_deref() else {
        return failure::database("cannot connect to the database", e);
    };
    let source: &(dyn std::error::Error + 'static) = source;
    if source.is::<jobq_core::tls::TlsError>() {
        return Failure {
            code: failure::BAD_INPUT,
            ..failure::database("cannot use the database URL's TLS settings", source)
        };
    }
    failure::database("cannot connect to the database", source)
}

impl Session {
    /// Runs `op` in a transaction of its own whose statements stop on the server after `--timeout`,
    /// committed when `op` succeeds, and waits at most `--timeout` + [`GRACE`] for all of it.
    ///
    /// The outer error is the session's (a timeout, a lost connection); the inner one is `op`'s own,
    /// whose transaction is rolled back.
    pub(crate) async fn try_run<O: Operation>(
        &mut self,
        op: O,
    ) -> Result<Result<O::Output, Error>, Failure> {
        let timeout = self.timeout;
        let millis = timeout.as_millis().to_string();
        let client = &mut self.client;
        let command = async move {
            let tx = client
                .transaction()
                .await
                .map_err(|e| failure::database("cannot begin a transaction", &e))?;
            tx.query_typed_one(
                "SELECT set_config('statement_timeout', $1, true)",
                &[(&millis, Type::TEXT)],
            )
            .await
            .map_err(|e| failure::database("cannot set statement_timeout", &e))?;
            let output = match op.run(&tx).await {
                Ok(output) => output,
                // Dropping the transaction rolls it back.
                Err(e) => return Ok(Err(e)),
            };
            tx.commit()
                .await
                .map_err(|e| failure::database("cannot commit", &e))?;
            Ok(Ok(output))
        };
        match tokio::time::timeout(timeout + GRACE, command).await {
            Ok(result) => result,
            Err(_elapsed) => Err(Failure {
                code: failure::DATABASE,
                message: format!(
                    "timed out: no answer from the database within {} (--timeout, JOBQ_TIMEOUT, plus {} \
                     for the server's own timeout to arrive)",
                    humantime::format_duration(timeout),
                    humantime::format_duration(GRACE)
                ),
            }),
        }
    }

    /// [`try_run`](Self::try_run), with `op`'s error as a [`Failure`] too; a statement the server stopped
    /// at `statement_timeout` says which setting to raise.
    pub(crate) async fn run<O: Operation>(&mut self, op: O) -> Result<O::Output, Failure> {
        match self.try_run(op).await? {
            Ok(output) => Ok(output),
            Err(e) => {
                let timed_out = matches!(&e, Error::Connector(c)
                    if c.kind == ErrorKind::Timeout && c.sqlstate.as_deref() == Some(QUERY_CANCELED));
                let mut failure = Failure::from(e);
                if timed_out {
                    failure.message.push_str(&format!(
                        " (statement_timeout is --timeout, {}: raise it to wait longer)",
                        humantime::format_duration(self.timeout)
                    ));
                }
                Err(failure)
            }
        }
    }
}
