//! `batch_defer_rss_mib`: the peak resident memory of a client deferring 1,000,000 small jobs in one
//! `defer_batch` call. The benchmark runs itself again as `jobq-bench defer-batch-process`, a process that
//! does only that call on one sync `postgres` connection, with the jobs passed as an iterator (as
//! [`jobq_core::Jobq::defer_batch`] advises), and prints its own `VmHWM` before and after; so the figure is
//! that call's alone, not the benchmark's.

use crate::report::{Figure, Report, Target, number};
use crate::{BoxError, Plan};
use jobq_core::{Jobq, NewJob};
use serde_json::json;
use std::time::Instant;
use tokio::process::Command;

/// The hidden `defer-batch-process` subcommand's arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct DeferBatchProcess {
    /// The database.
    #[arg(long)]
    url: String,
    /// How many jobs the one batch holds.
    #[arg(long)]
    jobs: usize,
}

/// What the child says on its one line of output.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Said {
    /// `VmHWM` once connected, before the batch, in KiB.
    before_kib: u64,
    /// `VmHWM` after the call returned, in KiB.
    after_kib: u64,
    /// The ids the call returned.
    ids: usize,
    /// How long the call took, in seconds.
    seconds: f64,
}

/// Runs the child on a fresh database and reports its peak memory.
pub(crate) async fn measure(
    url: &str,
    plan: &Plan,
    report: &Report,
) -> Result<Vec<Figure>, BoxError> {
    let n = plan.batch_rss_jobs;
    report.detail(format!(
        "one defer_batch of {} jobs in a child process",
        number(n as f64)
    ));
    let output = Command::new(std::env::current_exe()?)
        .args(["defer-batch-process", "--url", url])
        .args(["--jobs", &n.to_string()])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?;
    if !output.status.success() {
        return Err(format!(
            "the deferring process ended with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let said: Said = serde_json::from_slice(&output.stdout)?;
    if said.ids != n {
        return Err(format!("the batch of {n} returned {} ids", said.ids).into());
    }
    let client = crate::queue::connect(url).await?;
    let stored: i64 = client
        .query_one("SELECT count(*) FROM jobq.jobs", &[])
        .await?
        .get(0);
    if usize::try_from(stored).ok() != Some(n) {
        return Err(format!("the batch of {n} left {stored} jobs in the table").into());
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(vec![
        Figure::new("batch_defer_rss_mib", mib(said.after_kib), "MiB")
            .target(Target::AtMost(300.0))
            .note(format!(
                "VmHWM of a process making one defer_batch of {} jobs like {{\"order_id\": n}} from an \
                 iterator on one postgres connection (jobq-postgres); {:.1} MiB before the call; the call \
                 took {:.1} s ({} jobs/s){}",
                number(n as f64),
                mib(said.before_kib),
                said.seconds,
                number(n as f64 / said.seconds),
                if plan.quick {
                    "; quick run: the same size, which the target is defined on"
                } else {
                    ""
                }
            )),
    ])
}

/// The child: connects, makes the one call, prints [`Said`] as JSON on stdout.
pub(crate) fn defer_batch_process(args: DeferBatchProcess) -> Result<(), BoxError> {
    let mut client = postgres::Client::connect(&args.url, postgres::NoTls)?;
    let jobq = Jobq::default();
    let before_kib = peak_kib()?;
    let start = Instant::now();
    let ids = jobq
        .defer_batch((0..args.jobs).map(|n| NewJob::new("process_order", json!({ "order_id": n }))))
        .run_blocking(&mut client)?;
    let seconds = start.elapsed().as_secs_f64();
    let after_kib = peak_kib()?;
    let said = Said {
        before_kib,
        after_kib,
        ids: ids.len(),
        seconds,
    };
    println!("{}", serde_json::to_string(&said)?);
    Ok(())
}

/// This process's peak resident memory so far (`VmHWM` in `/proc/self/status`), in KiB.
pub(crate) fn peak_kib() -> Result<u64, BoxError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status_kib(&status, "VmHWM:")
}

/// A `kB` field of a `/proc/<pid>/status` text, in KiB.
pub(crate) fn status_kib(status: &str, field: &str) -> Result<u64, BoxError> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .ok_or_else(|| format!("no {field} in the process status"))?;
    Ok(line.trim().trim_end_matches("kB").trim().parse()?)
}
