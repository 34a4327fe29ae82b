//! The worker's metrics and its failed-attempt events, against a real server: counters by task and queue
//! equal what happened, histograms got one sample per attempt, the gauges return to 0, the queue gauges
//! say what `queue_lag` says, and a failed attempt's event says when it is retried or that it is final.
//!
//! The recorder is installed once for the test binary. It keeps its values in metrics-util's `Registry`
//! and reads them without resetting them (metrics-util's `DebuggingRecorder` zeroes counters and gauges
//! at each snapshot, so tests running side by side would take each other's values). Each test uses task
//! and queue names of its own and reads only its own labels; the tests that check the process-wide
//! metrics (jobs running, completions pending) run one at a time.

#![cfg(feature = "metrics")]

mod common;

use common::{Backend, connect};
use jobq_core::metrics as names;
use jobq_core::prelude::*;
use jobq_core::worker::{Backoff, JobContext, JobError, RetryStrategy, Worker, WorkerBuilder};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

// ---- the recorder -------------------------------------------------------------------------------------

/// Records into a registry that tests read without resetting.
struct TestRecorder(Arc<Registry<Key, AtomicStorage>>);

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

/// The registry of the recorder installed for this test binary.
fn registry() -> &'static Registry<Key, AtomicStorage> {
    static REGISTRY: OnceLock<Arc<Registry<Key, AtomicStorage>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let registry = Arc::new(Registry::atomic());
        metrics::set_global_recorder(TestRecorder(registry.clone()))
            .expect("no other recorder is installed in this test binary");
        registry
    })
}

/// Whether `key` is `name` with exactly `labels` (in any order).
fn matches(key: &Key, name: &str, labels: &[(&str, &str)]) -> bool {
    key.name() == name
        && key.labels().count() == labels.len()
        && labels
            .iter()
            .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
}

/// A counter's value; 0 when it was never registered.
fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut value = 0;
    registry().visit_counters(|key, c| {
        if matches(key, name, labels) {
            value += c.load(Ordering::SeqCst);
        }
    });
    value
}

/// A gauge's value; `None` when it was never registered.
fn gauge(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut value = None;
    registry().visit_gauges(|key, g| {
        if matches(key, name, labels) {
            value = Some(f64::from_bits(g.load(Ordering::SeqCst)));
        }
    });
    value
}

/// A histogram's samples (empty when it was never registered).
fn samples(name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    let mut values = Vec::new();
    registry().visit_histograms(|key, h| {
        if matches(key, name, labels) {
            values.extend(h.data());
        }
    });
    values
}

/// Tests that assert the process-wide gauges (jobs running, completions pending) hold this while their
/// worker runs, so no other test's worker moves them meanwhile.
static PROCESS_WIDE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---- the worker ---------------------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct Ok1;
impl Task for Ok1 {
    const NAME: &'static str = "metrics_ok";
}

/// Fails its first attempt, succeeds its second.
#[derive(Serialize, Deserialize)]
struct FlakyOnce;
impl Task for FlakyOnce {
    const NAME: &'static str = "metrics_flaky";
    fn retry() -> RetryStrategy {
        RetryStrategy::new(3).backoff(Backoff::Constant(Duration::from_millis(10)))
    }
}

/// Fails every attempt: two in all.
#[derive(Serialize, Deserialize)]
struct Doomed;
impl Task for Doomed {
    const NAME: &'static str = "metrics_doomed";
    fn retry() -> RetryStrategy {
        RetryStrategy::new(2)
    }
}

/// Never returns; stopped by its timeout, not retried.
#[derive(Serialize, Deserialize)]
struct Hangs;
impl Task for Hangs {
    const NAME: &'static str = "metrics_hangs";
    fn retry() -> RetryStrategy {
        RetryStrategy::none()
    }
    fn timeout() -> Option<Duration> {
        Some(Duration::from_millis(100))
    }
}

/// Runs until aborted.
#[derive(Serialize, Deserialize)]
struct UntilAborted;
impl Task for UntilAborted {
    const NAME: &'static str = "metrics_until_aborted";
}

/// Runs a worker in the background; the returned token stops it.
fn start(
    worker: Worker<Backend>,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), Error>>,
) {
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let handle = tokio::spawn(async move {
        worker
            .run_until(async move { stopped.cancelled().await })
            .await
    });
    (stop, handle)
}

