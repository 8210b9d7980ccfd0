//! The hot path: what a span or an event costs the thread that emits it.
//!
//! The stock wiring (tracing-opentelemetry, the appender bridge, the SDK's batch processors)
//! builds SDK spans and log records on the caller's thread, attaches an OTel context on every
//! enter and exit, and sends every item through a channel of its own. Here the caller records
//! into plain structs ([`layer`]), kept in a pool of our own when OTel is the process's only
//! output ([`subscriber`]) or in tracing's registry beside the JSON file and the console
//! (`layers.rs`). Finished items go into a per-thread shard of the signal's queue ([`queue`]);
//! an encoding thread takes whole batches and writes OTLP protobuf from them ([`otlp`]), and a
//! sending thread ([`send`]) delivers the requests, retrying transient failures and keeping in
//! the spool what shutdown gives up on (transport.rs' `Sender`, spool.rs; the console exporter
//! gets the SDK's types instead, traces.rs and logs.rs). ARCHITECTURE.md ("The hot path,
//! measured") has the figures.

pub(crate) mod attrs;
pub(crate) mod layer;
pub(crate) mod otlp;
pub(crate) mod queue;
pub(crate) mod send;
pub(crate) mod subscriber;

use opentelemetry::trace::SpanContext;
use tracing_subscriber::Registry;
use tracing_subscriber::registry::{LookupSpan, SpanData as _};

use layer::{HotLayer, SpanState};
use subscriber::HotSubscriber;

/// Runs `f` on the state of `span` and the layer that keeps it (None when telemetry is off or
/// the span is disabled).
fn with_state<R>(
    span: &tracing::Span,
    f: impl FnOnce(&HotLayer, &mut SpanState) -> R,
) -> Option<R> {
    span.with_subscriber(|(id, dispatch)| {
        if let Some(subscriber) = dispatch.downcast_ref::<HotSubscriber>() {
            return subscriber.with_state(id, |state| f(subscriber.layer(), state));
        }
        let layer = dispatch.downcast_ref::<HotLayer>()?;
        let registry = dispatch.downcast_ref::<Registry>()?;
        let data = registry.span_data(id)?;
        let mut ext = data.extensions_mut();
        ext.get_mut::<SpanState>().map(|state| f(layer, state))
    })
    .flatten()
}

/// The OTel identity of `span`.
pub(crate) fn span_context(span: &tracing::Span) -> Option<SpanContext> {
    with_state(span, |_, state| state.cx.clone())
}

/// Writes the context of `span` into `headers` with its layer's propagators.
pub(crate) fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    with_state(span, |layer, state| {
        layer.propagation.inject(&state.cx, headers)
    });
}

/// Makes the remote context `headers` carry the parent of `span` (a root until now), as a
/// server does with the context its request carried; call it before the span has children.
pub(crate) fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    with_state(span, |layer, state| {
        if let Some(remote) = layer.propagation.extract(headers) {
            layer.adopt(state, remote);
        }
    });
}
