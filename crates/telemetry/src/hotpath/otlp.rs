//! OTLP protobuf straight from the hot path's items: an export request is written in one pass
//! into one buffer, with the Resource and scope encoded once, instead of building the SDK's
//! `SpanData` and log records, then the protobuf structs, then the bytes, for every item.
//!
//! Field numbers are those of opentelemetry-proto (`trace.proto`, `logs.proto`,
//! `common.proto`, `resource.proto`); the values are what the SDK's OTLP exporter sends for the
//! same spans and records (its span flags, its log scopes named by target). A test decodes the
//! bytes with the generated messages.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry::trace::{SpanKind, Status, TraceState};
use opentelemetry::{Array, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};

use super::layer::{FinishedSpan, LogItem, Plain, severity};
use super::queue::Encode;
use super::send::{GiveUpWatch, Transport};
use crate::export::{ExportHealth, Signal, Watched, watched};
use crate::spool::Spool;
use crate::transport::Sender;
use crate::{InitError, SignalExport};

pub(crate) const VARINT: u32 = 0;
pub(crate) const FIXED64: u32 = 1;
pub(crate) const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// `SpanFlags`: the context says whether the parent is remote, and which.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// Encodes one signal's export requests for one Resource and one scope. A request is written
/// once, in order, into one buffer: each message's length goes in a slot left before it and set
/// once it is written (see [`put_message`]), so no message is built aside and copied into its
/// parent.
#[derive(Debug)]
pub(crate) struct Encoder {
    /// `resource` (field 1 of ResourceSpans and ResourceLogs), tag and length included.
    resource: Vec<u8>,
    /// `scope` (field 1 of ScopeSpans) for spans.
    scope: Vec<u8>,
    /// Log records' scopes (their targets), in first-seen order.
    targets: Vec<&'static str>,
    /// The length slot for the next item: as wide as the last item's length needed.
    slot: usize,
    /// Bytes per item in the last request, to size the next one's buffer.
    item_bytes: usize,
    /// OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT, in characters.
    value_length_limit: Option<usize>,
}

/// The length slot of a request's wrappers (ResourceX, ScopeX): 3 bytes hold up to 2 MiB.
const WRAPPER_SLOT: usize = 3;

impl Encoder {
    pub(crate) fn new(resource: &Resource, scope: &str, value_length_limit: Option<usize>) -> Self {
        let mut encoded_resource = Vec::new();
        put_message(&mut encoded_resource, 1, 2, |buf| {
            for (key, value) in resource.iter() {
                put_value_kv(buf, 1, key.as_str(), value, None);
            }
        });
        let mut encoded_scope = Vec::new();
        put_message(&mut encoded_scope, 1, 1, |buf| put_str(buf, 1, scope));
        Self {
            resource: encoded_resource,
            scope: encoded_scope,
            targets: Vec::new(),
            slot: 2,
            item_bytes: 256,
            value_length_limit,
        }
    }

    /// An `ExportTraceServiceRequest` with `spans`.
    pub(crate) fn spans(&mut self, spans: &[FinishedSpan]) -> Vec<u8> {
        let limit = self.value_length_limit;
        let mut slot = self.slot;
        let mut out = self.buffer(spans.len());
        put_message(&mut out, 1, WRAPPER_SLOT, |out| {
            out.extend_from_slice(&self.resource);
            put_message(out, 2, WRAPPER_SLOT, |out| {
                out.extend_from_slice(&self.scope);
                for span in spans {
                    slot = put_message(out, 2, slot, |out| span_message(out, span, limit));
                }
            });
        });
        self.slot = slot;
        self.item_bytes = out.len() / spans.len().max(1);
        out
    }

    /// An `ExportLogsServiceRequest` with `logs`, one ScopeLogs per target (the SDK's grouping).
    pub(crate) fn logs(&mut self, logs: &[LogItem]) -> Vec<u8> {
        self.targets.clear();
        for item in logs {
            if !self.targets.iter().any(|&t| same(t, item.target)) {
                self.targets.push(item.target);
            }
        }
        let mut slot = self.slot;
        let mut out = self.buffer(logs.len());
        put_message(&mut out, 1, WRAPPER_SLOT, |out| {
            out.extend_from_slice(&self.resource);
            for &target in &self.targets {
                put_message(out, 2, WRAPPER_SLOT, |out| {
                    put_message(out, 1, 1, |out| put_str(out, 1, target));
                    for item in logs.iter().filter(|item| same(item.target, target)) {
                        slot = put_message(out, 2, slot, |out| log_message(out, item));
                    }
                });
            }
        });
        self.slot = slot;
        self.item_bytes = out.len() / logs.len().max(1);
        out
    }