/// Waits until `sql` (a boolean query) holds.
async fn wait_for(client: &tokio_postgres::Client, sql: &str) {
    for _ in 0..600 {
        if client.query_one(sql, &[]).await.unwrap().get::<_, bool>(0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition never held: {sql}");
}

/// Waits until `holds` (a reading of the recorder) is true.
async fn wait_until(what: &str, holds: impl Fn() -> bool) {
    for _ in 0..600 {
        if holds() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

fn fast(backend: Backend) -> WorkerBuilder<Backend> {
    Worker::builder(Jobq::default(), backend)
        .poll_interval(Duration::from_millis(50))
        .heartbeat_interval(Duration::from_millis(100))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_counts_every_end_by_task_and_queue() {
    registry();
    let _alone = PROCESS_WIDE.lock().await;
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let c = || common::Async(&client);
    const QUEUE: &str = "metrics_run";
    for _ in 0..3 {
        jobq.defer(&Ok1).queue(QUEUE).run(c()).await.unwrap();
    }
    jobq.defer(&FlakyOnce).queue(QUEUE).run(c()).await.unwrap();
    jobq.defer(&Doomed).queue(QUEUE).run(c()).await.unwrap();
    jobq.defer(&Hangs).queue(QUEUE).run(c()).await.unwrap();
    let aborted = jobq
        .defer(&UntilAborted)
        .queue(QUEUE)
        .run(c())
        .await
        .unwrap();
    let fetched_before = counter(names::FETCHED_JOBS, &[]);
    let worker = fast(Backend::connect(db.url()).await)
        .concurrency(4)
        .task(|_: Ok1, _ctx: JobContext| async { Ok(()) })
        .task(|_: FlakyOnce, ctx: JobContext| async move {
            if ctx.attempt() == 1 {
                Err(JobError::new("first attempt fails"))
            } else {
                Ok(())
            }
        })
        .task(|_: Doomed, _ctx: JobContext| async { Err(JobError::new("always fails")) })
        .task(|_: Hangs, _ctx: JobContext| async {
            std::future::pending::<()>().await;
            Ok(())
        })
        .task(|_: UntilAborted, ctx: JobContext| async move {
            ctx.aborted().await;
            Ok(())
        })
        .build();
    let (stop, handle) = start(worker);
    wait_for(
        &client,
        &format!(
            "SELECT status = 'doing' FROM jobq.jobs WHERE id = {}",
            aborted.0
        ),
    )
    .await;
    jobq.cancel(aborted).abort().run(c()).await.unwrap();
    wait_for(
        &client,
        "SELECT count(*) = 7 FROM jobq.jobs WHERE status IN ('succeeded', 'failed', 'aborted')",
    )
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();

    let by = |task| [(names::TASK, task), (names::QUEUE, QUEUE)];
    // (task, started, succeeded, retried, failed, timed out, aborted)
    let expected = [
        (Ok1::NAME, 3, 3, 0, 0, 0, 0),
        (FlakyOnce::NAME, 2, 1, 1, 0, 0, 0),
        (Doomed::NAME, 2, 0, 1, 1, 0, 0),
        (Hangs::NAME, 1, 0, 0, 1, 1, 0),
        (UntilAborted::NAME, 1, 0, 0, 0, 0, 1),
    ];
    for (task, started, succeeded, retried, failed, timed_out, aborted) in expected {
        let labels = by(task);
        let got = (
            counter(names::JOBS_STARTED, &labels),
            counter(names::JOBS_SUCCEEDED, &labels),
            counter(names::JOBS_RETRIED, &labels),
            counter(names::JOBS_FAILED, &labels),
            counter(names::JOBS_TIMED_OUT, &labels),
            counter(names::JOBS_ABORTED, &labels),
            counter(names::JOBS_RELEASED, &labels),
        );
        assert_eq!(
            got,
            (started, succeeded, retried, failed, timed_out, aborted, 0),
            "{task}: started, succeeded, retried, failed, timed out, aborted, released"
        );
        let waits = samples(names::JOB_QUEUE_WAIT, &labels);
        assert_eq!(waits.len() as u64, started, "{task}: one wait per attempt");
        assert!(waits.iter().all(|w| *w >= 0.0), "{task}: {waits:?}");
        let durations: usize = ["succeeded", "failed", "aborted", "timed_out", "released"]
            .iter()
            .map(|outcome| {
                let mut labels = labels.to_vec();
                labels.push((names::OUTCOME, outcome));
                samples(names::JOB_DURATION, &labels).len()
            })
            .sum();
        assert_eq!(
            durations as u64, started,
            "{task}: one duration per attempt"
        );
    }
    let outcome = |task, outcome| {
        let mut labels = by(task).to_vec();
        labels.push((names::OUTCOME, outcome));
        samples(names::JOB_DURATION, &labels).len()
    };
    assert_eq!(outcome(FlakyOnce::NAME, "failed"), 1);
    assert_eq!(outcome(FlakyOnce::NAME, "succeeded"), 1);
    assert_eq!(outcome(Hangs::NAME, "timed_out"), 1);
    assert_eq!(outcome(UntilAborted::NAME, "aborted"), 1);

    assert_eq!(gauge(names::JOBS_RUNNING, &[]), Some(0.0), "nothing runs");
    assert_eq!(
        gauge(names::COMPLETIONS_PENDING, &[]),
        Some(0.0),
        "every end reported"
    );
    assert!(
        counter(names::FETCHED_JOBS, &[]) - fetched_before >= 9,
        "nine attempts were fetched"
    );
    assert!(!samples(names::FETCH_DURATION, &[]).is_empty());
    assert!(!samples(names::COMPLETION_DURATION, &[]).is_empty());
}

/// A job the worker's shutdown interrupts goes back uncharged, counted as released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_counts_the_jobs_it_puts_back() {
    registry();
    let _alone = PROCESS_WIDE.lock().await;
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    const QUEUE: &str = "metrics_shutdown";
    jobq.defer(&UntilAborted)
        .queue(QUEUE)
        .run(common::Async(&client))
        .await
        .unwrap();
    let worker = fast(Backend::connect(db.url()).await)
        .shutdown_timeout(Duration::from_millis(100))
        .task(|_: UntilAborted, ctx: JobContext| async move {
            ctx.aborted().await;
            Ok(())
        })
        .build();
    let (stop, handle) = start(worker);
    let labels = [(names::TASK, UntilAborted::NAME), (names::QUEUE, QUEUE)];
    wait_until("the job started", || {
        counter(names::JOBS_STARTED, &labels) == 1
    })
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();
    wait_for(
        &client,
        "SELECT status = 'todo' AND attempts = 0 FROM jobq.jobs",
    )
    .await;
    assert_eq!(counter(names::JOBS_RELEASED, &labels), 1);
    assert_eq!(counter(names::JOBS_ABORTED, &labels), 0);
    let mut released = labels.to_vec();
    released.push((names::OUTCOME, "released"));
    assert_eq!(samples(names::JOB_DURATION, &released).len(), 1);
    assert_eq!(gauge(names::JOBS_RUNNING, &[]), Some(0.0));
    assert_eq!(gauge(names::COMPLETIONS_PENDING, &[]), Some(0.0));
}

/// A stalled worker's jobs that this worker recovers are counted as retried or failed, by their task's
/// strategy, without a handler run here; the retried one then runs and counts as started and succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovered_stalled_jobs_are_counted_by_their_end() {
    registry();
    // It runs jobs, so it moves the process-wide gauges.
    let _alone = PROCESS_WIDE.lock().await;
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    const QUEUE: &str = "metrics_stalled";
    let retried = jobq
        .defer(&FlakyOnce)
        .queue(QUEUE)
        .run(common::Async(&client))
        .await
        .unwrap();
    let failed = jobq
        .defer(&Hangs)
        .queue(QUEUE)
        .run(common::Async(&client))
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO jobq.workers (name, heartbeat_at) VALUES ('dead', now() - interval '1 hour');
             UPDATE jobq.jobs SET status = 'doing', attempts = 1, worker_id = (SELECT id FROM jobq.workers)
             WHERE id IN ({}, {});",
            retried.0, failed.0
        ))
        .await
        .unwrap();
    let worker = fast(Backend::connect(db.url()).await)
        .stalled_after(Duration::from_secs(1))
        .task(|_: FlakyOnce, _ctx: JobContext| async { Ok(()) })
        .task(|_: Hangs, _ctx: JobContext| async { Ok(()) })
        .build();
    let (stop, handle) = start(worker);
    wait_for(
        &client,
        &format!(
            "SELECT count(*) = 2 FROM jobq.jobs WHERE (id = {} AND status = 'succeeded') \
             OR (id = {} AND status = 'failed')",
            retried.0, failed.0
        ),
    )
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();
    let flaky = [(names::TASK, FlakyOnce::NAME), (names::QUEUE, QUEUE)];
    let hangs = [(names::TASK, Hangs::NAME), (names::QUEUE, QUEUE)];
    assert_eq!(
        [
            counter(names::JOBS_RETRIED, &flaky),
            counter(names::JOBS_STARTED, &flaky),
            counter(names::JOBS_SUCCEEDED, &flaky),
        ],
        [1, 1, 1],
        "recovered and retried, then run once here"
    );
    assert_eq!(
        [
            counter(names::JOBS_FAILED, &hangs),
            counter(names::JOBS_STARTED, &hangs),
            counter(names::JOBS_TIMED_OUT, &hangs),
        ],
        [1, 0, 0],
        "recovered and failed: no attempt left"
    );
}

// ---- the queue gauges ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_metrics_sets_the_queue_gauges_from_queue_lag() {
    registry();
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let c = || common::Async(&client);
    let (paused, later, due) = ("mq_paused", "mq_later", "mq_due");
    jobq.pause_queue(paused).run(c()).await.unwrap();
    for _ in 0..2 {
        jobq.defer(&Ok1).queue(paused).run(c()).await.unwrap();
    }
    for _ in 0..3 {
        jobq.defer(&Ok1)
            .queue(later)
            .after(Duration::from_secs(3600))
            .run(c())
            .await
            .unwrap();
    }
    jobq.defer(&Ok1).queue(due).run(c()).await.unwrap();
    // A queue whose only job is running (on a worker that looks alive for a day, so no recovery takes
    // it), and finished jobs, which have no gauge.
    let running = "mq_running";
    client
        .execute(
            "WITH w AS (
                 INSERT INTO jobq.workers (name, heartbeat_at) VALUES ('elsewhere', now() + interval '1 day')
                 RETURNING id
             )
             INSERT INTO jobq.jobs (queue, task, status, started_at, worker_id)
             SELECT $1, 'metrics_ok', 'doing', now(), id FROM w",
            &[&running],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO jobq.jobs (queue, task, status, finished_at)
             SELECT $1, 'metrics_ok', status, now()
             FROM unnest(ARRAY['succeeded', 'failed', 'cancelled', 'aborted']) status",
            &[&due],
        )
        .await
        .unwrap();
    // A worker of another queue: it runs none of these jobs (so it leaves the process-wide gauges alone),
    // but sets the gauges of every queue.
    let worker = fast(Backend::connect(db.url()).await)
        .queues(["mq_none"])
        .queue_metrics(Duration::from_millis(100))
        .task(|_: Ok1, _ctx: JobContext| async { Ok(()) })
        .build();
    let (stop, handle) = start(worker);
    let q = |queue| [(names::QUEUE, queue)];
    wait_until("the gauges are set", || {
        gauge(names::QUEUE_SCHEDULED_JOBS, &q(later)) == Some(3.0)
    })
    .await;

    let lag = jobq.queue_lag().run(c()).await.unwrap();
    let expected = names::queue_gauges(&lag);
    assert!(!expected.is_empty());
    for g in &expected {
        let labels: Vec<(&str, &str)> = g.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let value = gauge(g.name, &labels).unwrap_or_else(|| panic!("{g:?} was never set"));
        if g.name == names::QUEUE_OLDEST_DUE_AGE {
            // Read a moment earlier than `expected`: no older.
            assert!(
                (0.0..=g.value).contains(&value),
                "{g:?}: the gauge says {value}"
            );
        } else {
            assert_eq!(value, g.value, "{g:?}");
        }
    }
    let values = |queue| {
        [
            names::QUEUE_DUE_JOBS,
            names::QUEUE_SCHEDULED_JOBS,
            names::QUEUE_PAUSED,
        ]
        .map(|name| gauge(name, &q(queue)))
    };
    assert_eq!(values(paused), [Some(2.0), Some(0.0), Some(1.0)], "paused");
    assert_eq!(values(later), [Some(0.0), Some(3.0), Some(0.0)], "later");
    assert_eq!(values(due), [Some(1.0), Some(0.0), Some(0.0)], "due");
    assert_eq!(gauge(names::QUEUE_OLDEST_DUE_AGE, &q(later)), Some(0.0));
    let todo = |queue| {
        gauge(
            names::QUEUE_JOBS,
            &[(names::QUEUE, queue), (names::STATUS, "todo")],
        )
    };
    assert_eq!(todo(later), Some(3.0));
    let jobs = |queue, status| {
        gauge(
            names::QUEUE_JOBS,
            &[(names::QUEUE, queue), (names::STATUS, status)],
        )
    };
    assert_eq!(jobs(running, "doing"), Some(1.0));
    assert_eq!(jobs(running, "todo"), Some(0.0));
    assert_eq!(jobs(due, "doing"), Some(0.0));
    assert_eq!(
        values(running),
        [Some(0.0), Some(0.0), Some(0.0)],
        "running"
    );
    // Finished jobs have no queue gauge: the scrape never counts them (the table scan it would take).
    for status in ["succeeded", "failed", "cancelled", "aborted"] {
        assert_eq!(jobs(due, status), None, "{status}");
    }
    assert!(
        expected
            .iter()
            .filter(|g| g.name == names::QUEUE_JOBS)
            .all(|g| ["todo", "doing"].contains(&g.labels[1].1.as_str())),
        "{expected:?}"
    );

    // A queue that goes away reads 0; a resumed queue reads not paused.
    client
        .execute("DELETE FROM jobq.jobs WHERE queue = $1", &[&later])
        .await
        .unwrap();
    jobq.resume_queue(paused).run(c()).await.unwrap();
    wait_until("the gauges follow", || {
        gauge(names::QUEUE_SCHEDULED_JOBS, &q(later)) == Some(0.0)
            && gauge(names::QUEUE_PAUSED, &q(paused)) == Some(0.0)
    })
    .await;
    assert_eq!(todo(later), Some(0.0));
    stop.cancel();
    handle.await.unwrap().unwrap();
}

