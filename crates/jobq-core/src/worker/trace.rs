//! The worker's side of trace propagation (#15): a job's span links to the span that deferred the job.

use crate::Job;

/// Links `span`, the worker's `job` span, to the span that deferred `job`, read from the W3C `traceparent`
/// stored with it: a trace then shows the request that deferred the job and the run that processed it.
///
/// A link, not a parent: the run is its own trace (it may start hours later, be retried, or be one of many
/// jobs one request deferred), and a backend shows the deferral as a linked span. A job without a stored
/// context (deferred outside a traced span, or before schema version 6) gets no link, and so does one whose
/// stored value is not a `traceparent` (written by something other than jobq). Without the feature
/// `opentelemetry`, it does nothing.
pub(super) fn link_to_deferral(span: &tracing::Span, job: &Job) {
    #[cfg(feature = "opentelemetry")]
    {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        use tracing_opentelemetry::OpenTelemetrySpanExt;

        let Some(stored) = job.trace_context.as_deref() else {
            return;
        };
        let Some(parent) = crate::limits::TraceParent::parse(stored) else {
            span.in_scope(|| {
                tracing::debug!(
                    trace_context = stored,
                    "the job's stored trace context is not a W3C traceparent; no link"
                );
            });
            return;
        };
        span.add_link(SpanContext::new(
            TraceId::from_bytes(parent.trace_id.to_be_bytes()),
            SpanId::from_bytes(parent.span_id.to_be_bytes()),
            TraceFlags::new(parent.flags),
            true,
            TraceState::NONE,
        ));
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = (span, job);
}
