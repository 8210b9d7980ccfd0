//! The tracing layer: spans and events become OTel spans and log records, recorded into the
//! signal queues with nothing but moves and the attribute values' copies on the caller's thread.
//!
//! It keeps the conventions of tracing-opentelemetry and the appender bridge, so the wire shows
//! the same telemetry: `otel.name`, `otel.kind`, `otel.status_code` and
//! `otel.status_description` fields set the span's name, kind and status; an ERROR event inside
//! a span becomes a span event (name: the message; attributes: `level`, `target` and its fields)
//! and sets the span's status to Error; every event becomes a log record (body: the message;
//! target, event name, severity, its fields, and the trace context of the span it is in).
//! Unlike tracing-opentelemetry it does nothing on enter and exit: the OTel context of a span is
//! looked up in the registry when it is needed (a child span, a log record, propagation).

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::logs::Severity;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample,
};
use smallstr::SmallString;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use super::attrs::{LogAttrs, SpanAttrs};
use super::otlp::cut_value;
use super::queue::Queue;
use crate::SpanLimitsConfig;
use crate::propagation::Propagation;

/// A span's identity, kept for as long as the span lives: in our subscriber's slot, or in the
/// registry's extensions.
#[derive(Debug)]
pub(crate) struct SpanState {
    pub(crate) cx: SpanContext,
    parent: SpanId,
    parent_remote: bool,
    /// What is exported: present for sampled spans, and for roots (a remote parent set later
    /// may still make them sampled).
    recording: Option<Recording>,
}

impl Default for SpanState {
    fn default() -> Self {
        Self {
            cx: SpanContext::NONE,
            parent: SpanId::INVALID,
            parent_remote: false,
            recording: None,
        }
    }
}

/// A sampled span's data, from its start to its end.
#[derive(Debug)]
pub(crate) struct Recording {
    pub(crate) name: Name,
    pub(crate) kind: SpanKind,
    pub(crate) start: SystemTime,
    pub(crate) attrs: SpanAttrs,
    pub(crate) events: Vec<opentelemetry::trace::Event>,
    pub(crate) dropped_events: u32,
    pub(crate) status: Status,
}

/// A span's name: its callsite's, or the one `otel.name` gave it.
#[derive(Debug)]
pub(crate) enum Name {
    Static(&'static str),
    Text(Text),
}

/// A span's name or a log record's body, kept in the item when short.
pub(crate) type Text = SmallString<[u8; 40]>;

/// A span that ended, as the export thread turns it into the SDK's `SpanData`.
#[derive(Debug)]
pub(crate) struct FinishedSpan {
    pub(crate) cx: SpanContext,
    pub(crate) parent: SpanId,
    pub(crate) parent_remote: bool,
    pub(crate) recording: Recording,
    pub(crate) end: SystemTime,
}

impl Recording {
    pub(crate) fn name(&self) -> &str {
        match &self.name {
            Name::Static(name) => name,
            Name::Text(text) => text,
        }
    }
}

/// An event, as the export thread turns it into the SDK's log record.
#[derive(Debug)]
pub(crate) struct LogItem {
    pub(crate) observed: SystemTime,
    pub(crate) level: Level,
    pub(crate) target: &'static str,
    pub(crate) name: &'static str,
    pub(crate) body: Option<Text>,
    pub(crate) attrs: LogAttrs,
    pub(crate) trace: Option<(TraceId, SpanId, TraceFlags)>,
}

/// An attribute's value as the exporters take it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Plain<'a> {
    Str(&'a str),
    I64(i64),
    F64(f64),
    Bool(bool),
}

/// The layer; either queue may be absent (that signal's exporter is `none`).
pub(crate) struct HotLayer {
    spans: Option<Arc<Queue<FinishedSpan>>>,
    logs: Option<Arc<Queue<LogItem>>>,
    sampler: Sampler,
    ids: RandomIdGenerator,
    limits: SpanLimitsConfig,
    pub(crate) propagation: Propagation,
}

impl HotLayer {
    pub(crate) fn new(
        spans: Option<Arc<Queue<FinishedSpan>>>,
        logs: Option<Arc<Queue<LogItem>>>,
        sampler: Sampler,
        limits: SpanLimitsConfig,
        propagation: Propagation,
    ) -> Self {
        Self {
            spans,
            logs,
            sampler,
            ids: RandomIdGenerator::default(),
            limits,
            propagation,
        }
    }

    fn sampled(&self, parent: Option<&Context>, trace_id: TraceId, rec: &Recording) -> bool {
        let result = self
            .sampler
            .should_sample(parent, trace_id, rec.name(), &rec.kind, &[], &[]);
        result.decision == SamplingDecision::RecordAndSample
    }