// ---- the failed attempt's events ----------------------------------------------------------------------

/// What the layer saw: each event with its fields and its span's, and each closed span's fields.
#[derive(Default)]
struct Seen {
    events: Vec<Fields>,
    closed_spans: Vec<Fields>,
}

#[derive(Debug, Clone, Default)]
struct Fields(HashMap<String, String>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// Keeps each span's fields in its extensions and records every event with them.
struct Capture(Arc<Mutex<Seen>>);

impl<S> tracing_subscriber::Layer<S> for Capture
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = Fields::default();
        if let Some(span) = ctx.event_span(event)
            && let Some(span_fields) = span.extensions().get::<Fields>()
        {
            for (k, v) in &span_fields.0 {
                fields.0.insert(format!("span.{k}"), v.clone());
            }
        }
        event.record(&mut fields);
        self.0.lock().unwrap().events.push(fields);
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if let Some(span) = ctx.span(&id)
            && span.name() == "job"
            && let Some(fields) = span.extensions().get::<Fields>()
        {
            self.0.lock().unwrap().closed_spans.push(fields.clone());
        }
    }
}

/// Fails with a retry an hour later.
#[derive(Serialize, Deserialize)]
struct RetriedLater;
impl Task for RetriedLater {
    const NAME: &'static str = "events_retried_later";
    fn retry() -> RetryStrategy {
        RetryStrategy::new(5).backoff(Backoff::Constant(Duration::from_secs(3600)))
    }
}

