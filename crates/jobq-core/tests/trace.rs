//! Trace context travels with the job (#15), against a real server: a deferral inside a traced span stores
//! its W3C `traceparent`, and the worker's `job` span links to it. The spans go to OpenTelemetry's
//! in-memory exporter through `tracing-opentelemetry`'s layer.
//!
//! Each test installs its subscriber as the default of its own thread and runs on a current-thread
//! runtime, so the worker's spawned tasks (and so the `job` spans) run on that thread, under that
//! subscriber, and the tests of this binary can run in parallel without seeing each other's spans.

#![cfg_attr(not(all(feature = "opentelemetry", feature = "worker")), allow(unused))]

/// Without the features there is nothing to test here: say so, and fail where every feature is meant to be
/// on (CI runs `cargo test --workspace --all-features`).
#[cfg(not(all(feature = "opentelemetry", feature = "worker")))]
#[test]
fn trace_propagation_needs_the_opentelemetry_and_worker_features() {
    eprintln!(
        "tests/trace.rs did NOT run: it needs jobq-core's `opentelemetry` and `worker` features \
         (cargo test -p jobq-core --all-features --test trace)"
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI must run the trace tests with --all-features"
    );
}

#[cfg(all(feature = "opentelemetry", feature = "worker"))]
mod common;

#[cfg(all(feature = "opentelemetry", feature = "worker"))]
mod traced {

