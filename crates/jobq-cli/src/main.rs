//! `jobq`: the command line for operators and scripts.
//!
//! Exit codes: 0 success; 1 a database or schema problem; 2 bad input, including any value outside
//! `jobq_core::limits` (nothing was written); 3 a queueing-lock conflict; 4 no such job.

mod output;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use jobq_core::{CancelOutcome, RetryOutcome};
use jobq_tokio_postgres::prelude::*;
use output::Output;
use std::process::ExitCode;
use std::time::Duration;

/// jobq: a PostgreSQL job queue. Inspect and operate the queue from the shell.
#[derive(Debug, Parser)]
#[command(name = "jobq", version, about)]
struct Cli {
    /// PostgreSQL URL, e.g. postgres://user@localhost/app.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// The PostgreSQL schema that holds jobq's tables.
    #[arg(long, default_value = "jobq", global = true)]
    schema: String,
    /// Print JSON instead of tables.
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

/// A failure with the exit code scripts see.
struct Failure {
    code: u8,
    message: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::AlreadyEnqueued { .. } => 3,
            Error::JobNotFound(_) => 4,
            Error::InvalidInput(_) => 2,
            // The arguments are parsed before anything is sent (`bad_input`), so a JSON error here is a
            // stored row this jobq could not read: not the caller's input.
            _ => 1,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

fn bad_input(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
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

async fn connect(url: Option<&str>) -> Result<tokio_postgres::Client, Failure> {
    let url =
        url.ok_or_else(|| bad_input("no database: pass --database-url or set DATABASE_URL"))?;
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| bad_input(format!("invalid database URL: {e}")))?;
    config.connect_timeout(Duration::from_secs(10));
    let (client, connection) =
        config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| Failure {
                code: 1,
                message: format!("cannot connect to the database: {e}"),
            })?;
    tokio::spawn(connection);
    Ok(client)
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let jobq = Jobq::with_schema(&cli.schema).map_err(Failure::from)?;
    let out = Output { json: cli.json };
    if let Command::Schema(SchemaCommand::Sql { grant }) = &cli.command {
        let sql = match grant {
            Some(role) => jobq.grant_sql(role)?,
            None => jobq.migration_sql().to_owned(),
        };
        println!("{sql}");
        return Ok(());
    }
    let client = connect(cli.database_url.as_deref()).await?;
    let db = &client;
    match cli.command {
        Command::Schema(SchemaCommand::Apply) => {
            jobq.migrate().run(db).await?;
            out.message(&format!(
                "schema {} is at version {}",
                jobq.schema(),
                jobq.required_version()
            ));
        }
        Command::Schema(SchemaCommand::Status) => {
            let applied = jobq.schema_version().run(db).await?;
            out.schema_status(jobq.schema(), applied, jobq.required_version());
        }
        Command::Schema(SchemaCommand::Sql { .. }) => unreachable!("handled before connecting"),
        Command::Defer(args) => defer(&jobq, db, args, &out).await?,
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
            out.jobs(&jobq.list(&filter).run(db).await?);
        }
        Command::Jobs(JobsCommand::Show { id }) => out.job(&jobq.job(JobId(id)).run(db).await?),
        Command::Jobs(JobsCommand::Cancel { id, abort, delete }) => {
            let mut cancel = jobq.cancel(JobId(id));
            if abort {
                cancel = cancel.abort();
            }
            if delete {
                cancel = cancel.delete();
            }
            let outcome = cancel.run(db).await?;
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
            let outcome = jobq.retry(JobId(id)).run(db).await?;
            let text = match outcome {
                RetryOutcome::Retried => "retried",
                RetryOutcome::Unchanged => "unchanged (waiting or running)",
            };
            out.outcome(id, text, &outcome);
        }
        Command::Queues => out.queues(&jobq.queue_counts().run(db).await?),
        Command::Workers => out.workers(&jobq.workers().run(db).await?),
        Command::Prune { older_than } => {
            let pruned = jobq.prune(older_than).run(db).await?;
            out.count("pruned", pruned);
        }
        Command::Healthcheck => {
            let version = jobq.check_schema().run(db).await?;
            out.message(&format!(
                "healthy: schema {} at version {version}",
                jobq.schema()
            ));
        }
    }
    Ok(())
}

async fn defer(
    jobq: &Jobq,
    db: &tokio_postgres::Client,
    args: DeferArgs,
    out: &Output,
) -> Result<(), Failure> {
    let json: serde_json::Value = serde_json::from_str(&args.args)
        .map_err(|e| bad_input(format!("the arguments are not valid JSON: {e}")))?;
    let at = match (args.at, args.in_) {
        (Some(at), _) => Some(at),
        (None, Some(delay)) => Some(jobq_core::limits::check_delay(delay)?),
        (None, None) => None,
    };
    let options = JobOptions {
        queue: args.queue,
        priority: args.priority,
        lock: args.lock,
        queueing_lock: args.queueing_lock,
        scheduled_at: at,
    };
    let job = NewJob {
        task: args.task,
        args: json,
        options,
    };
    match jobq.defer_job(job).run(db).await {
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