    /// A request's buffer, for `items` items the size of the last request's.
    fn buffer(&self, items: usize) -> Vec<u8> {
        Vec::with_capacity(self.resource.len() + 64 + items * (self.item_bytes + 8))
    }
}

/// Whether two targets are the same: the same callsite's most often, the same text otherwise.
fn same(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}

impl Encode<FinishedSpan> for Encoder {
    type Request = Bytes;

    fn encode(&mut self, batch: &mut Vec<FinishedSpan>) -> Bytes {
        let request = self.spans(batch);
        batch.clear();
        request.into()
    }
}

impl Encode<LogItem> for Encoder {
    type Request = Bytes;

    fn encode(&mut self, batch: &mut Vec<LogItem>) -> Bytes {
        let request = self.logs(batch);
        batch.clear();
        request.into()
    }
}

/// The OTLP sender, its outcomes counted, as a sending thread's transport, with the spool (if
/// any) for what it cannot deliver.
#[derive(Debug)]
pub(crate) struct Otlp {
    pub(crate) sender: Watched<Sender>,
    pub(crate) spool: Option<Spool>,
    pub(crate) signal: Signal,
    pub(crate) health: Arc<ExportHealth>,
}

impl Otlp {
    /// `signal`'s OTLP sender as `c` describes it; what it cannot deliver goes to `spool`.
    pub(crate) fn new(
        signal: Signal,
        c: &SignalExport,
        spool: Option<Spool>,
        health: &Arc<ExportHealth>,
    ) -> Result<Self, InitError> {
        Ok(Self {
            sender: watched(signal, Sender::new(c, signal), c, health)?,
            spool,
            signal,
            health: health.clone(),
        })
    }
}

impl Transport<Bytes> for Otlp {
    fn send(&self, request: Bytes, items: usize) -> impl Future<Output = OTelSdkResult> {
        self.sender
            .watch(items as u64, self.sender.inner().send(request))
    }

    fn shutdown(&mut self, _: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn transient(&self, error: &OTelSdkError) -> bool {
        crate::transport::transient(error)
    }

    fn keep(&self, request: &Bytes, items: usize) {
        let Some(spool) = &self.spool else {
            return;
        };
        let problem = match spool.keep(request, items) {
            Ok(true) => {
                return self.health.spooled(self.signal, items as u64, spool.dir());
            }
            Ok(false) => {
                "the telemetry spool is full: what does not fit is dropped and counted".to_owned()
            }
            Err(e) => format!("cannot write to the telemetry spool: {e}"),
        };
        self.health
            .spool_trouble(self.signal, spool.dir(), &problem);
    }

    /// Sends the files earlier processes kept, oldest first, deleting each once accepted;
    /// stops at the first transient failure (the rest waits for the next process).
    async fn send_kept(&self, give_up: GiveUpWatch) {
        let Some(spool) = &self.spool else {
            return;
        };
        let claim = match spool.claim() {
            Ok(Some(claim)) => claim,
            Ok(None) => return,
            Err(e) => {
                let problem = format!("cannot read the telemetry spool: {e}");
                return self
                    .health
                    .spool_trouble(self.signal, spool.dir(), &problem);
            }
        };
        self.health.spool_lost(self.signal, claim.expired);
        for kept in &claim.files {
            let Ok(request) = std::fs::read(&kept.path) else {
                continue;
            };
            // Counted as an export, not as items: they were counted by the process that kept them.
            let result = tokio::select! {
                r = self.send(request.into(), 0) => r,
                () = give_up.clone().wait() => return,
            };
            match result {
                Ok(()) => self.health.resent(self.signal, kept.items),
                Err(e) if self.transient(&e) => return,
                Err(_) => self.health.spool_lost(self.signal, kept.items),
            }
            spool.remove(&kept.path, kept.bytes);
        }
    }
}

fn span_message(buf: &mut Vec<u8>, span: &FinishedSpan, limit: Option<usize>) {
    let cx = &span.cx;
    let r = &span.recording;
    put_len_field(buf, 1, &cx.trace_id().to_bytes());
    put_len_field(buf, 2, &cx.span_id().to_bytes());
    put_str(buf, 3, &trace_state(span));
    if span.parent != opentelemetry::trace::SpanId::INVALID {
        put_len_field(buf, 4, &span.parent.to_bytes());
    }
    put_str(buf, 5, span.recording.name());
    put_uint(buf, 6, kind(&r.kind));
    put_fixed64(buf, 7, nanos(r.start));
    put_fixed64(buf, 8, nanos(span.end));
    buf.extend_from_slice(r.attrs.as_bytes());
    put_uint(buf, 10, u64::from(r.attrs.dropped));
    for event in &r.events {
        put_message(buf, 11, 2, |buf| event_message(buf, event, limit));
    }
    put_uint(buf, 12, u64::from(r.dropped_events));
    let (code, message) = match &r.status {
        Status::Unset => (0, ""),
        Status::Ok => (1, ""),
        Status::Error { description } => (2, description.as_ref()),
    };
    // Its length is known before: no slot to set after.
    let message_len = if message.is_empty() {
        0
    } else {
        field_len(2, message.len())
    };
    let code_len = if code == 0 { 0 } else { 1 + varint_len(code) };
    put_tag(buf, 15, LEN);
    put_varint(buf, (message_len + code_len) as u64);
    put_str(buf, 2, message);
    put_uint(buf, 3, code);
    let remote = if span.parent_remote { IS_REMOTE } else { 0 };
    let flags = u32::from(cx.trace_flags().to_u8()) | HAS_IS_REMOTE | remote;
    put_tag(buf, 16, FIXED32);
    buf.extend_from_slice(&flags.to_le_bytes());
}

/// A span event's message: its time, name, attributes and dropped count.
fn event_message(buf: &mut Vec<u8>, event: &opentelemetry::trace::Event, limit: Option<usize>) {
    put_fixed64(buf, 1, nanos(event.timestamp));
    put_str(buf, 2, &event.name);
    for kv in &event.attributes {
        put_value_kv(buf, 3, kv.key.as_str(), &kv.value, limit);
    }
    put_uint(buf, 4, u64::from(event.dropped_attributes_count));
}

/// The span's W3C tracestate, usually empty (then nothing is written).
fn trace_state(span: &FinishedSpan) -> Cow<'static, str> {
    let state = span.cx.trace_state();
    if *state == TraceState::NONE {
        Cow::Borrowed("")
    } else {
        Cow::Owned(state.header())
    }
}