/// Fails permanently.
#[derive(Serialize, Deserialize)]
struct Permanent;
impl Task for Permanent {
    const NAME: &'static str = "events_permanent";
}

/// One attempt only.
#[derive(Serialize, Deserialize)]
struct OnceOnly;
impl Task for OnceOnly {
    const NAME: &'static str = "events_once_only";
    fn retry() -> RetryStrategy {
        RetryStrategy::none()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_says_when_it_is_retried_or_that_it_is_final() {
    use tracing_subscriber::layer::SubscriberExt;
    registry();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let subscriber = tracing_subscriber::registry().with(Capture(seen.clone()));
    // Global, so the worker's tasks on every runtime thread report to it; only this test sets it.
    tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
    let _alone = PROCESS_WIDE.lock().await;
    let db = jobq_tempdb::database();
    let client = connect(db.url()).await;
    let jobq = Jobq::default();
    let c = || common::Async(&client);
    let later = jobq.defer(&RetriedLater).run(c()).await.unwrap();
    let permanent = jobq.defer(&Permanent).run(c()).await.unwrap();
    let once = jobq.defer(&OnceOnly).run(c()).await.unwrap();
    let ok = jobq.defer(&Ok1).run(c()).await.unwrap();
    let worker = fast(Backend::connect(db.url()).await)
        .task(|_: RetriedLater, _ctx: JobContext| async { Err(JobError::new("try later")) })
        .task(|_: Permanent, _ctx: JobContext| async {
            Err(JobError::permanent("cannot ever work"))
        })
        .task(|_: OnceOnly, _ctx: JobContext| async { Err(JobError::new("no second chance")) })
        .task(|_: Ok1, _ctx: JobContext| async { Ok(()) })
        .build();
    let (stop, handle) = start(worker);
    wait_for(
        &client,
        &format!(
            "SELECT count(*) = 4 FROM jobq.jobs WHERE (id = {} AND attempts = 1 AND status = 'todo') \
             OR (id IN ({}, {}) AND status = 'failed') OR (id = {} AND status = 'succeeded')",
            later.0, permanent.0, once.0, ok.0
        ),
    )
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();

    let stored = client
        .query_one(
            "SELECT scheduled_at FROM jobq.jobs WHERE id = $1",
            &[&later.0],
        )
        .await
        .unwrap()
        .get::<_, std::time::SystemTime>(0);
    let stored: chrono::DateTime<chrono::Utc> = stored.into();
    let seen = seen.lock().unwrap();
    let event_of = |task: &str| {
        let events: Vec<&Fields> = seen
            .events
            .iter()
            .filter(|e| e.get("span.task") == Some(task) && e.get("error").is_some())
            .collect();
        assert_eq!(
            events.len(),
            1,
            "one failed-attempt event for {task}: {events:?}"
        );
        events[0].clone()
    };

    let retried = event_of(RetriedLater::NAME);
    assert_eq!(retried.get("final"), None, "{retried:?}");
    assert_eq!(retried.get("error"), Some("try later"));
    let retry_at = retried
        .get("retry_at")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("retry_at is a time: {retried:?}"));
    assert!(
        (stored - retry_at.to_utc()).num_milliseconds().abs() <= 1,
        "retry_at {retry_at} is when the job is scheduled again ({stored})"
    );
    let retry_in = retried.get("retry_in").unwrap_or_default();
    assert!(
        retry_in.starts_with("3599.") || retry_in == "3600s",
        "about an hour: {retry_in}"
    );

    let permanent = event_of(Permanent::NAME);
    assert_eq!(permanent.get("final"), Some("true"), "{permanent:?}");
    assert_eq!(permanent.get("reason"), Some("permanent error"));
    assert_eq!(permanent.get("retry_at"), None);
    let once = event_of(OnceOnly::NAME);
    assert_eq!(once.get("final"), Some("true"), "{once:?}");
    assert_eq!(once.get("reason"), Some("attempts exhausted"));

    let span_of = |task: &str| {
        seen.closed_spans
            .iter()
            .find(|s| s.get("task") == Some(task))
            .unwrap_or_else(|| panic!("the job span of {task} closed"))
            .clone()
    };
    for (task, outcome) in [
        (RetriedLater::NAME, "failed"),
        (Permanent::NAME, "failed"),
        (Ok1::NAME, "succeeded"),
    ] {
        let span = span_of(task);
        assert_eq!(span.get("outcome"), Some(outcome), "{span:?}");
        let ms: f64 = span
            .get("duration_ms")
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("duration_ms recorded: {span:?}"));
        assert!(ms >= 0.0, "{span:?}");
    }
}
