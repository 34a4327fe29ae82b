//! `jobq`: the command line for operators and scripts.
//!
//! Exit codes: 0 success; 1 a database, network or schema problem, or a timeout (the message carries every
//! cause); 2 bad input, including any value outside `jobq_core::limits` (refused before anything is sent,
//! so nothing was written); 3 a queueing-lock conflict; 4 no such job.

mod connect;
mod failure;
mod output;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use failure::{Failure, bad_input};
use jobq_core::{CancelOutcome, RetryOutcome};
use jobq_tokio_postgres::prelude::*;
use output::Output;
use std::process::ExitCode;
use std::time::Duration;

/// jobq: a PostgreSQL job queue. Inspect and operate the queue from the shell.
///
/// The database is --database-url, else JOBQ_DATABASE_URL, else DATABASE_URL. Every wait (connecting,
/// the server's handshake, each statement) is bounded by --timeout. Exit codes: 0 success, 1 database,
/// network, schema or timeout, 2 bad input (nothing sent), 3 queueing-lock conflict, 4 no such job.
#[derive(Debug, Parser)]
#[command(name = "jobq", version)]
struct Cli {
    /// PostgreSQL URL, e.g. postgres://user@localhost/app [default: $JOBQ_DATABASE_URL, else $DATABASE_URL].
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// The PostgreSQL schema that holds jobq's tables.
    #[arg(long, env = "JOBQ_SCHEMA", default_value = "jobq", global = true)]
    schema: String,
    /// The longest wait for the server: to connect, and for each command (e.g. 10s, 500ms, 2m).
    #[arg(
        long,
        env = "JOBQ_TIMEOUT",
        default_value = "10s",
        value_parser = connect::parse_timeout,
        global = true
    )]
    timeout: Duration,
    /// Print JSON instead of tables (tables on a terminal, tab-separated text otherwise).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply, inspect or print the schema.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Defer a job; prints its id.
    Defer(DeferArgs),
    /// List, show, cancel or retry jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Jobs by queue and status.
    Queues,
    /// Registered workers and their heartbeats.
    Workers,
    /// Delete finished jobs older than a duration.
    Prune {
        /// How old, e.g. `7d`, `12h`, `30m`.
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Duration,
    },
    /// Connect and check the schema version; exit 0 when healthy.
    Healthcheck,
}

#[derive(Debug, Subcommand)]
enum SchemaCommand {
    /// Apply pending migrations (a no-op when up to date).
    Apply,
    /// Show the applied version and the version this jobq needs.
    Status,
    /// Print the migration SQL, or with --grant the GRANTs an application role needs.
    Sql {
        /// Print the GRANT statements for this role instead.
        #[arg(long)]
        grant: Option<String>,
    },
}

#[derive(Debug, Args)]
struct DeferArgs {
    /// The task's name.
    task: String,
    /// The task's arguments as JSON.
    args: String,
    /// The queue.
    #[arg(long)]
    queue: Option<String>,
    /// The priority: higher runs first.
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i32>,
    /// At most one running job per lock.
    #[arg(long)]
    lock: Option<String>,
    /// At most one waiting job per queueing lock.
    #[arg(long)]
    queueing_lock: Option<String>,
    /// Run no earlier than this RFC 3339 time (a past time runs now).
    #[arg(long, conflicts_with = "in_", value_parser = parse_time)]
    at: Option<DateTime<Utc>>,
    /// Run no earlier than this long from now, e.g. `10m`.
    #[arg(long = "in", id = "in_", value_parser = humantime::parse_duration)]
    in_: Option<Duration>,
    /// Exit 0 when the queueing lock is taken (nothing is deferred).
    #[arg(long)]
    ignore_already_enqueued: bool,
}

#[derive(Debug, Subcommand)]
enum JobsCommand {
    /// List jobs, oldest first.
    List {
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Only this task.
        #[arg(long)]
        task: Option<String>,
        /// Only this status: todo, doing, succeeded, failed, cancelled, aborted.
        #[arg(long, value_parser = parse_status)]
        status: Option<Status>,
        /// Only this lock.
        #[arg(long)]
        lock: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100, allow_negative_numbers = true)]
        limit: u32,
    },
    /// Show every field of one job, with its stored errors.
    Show {
        /// The job's id.
        id: i64,
    },
    /// Cancel a waiting job; --abort also stops a running one; --delete removes it.
    Cancel {
        /// The job's id.
        id: i64,
        /// Ask a running job to stop.
        #[arg(long)]
        abort: bool,
        /// Delete the job instead of keeping it as cancelled.
        #[arg(long)]
        delete: bool,
    },
    /// Put a finished job back in the queue, to run now.
    Retry {
        /// The job's id.
        id: i64,
    },
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e}; expected RFC 3339, e.g. 2026-01-31T12:00:00Z"))
}

