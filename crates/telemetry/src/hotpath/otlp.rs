//! OTLP protobuf straight from the hot path's items: an export request is written in one pass
//! into one buffer, with the Resource and scope encoded once, instead of building the SDK's
//! `SpanData` and log records, then the protobuf structs, then the bytes, for every item.
//!
//! Field numbers are those of opentelemetry-proto (`trace.proto`, `logs.proto`,
//! `common.proto`, `resource.proto`); the values are what the SDK's OTLP exporter sends for the
//! same spans and records (its span flags, its log scopes named by target). A test decodes the
//! bytes with the generated messages.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry::trace::{SpanKind, Status};
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

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// `SpanFlags`: the context says whether the parent is remote, and which.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// Encodes one signal's export requests for one Resource and one scope.
#[derive(Debug)]
pub(crate) struct Encoder {
    /// `resource` (field 1 of ResourceSpans and ResourceLogs), tag and length included.
    resource: Vec<u8>,
    /// `scope` (field 1 of ScopeSpans) for spans.
    scope: Vec<u8>,
    /// One span or log record at a time, before its length is known.
    scratch: Vec<u8>,
    /// Log records grouped by scope (their target), in first-seen order.
    groups: Vec<(&'static str, Vec<u8>)>,
    /// OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT, in characters.
    value_length_limit: Option<usize>,
}

impl Encoder {
    pub(crate) fn new(resource: &Resource, scope: &str, value_length_limit: Option<usize>) -> Self {
        let mut attrs = Vec::new();
        for (key, value) in resource.iter() {
            put_value_kv(&mut attrs, 1, key.as_str(), value, None);
        }
        let mut resource = Vec::new();
        put_len_field(&mut resource, 1, &attrs);
        let mut name = Vec::new();
        put_str(&mut name, 1, scope);
        let mut scope = Vec::new();
        put_len_field(&mut scope, 1, &name);
        Self {
            resource,
            scope,
            scratch: Vec::new(),
            groups: Vec::new(),
            value_length_limit,
        }
    }

    /// An `ExportTraceServiceRequest` with `spans`.
    pub(crate) fn spans(&mut self, spans: &[FinishedSpan]) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.scope.len() + spans.len() * 192);
        body.extend_from_slice(&self.scope);
        for span in spans {
            self.scratch.clear();
            span_message(&mut self.scratch, span, self.value_length_limit);
            put_len_field(&mut body, 2, &self.scratch);
        }
        self.request(&[&body])
    }

    /// An `ExportLogsServiceRequest` with `logs`, one ScopeLogs per target (the SDK's grouping).
    pub(crate) fn logs(&mut self, logs: &[LogItem]) -> Vec<u8> {
        for group in &mut self.groups {
            group.1.clear();
        }
        for item in logs {
            self.scratch.clear();
            log_message(&mut self.scratch, item);
            let at = match self.groups.iter().position(|(t, _)| *t == item.target) {
                Some(at) => at,
                None => {
                    self.groups.push((item.target, Vec::new()));
                    self.groups.len() - 1
                }
            };
            let records = &mut self.groups[at].1;
            if records.is_empty() {
                let mut name = Vec::new();
                put_str(&mut name, 1, item.target);
                put_len_field(records, 1, &name);
            }
            put_len_field(records, 2, &self.scratch);
        }
        self.groups.retain(|(_, records)| !records.is_empty());
        let scopes: Vec<&[u8]> = self.groups.iter().map(|(_, r)| r.as_slice()).collect();
        self.request(&scopes)
    }

    /// The request: one ResourceSpans (ResourceLogs) with the resource and each scope's body.
    fn request(&self, scopes: &[&[u8]]) -> Vec<u8> {
        let scopes_len: usize = scopes.iter().map(|s| field_len(2, s.len())).sum();
        let resource_len = self.resource.len() + scopes_len;
        let mut out = Vec::with_capacity(field_len(1, resource_len));
        put_tag(&mut out, 1, LEN);
        put_varint(&mut out, resource_len as u64);
        out.extend_from_slice(&self.resource);
        for scope in scopes {
            put_len_field(&mut out, 2, scope);
        }
        out
    }
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
    put_str(buf, 3, &cx.trace_state().header());
    if span.parent != opentelemetry::trace::SpanId::INVALID {
        put_len_field(buf, 4, &span.parent.to_bytes());
    }
    put_str(buf, 5, span.recording.name());
    put_uint(buf, 6, kind(&r.kind));
    put_fixed64(buf, 7, nanos(r.start));
    put_fixed64(buf, 8, nanos(span.end));
    for (key, value) in r.attrs.iter() {
        put_kv(buf, 9, key, value, limit);
    }
    put_uint(buf, 10, u64::from(r.attrs.dropped));
    for event in &r.events {
        let mut e = Vec::new();
        put_fixed64(&mut e, 1, nanos(event.timestamp));
        put_str(&mut e, 2, &event.name);
        for kv in &event.attributes {
            put_value_kv(&mut e, 3, kv.key.as_str(), &kv.value, limit);
        }
        put_uint(&mut e, 4, u64::from(event.dropped_attributes_count));
        put_len_field(buf, 11, &e);
    }
    put_uint(buf, 12, u64::from(r.dropped_events));
    let (code, message) = match &r.status {
        Status::Unset => (0, ""),
        Status::Ok => (1, ""),
        Status::Error { description } => (2, description.as_ref()),
    };
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

