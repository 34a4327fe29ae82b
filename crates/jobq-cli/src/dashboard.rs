//! `jobq dashboard`: the web dashboard of `jobq-web`, served on its own until Ctrl-C or SIGTERM.
//!
//! It listens on loopback by default. Listening anywhere else needs `--token` (or
//! `JOBQ_DASHBOARD_TOKEN`), since the pages show every job's arguments and errors to whoever reaches
//! the port: bad input (exit 2) otherwise, before anything is opened. Without a token the dashboard
//! only reads; with `--read-only` it never acts, token or not.

use crate::failure::{self, Failure, bad_input};
use clap::Args;
use jobq_core::Jobq;
use std::net::SocketAddr;
use std::time::Duration;

/// `jobq dashboard`'s flags.
#[derive(Debug, Args)]
pub(crate) struct DashboardArgs {
    /// Where to listen; a non-loopback address needs --token.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Render no action and refuse every one (pause, resume, retry, cancel, abort, delete).
    #[arg(long)]
    read_only: bool,
    /// The access token that actions need (typed into the login form, or sent as a bearer token);
    /// without one, the dashboard only reads.
    #[arg(long, env = "JOBQ_DASHBOARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Connections in the dashboard's pool.
    #[arg(long, default_value_t = 4)]
    pool_size: usize,
}

/// Checks the flags, connects a pool to `url` (its TLS settings followed), checks the schema, then serves
/// the dashboard until Ctrl-C or SIGTERM.
///
/// `timeout` (the CLI's `--timeout`) bounds the schema check and each statement a page runs.
pub(crate) async fn run(
    jobq: Jobq,
    url: String,
    timeout: Duration,
    args: DashboardArgs,
) -> Result<(), Failure> {
    let token = args.token.filter(|t| !t.is_empty());
    if !args.listen.ip().is_loopback() && token.is_none() {
        return Err(bad_input(format!(
            "--listen {} is not a loopback address: pass --token (or set JOBQ_DASHBOARD_TOKEN), as the \
             dashboard shows every job's arguments and errors to whoever reaches it",
            args.listen
        )));
    }
    if args.pool_size == 0 {
        return Err(bad_input("--pool-size must be at least 1"));
    }
    let backend = jobq_tokio_postgres::PoolExecutor::connect(&url, args.pool_size)
        .map_err(|e| failure::database("cannot use the database URL", &e))?;
    tokio::time::timeout(timeout, jobq.check_schema().run(&backend))
        .await
        .map_err(|_| Failure {
            code: failure::DATABASE,
            message: format!(
                "checking the schema: no answer from the database within {} (--timeout, JOBQ_TIMEOUT)",
                humantime::format_duration(timeout)
            ),
        })??;
    let mut dashboard = jobq_web::Dashboard::new(backend, jobq)
        .read_only(args.read_only)
        .query_timeout(timeout);
    if let Some(token) = token {
        dashboard = dashboard.token(token);
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| failure::database(&format!("cannot listen on {}", args.listen), &e))?;
    let addr = listener.local_addr().unwrap_or(args.listen);
    eprintln!("jobq dashboard on http://{addr}/ (Ctrl-C to stop)");
    axum::serve(listener, dashboard.router())
        .with_graceful_shutdown(jobq_core::worker::shutdown_signal())
        .await
        .map_err(|e| failure::database("the dashboard's server stopped", &e))
}
