//! `jobq jobs retry|cancel|delete` by filter and `jobq prune`: bounded batches, each in its own
//! transaction, with a progress bar on a terminal and a plain line per batch on stderr otherwise.

use crate::BulkArgs;
use crate::connect::Database;
use crate::failure::{Failure, bad_input};
use crate::output::Output;
use indicatif::{ProgressBar, ProgressStyle};
use jobq_core::{BulkOutcome, Jobq, Operation};
use std::io::IsTerminal;
use std::time::Duration;

/// Which bulk operation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    Retry { reset_attempts: bool },
    Cancel { abort: bool },
    Delete,
}

impl Action {
    /// The command's verb and its past participle.
    pub(crate) fn verb(self) -> (&'static str, &'static str) {
        match self {
            Self::Retry { .. } => ("retry", "retried"),
            Self::Cancel { .. } => ("cancel", "cancelled"),
            Self::Delete => ("delete", "deleted"),
        }
    }
}

/// Where progress goes: a bar on a terminal's stderr, else one line per batch on stderr (stdout keeps only
/// the result, so a pipe reads the summary alone).
enum Progress {
    Bar(ProgressBar),
    Lines,
}

impl Progress {
    fn new(total: Option<u64>, what: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self::Lines;
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner(),
        };
        bar.set_message(what.to_owned());
        Self::Bar(bar)
    }

    fn update(&self, done: u64, line: &str) {
        match self {
            Self::Bar(bar) => bar.set_position(done),
            Self::Lines => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// Counts the matching jobs, then (unless `--dry-run`) runs batches until none is left, each in its own
/// transaction. An empty filter without `--all` and a bad filter exit 2 before connecting.
pub(crate) async fn run(
    jobq: &Jobq,
    db: &mut Database,
    action: Action,
    args: &BulkArgs,
    out: &Output,
) -> Result<(), Failure> {
    let (verb, done_verb) = action.verb();
    let mut filter = args.filter();
    jobq_core::limits::check_bulk_filter(&filter)?;
    if filter.is_empty() && !args.all {
        return Err(bad_input(format!(
            "refusing to {verb} every job: give a filter (--queue, --task, --status, --lock, --since, \
             --until, --finished-since, --finished-until) or --all"
        )));
    }
    let session = db.session().await?;
    let matched = match action {
        Action::Retry { .. } => session.run(jobq.retry_matching(&filter).count()).await?,
        Action::Cancel { abort } => {
            let mut op = jobq.cancel_matching(&filter);
            if abort {
                op = op.abort();
            }
            session.run(op.count()).await?
        }
        Action::Delete => session.run(jobq.delete_matching(&filter).count()).await?,
    };
    if args.dry_run {
        out.bulk_dry_run(verb, matched);
        return Ok(());
    }
    let progress = Progress::new(Some(matched), done_verb);
    let mut total = BulkTotal::default();
    loop {
        let batch: BulkOutcome = match action {
            Action::Retry { reset_attempts } => {
                let op = jobq.retry_matching(&filter);
                let op = if reset_attempts {
                    op.reset_attempts()
                } else {
                    op
                };
                session.run(op).await?
            }
            Action::Cancel { abort } => {
                let op = jobq.cancel_matching(&filter);
                session.run(if abort { op.abort() } else { op }).await?
            }
            Action::Delete => session.run(jobq.delete_matching(&filter)).await?,
        };
        total.add(&batch);
        progress.update(
            total.examined,
            &format!("{done_verb} {} of {matched}", total.changed),
        );
        match batch.next {
            Some(next) => filter.after_id = Some(next),
            None => break,
        }
    }
    progress.finish();
    out.bulk_summary(action, matched, &total);
    Ok(())
}

/// The sums of every batch.
#[derive(Debug, Default)]
pub(crate) struct BulkTotal {
    pub(crate) examined: u64,
    pub(crate) changed: u64,
    pub(crate) conflicts: u64,
    pub(crate) abort_requested: u64,
}

impl BulkTotal {
    fn add(&mut self, batch: &BulkOutcome) {
        self.examined += batch.examined;
        self.changed += batch.changed;
        self.conflicts += batch.conflicts;
        self.abort_requested += batch.abort_requested;
    }
}

/// `jobq prune`: batches of at most 1,000 jobs, each in its own transaction, until none is old enough.
pub(crate) async fn prune(
    jobq: &Jobq,
    db: &mut Database,
    older_than: Duration,
    out: &Output,
) -> Result<(), Failure> {
    let session = db.session().await?;
    let progress = Progress::new(None, "pruned");
    let mut previous = None;
    let mut pruned = 0;
    loop {
        let batch = session
            .run(jobq.prune_batch(older_than, previous.as_ref()).into_query())
            .await?;
        pruned += batch.deleted;
        if !batch.more {
            break;
        }
        progress.update(pruned, &format!("pruned {pruned} so far"));
        previous = Some(batch);
    }
    progress.finish();
    out.count("pruned", pruned);
    Ok(())
}
