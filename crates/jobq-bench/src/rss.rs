//! `worker_rss_mib`: the peak resident memory of a process that only runs a worker at concurrency 100 under
//! load. The benchmark runs itself again as `jobq-bench worker-process`, which drains the queued jobs, says
//! `done` and waits; the parent then reads the child's `VmHWM` from `/proc/<pid>/status`.

use crate::queue::{self, Noop, WorkerConfig};
use crate::report::{Figure, Report, Target};
use crate::{BoxError, Plan};
use jobq_core::worker::JobContext;
use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// How long a handler takes: long enough that all 100 slots stay busy, as under load.
const HANDLER_TIME: Duration = Duration::from_millis(1);

/// The hidden `worker-process` subcommand's arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct WorkerProcess {
    /// The database.
    #[arg(long)]
    url: String,
    /// Stop after this many jobs.
    #[arg(long)]
    jobs: usize,
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

/// Queues the jobs, runs the child on them and reads its peak resident memory.
pub(crate) async fn measure(
    url: &str,
    plan: &Plan,
    report: &Report,
) -> Result<Vec<Figure>, BoxError> {
    let client = queue::connect(url).await?;
    let n = plan.rss_jobs;
    queue::fill(&client, n).await?;
    let config = WorkerConfig {
        concurrency: 100,
        ..plan.worker
    };
    report.detail(format!(
        "worker process draining {n} jobs at concurrency 100"
    ));
    let mut child = Command::new(std::env::current_exe()?)
        .args(["worker-process", "--url", url])
        .args(["--jobs", &n.to_string()])
        .args(["--concurrency", &config.concurrency.to_string()])
        .args(["--fetch-batch", &config.fetch_batch.to_string()])
        .args(["--pool", &config.pool.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().ok_or("the worker process ended at once")?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let said = lines.next_line().await?;
    if said.as_deref() != Some("done") {
        return Err(format!("the worker process said {said:?} instead of done").into());
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |field| crate::batch_rss::status_kib(&status, field).map(|k| k as f64);
    let (peak, now) = (kib("VmHWM:")?, kib("VmRSS:")?);
    drop(child.stdin.take());
    let exit = child.wait().await?;
    if !exit.success() {
        return Err(format!("the worker process ended with {exit}").into());
    }
    Ok(vec![
        Figure::new("worker_rss_mib", peak / 1024.0, "MiB")
            .target(Target::AtMost(30.0))
            .note(format!(
                "VmHWM of a process running only a worker ({}), {n} jobs whose handlers sleep {} ms; \
                 VmRSS at the end {:.1} MiB",
                config.describe(),
                HANDLER_TIME.as_millis(),
                now / 1024.0
            )),
    ])
}

/// The child: a worker on `url` until it ran `jobs` jobs; then `done` on stdout, and exit at stdin's end.
pub(crate) fn worker_process(args: WorkerProcess) -> Result<(), BoxError> {
    let config = WorkerConfig {
        concurrency: args.concurrency,
        fetch_batch: args.fetch_batch,
        pool: args.pool,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let stop = CancellationToken::new();
        let ran = Arc::new(AtomicUsize::new(0));
        let (token, jobs) = (stop.clone(), args.jobs);
        let worker = config
            .builder(&args.url)?
            .task(move |_: Noop, _: JobContext| {
                if ran.fetch_add(1, Ordering::Relaxed) + 1 == jobs {
                    token.cancel();
                }
                async {
                    tokio::time::sleep(HANDLER_TIME).await;
                    Ok(())
                }
            })
            .build();
        worker.run_until(stop.cancelled_owned()).await?;
        Ok::<_, BoxError>(())
    })?;
    drop(runtime);
    println!("done");
    // Stay alive, with the worker's peak memory on record, until the parent has read it.
    for line in std::io::stdin().lock().lines() {
        line?;
    }
    Ok(())
}
