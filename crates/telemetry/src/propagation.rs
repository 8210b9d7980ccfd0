//! Trace context in HTTP headers, with the propagators of OTEL_PROPAGATORS (W3C `traceparent`/
//! `tracestate` and `baggage` by default).
//!
//! [`crate::Telemetry::init`] installs them as the global propagator, which these helpers use,
//! so every service of the run speaks what its configuration names.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

use crate::Propagator;

/// The propagators named, in order; none at all for an empty list (`none`).
pub(crate) fn propagator(names: &[Propagator]) -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(
        names
            .iter()
            .map(|p| -> Box<dyn TextMapPropagator + Send + Sync> {
                match p {
                    Propagator::TraceContext => Box::new(TraceContextPropagator::new()),
                    Propagator::Baggage => Box::new(BaggagePropagator::new()),
                }
            })
            .collect(),
    )
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Writes the context of `span` into `headers` (nothing when telemetry is off or
/// OTEL_PROPAGATORS is `none`).
pub fn inject_context(span: &tracing::Span, headers: &mut HeaderMap) {
    use opentelemetry::trace::TraceContextExt;
    let Some(sc) = crate::hotpath::span_context(span) else {
        return;
    };
    let cx = opentelemetry::Context::current().with_remote_span_context(sc);
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(headers));
    });
}

/// Makes the context carried by `headers` (if any) the parent of `span`.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &HeaderMap) {
    let cx =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    use opentelemetry::trace::TraceContextExt;
    let remote = cx.span().span_context().clone();
    if remote.is_valid() {
        crate::hotpath::set_remote_parent(span, remote);
    }
}

/// The trace id of `span` as 32 lowercase hex digits, when it is sampled (None when telemetry is
/// off), for summaries and links.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let sc = crate::hotpath::span_context(span)?;
    sc.is_sampled().then(|| sc.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::baggage::BaggageExt;
    use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
    use opentelemetry::{Context, KeyValue, SpanId, TraceId};

    fn injected(names: &[Propagator]) -> HeaderMap {
        let sc = SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128),
            SpanId::from(0x00f0_67aa_0ba9_02b7_u64),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = Context::new()
            .with_remote_span_context(sc)
            .with_baggage([KeyValue::new("tenant", "wh-7")]);
        let mut headers = HeaderMap::new();
        propagator(names).inject_context(&cx, &mut HeaderInjector(&mut headers));
        headers
    }

    #[test]
    fn each_propagator_writes_its_header_and_none_writes_nothing() {
        let both = injected(&[Propagator::TraceContext, Propagator::Baggage]);
        assert_eq!(
            both["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(both["baggage"], "tenant=wh-7");
        let trace_only = injected(&[Propagator::TraceContext]);
        assert!(trace_only.contains_key("traceparent") && !trace_only.contains_key("baggage"));
        let baggage_only = injected(&[Propagator::Baggage]);
        assert!(!baggage_only.contains_key("traceparent") && baggage_only.contains_key("baggage"));
        assert!(injected(&[]).is_empty());

        let back = propagator(&[Propagator::TraceContext]).extract(&HeaderExtractor(&both));
        assert_eq!(
            back.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }
}