    /// Makes the remote context `remote` the parent of the span in `state`, which has no local
    /// parent: its trace, and the sampling decision again.
    pub(crate) fn adopt(&self, state: &mut SpanState, remote: SpanContext) {
        let Some(rec) = &state.recording else {
            return; // not a root: it keeps its local parent
        };
        let trace_id = remote.trace_id();
        let sampled = match self.sampler {
            // The SDK's parent-based sampler follows a valid parent's flag, as it is here (the
            // propagator refuses invalid ones): no OTel context built to ask it.
            Sampler::ParentBased(_) => remote.is_sampled(),
            _ => {
                let parent = Context::new().with_remote_span_context(remote.clone());
                self.sampled(Some(&parent), trace_id, rec)
            }
        };
        let flags = flags(sampled);
        state.parent = remote.span_id();
        state.parent_remote = true;
        state.cx = SpanContext::new(
            trace_id,
            state.cx.span_id(),
            flags,
            false,
            remote.trace_state().clone(),
        );
    }
}

fn flags(sampled: bool) -> TraceFlags {
    if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    }
}

/// The span an event or a new span belongs to: its explicit parent, or the current one.
fn parent_of<'a, S: Subscriber + for<'l> LookupSpan<'l>>(
    explicit: Option<&Id>,
    contextual: bool,
    ctx: &'a LayerContext<'_, S>,
) -> Option<SpanRef<'a, S>> {
    match explicit {
        Some(id) => ctx.span(id),
        None if contextual => ctx.lookup_current(),
        None => None,
    }
}

/// What a log record carries of the span it was emitted in.
pub(crate) type TraceRef = (TraceId, SpanId, TraceFlags);

/// What a new span takes of its parent's state.
pub(crate) type ParentRef = (TraceId, SpanId, TraceFlags, TraceState);

impl SpanState {
    /// Drops what a closed span leaves behind (its tracestate's strings; a recording not
    /// exported), for the slot to be reused.
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    pub(crate) fn trace(&self) -> TraceRef {
        (self.cx.trace_id(), self.cx.span_id(), self.cx.trace_flags())
    }

    pub(crate) fn as_parent(&self) -> ParentRef {
        let (trace_id, span_id, flags) = self.trace();
        (trace_id, span_id, flags, self.cx.trace_state().clone())
    }
}

/// What happens per span and event, whichever subscriber keeps the spans' state: tracing's
/// registry ([`HotLayer`] as a layer, beside other layers) or ours (`subscriber.rs`, alone).
impl HotLayer {
    /// The state of a new span whose parent, if it has one, is `parent` (taken from the
    /// parent's state before, as the fields read here may log themselves).
    pub(crate) fn start_span(
        &self,
        attrs: &Attributes<'_>,
        parent: Option<ParentRef>,
    ) -> SpanState {
        let mut state = SpanState::default();
        self.start_span_in(attrs, parent, &mut state);
        state
    }

    /// [`Self::start_span`] into `state`, where it lies (a slot of our subscriber's, reused).
    #[inline]
    pub(crate) fn start_span_in(
        &self,
        attrs: &Attributes<'_>,
        parent: Option<ParentRef>,
        state: &mut SpanState,
    ) {
        let span_id = self.ids.new_span_id();
        let new_recording = || Recording {
            name: Name::Static(attrs.metadata().name()),
            kind: SpanKind::Internal,
            start: SystemTime::now(),
            attrs: SpanAttrs::default(),
            events: Vec::new(),
            dropped_events: 0,
            status: Status::Unset,
        };
        state.parent_remote = false;
        match parent {
            // A child shares its parent's decision: every sampler here decides the same for
            // the same trace (parent-based ones by the parent, ratio ones by the trace id).
            Some((trace_id, parent_id, flags, trace_state)) => {
                state.cx = SpanContext::new(trace_id, span_id, flags, false, trace_state);
                state.parent = parent_id;
                state.recording = None;
                if flags.is_sampled() {
                    let rec = state.recording.insert(new_recording());
                    attrs.record(&mut SpanFields::new(rec, &self.limits));
                }
            }
            None => {
                let rec = state.recording.insert(new_recording());
                attrs.record(&mut SpanFields::new(rec, &self.limits));
                let trace_id = self.ids.new_trace_id();
                let sampled = self.sampled(None, trace_id, rec);
                state.cx = SpanContext::new(
                    trace_id,
                    span_id,
                    flags(sampled),
                    false,
                    TraceState::default(),
                );
                state.parent = SpanId::INVALID;
            }
        }
    }

