//! `cargo run --release -p jobq-bench [-- --quick] [--json FILE]`: measures jobq's figures on this machine and
//! holds them against the design's targets. It starts a throwaway PostgreSQL unless `DATABASE_URL` (or
//! `JOBQ_DATABASE_URL`) names a server, and gives every figure group a fresh database. Nothing here asserts
//! a timing: it reports, and `docs/benchmarks.md` explains the method and the results.

mod batch_rss;
mod defer;
mod flatness;
mod fleet;
mod latency;
mod queue;
mod report;
mod rss;
mod scale;
mod sustained;
mod worker;

use clap::{Parser, Subcommand};
use queue::WorkerConfig;
use report::Report;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// jobq's benchmarks.
#[derive(Debug, Parser)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    args: Args,
}

#[derive(Debug, clap::Args)]
struct Args {
    /// A shorter run: fewer jobs, samples and finished rows, and 3 minutes of steady load instead of 30
    /// (about four minutes in all on a 2-core machine: 3 min 44 s measured, three of them steady load).
    #[arg(long)]
    quick: bool,
    /// Also write the figures to this file as `{"figures": [{"name", "value", "unit", "target", "met",
    /// "note"}, …]}` (the note says how each was measured: settings, sizes, the reference loop's rate).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Jobs a worker runs at once (the throughput, flatness and latency figures; RSS always uses 100).
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// The most jobs a worker fetches in one statement.
    #[arg(long, default_value_t = 200)]
    fetch_batch: usize,
    /// Connections in a worker's pool.
    #[arg(long, default_value_t = 8)]
    pool: usize,
    /// Measure only these figure groups (repeatable); all by default.
    #[arg(long, value_enum, value_name = "GROUP")]
    only: Vec<Group>,
}

/// The figure groups, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Group {
    /// defer_external, defer_external_ratio, defer_pool, batch_defer and batch_defer_vs_insert_ratio for
    /// every adapter, interleaved in rounds.
    Defer,
    /// worker_throughput, worker_vs_raw_sql_ratio and worker_vs_runner_loop_ratio.
    Worker,
    /// fetch_flatness_ratio.
    Flatness,
    /// latency_p50_ms and latency_p99_ms.
    Latency,
    /// worker_rss_mib.
    Rss,
    /// batch_defer_rss_mib.
    BatchRss,
    /// worker_fleet_ratio.
    Fleet,
    /// sustained_ratio (30 minutes; --quick: 3).
    Sustained,
    /// fetch_other_tasks_ratio and fetch_lock_backlog_ratio (each from every queue and a named one),
    /// multi_queue_fetch_ratio and many_queues_ratio: the fetch behind many jobs of tasks the worker does
    /// not know, with a long lock backlog, from several large queues, and from 10,000.
    Scale,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs only a worker (for `worker_rss_mib`).
    #[command(hide = true)]
    WorkerProcess(rss::WorkerProcess),
    /// Makes one `defer_batch` call and prints its peak memory (for `batch_defer_rss_mib`).
    #[command(hide = true)]
    DeferBatchProcess(batch_rss::DeferBatchProcess),
    /// Runs a worker from `go` on stdin until stdin ends (for `worker_fleet_ratio`).
    #[command(hide = true)]
    FleetWorker(fleet::FleetWorker),
}

/// How much work each figure does: `--quick` or the full run.
#[derive(Debug)]
pub(crate) struct Plan {
    quick: bool,
    defer_rounds: usize,
    defer_per_round: usize,
    defer_pool: usize,
    batches: usize,
    batch_rounds: usize,
    batch_rss_jobs: usize,
    fleet_jobs: usize,
    fleet_rounds: usize,
    sustained: SustainedPlan,
    scale: scale::ScalePlan,
    worker_jobs: usize,
    worker_rounds: usize,
    finished_rows: u64,
    flatness_reps: usize,
    latency_samples: usize,
    rss_jobs: usize,
    worker: WorkerConfig,
}

/// The steady-load figure's times.
#[derive(Debug)]
pub(crate) struct SustainedPlan {
    /// How long the load runs.
    duration: Duration,
    /// The first and last windows compared.
    window: Duration,
    /// How often the table's statistics are sampled.
    sample: Duration,
}

impl Plan {
    fn new(args: &Args) -> Self {
        let worker = WorkerConfig {
            concurrency: args.concurrency,
            fetch_batch: args.fetch_batch,
            pool: args.pool,
        };
        if args.quick {
            Self {
                quick: true,
                defer_rounds: 10,
                defer_per_round: 100,
                defer_pool: 1_000,
                batches: 20,
                batch_rounds: 5,
                batch_rss_jobs: 1_000_000,
                fleet_jobs: 50_000,
                fleet_rounds: 2,
                sustained: SustainedPlan {
                    duration: Duration::from_secs(180),
                    window: Duration::from_secs(60),
                    sample: Duration::from_secs(10),
                },
                scale: scale::ScalePlan {
                    other_tasks: 100_000,
                    lock_backlog: 100_000,
                    fetch_samples: 50,
                    queues: 10_000,
                    multi_queue_jobs: 200_000,
                },
                worker_jobs: 10_000,
                worker_rounds: 4,
                finished_rows: 1_000_000,
                flatness_reps: 30,
                latency_samples: 200,
                rss_jobs: 20_000,
                worker,
            }
        } else {
            Self {
                quick: false,
                defer_rounds: 20,
                defer_per_round: 250,
                defer_pool: 5_000,
                batches: 100,
                batch_rounds: 10,
                batch_rss_jobs: 1_000_000,
                fleet_jobs: 100_000,
                fleet_rounds: 3,
                sustained: SustainedPlan {
                    duration: Duration::from_secs(30 * 60),
                    window: Duration::from_secs(5 * 60),
                    sample: Duration::from_secs(30),
                },
                scale: scale::ScalePlan {
                    other_tasks: 300_000,
                    lock_backlog: 300_000,
                    fetch_samples: 100,
                    queues: 10_000,
                    multi_queue_jobs: 1_000_000,
                },
                worker_jobs: 50_000,
                worker_rounds: 6,
                finished_rows: 5_000_000,
                flatness_reps: 50,
                latency_samples: 1_000,
                rss_jobs: 100_000,
                worker,
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::WorkerProcess(args)) => rss::worker_process(args).map(|()| true),
        Some(Command::DeferBatchProcess(args)) => {
            batch_rss::defer_batch_process(args).map(|()| true)
        }
        Some(Command::FleetWorker(args)) => fleet::fleet_worker(args).map(|()| true),
        None => bench(&cli.args),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("jobq-bench: {}", report::chain(&*e));
            ExitCode::FAILURE
        }
    }
}