    use super::common::{Async, Backend, connect};
    use jobq_core::prelude::*;
    use jobq_core::worker::{JobContext, Worker};
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
    use serde::{Deserialize, Serialize};
    use std::collections::HashMap;
    use std::time::Duration;
    use tracing::Instrument;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Serialize, Deserialize)]
    struct Noop {}

    impl Task for Noop {
        const NAME: &'static str = "noop";
    }

    /// A traceparent of the W3C spec's own example, for the explicit API.
    const EXPLICIT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// Spans exported to memory: the provider (to flush), the exporter (to read), and the guard that keeps
    /// the subscriber this thread's default.
    struct Traces {
        provider: SdkTracerProvider,
        exporter: InMemorySpanExporter,
        _default: tracing::subscriber::DefaultGuard,
    }

    impl Traces {
        fn install() -> Self {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .build();
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("jobq-test"));
            let subscriber = tracing_subscriber::registry().with(layer);
            Self {
                provider,
                exporter,
                _default: tracing::subscriber::set_default(subscriber),
            }
        }

        /// Every span ended so far.
        fn finished(&self) -> Vec<SpanData> {
            self.provider.force_flush().unwrap();
            self.exporter.get_finished_spans().unwrap()
        }

        /// The worker's `job` span of each job, by job id (its `id` attribute). Each job here runs once.
        fn job_spans(&self) -> HashMap<JobId, SpanData> {
            let mut spans = HashMap::new();
            for span in self.finished().into_iter().filter(|s| s.name == "job") {
                let id = span
                    .attributes
                    .iter()
                    .find(|kv| kv.key.as_str() == "id")
                    .map(|kv| kv.value.to_string())
                    .expect("a job span records the job's id");
                let id = JobId(id.parse().expect("the id attribute is the job id"));
                assert!(
                    spans.insert(id, span).is_none(),
                    "one job span per job: {id}"
                );
            }
            spans
        }
    }

    /// The OpenTelemetry context of a `tracing` span (built by the layer).
    fn span_context(span: &tracing::Span) -> SpanContext {
        span.context().span().span_context().clone()
    }

    /// The `traceparent` header OpenTelemetry's own W3C propagator writes for `span`: what jobq must store.
    fn traceparent(span: &tracing::Span) -> String {
        let mut headers = HashMap::new();
        TraceContextPropagator::new().inject_context(&span.context(), &mut headers);
        headers
            .remove("traceparent")
            .expect("the span has a valid context")
    }

    /// The (trace id, span id) of every link of `span`.
    fn links(span: &SpanData) -> Vec<(String, String)> {
        span.links
            .links
            .iter()
            .map(|l| {
                (
                    l.span_context.trace_id().to_string(),
                    l.span_context.span_id().to_string(),
                )
            })
            .collect()
    }

    fn ids_of(context: &SpanContext) -> (String, String) {
        (
            context.trace_id().to_string(),
            context.span_id().to_string(),
        )
    }

    fn noop_worker(backend: Backend) -> Worker<Backend> {
        Worker::builder(Jobq::default(), backend)
            .poll_interval(Duration::from_millis(50))
            .task(|_: Noop, _ctx: JobContext| async { Ok(()) })
            .build()
    }

    /// Runs a worker until no job waits or runs, then stops it and waits for it to return.
    async fn run_worker_until_done(client: &tokio_postgres::Client, url: &str) {
        let worker = noop_worker(Backend::connect(url).await);
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let handle = tokio::spawn(worker.run_until(async move { stopped.cancelled().await }));
        let done = "SELECT count(*) = 0 FROM jobq.jobs WHERE status IN ('todo', 'doing')";
        let mut finished = false;
        for _ in 0..600 {
            if client.query_one(done, &[]).await.unwrap().get::<_, bool>(0) {
                finished = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.cancel();
        handle.await.unwrap().unwrap();
        assert!(finished, "the worker never ended every job");
    }

    async fn stored(client: &tokio_postgres::Client, id: JobId) -> Option<String> {
        client
            .query_one(
                "SELECT trace_context FROM jobq.jobs WHERE id = $1",
                &[&id.0],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// One job through `defer` inside one span, three through `defer_batch` inside another (one of them with
    /// an explicit traceparent, which wins): each row holds its deferring span's traceparent, exactly as
    /// OpenTelemetry's W3C propagator writes it, `Jobq::job` reads it back, and each exported `job` span has
    /// one link, to that span.
    #[tokio::test]
    async fn a_deferral_in_a_traced_span_stores_its_traceparent_and_the_job_span_links_to_it() {
        let db = jobq_tempdb::database();
        let client = connect(db.url()).await;
        let jobq = Jobq::default();
        let traces = Traces::install();

        let request = tracing::info_span!("request");
        let one = async { jobq.defer(&Noop {}).run(Async(&client)).await }
            .instrument(request.clone())
            .await
            .unwrap();
        let batch_request = tracing::info_span!("batch request");
        let batch = async {
            jobq.defer_batch([
                NewJob::from_task(&Noop {}).unwrap(),
                NewJob::from_task(&Noop {}).unwrap().trace_context(EXPLICIT),
                NewJob::from_task(&Noop {}).unwrap(),
            ])
            .run(Async(&client))
            .await
        }
        .instrument(batch_request.clone())
        .await
        .unwrap();

        let request_header = traceparent(&request);
        let batch_header = traceparent(&batch_request);
        assert_ne!(request_header, batch_header);
        assert_eq!(
            stored(&client, one).await.as_deref(),
            Some(&*request_header)
        );
        assert_eq!(
            stored(&client, batch[0]).await.as_deref(),
            Some(&*batch_header)
        );
        assert_eq!(stored(&client, batch[1]).await.as_deref(), Some(EXPLICIT));
        assert_eq!(
            stored(&client, batch[2]).await.as_deref(),
            Some(&*batch_header)
        );
        let read = jobq.job(one).run(Async(&client)).await.unwrap();
        assert_eq!(read.trace_context.as_deref(), Some(&*request_header));

        run_worker_until_done(&client, db.url()).await;
        let spans = traces.job_spans();
        let expect = [
            (one, ids_of(&span_context(&request))),
            (batch[0], ids_of(&span_context(&batch_request))),
            (
                batch[1],
                (
                    "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                    "00f067aa0ba902b7".into(),
                ),
            ),
            (batch[2], ids_of(&span_context(&batch_request))),
        ];
        for (id, deferral) in expect {
            let span = spans
                .get(&id)
                .unwrap_or_else(|| panic!("no job span for {id}"));
            assert_eq!(
                links(span),
                [deferral],
                "job {id}'s span links to its deferral"
            );
            assert!(
                span.links.links[0].span_context.is_remote(),
                "a stored context is a remote one"
            );
            assert_ne!(
                span.span_context.trace_id(),
                span.links.links[0].span_context.trace_id(),
                "the run is a trace of its own, linked, not a child"
            );
        }

        // The deferring spans are exported too once they end: the trace shows the request.
        let (request_ids, batch_ids) = (span_context(&request), span_context(&batch_request));
        drop((request, batch_request));
        let finished = traces.finished();
        for (name, context) in [("request", request_ids), ("batch request", batch_ids)] {
            assert!(
                finished
                    .iter()
                    .any(|s| s.name == name && s.span_context.span_id() == context.span_id()),
                "the {name} span is exported"
            );
        }
    }

    /// Outside any span, and inside a span that has no OpenTelemetry context (a subscriber without the
    /// layer), nothing is stored and the job span has no link. A job written as before schema version 6 (no
    /// trace context), and one whose stored value is not a traceparent (written by other SQL), run all the
    /// same, with no link: here through `run_until_idle`, the worker's other way to run jobs.
    #[tokio::test]
    async fn without_a_context_nothing_is_stored_and_the_job_span_has_no_link() {
        let db = jobq_tempdb::database();
        let client = connect(db.url()).await;
        let jobq = Jobq::default();

        // A plain `tracing` subscriber: spans, but no OpenTelemetry context.
        let untraced = {
            let _plain = tracing::subscriber::set_default(tracing_subscriber::registry());
            let span = tracing::info_span!("request without OpenTelemetry");
            async { jobq.defer(&Noop {}).run(Async(&client)).await }
                .instrument(span)
                .await
                .unwrap()
        };

        let traces = Traces::install();
        let outside = jobq.defer(&Noop {}).run(Async(&client)).await.unwrap();
        let batch = jobq
            .defer_batch((0..3).map(|_| NewJob::from_task(&Noop {}).unwrap()))
            .run(Async(&client))
            .await
            .unwrap();
        let old: i64 = client
            .query_one(
                "INSERT INTO jobq.jobs (task, args) VALUES ('noop', '{}') RETURNING id",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let garbage: i64 = client
        .query_one(
            "INSERT INTO jobq.jobs (task, args, trace_context) VALUES ('noop', '{}', 'not a traceparent') \
             RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
        let none = [untraced, outside, batch[0], batch[1], batch[2], JobId(old)];
        for id in none {
            assert_eq!(stored(&client, id).await, None, "job {id}");
        }

        let summary = noop_worker(Backend::connect(db.url()).await)
            .run_until_idle()
            .await
            .unwrap();
        assert_eq!(summary.failed, 0);
        let succeeded: i64 = client
            .query_one(
                "SELECT count(*) FROM jobq.jobs WHERE status = 'succeeded'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(succeeded, 7, "every job ran, the old and the odd one too");
        let spans = traces.job_spans();
        for id in none.into_iter().chain([JobId(garbage)]) {
            let span = spans
                .get(&id)
                .unwrap_or_else(|| panic!("no job span for {id}"));
            assert_eq!(links(span), [], "job {id}'s span has no link");
        }
    }

    /// Code that uses the OpenTelemetry API directly, with no `tracing` span: the attached OpenTelemetry
    /// context is stored, and the job span links to it.
    #[tokio::test]
    async fn an_attached_opentelemetry_context_counts_outside_tracing_spans() {
        use opentelemetry::trace::Tracer as _;

        let db = jobq_tempdb::database();
        let client = connect(db.url()).await;
        let jobq = Jobq::default();
        let traces = Traces::install();

        let tracer = traces.provider.tracer("direct");
        let cx = opentelemetry::Context::current_with_span(tracer.start("direct request"));
        let expected = cx.span().span_context().clone();
        let header = {
            let mut headers = HashMap::new();
            TraceContextPropagator::new().inject_context(&cx, &mut headers);
            headers.remove("traceparent").unwrap()
        };
        let (one, batch) = {
            let _attached = cx.attach();
            let one = jobq.defer(&Noop {}).run(Async(&client)).await.unwrap();
            let batch = jobq
                .defer_batch([NewJob::from_task(&Noop {}).unwrap()])
                .run(Async(&client))
                .await
                .unwrap();
            (one, batch[0])
        };
        assert_eq!(stored(&client, one).await.as_deref(), Some(&*header));
        assert_eq!(stored(&client, batch).await.as_deref(), Some(&*header));

        run_worker_until_done(&client, db.url()).await;
        let spans = traces.job_spans();
        for id in [one, batch] {
            assert_eq!(links(&spans[&id]), [ids_of(&expected)], "job {id}");
        }
    }

    /// An explicit traceparent that is not one is refused with `InvalidInput` before any SQL is sent, through
    /// `defer` and `defer_batch` alike (naming the job's place), and the caller's transaction stays usable.
    #[tokio::test]
    async fn an_invalid_explicit_traceparent_is_refused_before_sql() {
        let db = jobq_tempdb::database();
        let client = connect(db.url()).await;
        let jobq = Jobq::default();
        let _traces = Traces::install();

        client
            .batch_execute("CREATE TABLE orders (id int); BEGIN; INSERT INTO orders VALUES (1)")
            .await
            .unwrap();
        for bad in [
            "",
            "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\0",
        ] {
            let one = async {
                jobq.defer(&Noop {})
                    .trace_context(bad)
                    .run(Async(&client))
                    .await
            }
            .instrument(tracing::info_span!("request"))
            .await;
            match one {
                Err(Error::InvalidInput(m)) => assert!(m.starts_with("trace_context "), "{m}"),
                other => panic!("{bad:?}: expected InvalidInput, got {other:?}"),
            }
            let batch = jobq
                .defer_batch([
                    NewJob::from_task(&Noop {}).unwrap(),
                    NewJob::from_task(&Noop {}).unwrap().trace_context(bad),
                ])
                .run(Async(&client))
                .await;
            match batch {
                Err(Error::InvalidInput(m)) => {
                    assert!(m.starts_with("job 1 of the batch: trace_context "), "{m}")
                }
                other => panic!("{bad:?}: expected InvalidInput, got {other:?}"),
            }
        }
        // Still usable: a good deferral in the same transaction, and the commit keeps both rows.
        let id = jobq
            .defer(&Noop {})
            .trace_context(EXPLICIT)
            .run(Async(&client))
            .await
            .unwrap();
        client.batch_execute("COMMIT").await.unwrap();
        let orders: i64 = client
            .query_one("SELECT count(*) FROM orders", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(orders, 1);
        let jobs: i64 = client
            .query_one("SELECT count(*) FROM jobq.jobs", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(jobs, 1, "only the good deferral");
        assert_eq!(stored(&client, id).await.as_deref(), Some(EXPLICIT));
    }
}