fn log_message(buf: &mut Vec<u8>, item: &LogItem) {
    put_uint(buf, 2, severity(item.level) as u64);
    put_str(buf, 3, item.level.as_str());
    if let Some(body) = item.body {
        let body = item.attrs.text(body);
        put_tag(buf, 5, LEN);
        put_varint(buf, field_len(1, body.len()) as u64);
        put_str_always(buf, 1, body);
    }
    for (key, value) in item.attrs.iter() {
        put_kv(buf, 6, key, value, None);
    }
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
fn cut_value(value: Plain<'_>, limit: Option<usize>) -> Plain<'_> {
    match value {
        Plain::Str(s) => Plain::Str(cut(s, limit)),
        other => other,
    }
}

/// A `KeyValue` of the SDK's types (the resource, span events) as field `field`.
fn put_value_kv(buf: &mut Vec<u8>, field: u32, key: &str, value: &Value, limit: Option<usize>) {
    let plain = match value {
        Value::String(s) => Plain::Str(s.as_str()),
        Value::Bool(b) => Plain::Bool(*b),
        Value::I64(v) => Plain::I64(*v),
        Value::F64(v) => Plain::F64(*v),
        other => {
            let mut any = Vec::new();
            put_composite(&mut any, other, limit);
            put_tag(buf, field, LEN);
            put_varint(
                buf,
                (field_len(1, key.len()) + field_len(2, any.len())) as u64,
            );
            put_str_always(buf, 1, key);
            put_len_field(buf, 2, &any);
            return;
        }
    };
    put_kv(buf, field, key, plain, limit);
}

/// A `KeyValue` as field `field`: a scalar's length is known before it is written, so it goes
/// straight into `buf` (the hot path: every attribute of every item).
#[inline]
fn put_kv(buf: &mut Vec<u8>, field: u32, key: &str, value: Plain<'_>, limit: Option<usize>) {
    let value = cut_value(value, limit);
    let any_len = match value {
        Plain::Str(s) => field_len(1, s.len()),
        Plain::Bool(_) => 2,
        Plain::I64(v) => 1 + varint_len(v as u64),
        Plain::F64(_) => 9,
    };
    put_tag(buf, field, LEN);
    put_varint(
        buf,
        (field_len(1, key.len()) + field_len(2, any_len)) as u64,
    );
    put_str_always(buf, 1, key);
    put_tag(buf, 2, LEN);
    put_varint(buf, any_len as u64);
    put_scalar(buf, value);
}

/// The fields of a scalar `AnyValue` (its oneof).
#[inline]
fn put_scalar(buf: &mut Vec<u8>, value: Plain<'_>) {
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
            let mut values = Vec::new();
            let mut each = |v: Plain<'_>| {
                let mut any = Vec::new();
                put_scalar(&mut any, cut_value(v, limit));
                put_len_field(&mut values, 1, &any);
            };
            match array {
                Array::Bool(items) => items.iter().for_each(|v| each(Plain::Bool(*v))),
                Array::I64(items) => items.iter().for_each(|v| each(Plain::I64(*v))),
                Array::F64(items) => items.iter().for_each(|v| each(Plain::F64(*v))),
                Array::String(items) => items.iter().for_each(|v| each(Plain::Str(v.as_str()))),
                _ => {}
            }
            put_len_field(buf, 5, &values);
        }
        // Later value kinds of the API: sent as their text, as nothing here makes them.
        other => put_str_always(buf, 1, &other.to_string()),
    }
}

#[inline]
fn put_tag(buf: &mut Vec<u8>, field: u32, wire: u32) {
    put_varint(buf, u64::from((field << 3) | wire));
}

#[inline]
fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    // Tags, and most lengths and numbers here, are one byte.
    if v < 0x80 {
        buf.push(v as u8);
        return;
    }
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
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
fn put_len_field(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_tag(buf, field, LEN);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
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
fn put_str_always(buf: &mut Vec<u8>, field: u32, s: &str) {
    put_len_field(buf, field, s.as_bytes());
}

#[inline]
fn put_uint(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_varint_field(buf, field, v);
    }
}

#[inline]
fn put_varint_field(buf: &mut Vec<u8>, field: u32, v: u64) {
    put_tag(buf, field, VARINT);
    put_varint(buf, v);
}

#[inline]
fn put_fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    put_tag(buf, field, FIXED64);
    buf.extend_from_slice(&v.to_le_bytes());
}

#[inline]
fn put_f64(buf: &mut Vec<u8>, field: u32, v: f64) {
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
    fn values_are_cut_to_the_limit_in_characters() {
        assert_eq!(cut("héllo", Some(2)), "hé");
        assert_eq!(cut("héllo", None), "héllo");
        assert_eq!(cut("hé", Some(5)), "hé");
    }
}