fn log_message(buf: &mut Vec<u8>, item: &LogItem) {
    put_uint(buf, 2, severity(item.level) as u64);
    put_str(buf, 3, item.level.as_str());
    if let Some(body) = &item.body {
        // Its length is known before: no slot to set after.
        put_tag(buf, 5, LEN);
        put_varint(buf, field_len(1, body.len()) as u64);
        put_str_always(buf, 1, body);
    }
    buf.extend_from_slice(item.attrs.as_bytes());
    if let Some((trace_id, span_id, flags)) = item.trace {
        put_tag(buf, 8, FIXED32);
        buf.extend_from_slice(&u32::from(flags.to_u8()).to_le_bytes());
        put_len_field(buf, 9, &trace_id.to_bytes());
        put_len_field(buf, 10, &span_id.to_bytes());
    }
    put_fixed64(buf, 11, nanos(item.observed));
    put_str(buf, 12, item.name);
}

fn kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// `s` cut to `limit` characters (OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT; the SDK has none).
pub(crate) fn cut(s: &str, limit: Option<usize>) -> &str {
    match limit.and_then(|l| s.char_indices().nth(l)) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

/// `value`, a string cut to `limit` characters.
#[inline]
pub(crate) fn cut_value(value: Plain<'_>, limit: Option<usize>) -> Plain<'_> {
    match value {
        Plain::Str(s) => Plain::Str(cut(s, limit)),
        other => other,
    }
}

/// A scalar value of the SDK's types as a [`Plain`] one; `None` for arrays and later kinds.
fn plain(value: &Value) -> Option<Plain<'_>> {
    Some(match value {
        Value::String(s) => Plain::Str(s.as_str()),
        Value::Bool(b) => Plain::Bool(*b),
        Value::I64(v) => Plain::I64(*v),
        Value::F64(v) => Plain::F64(*v),
        _ => return None,
    })
}

/// A `KeyValue` of the SDK's types (the resource, span events) as field `field`.
fn put_value_kv(buf: &mut Vec<u8>, field: u32, key: &str, value: &Value, limit: Option<usize>) {
    if let Some(plain) = plain(value) {
        return put_kv(buf, field, key, cut_value(plain, limit));
    }
    put_message(buf, field, 1, |buf| {
        put_str_always(buf, 1, key);
        put_message(buf, 2, 1, |buf| put_composite(buf, value, limit));
    });
}

/// Where encoded bytes go: a request's buffer, or an item's attributes (attrs.rs).
pub(crate) trait Out {
    fn put(&mut self, bytes: &[u8]);
    /// Room for `n` more bytes, ahead of the writes that add up to them.
    fn reserve_for(&mut self, n: usize);
}

impl Out for Vec<u8> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    #[inline(always)]
    fn reserve_for(&mut self, n: usize) {
        self.reserve(n);
    }
}