/// Runs every figure group; returns whether all were measured.
fn bench(args: &Args) -> Result<bool, BoxError> {
    let plan = Plan::new(args);
    let runs = |group| args.only.is_empty() || args.only.contains(&group);
    let steps = [
        (Group::Defer, 1),
        (Group::Worker, 1),
        (Group::Flatness, 1),
        (Group::Latency, 1),
        (Group::Rss, 1),
        (Group::BatchRss, 1),
        (Group::Fleet, 1),
        (Group::Sustained, 1),
        (Group::Scale, 1),
    ]
    .iter()
    .filter(|(g, _)| runs(*g))
    .map(|(_, n)| n)
    .sum::<u64>();
    let mut report = Report::new(steps);
    report.detail("starting PostgreSQL".into());
    let machine = machine()?;

    // The deferral loops block on their driver (the sync ones must not run on an async runtime). All four
    // adapters run in one step, interleaved in rounds.
    if runs(Group::Defer) {
        report.step("deferral figures, all adapters interleaved");
        let figures = fresh().and_then(|db| defer::measure(db.url(), &plan, &report));
        report.finish_step("defer_*, batch_defer*", figures);
    }

    // The worker figures run on a multi-threaded runtime, as a worker application does.
    let runtime = tokio::runtime::Runtime::new()?;
    macro_rules! worker_figures {
        ($group:expr, $what:expr, $names:expr, $measure:path) => {{
            if runs($group) {
                report.step($what);
                let figures =
                    fresh().and_then(|db| runtime.block_on($measure(db.url(), &plan, &report)));
                report.finish_step($names, figures);
            }
        }};
    }
    worker_figures!(
        Group::Worker,
        "worker throughput and the raw SQL loop",
        "worker_throughput, worker_vs_raw_sql_ratio",
        worker::throughput
    );
    worker_figures!(
        Group::Flatness,
        "fetch with finished jobs in the table",
        "fetch_flatness_ratio",
        flatness::measure
    );
    worker_figures!(
        Group::Latency,
        "commit-to-start latency",
        "latency_p50_ms, latency_p99_ms",
        latency::measure
    );
    worker_figures!(
        Group::Rss,
        "worker process memory",
        "worker_rss_mib",
        rss::measure
    );
    worker_figures!(
        Group::BatchRss,
        "client memory of one defer_batch of 1,000,000 jobs",
        "batch_defer_rss_mib",
        batch_rss::measure
    );
    worker_figures!(
        Group::Fleet,
        "worker processes: one against a fleet",
        "worker_fleet_ratio",
        fleet::measure
    );
    worker_figures!(
        Group::Sustained,
        "sustained defer + work",
        "sustained_ratio",
        sustained::measure
    );
    worker_figures!(
        Group::Scale,
        "fetch at scale: other tasks' jobs, lock backlog, several large queues, 10,000 queues",
        "fetch_other_tasks_ratio, fetch_lock_backlog_ratio, multi_queue_fetch_ratio, many_queues_ratio",
        scale::measure
    );

    let complete = report.complete();
    let kind = if plan.quick { "quick run" } else { "full run" };
    report.finish(
        &format!("jobq-bench, {kind}: {machine}"),
        args.json.as_deref(),
    )?;
    Ok(complete)
}

/// A fresh migrated database on the throwaway server (or the one `DATABASE_URL` names).
fn fresh() -> Result<jobq_tempdb::TestDatabase, BoxError> {
    Ok(jobq_tempdb::try_database(true)?)
}

/// The machine and server the figures come from, for the table's title.
fn machine() -> Result<String, BoxError> {
    let db = fresh()?;
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls)?;
    let mut setting = |name: &str| -> Result<String, BoxError> {
        Ok(client.query_one(&format!("SHOW {name}"), &[])?.get(0))
    };
    let (version, fsync) = (setting("server_version")?, setting("fsync")?);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, m)| m.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let server = if std::env::var_os("JOBQ_DATABASE_URL")
        .or_else(|| std::env::var_os("DATABASE_URL"))
        .is_some()
    {
        "the server DATABASE_URL names"
    } else {
        "throwaway server"
    };
    Ok(format!(
        "{cores} cores ({cpu}), PostgreSQL {version} ({server}, fsync {fsync})"
    ))
}