    /// `Span::record`: later values replace earlier ones.
    pub(crate) fn record(&self, state: &mut SpanState, values: &Record<'_>) {
        if let Some(rec) = state.recording.as_mut() {
            let mut fields = SpanFields::new(rec, &self.limits);
            fields.replace = true;
            values.record(&mut fields);
        }
    }

    /// The log record of `event`, emitted in the span `trace` refers to, if any.
    #[inline]
    pub(crate) fn log(&self, event: &Event<'_>, trace: Option<TraceRef>) {
        let Some(logs) = &self.logs else {
            return;
        };
        let meta = event.metadata();
        let mut item = LogItem {
            observed: SystemTime::now(),
            level: *meta.level(),
            target: meta.target(),
            name: meta.name(),
            body: None,
            attrs: LogAttrs::default(),
            trace,
        };
        event.record(&mut LogFields(&mut item));
        logs.push(item);
    }

    /// What an ERROR event adds to the span it is in (see [`Self::add_span_event`]); its
    /// fields are read before the span's state is locked, as they may log themselves.
    pub(crate) fn span_event(event: &Event<'_>) -> Option<SpanEvent> {
        let meta = event.metadata();
        if *meta.level() != Level::ERROR {
            return None;
        }
        let mut fields = EventFields {
            name: Cow::Borrowed(meta.name()),
            attributes: vec![
                KeyValue::new("level", meta.level().as_str()),
                KeyValue::new("target", meta.target()),
            ],
        };
        event.record(&mut fields);
        Some(SpanEvent {
            fields,
            time: SystemTime::now(),
        })
    }

    /// Marks the span failed and adds the event, within the span's limits.
    pub(crate) fn add_span_event(&self, state: &mut SpanState, event: SpanEvent) {
        let Some(rec) = state.recording.as_mut() else {
            return;
        };
        if rec.status == Status::Unset {
            rec.status = Status::error("");
        }
        if rec.events.len() >= self.limits.events_per_span as usize {
            rec.dropped_events += 1;
            return;
        }
        let SpanEvent {
            fields:
                EventFields {
                    name,
                    mut attributes,
                },
            time,
        } = event;
        let max = self.limits.attributes_per_event as usize;
        let dropped = attributes.len().saturating_sub(max) as u32;
        attributes.truncate(max);
        rec.events.push(opentelemetry::trace::Event::new(
            name, time, attributes, dropped,
        ));
    }

    /// A span closed: a sampled one is queued for export. (The recording is taken out of
    /// `state` where it lies: moving the state out first would copy it once more.)
    #[inline]
    pub(crate) fn end_span(&self, state: &mut SpanState) {
        if let (Some(spans), true) = (&self.spans, state.cx.is_sampled())
            && let Some(recording) = state.recording.take()
        {
            spans.push(FinishedSpan {
                cx: state.cx.clone(),
                parent: state.parent,
                parent_remote: state.parent_remote,
                recording,
                end: SystemTime::now(),
            });
        }
    }
}

/// An ERROR event, read and not yet added to its span.
pub(crate) struct SpanEvent {
    fields: EventFields,
    time: SystemTime,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for HotLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let parent = parent_of(attrs.parent(), attrs.is_contextual(), &ctx)
            .and_then(|p| p.extensions().get::<SpanState>().map(SpanState::as_parent));
        let state = self.start_span(attrs, parent);
        span.extensions_mut().insert(state);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(state) = span.extensions_mut().get_mut::<SpanState>()
        {
            self.record(state, values);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        let span = parent_of(event.parent(), event.is_contextual(), &ctx);
        let trace = span
            .as_ref()
            .and_then(|s| s.extensions().get::<SpanState>().map(SpanState::trace));
        self.log(event, trace);
        if let Some(span) = span
            && let Some(span_event) = Self::span_event(event)
            && let Some(state) = span.extensions_mut().get_mut::<SpanState>()
        {
            self.add_span_event(state, span_event);
        }
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        if let Some(span) = ctx.span(&id)
            && let Some(mut state) = span.extensions_mut().remove::<SpanState>()
        {
            self.end_span(&mut state);
        }
    }
}

/// A span's fields: the `otel.*` ones set name, kind and status, the rest are attributes.
struct SpanFields<'a> {
    rec: &'a mut Recording,
    max: usize,
    /// OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT.
    limit: Option<usize>,
    /// Later values of a key replace earlier ones (`Span::record`).
    replace: bool,
}

impl<'a> SpanFields<'a> {
    fn new(rec: &'a mut Recording, limits: &SpanLimitsConfig) -> Self {
        Self {
            rec,
            max: limits.attributes_per_span as usize,
            limit: limits.attribute_value_length,
            replace: false,
        }
    }

