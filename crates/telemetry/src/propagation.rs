//! Trace context in HTTP headers, with the propagators of OTEL_PROPAGATORS (W3C `traceparent`/
//! `tracestate` and `baggage` by default).
//!
//! These helpers use the propagators of the telemetry instance that records the span (its
//! configuration), so every service of the run speaks what its configuration names;
//! [`crate::Telemetry::init`] also installs them as the global propagator, for other code.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use opentelemetry::propagation::{Injector, TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
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

#[cfg(test)]
struct HeaderExtractor<'a>(&'a HeaderMap);

#[cfg(test)]
impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// What a telemetry instance propagates (OTEL_PROPAGATORS). W3C trace context is written and
/// read here, straight between the span's context and the header bytes: every HTTP call pays
/// for it, and the SDK's propagator formats a `String` per header and builds an OTel `Context`
/// each way (about 4 µs of a bot transaction's 35 in the profile). Baggage, which lives in the
/// OTel context, goes through the SDK's propagator.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Propagation {
    trace_context: bool,
    baggage: bool,
}

impl Propagation {
    pub(crate) fn new(names: &[Propagator]) -> Self {
        Self {
            trace_context: names.contains(&Propagator::TraceContext),
            baggage: names.contains(&Propagator::Baggage),
        }
    }

    /// Writes `sc` (and the current baggage) into `headers`.
    pub(crate) fn inject(self, sc: &SpanContext, headers: &mut HeaderMap) {
        if self.trace_context && sc.is_valid() {
            headers.insert(TRACEPARENT, traceparent(sc));
            let state = sc.trace_state().header();
            if let (false, Ok(value)) = (state.is_empty(), HeaderValue::from_str(&state)) {
                headers.insert(TRACESTATE, value);
            }
        }
        if self.baggage {
            BaggagePropagator::new().inject_context(
                &opentelemetry::Context::current(),
                &mut HeaderInjector(headers),
            );
        }
    }

    /// The remote span context `headers` carry, if valid.
    pub(crate) fn extract(self, headers: &HeaderMap) -> Option<SpanContext> {
        if !self.trace_context {
            return None;
        }
        let state = headers.get(TRACESTATE).and_then(|v| v.to_str().ok());
        parse_traceparent(headers.get(TRACEPARENT)?.as_bytes(), state)
    }
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Version 00 of W3C's `traceparent`: `00-<trace id>-<parent id>-<flags>`, 55 bytes.
const TRACEPARENT_LEN: usize = 55;

/// The hex digits W3C trace context writes and reads: lowercase only.
const HEX: &[u8; 16] = b"0123456789abcdef";

fn traceparent(sc: &SpanContext) -> HeaderValue {
    let mut out = [b'-'; TRACEPARENT_LEN];
    let mut put = |at: usize, bytes: &[u8]| {
        for (i, b) in bytes.iter().enumerate() {
            out[at + 2 * i] = HEX[usize::from(b >> 4)];
            out[at + 2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
    };
    put(0, &[0]);
    put(3, &sc.trace_id().to_bytes());
    put(36, &sc.span_id().to_bytes());
    // As the SDK's propagator: only the sampled flag is ours to pass on.
    put(53, &[(sc.trace_flags() & TraceFlags::SAMPLED).to_u8()]);
    HeaderValue::from_bytes(&out).expect("hex digits and dashes are a valid header value")
}

/// `value` as W3C trace context defines it (lowercase hex, ids not all zero, version `ff`
/// invalid, later versions may append fields after a dash), with `tracestate` if any.
fn parse_traceparent(value: &[u8], tracestate: Option<&str>) -> Option<SpanContext> {
    let value = value.trim_ascii();
    let head = value.get(..TRACEPARENT_LEN)?;
    let [version] = hex::<1>(&head[..2])?;
    let dashes = [2, 35, 52].iter().all(|&at| head[at] == b'-');
    let tail_ok = match value.get(TRACEPARENT_LEN) {
        None => true,
        Some(&b) => version > 0 && b == b'-',
    };
    if version == 0xff || !dashes || !tail_ok {
        return None;
    }
    let trace_id = TraceId::from_bytes(hex(&head[3..35])?);
    let span_id = SpanId::from_bytes(hex(&head[36..52])?);
    let [flags] = hex::<1>(&head[53..55])?;
    let flags = TraceFlags::new(flags) & TraceFlags::SAMPLED;
    let state = tracestate
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    let sc = SpanContext::new(trace_id, span_id, flags, true, state);
    sc.is_valid().then_some(sc)
}

/// `digits` (lowercase hex, two a byte) as `N` bytes; anything else is refused.
fn hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    /// Each byte's value as a hex digit, or `INVALID`.
    const INVALID: u8 = 0xff;
    const VALUES: [u8; 256] = {
        let mut values = [INVALID; 256];
        let mut d = 0;
        while d < HEX.len() {
            values[HEX[d] as usize] = d as u8;
            d += 1;
        }
        values
    };
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0; N];
    let mut seen = 0;
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (high, low) = (VALUES[usize::from(pair[0])], VALUES[usize::from(pair[1])]);
        seen |= high | low;
        *byte = high << 4 | low;
    }
    // INVALID has the high bits that no digit has.
    (seen < 16).then_some(out)
}

