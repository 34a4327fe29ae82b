//! `jobq`: the command line for operators and scripts.
//!
//! Exit codes: 0 success; 1 a database, network or schema problem, or a timeout (the message carries every
//! cause); 2 bad input, including any value outside `jobq_core::limits` (refused before anything is sent,
//! so nothing was written); 3 a queueing-lock conflict; 4 no such job.

mod bulk;
mod connect;
mod dashboard;
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
    /// List, show, cancel, retry or delete jobs, one by id or every one matching a filter.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Each queue's jobs by status, its lag and whether it is paused; pause or resume one.
    Queues(QueuesArgs),
    /// Registered workers and their heartbeats.
    Workers,
    /// Delete finished jobs older than a duration, in batches of 1,000 (a progress bar on a terminal).
    Prune {
        /// How old, e.g. `7d`, `12h`, `30m`.
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Duration,
    },
    /// Connect and check the schema version; exit 0 when healthy.
    Healthcheck,
    /// Serve the web dashboard (queues, jobs, workers, actions, /metrics) until Ctrl-C or SIGTERM.
    Dashboard(dashboard::DashboardArgs),
}

/// `jobq queues` lists the queues; `jobq queues pause|resume NAME` steers one.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct QueuesArgs {
    #[command(subcommand)]
    command: Option<QueuesCommand>,
}

#[derive(Debug, Subcommand)]
enum QueuesCommand {
    /// Pause a queue: its waiting jobs stay waiting and no worker takes them (running jobs run on).
    Pause {
        /// The queue's name.
        name: String,
    },
    /// Resume a paused queue and wake its workers.
    Resume {
        /// The queue's name.
        name: String,
    },
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
    /// List jobs, oldest first; prints the next page's --after on stderr when the page is full.
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
        #[command(flatten)]
        time: TimeArgs,
        /// Only jobs with a greater id: the cursor of the next page.
        #[arg(long)]
        after: Option<i64>,
        /// At most this many.
        #[arg(long, default_value_t = 100, allow_negative_numbers = true)]
        limit: u32,
    },
    /// Show every field of one job, with its stored errors.
    Show {
        /// The job's id.
        id: i64,
    },
    /// Cancel a waiting job, or every waiting job matching a filter; --abort also stops running ones.
    Cancel {
        /// The job's id; without it, a filter (or --all) chooses the jobs.
        id: Option<i64>,
        /// Ask running jobs to stop.
        #[arg(long)]
        abort: bool,
        /// Delete the job instead of keeping it as cancelled (one job by id; `jobq jobs delete` for a filter).
        #[arg(long, requires = "id")]
        delete: bool,
        #[command(flatten)]
        bulk: BulkArgs,
    },
    /// Put a finished job, or every finished job matching a filter, back in the queue, to run now.
    ///
    /// Attempt counts are kept (a job that used up its retries runs once more) unless --reset-attempts.
    Retry {
        /// The job's id; without it, a filter (or --all) chooses the jobs.
        id: Option<i64>,
        /// Reset each retried job's attempt count to 0: its full retry budget again (filters only).
        #[arg(long)]
        reset_attempts: bool,
        #[command(flatten)]
        bulk: BulkArgs,
    },
    /// Delete every job matching a filter, but running ones; an empty filter needs --all.
    Delete {
        #[command(flatten)]
        bulk: BulkArgs,
    },
}

/// Time bounds: a duration ago (`1h`, `7d`) or an RFC 3339 time.
#[derive(Debug, Args)]
struct TimeArgs {
    /// Only jobs created at or after this: a duration ago (e.g. `1h`) or an RFC 3339 time.
    #[arg(long, value_parser = parse_when)]
    since: Option<DateTime<Utc>>,
    /// Only jobs created before this: a duration ago or an RFC 3339 time.
    #[arg(long, value_parser = parse_when)]
    until: Option<DateTime<Utc>>,
    /// Only jobs that finished at or after this: a duration ago or an RFC 3339 time.
    #[arg(long, value_parser = parse_when)]
    finished_since: Option<DateTime<Utc>>,
    /// Only jobs that finished before this: a duration ago or an RFC 3339 time.
    #[arg(long, value_parser = parse_when)]
    finished_until: Option<DateTime<Utc>>,
}

/// The filter and the safety catches of `jobq jobs retry|cancel|delete` without an id.
#[derive(Debug, Args)]
struct BulkArgs {
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
    #[command(flatten)]
    time: TimeArgs,
    /// Count the matching jobs and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Allow an empty filter: every job.
    #[arg(long)]
    all: bool,
    /// Jobs per batch (each batch its own transaction).
    #[arg(long, default_value_t = jobq_core::limits::BULK_BATCH, allow_negative_numbers = true)]
    batch_size: u32,
}

impl BulkArgs {
    /// Whether any flag of a bulk run was given (refused next to an id).
    fn given(&self) -> bool {
        !self.filter().is_empty() || self.dry_run || self.all
    }

