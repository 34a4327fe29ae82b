//! `latency_p50_ms` and `latency_p99_ms`: from a deferral's COMMIT returning to its handler starting, on an
//! idle worker woken by LISTEN/NOTIFY; and `latency_from_send_p50_ms` / `_p99_ms`, the same from just before
//! COMMIT is sent (the notification goes out at commit, so a handler may start before the reply arrives).

use crate::queue::{self, Noop};
use crate::report::{Figure, Report, Target};
use crate::{BoxError, Plan};
use jobq_core::worker::JobContext;
use jobq_tokio_postgres::prelude::*;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Sends `plan.latency_samples` jobs one at a time, each after the previous one started.
pub(crate) async fn measure(
    url: &str,
    plan: &Plan,
    report: &Report,
) -> Result<Vec<Figure>, BoxError> {
    let (started, mut starts) = mpsc::unbounded_channel::<Instant>();
    let worker = plan
        .worker
        .builder(url)?
        // Polling so rarely that only a notification can explain a quick start.
        .poll_interval(Duration::from_secs(30))
        .task(move |_: Noop, _: JobContext| {
            let _ = started.send(Instant::now());
            async { Ok(()) }
        })
        .build();
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run_until(stop.clone().cancelled_owned()));
    // Let the worker register, LISTEN and go idle.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut client = queue::connect(url).await?;
    let jobq = Jobq::default();
    let samples = plan.latency_samples;
    let mut millis = Vec::with_capacity(samples);
    let mut from_send = Vec::with_capacity(samples);
    for i in 0..samples {
        if i % 50 == 0 {
            report.detail(format!("commit-to-start latency: {i}/{samples} samples"));
        }
        let tx = client.transaction().await?;
        jobq.defer(&Noop {}).run(&tx).await?;
        let sent = Instant::now();
        tx.commit().await?;
        let committed = Instant::now();
        let begun = tokio::time::timeout(Duration::from_secs(60), starts.recv())
            .await?
            .ok_or("the worker stopped")?;
        millis.push(begun.saturating_duration_since(committed).as_secs_f64() * 1_000.0);
        from_send.push(begun.saturating_duration_since(sent).as_secs_f64() * 1_000.0);
    }
    stop.cancel();
    running.await??;

    millis.sort_by(f64::total_cmp);
    from_send.sort_by(f64::total_cmp);
    // How often the handler had started before COMMIT's reply was read (those count as 0 from the reply).
    let early = millis.iter().filter(|&&m| m == 0.0).count();
    let quick = if plan.quick {
        " (quick: fewer samples)"
    } else {
        ""
    };
    Ok(vec![
        Figure::new("latency_p50_ms", percentile(&millis, 0.50), "ms")
            .target(Target::AtMost(5.0))
            .note(format!(
                "COMMIT returned -> handler started, idle worker, LISTEN/NOTIFY, {samples} samples{quick}"
            )),
        Figure::new("latency_p99_ms", percentile(&millis, 0.99), "ms")
            .target(Target::AtMost(25.0))
            .note(format!(
                "max {:.2} ms; {early} of {samples} handlers started before COMMIT's reply was read",
                millis.last().copied().unwrap_or(0.0)
            )),
        Figure::new(
            "latency_from_send_p50_ms",
            percentile(&from_send, 0.50),
            "ms",
        )
        .target(Target::AtMost(5.0))
        .note(format!(
            "just before COMMIT is sent -> handler started, the same {samples} samples{quick}"
        )),
        Figure::new(
            "latency_from_send_p99_ms",
            percentile(&from_send, 0.99),
            "ms",
        )
        .target(Target::AtMost(25.0))
        .note(format!(
            "max {:.2} ms",
            from_send.last().copied().unwrap_or(0.0)
        )),
    ])
}

/// The nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