/// The field of `Span` that holds its attributes.
pub(crate) const SPAN_ATTRIBUTES: u32 = 9;
/// The field of `LogRecord` that holds its attributes.
pub(crate) const LOG_ATTRIBUTES: u32 = 6;

/// A `KeyValue` as field `field`, its value cut already (the resource's, span events', and
/// attributes that are not [`short_kv`]).
pub(crate) fn put_kv<O: Out>(out: &mut O, field: u32, key: &str, value: Plain<'_>) {
    let any_len = any_len(value);
    let kv_len = field_len(1, key.len()) + field_len(2, any_len);
    out.reserve_for(field_len(field, kv_len));
    put_tag(out, field, LEN);
    put_varint(out, kv_len as u64);
    put_str_always(out, 1, key);
    put_tag(out, 2, LEN);
    put_varint(out, any_len as u64);
    put_scalar(out, value);
}

/// How [`write_short_kv`] writes an attribute whose tags and lengths are one byte each
/// (nearly every one): its size, and its value's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShortKv {
    pub(crate) len: usize,
    any_len: u8,
}

/// The [`ShortKv`] of `key` and `value` as field `field`, if they are short.
#[inline(always)]
pub(crate) fn short_kv(field: u32, key: &str, value: Plain<'_>) -> Option<ShortKv> {
    // A string's length as if its length took one byte: if not, the whole is not short either.
    let any_len = match value {
        Plain::Str(s) => 2 + s.len(),
        other => any_len(other),
    };
    let kv_len = 4 + key.len() + any_len;
    (kv_len < 0x80 && field < 16).then_some(ShortKv {
        len: 2 + kv_len,
        any_len: any_len as u8,
    })
}

/// Writes `key` and `value` as field `field` into `room`, `kv.len` bytes: the framing in
/// single-byte stores, the key and a string value in one copy each.
#[inline(always)]
pub(crate) fn write_short_kv(
    room: &mut [u8],
    kv: ShortKv,
    field: u32,
    key: &str,
    value: Plain<'_>,
) {
    let k = key.len();
    room[0] = tag(field, LEN);
    room[1] = (kv.len - 2) as u8;
    room[2] = tag(1, LEN);
    room[3] = k as u8;
    room[4..4 + k].copy_from_slice(key.as_bytes());
    room[4 + k] = tag(2, LEN);
    room[5 + k] = kv.any_len;
    let value_room = &mut room[6 + k..];
    match value {
        Plain::Str(s) => {
            value_room[0] = tag(1, LEN);
            value_room[1] = s.len() as u8;
            value_room[2..].copy_from_slice(s.as_bytes());
        }
        Plain::Bool(b) => {
            value_room[0] = tag(2, VARINT);
            value_room[1] = u8::from(b);
        }
        Plain::I64(v) => {
            value_room[0] = tag(3, VARINT);
            let mut v = v as u64;
            for byte in &mut value_room[1..] {
                *byte = (v as u8) | 0x80;
                v >>= 7;
            }
            if let Some(last) = value_room.last_mut() {
                *last &= 0x7f;
            }
        }
        Plain::F64(v) => {
            value_room[0] = tag(4, FIXED64);
            value_room[1..].copy_from_slice(&v.to_bits().to_le_bytes());
        }
    }
}

/// A one-byte tag (fields below 16).
#[inline]
pub(crate) const fn tag(field: u32, wire: u32) -> u8 {
    ((field << 3) | wire) as u8
}

/// The length of a scalar `AnyValue`.
#[inline(always)]
fn any_len(value: Plain<'_>) -> usize {
    match value {
        Plain::Str(s) => field_len(1, s.len()),
        Plain::Bool(_) => 2,
        Plain::I64(v) => 1 + varint_len(v as u64),
        Plain::F64(_) => 9,
    }
}

