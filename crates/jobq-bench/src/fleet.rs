//! `worker_fleet_ratio`: the throughput of 4 worker processes together on one queue, divided by that of one
//! process on the same number of jobs. The benchmark runs itself again as `jobq-bench fleet-worker`, so the
//! workers are real processes with their own pools, as a fleet is: each says `ready`, waits for `go` on
//! stdin, runs a worker until stdin closes and then says how many jobs it ran. Throughput is jobs ÷ the wall
//! time from `go` to the last job ended in the database. The queue is filled through jobq's `defer_batch`
//! before every drain, and one process and the fleet alternate in rounds (which goes first alternates too).

use crate::queue::{self, Noop, WorkerConfig};
use crate::report::{Figure, Report, Target, number};
use crate::{BoxError, Plan};
use jobq_core::worker::JobContext;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The processes of the fleet.
pub(crate) const FLEET: usize = 4;

/// The hidden `fleet-worker` subcommand's arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct FleetWorker {
    /// The database.
    #[arg(long)]
    url: String,
    /// Jobs running at once.
    #[arg(long)]
    concurrency: usize,
    /// The most jobs one fetch takes.
    #[arg(long)]
    fetch_batch: usize,
    /// Connections in the worker's pool.
    #[arg(long)]
    pool: usize,
}

/// Rounds of one process and of [`FLEET`] processes on freshly filled queues.
pub(crate) async fn measure(
    url: &str,
    plan: &Plan,
    report: &Report,
) -> Result<Vec<Figure>, BoxError> {
    let client = queue::connect(url).await?;
    let (n, rounds) = (plan.fleet_jobs, plan.fleet_rounds);
    let (mut one, mut fleet) = (Duration::ZERO, Duration::ZERO);
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [1, FLEET]
        } else {
            [FLEET, 1]
        };
        for processes in order {
            queue::reset(&client).await?;
            report.detail(format!(
                "worker fleet: filling {} jobs through defer_batch, round {}/{rounds}",
                number(n as f64),
                round + 1
            ));
            queue::fill(&client, n).await?;
            report.detail(format!(
                "worker fleet: {processes} process(es) draining {} jobs, round {}/{rounds}",
                number(n as f64),
                round + 1
            ));
            let took = drain(url, &plan.worker, &client, processes, n).await?;
            if processes == 1 {
                one += took;
            } else {
                fleet += took;
            }
        }
    }
    let total = (n * rounds) as f64;
    let (one_rate, fleet_rate) = (total / one.as_secs_f64(), total / fleet.as_secs_f64());
    let quick = if plan.quick { "; quick run" } else { "" };
    Ok(vec![
        Figure::new("worker_fleet_ratio", fleet_rate / one_rate, "ratio")
            .target(Target::AtLeast(0.9))
            .note(format!(
                "{FLEET} worker processes together: {} jobs/s; one process: {} jobs/s; each process {}; \
                 {rounds} rounds of {} no-op jobs filled by defer_batch, from go to drained{quick}",
                number(fleet_rate),
                number(one_rate),
                plan.worker.describe(),
                number(n as f64)
            )),
        Figure::new("worker_fleet_throughput", fleet_rate, "jobs/s").note(format!(
            "{FLEET} processes on one queue, jobs / wall time"
        )),
    ])
}

/// Starts `processes` worker processes on `n` queued jobs, says `go` to all at once and times them until
/// every job is ended in the database; checks that together they ran exactly `n`.
async fn drain(
    url: &str,
    config: &WorkerConfig,
    client: &tokio_postgres::Client,
    processes: usize,
    n: usize,
) -> Result<Duration, BoxError> {
    let mut children: Vec<(Child, Lines<BufReader<ChildStdout>>)> = Vec::new();
    for _ in 0..processes {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["fleet-worker", "--url", url])
            .args(["--concurrency", &config.concurrency.to_string()])
            .args(["--fetch-batch", &config.fetch_batch.to_string()])
            .args(["--pool", &config.pool.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        children.push((child, lines));
    }
    for (_, lines) in &mut children {
        expect(lines, "ready").await?;
    }
    let start = Instant::now();
    for (child, _) in &mut children {
        child
            .stdin
            .as_mut()
            .ok_or("no stdin")?
            .write_all(b"go\n")
            .await?;
    }
    queue::drained(client).await?;
    let took = start.elapsed();
    let mut ran = 0;
    for (child, lines) in &mut children {
        drop(child.stdin.take());
        let said = lines.next_line().await?.unwrap_or_default();
        ran += said
            .strip_prefix("ran ")
            .and_then(|count| count.parse::<usize>().ok())
            .ok_or_else(|| format!("a fleet worker said {said:?} instead of `ran N`"))?;
        let exit = child.wait().await?;
        if !exit.success() {
            return Err(format!("a fleet worker ended with {exit}").into());
        }
    }
    if ran != n {
        return Err(format!("the fleet ran {ran} jobs of {n}").into());
    }
    Ok(took)
}

/// Reads the child's next line and checks it is `word`.
async fn expect(lines: &mut Lines<BufReader<ChildStdout>>, word: &str) -> Result<(), BoxError> {
    match lines.next_line().await? {
        Some(line) if line == word => Ok(()),
        other => Err(format!("a fleet worker said {other:?} instead of {word}").into()),
    }
}

/// The child: `ready`; a worker from `go` until stdin ends; then `ran N`.
pub(crate) fn fleet_worker(args: FleetWorker) -> Result<(), BoxError> {
    let config = WorkerConfig {
        concurrency: args.concurrency,
        fetch_batch: args.fetch_batch,
        pool: args.pool,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let ran = runtime.block_on(async {
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = ran.clone();
        let worker = config
            .builder(&args.url)?
            .task(move |_: Noop, _: JobContext| {
                counter.fetch_add(1, Ordering::Relaxed);
                async { Ok(()) }
            })
            .build();
        let mut stdin = BufReader::new(tokio::io::stdin()).lines();
        println!("ready");
        match stdin.next_line().await? {
            Some(line) if line == "go" => {}
            other => return Err(format!("expected go on stdin, read {other:?}").into()),
        }
        worker
            .run_until(async move {
                // Stop at stdin's end (or if it cannot be read).
                while let Ok(Some(_)) = stdin.next_line().await {}
            })
            .await?;
        Ok::<_, BoxError>(ran.load(Ordering::Relaxed))
    })?;
    println!("ran {ran}");
    Ok(())
}