/// Writes the context of `span` into `headers` with the propagators of OTEL_PROPAGATORS
/// (nothing when telemetry is off or OTEL_PROPAGATORS is `none`).
pub fn inject_context(span: &tracing::Span, headers: &mut HeaderMap) {
    crate::hotpath::inject(span, headers);
}

/// Makes the context carried by `headers` (if any) the parent of `span`.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &HeaderMap) {
    crate::hotpath::set_parent_from_headers(span, headers);
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
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry::{Context, KeyValue};

    fn context(flags: TraceFlags, state: &str) -> SpanContext {
        SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128),
            SpanId::from(0x00f0_67aa_0ba9_02b7_u64),
            flags,
            true,
            state.parse().unwrap(),
        )
    }

    /// What `names` write for `sc`, with baggage in the current context.
    fn injected(names: &[Propagator], sc: &SpanContext) -> HeaderMap {
        let _baggage = Context::new()
            .with_baggage([KeyValue::new("tenant", "wh-7")])
            .attach();
        let mut headers = HeaderMap::new();
        Propagation::new(names).inject(sc, &mut headers);
        headers
    }

    #[test]
    fn each_propagator_writes_its_header_and_none_writes_nothing() {
        let sc = context(TraceFlags::SAMPLED, "");
        let both = injected(&[Propagator::TraceContext, Propagator::Baggage], &sc);
        assert_eq!(
            both["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(both["baggage"], "tenant=wh-7");
        assert!(!both.contains_key("tracestate"), "empty: left out");
        let trace_only = injected(&[Propagator::TraceContext], &sc);
        assert!(trace_only.contains_key("traceparent") && !trace_only.contains_key("baggage"));
        let baggage_only = injected(&[Propagator::Baggage], &sc);
        assert!(!baggage_only.contains_key("traceparent") && baggage_only.contains_key("baggage"));
        assert!(injected(&[], &sc).is_empty());

        let back = Propagation::new(&[Propagator::TraceContext]).extract(&both);
        assert_eq!(back, Some(sc));
        assert_eq!(
            Propagation::new(&[Propagator::Baggage]).extract(&both),
            None
        );
    }

    /// The SDK's propagator with the same headers, for comparison.
    fn sdk_injected(sc: &SpanContext) -> HeaderMap {
        let cx = Context::new().with_remote_span_context(sc.clone());
        let mut headers = HeaderMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut headers));
        headers
    }

    #[test]
    fn trace_context_is_written_as_the_sdk_writes_it() {
        for (flags, state) in [
            (TraceFlags::SAMPLED, "vendor=x,other=y"),
            (TraceFlags::default(), ""),
            (TraceFlags::new(0xff), "a=1"),
        ] {
            let sc = context(flags, state);
            let ours = injected(&[Propagator::TraceContext], &sc);
            let sdk = sdk_injected(&sc);
            assert_eq!(ours["traceparent"], sdk["traceparent"], "{flags:?}");
            let state = |h: &HeaderMap| h.get("tracestate").map(|v| v.to_str().unwrap().to_owned());
            // The SDK writes an empty tracestate; W3C allows leaving it out.
            assert_eq!(
                state(&ours).unwrap_or_default(),
                state(&sdk).unwrap(),
                "{flags:?}"
            );
        }
        let invalid = SpanContext::empty_context();
        assert!(injected(&[Propagator::TraceContext], &invalid).is_empty());
    }

    #[test]
    fn trace_context_is_read_as_w3c_says() {
        let sdk = |value: &str, state: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(TRACEPARENT, HeaderValue::from_str(value).unwrap());
            headers.insert(TRACESTATE, HeaderValue::from_str(state).unwrap());
            let cx = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
            let sc = cx.span().span_context().clone();
            let ours = Propagation::new(&[Propagator::TraceContext]).extract(&headers);
            (sc.is_valid().then_some(sc), ours)
        };
        let valid = [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
            "02-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "02-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-XYZxsf09",
        ];
        for value in valid {
            let (sdk, ours) = sdk(value, "vendor=x");
            assert!(ours.is_some(), "{value}");
            assert_eq!(ours, sdk, "{value}");
            assert_eq!(ours.unwrap().trace_state().header(), "vendor=x");
        }
        let invalid = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0100",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-0101",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
            "qw-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bg-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0:",
            "02-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ];
        for value in invalid {
            assert_eq!(sdk(value, "").1, None, "{value:?}");
        }
    }
}