    #[inline(always)]
    fn attribute(&mut self, field: &Field, value: Plain<'_>) {
        let value = cut_value(value, self.limit);
        if self.replace {
            self.rec.attrs.set(field.name(), value, self.max);
        } else {
            self.rec.attrs.push(field.name(), value, self.max);
        }
    }

    /// A string field: one of the `otel.*` ones, applied, or an attribute.
    fn string(&mut self, field: &Field, value: &str) {
        let name = field.name();
        // Most fields are attributes: one byte tells them from the `otel.*` names.
        if !name.starts_with('o') {
            return self.attribute(field, Plain::Str(value));
        }
        match name {
            "otel.name" => self.rec.name = Name::Text(Text::from(value)),
            "otel.kind" => {
                if let Some(kind) = span_kind(value) {
                    self.rec.kind = kind;
                }
            }
            "otel.status_code" => self.rec.status = status(value),
            "otel.status_description" => self.rec.status = Status::error(value.to_owned()),
            _ => self.attribute(field, Plain::Str(value)),
        }
    }
}

fn span_kind(s: &str) -> Option<SpanKind> {
    [
        ("server", SpanKind::Server),
        ("client", SpanKind::Client),
        ("producer", SpanKind::Producer),
        ("consumer", SpanKind::Consumer),
        ("internal", SpanKind::Internal),
    ]
    .into_iter()
    .find_map(|(name, kind)| s.eq_ignore_ascii_case(name).then_some(kind))
}

fn status(s: &str) -> Status {
    if s.eq_ignore_ascii_case("ok") {
        Status::Ok
    } else if s.eq_ignore_ascii_case("error") {
        Status::error("")
    } else {
        Status::Unset
    }
}

/// `value` as Debug prints it (the rare paths: error events on spans).
fn debug_string(value: &dyn fmt::Debug) -> String {
    let mut s = String::new();
    let _ = write!(s, "{value:?}");
    s
}

/// `value` as Debug prints it, kept inline when short (`%x` and `?x` fields, messages).
fn debug_text(value: &dyn fmt::Debug) -> Text {
    let mut s = Text::new();
    let _ = write!(s, "{value:?}");
    s
}

impl Visit for SpanFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.string(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.string(field, &debug_text(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.attribute(field, Plain::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(v) => self.attribute(field, Plain::I64(v)),
            Err(_) => self.record_debug(field, &value),
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.attribute(field, Plain::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.attribute(field, Plain::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

/// An ERROR event's fields on its span: the message names the event.
struct EventFields {
    name: Cow<'static, str>,
    attributes: Vec<KeyValue>,
}

impl EventFields {
    fn push(&mut self, field: &Field, value: Value) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.name = Cow::Owned(value.to_owned()),
            _ => self.push(field, Value::String(value.to_owned().into())),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.name = Cow::Owned(debug_string(value)),
            _ => self.push(field, Value::String(debug_string(value).into())),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::I64(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Value::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Bool(value));
    }

    fn record_error(&mut self, _: &Field, value: &(dyn std::error::Error + 'static)) {
        self.attributes
            .push(KeyValue::new("exception.message", value.to_string()));
    }
}

/// An event's fields in its log record, as the appender bridge maps them.
struct LogFields<'a>(&'a mut LogItem);

impl LogFields<'_> {
    #[inline(always)]
    fn push(&mut self, key: &'static str, value: Plain<'_>) {
        self.0.attrs.push(key, value, usize::MAX);
    }
}

impl Visit for LogFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.0.body = Some(Text::from(value)),
            name => self.push(name, Plain::Str(value)),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = debug_text(value);
        match field.name() {
            "message" => self.0.body = Some(text),
            name => self.push(name, Plain::Str(&text)),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field.name(), Plain::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(v) => self.push(field.name(), Plain::I64(v)),
            Err(_) => self.record_debug(field, &value),
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field.name(), Plain::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field.name(), Plain::Bool(value));
    }

    fn record_error(&mut self, _: &Field, value: &(dyn std::error::Error + 'static)) {
        let text = debug_text(&format_args!("{value}"));
        self.push("exception.message", Plain::Str(&text));
    }
}

/// The severity number the appender bridge gives each level.
pub(crate) fn severity(level: Level) -> Severity {
    match level {
        Level::TRACE => Severity::Trace,
        Level::DEBUG => Severity::Debug,
        Level::INFO => Severity::Info,
        Level::WARN => Severity::Warn,
        Level::ERROR => Severity::Error,
    }
}