/// The fields of a scalar `AnyValue` (its oneof).
#[inline]
fn put_scalar<O: Out>(buf: &mut O, value: Plain<'_>) {
    match value {
        Plain::Str(s) => put_str_always(buf, 1, s),
        Plain::Bool(b) => put_varint_field(buf, 2, u64::from(b)),
        Plain::I64(v) => put_varint_field(buf, 3, v as u64),
        Plain::F64(v) => put_f64(buf, 4, v),
    }
}

/// The fields of an `AnyValue` that is not a scalar: an array, or a later kind of the API.
fn put_composite(buf: &mut Vec<u8>, value: &Value, limit: Option<usize>) {
    match value {
        Value::Array(array) => {
            put_message(buf, 5, 1, |buf| {
                let mut each = |v: Plain<'_>| {
                    put_message(buf, 1, 1, |buf| put_scalar(buf, cut_value(v, limit)));
                };
                match array {
                    Array::Bool(items) => items.iter().for_each(|v| each(Plain::Bool(*v))),
                    Array::I64(items) => items.iter().for_each(|v| each(Plain::I64(*v))),
                    Array::F64(items) => items.iter().for_each(|v| each(Plain::F64(*v))),
                    Array::String(items) => {
                        items.iter().for_each(|v| each(Plain::Str(v.as_str())));
                    }
                    _ => {}
                }
            });
        }
        // Later value kinds of the API: sent as their text, as nothing here makes them.
        other => put_str_always(buf, 1, &other.to_string()),
    }
}

#[inline]
fn put_tag<O: Out>(buf: &mut O, field: u32, wire: u32) {
    put_varint(buf, u64::from((field << 3) | wire));
}

#[inline(always)]
fn put_varint<O: Out>(buf: &mut O, v: u64) {
    // Tags, and most lengths and numbers here, are one byte: that case stays inline.
    if v < 0x80 {
        buf.put(&[v as u8]);
    } else {
        put_long_varint(buf, v);
    }
}

#[inline(never)]
fn put_long_varint<O: Out>(buf: &mut O, v: u64) {
    let (bytes, width) = varint(v);
    buf.put(&bytes[..width]);
}

/// `v` as a varint: its bytes, and how many.
fn varint(mut v: u64) -> ([u8; 10], usize) {
    let mut bytes = [0; 10];
    let mut width = 0;
    while v >= 0x80 {
        bytes[width] = (v as u8) | 0x80;
        v >>= 7;
        width += 1;
    }
    bytes[width] = v as u8;
    (bytes, width + 1)
}

/// A length-delimited field `field` whose length is known once it is written: `write` appends
/// the message after `slot` bytes left for the length, set then. A length of another width
/// moves the message (callers pass the width the last such message needed, so that is rare).
/// Returns the width the length took.
#[inline]
fn put_message(
    buf: &mut Vec<u8>,
    field: u32,
    slot: usize,
    write: impl FnOnce(&mut Vec<u8>),
) -> usize {
    put_tag(buf, field, LEN);
    let at = buf.len();
    buf.resize(at + slot, 0);
    write(buf);
    let (bytes, width) = varint((buf.len() - at - slot) as u64);
    if width == slot {
        buf[at..at + slot].copy_from_slice(&bytes[..width]);
    } else {
        buf.splice(at..at + slot, bytes[..width].iter().copied());
    }
    width
}

#[inline]
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// The size of a length-delimited field `field` of `len` bytes.
#[inline]
fn field_len(field: u32, len: usize) -> usize {
    varint_len(u64::from(field << 3)) + varint_len(len as u64) + len
}

#[inline]
fn put_len_field<O: Out>(buf: &mut O, field: u32, bytes: &[u8]) {
    put_tag(buf, field, LEN);
    put_varint(buf, bytes.len() as u64);
    buf.put(bytes);
}

/// Proto3 leaves empty strings, empty bytes and zero numbers out.
#[inline]
fn put_str(buf: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        put_len_field(buf, field, s.as_bytes());
    }
}

/// A string that is the set member of a oneof, or a key: written even when empty.
#[inline]
fn put_str_always<O: Out>(buf: &mut O, field: u32, s: &str) {
    put_len_field(buf, field, s.as_bytes());
}

#[inline]
fn put_uint(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_varint_field(buf, field, v);
    }
}

#[inline]
fn put_varint_field<O: Out>(buf: &mut O, field: u32, v: u64) {
    put_tag(buf, field, VARINT);
    put_varint(buf, v);
}

