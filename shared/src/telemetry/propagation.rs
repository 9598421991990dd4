//! W3C trace context (`traceparent`, `tracestate`) in AMQP headers, so a consumer's span
//! continues the trace of the request that produced the message.
//!
//! The publisher calls [`inject`] on every message with the current span's context; the
//! consumer calls [`extract`] and makes the extracted context its handler span's parent. When no
//! OpenTelemetry layer is installed the current context is empty and nothing is written.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use std::collections::BTreeMap;

/// The W3C header carrying the trace and parent span ids.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header carrying vendor-specific trace state.
pub const TRACESTATE: &str = "tracestate";

/// Writes the current span's trace context into `message`'s headers, replacing any it carried
/// (a dead-lettered message is re-published from inside its consumer's span).
pub fn inject(headers: &mut Vec<(String, String)>) {
    inject_context(&tracing::Span::current().context(), headers);
}

/// Writes `cx` into `message`'s headers (see [`inject`]).
pub fn inject_context(cx: &Context, headers: &mut Vec<(String, String)>) {
    let mut fields = Fields::default();
    TraceContextPropagator::new().inject_context(cx, &mut fields);
    if fields.0.is_empty() {
        return;
    }
    headers.retain(|(name, _)| {
        !name.eq_ignore_ascii_case(TRACEPARENT) && !name.eq_ignore_ascii_case(TRACESTATE)
    });
    headers.extend(fields.0);
}

/// The trace context `message` carries (an empty context when it carries none or a malformed
/// one: a bad header starts a new trace, it never fails the message).
pub fn extract(headers: &BTreeMap<String, String>) -> Context {
    TraceContextPropagator::new().extract(&HeaderView(headers))
}

/// The current span's `traceparent`, to store beside work that crosses PostgreSQL rather than a
/// queue (a batch row the scheduler picks up later, a webhook outbox row), so the later span
/// can continue the same trace. `None` when no trace is being recorded.
pub fn current_traceparent() -> Option<String> {
    let mut fields = Fields::default();
    TraceContextPropagator::new().inject_context(&tracing::Span::current().context(), &mut fields);
    fields
        .0
        .into_iter()
        .find(|(name, _)| name == TRACEPARENT)
        .map(|(_, value)| value)
}

/// The context a stored `traceparent` names (empty when malformed), for
/// `span.set_parent(...)` (tracing_opentelemetry::OpenTelemetrySpanExt).
pub fn context_from_traceparent(traceparent: &str) -> Context {
    extract(&[(TRACEPARENT.to_owned(), traceparent.to_owned())].into())
}

/// Makes the context a stored `traceparent` names the parent of `span` (before it is entered),
/// so work picked up from a row continues the trace that stored it. A malformed value, or no
/// OpenTelemetry layer, leaves `span` as it was.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let _ = span.set_parent(context_from_traceparent(traceparent));
}

#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Injector for Fields {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

struct HeaderView<'a>(&'a BTreeMap<String, String>);

impl Extractor for HeaderView<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::queue::consumer::Incoming;
    use crate::queue::publisher::Outgoing;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

    use super::*;

    fn incoming(headers: &[(&str, &str)]) -> Incoming {
        Incoming {
            body: Vec::new(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            redelivered: false,
            message_id: None,
        }
    }

    #[test]
    fn a_context_survives_the_round_trip() {
        let span = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(span.clone());
        let mut out = Outgoing::default().with_header(TRACEPARENT, "stale");
        inject_context(&cx, &mut out.headers);
        let traceparents: Vec<_> = out
            .headers
            .iter()
            .filter(|(k, _)| k == TRACEPARENT)
            .collect();
        assert_eq!(traceparents.len(), 1, "the stale header is replaced");
        assert_eq!(
            traceparents[0].1,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let back = extract(
            &incoming(
                &out.headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect::<Vec<_>>(),
            )
            .headers,
        );
        assert_eq!(back.span().span_context().trace_id(), span.trace_id());
        assert_eq!(back.span().span_context().span_id(), span.span_id());
    }

    #[test]
    fn no_context_writes_nothing() {
        let mut out = Outgoing::default();
        inject_context(&Context::new(), &mut out.headers);
        assert!(out.headers.is_empty());
    }

    #[test]
    fn a_stored_traceparent_names_its_context() {
        let cx =
            context_from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(current_traceparent().is_none(), "no span, no trace");
    }

    #[test]
    fn a_malformed_header_starts_a_new_trace() {
        let cx = extract(&incoming(&[(TRACEPARENT, "not-a-traceparent")]).headers);
        assert!(!cx.span().span_context().is_valid());
    }
}