fn parse_status(s: &str) -> Result<Status, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("jobq: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Runs one command. Its input is checked first, then the connection is opened (only for commands that
/// need one), so bad input exits 2 before anything is sent.
async fn run(cli: Cli) -> Result<(), Failure> {
    let jobq = Jobq::with_schema(&cli.schema).map_err(Failure::from)?;
    let out = Output::new(cli.json);
    if let Command::Schema(SchemaCommand::Sql { grant }) = &cli.command {
        let sql = match grant {
            Some(role) => jobq.grant_sql(role)?,
            None => jobq.migration_sql().to_owned(),
        };
        println!("{sql}");
        return Ok(());
    }
    let url = connect::database_url(cli.database_url)?;
    connect::check_url(&url)?;
    let mut db = connect::Database::new(url, cli.timeout);
    match cli.command {
        Command::Schema(SchemaCommand::Apply) => {
            db.session().await?.run(jobq.migrate()).await?;
            out.message(&format!(
                "schema {} is at version {}",
                jobq.schema(),
                jobq.required_version()
            ));
        }
        Command::Schema(SchemaCommand::Status) => {
            let applied = db.session().await?.run(jobq.schema_version()).await?;
            out.schema_status(jobq.schema(), applied, jobq.required_version());
        }
        Command::Schema(SchemaCommand::Sql { .. }) => unreachable!("handled before connecting"),
        Command::Defer(args) => defer(&jobq, &mut db, args, &out).await?,
        Command::Jobs(JobsCommand::List {
            queue,
            task,
            status,
            lock,
            limit,
        }) => {
            let filter = JobFilter {
                queue,
                task,
                status,
                lock,
                limit: Some(limit),
                ..JobFilter::default()
            };
            jobq_core::limits::check_filter(&filter)?;
            out.jobs(&db.session().await?.run(jobq.list(&filter)).await?);
        }
        Command::Jobs(JobsCommand::Show { id }) => {
            out.job(&db.session().await?.run(jobq.job(JobId(id))).await?)
        }
        Command::Jobs(JobsCommand::Cancel { id, abort, delete }) => {
            let mut cancel = jobq.cancel(JobId(id));
            if abort {
                cancel = cancel.abort();
            }
            if delete {
                cancel = cancel.delete();
            }
            let outcome = db.session().await?.run(cancel).await?;
            let text = match outcome {
                CancelOutcome::Cancelled => "cancelled",
                CancelOutcome::Deleted => "deleted",
                CancelOutcome::AbortRequested => "abort requested",
                CancelOutcome::Unchanged => {
                    "unchanged (running without --abort, or already finished)"
                }
            };
            out.outcome(id, text, &outcome);
        }
        Command::Jobs(JobsCommand::Retry { id }) => {
            let outcome = db.session().await?.run(jobq.retry(JobId(id))).await?;
            let text = match outcome {
                RetryOutcome::Retried => "retried",
                RetryOutcome::Unchanged => "unchanged (waiting or running)",
            };
            out.outcome(id, text, &outcome);
        }
        Command::Queues => out.queues(&db.session().await?.run(jobq.queue_counts()).await?),
        Command::Workers => out.workers(&db.session().await?.run(jobq.workers()).await?),
        Command::Prune { older_than } => {
            let pruned = db.session().await?.run(jobq.prune(older_than)).await?;
            out.count("pruned", pruned);
        }
        Command::Healthcheck => {
            let version = db.session().await?.run(jobq.check_schema()).await?;
            out.message(&format!(
                "healthy: schema {} at version {version}",
                jobq.schema()
            ));
        }
    }
    Ok(())
}

/// The job `args` describe, checked against `jobq_core::limits` as deferral will check it: bad input
/// exits 2 here, before a connection is opened.
fn new_job(args: &DeferArgs) -> Result<NewJob, Failure> {
    let json: serde_json::Value = serde_json::from_str(&args.args)
        .map_err(|e| bad_input(format!("the arguments are not valid JSON: {e}")))?;
    let at = match (args.at, args.in_) {
        (Some(at), _) => Some(at),
        (None, Some(delay)) => Some(jobq_core::limits::check_delay(delay)?),
        (None, None) => None,
    };
    let job = NewJob {
        task: args.task.clone(),
        args: json,
        options: JobOptions {
            queue: args.queue.clone(),
            priority: args.priority,
            lock: args.lock.clone(),
            queueing_lock: args.queueing_lock.clone(),
            scheduled_at: at,
        },
    };
    jobq_core::limits::check_job(&job)?;
    Ok(job)
}

async fn defer(
    jobq: &Jobq,
    db: &mut connect::Database,
    args: DeferArgs,
    out: &Output,
) -> Result<(), Failure> {
    let job = new_job(&args)?;
    match db.session().await?.try_run(jobq.defer_job(job)).await? {
        Ok(id) => out.deferred(id),
        Err(Error::AlreadyEnqueued { queueing_lock }) if args.ignore_already_enqueued => {
            out.message(&format!(
                "a job with queueing lock {queueing_lock:?} is already waiting; nothing deferred"
            ));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