#[inline]
fn put_fixed64<O: Out>(buf: &mut O, field: u32, v: u64) {
    put_tag(buf, field, FIXED64);
    buf.put(&v.to_le_bytes());
}

#[inline]
fn put_f64<O: Out>(buf: &mut O, field: u32, v: f64) {
    put_fixed64(buf, field, v.to_bits());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths_match_what_is_written() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), varint_len(v), "{v}");
        }
        let mut buf = Vec::new();
        put_varint(&mut buf, 300);
        assert_eq!(buf, [0xac, 0x02]);
    }

    #[test]
    fn a_message_written_before_its_length_is_known_is_the_same_field() {
        for len in [0, 5, 127, 128, 300, 16_383, 16_384, 70_000] {
            let body = vec![7u8; len];
            let mut expected = vec![1];
            put_len_field(&mut expected, 2, &body);
            for slot in 1..=3 {
                let mut buf = vec![1];
                let width = put_message(&mut buf, 2, slot, |b| b.extend_from_slice(&body));
                assert_eq!(buf, expected, "{len} bytes, slot {slot}");
                assert_eq!(width, varint_len(len as u64), "{len} bytes, slot {slot}");
            }
        }
    }

    #[test]
    fn array_values_decode_as_the_generated_messages_read_them() {
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
        use prost::Message as _;
        let text = |s: &str| AnyValue {
            value: Some(any_value::Value::StringValue(s.to_owned())),
        };
        let array = Value::Array(Array::String(vec!["héllo".into(), "x".repeat(200).into()]));
        let mut buf = Vec::new();
        put_value_kv(&mut buf, 1, "tags", &array, Some(3));
        let (field, decoded) = (buf[0], KeyValue::decode(&buf[2..]).expect("a KeyValue"));
        assert_eq!(field, 0x0a);
        assert_eq!(decoded.key, "tags");
        let Some(any_value::Value::ArrayValue(values)) = decoded.value.and_then(|v| v.value) else {
            panic!("not an array");
        };
        assert_eq!(values.values, [text("hél"), text("xxx")]);
        let mut numbers = Vec::new();
        put_value_kv(
            &mut numbers,
            1,
            "n",
            &Value::Array(Array::I64(vec![1, 300])),
            None,
        );
        let decoded = KeyValue::decode(&numbers[2..]).expect("a KeyValue");
        let Some(any_value::Value::ArrayValue(values)) = decoded.value.and_then(|v| v.value) else {
            panic!("not an array");
        };
        let ints: Vec<_> = values.values.into_iter().filter_map(|v| v.value).collect();
        assert_eq!(
            ints,
            [
                any_value::Value::IntValue(1),
                any_value::Value::IntValue(300)
            ]
        );
    }

    #[test]
    fn a_spans_status_decodes_as_the_generated_messages_read_it() {
        use super::super::attrs::SpanAttrs;
        use super::super::layer::{Name, Recording};
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId};
        use opentelemetry_proto::tonic::trace::v1::{Span, status::StatusCode};
        use prost::Message as _;
        let span = |status: Status| FinishedSpan {
            cx: SpanContext::new(
                TraceId::from(7),
                SpanId::from(8),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent: SpanId::INVALID,
            parent_remote: false,
            recording: Recording {
                name: Name::Static("s"),
                kind: SpanKind::Internal,
                start: UNIX_EPOCH,
                attrs: SpanAttrs::default(),
                events: Vec::new(),
                dropped_events: 0,
                status,
            },
            end: UNIX_EPOCH,
        };
        let long = "x".repeat(200);
        for (status, code, message) in [
            (Status::Unset, StatusCode::Unset, ""),
            (Status::Ok, StatusCode::Ok, ""),
            (Status::error(""), StatusCode::Error, ""),
            (Status::error("boom"), StatusCode::Error, "boom"),
            (
                Status::error(long.clone()),
                StatusCode::Error,
                long.as_str(),
            ),
        ] {
            let mut buf = Vec::new();
            span_message(&mut buf, &span(status), None);
            let decoded = Span::decode(&buf[..])
                .expect("a Span")
                .status
                .expect("a status");
            assert_eq!((decoded.code(), decoded.message.as_str()), (code, message));
        }
    }

    #[test]
    fn values_are_cut_to_the_limit_in_characters() {
        assert_eq!(cut("héllo", Some(2)), "hé");
        assert_eq!(cut("héllo", None), "héllo");
        assert_eq!(cut("hé", Some(5)), "hé");
    }
}