    fn filter(&self) -> JobFilter {
        JobFilter {
            queue: self.queue.clone(),
            task: self.task.clone(),
            status: self.status,
            lock: self.lock.clone(),
            limit: Some(self.batch_size),
            ..self.time.filter()
        }
    }
}

impl TimeArgs {
    fn filter(&self) -> JobFilter {
        JobFilter {
            created_since: self.since,
            created_until: self.until,
            finished_since: self.finished_since,
            finished_until: self.finished_until,
            ..JobFilter::default()
        }
    }
}

/// A time given as a duration ago (`1h`, `30m`, `7d`) or as RFC 3339.
fn parse_when(s: &str) -> Result<DateTime<Utc>, String> {
    match humantime::parse_duration(s) {
        Ok(ago) => chrono::Duration::from_std(ago)
            .ok()
            .and_then(|ago| Utc::now().checked_sub_signed(ago))
            .ok_or_else(|| format!("{s} ago is before any time jobq stores")),
        Err(_) => {
            parse_time(s).map_err(|e| format!("neither a duration (e.g. 1h, 7d) nor a time: {e}"))
        }
    }
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
    if let Command::Dashboard(args) = cli.command {
        return dashboard::run(jobq, url, cli.timeout, args).await;
    }
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
            time,
            after,
            limit,
        }) => {
            let filter = JobFilter {
                queue,
                task,
                status,
                lock,
                after_id: after.map(JobId),
                limit: Some(limit),
                ..time.filter()
            };
            jobq_core::limits::check_filter(&filter)?;
            let jobs = db.session().await?.run(jobq.list(&filter)).await?;
            out.jobs(&jobs);
            if let Some(last) = jobs
                .last()
                .filter(|_| jobs.len() as u64 >= u64::from(limit))
            {
                eprintln!("next page: --after {}", last.id);
            }
        }
        Command::Jobs(JobsCommand::Show { id }) => {
            out.job(&db.session().await?.run(jobq.job(JobId(id))).await?)
        }
        Command::Jobs(JobsCommand::Cancel {
            id: None,
            abort,
            bulk: args,
            ..
        }) => bulk::run(&jobq, &mut db, bulk::Action::Cancel { abort }, &args, &out).await?,
        Command::Jobs(JobsCommand::Retry {
            id: None,
            reset_attempts,
            bulk: args,
        }) => {
            let action = bulk::Action::Retry { reset_attempts };
            bulk::run(&jobq, &mut db, action, &args, &out).await?
        }
        Command::Jobs(JobsCommand::Delete { bulk: args }) => {
            bulk::run(&jobq, &mut db, bulk::Action::Delete, &args, &out).await?
        }
        Command::Jobs(JobsCommand::Cancel {
            id: Some(id),
            abort,
            delete,
            bulk,
        }) => {
            if bulk.given() {
                return Err(bad_input(
                    "give a job id or a filter (--queue, --task, --status, --since, …), not both",
                ));
            }
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
        Command::Jobs(JobsCommand::Retry {
            id: Some(id),
            reset_attempts,
            bulk,
        }) => {
            if bulk.given() || reset_attempts {
                return Err(bad_input(
                    "give a job id or a filter (--queue, --task, --status, --since, …), not both; \
                     --reset-attempts goes with a filter (a job's own retry keeps its attempts)",
                ));
            }
            let outcome = db.session().await?.run(jobq.retry(JobId(id))).await?;
            let text = match outcome {
                RetryOutcome::Retried => "retried",
                RetryOutcome::Unchanged => "unchanged (waiting or running)",
            };
            out.outcome(id, text, &outcome);
        }
        Command::Queues(args) => queues(&jobq, &mut db, args.command, &out).await?,
        Command::Workers => out.workers(&db.session().await?.run(jobq.workers()).await?),
        Command::Prune { older_than } => bulk::prune(&jobq, &mut db, older_than, &out).await?,
        Command::Dashboard(_) => unreachable!("served before a session is opened"),
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
            trace_context: None,
        },
    };
    jobq_core::limits::check_job(&job)?;
    Ok(job)
}

/// `jobq queues`: the listing (counts by status, then lag and pauses), or a pause or resume, whose name is
/// checked before connecting.
async fn queues(
    jobq: &Jobq,
    db: &mut connect::Database,
    command: Option<QueuesCommand>,
    out: &Output,
) -> Result<(), Failure> {
    let (name, pause) = match command {
        None => {
            let session = db.session().await?;
            let counts = session.run(jobq.queue_counts()).await?;
            let lag = session.run(jobq.queue_lag()).await?;
            out.queues(&counts, &lag);
            return Ok(());
        }
        Some(QueuesCommand::Pause { name }) => (name, true),
        Some(QueuesCommand::Resume { name }) => (name, false),
    };
    jobq_core::limits::check_name("queue", &name)?;
    let session = db.session().await?;
    let changed = if pause {
        session.run(jobq.pause_queue(&name)).await?
    } else {
        session.run(jobq.resume_queue(&name)).await?
    };
    out.steered(&name, pause, changed);
    Ok(())
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
