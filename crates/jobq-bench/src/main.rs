//! `cargo run --release -p jobq-bench [-- --quick] [--json FILE]`: measures jobq's figures as ratios taken in
//! one run on this machine. Nothing here asserts a timing; it reports.
//!
//! This first version measures the tokio-postgres figures and the worker; the other adapters' figures and
//! `fetch_flatness_ratio` / `worker_rss_mib` are listed as not measured yet.

mod defer;
mod worker;

use clap::Parser;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use indicatif::ProgressBar;
use serde::Serialize;
use std::process::ExitCode;

/// jobq's benchmarks.
#[derive(Debug, Parser)]
struct Args {
    /// A shorter run (about a minute).
    #[arg(long)]
    quick: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// One measured figure.
#[derive(Debug, Serialize)]
pub(crate) struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
    #[serde(skip)]
    target: &'static str,
    #[serde(skip)]
    note: String,
}

pub(crate) fn figure(
    name: impl Into<String>,
    value: f64,
    unit: &'static str,
    target: &'static str,
    note: impl Into<String>,
) -> Figure {
    Figure {
        name: name.into(),
        value,
        unit,
        target,
        note: note.into(),
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut message = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            eprintln!("jobq-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let scale = if args.quick { 1 } else { 5 };
    let progress = ProgressBar::new(4);
    let fresh = || async { jobq_tempdb::try_database(true) };
    let mut figures = Vec::new();
    progress.set_message("defer, tokio-postgres");
    figures.extend(defer::tokio_postgres(fresh().await?.url(), 2_000 * scale).await?);
    progress.inc(1);
    figures.extend(defer::batch(fresh().await?.url(), 20 * scale).await?);
    progress.inc(1);
    figures.extend(worker::throughput(fresh().await?.url(), 20_000 * scale).await?);
    progress.inc(1);
    figures
        .extend(worker::latency(fresh().await?.url(), if args.quick { 200 } else { 1_000 }).await?);
    progress.inc(1);
    progress.finish_and_clear();

    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(vec!["figure", "value", "unit", "target", "note"]);
    for f in &figures {
        table.add_row(vec![
            f.name.clone(),
            format!("{:.2}", f.value),
            f.unit.to_owned(),
            f.target.to_owned(),
            f.note.clone(),
        ]);
    }
    for missing in [
        "defer_external.{postgres,sqlx,diesel}",
        "defer_pool.{postgres,sqlx,diesel}",
        "batch_defer.{postgres,sqlx,diesel}",
        "fetch_flatness_ratio",
        "worker_rss_mib",
    ] {
        table.add_row(vec![
            missing.to_owned(),
            "-".into(),
            String::new(),
            String::new(),
            "not measured yet".into(),
        ]);
    }
    println!("{table}");
    if let Some(path) = args.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&serde_json::json!({ "figures": figures }))?,
        )?;
    }
    Ok(())
}
