//! The traces pillar, from Jaeger's query API: the trace by id (`/api/traces/{id}`), or a run's
//! traces by the `run_id` attribute of their `batch` spans (`/api/traces?service=invbot&tags=..`).
//! Judges the trace's shape (services, names and parent links), never its ids.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use names::{attr, service, span};
use opentelemetry_semantic_conventions::resource;
use serde::{Deserialize, Serialize};

use crate::http::Http;
use crate::report::{add_counts, counts};
use crate::{Backend, Pillar, QueryError, Scope, Target};

/// Most traces a run search returns; a run of the built-in sample has about 50 batches.
const RUN_TRACE_LIMIT: usize = 1000;

/// Client of Jaeger's query HTTP API.
#[derive(Debug, Clone)]
pub struct Jaeger {
    http: Http,
}

impl Jaeger {
    pub fn new(base: &str) -> Self {
        Self {
            http: Http::new(base),
        }
    }

    async fn traces(&self, scope: &Scope) -> Result<Vec<Trace>, QueryError> {
        let found: Option<Response> = match scope.target() {
            Target::Trace(id) => self.http.find(&format!("/api/traces/{id}"), &[]).await?,
            Target::Run(run_id) => {
                let window = scope.window();
                let tags = serde_json::json!({ attr::RUN_ID: run_id }).to_string();
                // `lookback` is only the UI's: the API takes start and end, in microseconds.
                let query = [
                    ("service", service::BOT.to_owned()),
                    ("tags", tags),
                    ("start", window.start.as_micros().to_string()),
                    ("end", window.end.as_micros().to_string()),
                    ("limit", RUN_TRACE_LIMIT.to_string()),
                ];
                self.http.find("/api/traces", &query).await?
            }
        };
        Ok(found.and_then(|r| r.data).unwrap_or_default())
    }
}

impl Backend for Jaeger {
    const NAME: &'static str = "Jaeger";
    type Report = TracesReport;

    async fn check(&self, scope: &Scope) -> Result<TracesReport, QueryError> {
        let details = self
            .traces(scope)
            .await?
            .iter()
            .map(TraceDetail::new)
            .collect();
        Ok(TracesReport::new(scope.target(), details))
    }
}

/// The traces pillar: each trace Jaeger has for the target.
#[derive(Debug, Clone, Serialize)]
pub struct TracesReport {
    pub target: Target,
    pub traces: Vec<TraceSummary>,
    /// Every span of those traces, as Jaeger has them: what `invbot report` draws (left out of
    /// `verify --json`).
    #[serde(skip)]
    pub details: Vec<TraceDetail>,
}

impl TracesReport {
    fn new(target: &Target, details: Vec<TraceDetail>) -> Self {
        Self {
            target: target.clone(),
            traces: details.iter().map(TraceSummary::new).collect(),
            details,
        }
    }
}

/// One trace, every span of it.
#[derive(Debug, Clone, Serialize)]
pub struct TraceDetail {
    pub trace_id: String,
    /// In Jaeger's order (not sorted).
    pub spans: Vec<SpanDetail>,
    /// Each service's `service.instance.id`s (process tags).
    pub instances: BTreeMap<String, BTreeSet<String>>,
}

/// One span, its tags as strings.
#[derive(Debug, Clone, Serialize)]
pub struct SpanDetail {
    pub span_id: String,
    /// The span's `CHILD_OF` reference, which may not be in Jaeger.
    pub parent_id: Option<String>,
    pub service: String,
    pub name: String,
    /// `span.kind` (`client`, `server`, ...; `internal` when Jaeger has none).
    pub kind: String,
    /// Microseconds since the Unix epoch.
    pub start_us: u64,
    pub duration_us: u64,
    /// Status Error.
    pub error: bool,
    /// The span's own tags, without those Jaeger adds for kind and status.
    pub attributes: Vec<(String, String)>,
}

impl SpanDetail {
    pub fn end_us(&self) -> u64 {
        self.start_us + self.duration_us
    }
}

/// Tags that say again what [`SpanDetail`]'s own fields say.
const SPAN_FIELD_TAGS: [&str; 4] = [
    "span.kind",
    "error",
    "otel.status_code",
    "internal.span.format",
];

impl TraceDetail {
    fn new(trace: &Trace) -> Self {
        let service_of = |process_id: &str| {
            trace
                .processes
                .get(process_id)
                .map_or("", |p| p.service_name.as_str())
        };
        let spans = trace
            .spans
            .iter()
            .map(|s| SpanDetail {
                span_id: s.span_id.clone(),
                parent_id: s.parent().map(str::to_owned),
                service: service_of(&s.process_id).to_owned(),
                name: s.operation_name.clone(),
                kind: s
                    .tags
                    .iter()
                    .find(|t| t.key == "span.kind")
                    .map_or_else(|| "internal".to_owned(), Tag::text),
                start_us: s.start_time,
                duration_us: s.duration,
                error: s.is_error(),
                attributes: s
                    .tags
                    .iter()
                    .filter(|t| !SPAN_FIELD_TAGS.contains(&t.key.as_str()))
                    .map(|t| (t.key.clone(), t.text()))
                    .collect(),
            })
            .collect();
        let mut instances: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for process in trace.processes.values() {
            if let Some(id) = process.instance_id() {
                instances
                    .entry(process.service_name.clone())
                    .or_default()
                    .insert(id.to_owned());
            }
        }
        Self {
            trace_id: trace.trace_id.clone(),
            spans,
            instances,
        }
    }
}

/// The shape of one trace.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TraceSummary {
    pub trace_id: String,
    pub span_count: usize,
    /// Spans per service.
    pub services: BTreeMap<String, usize>,
    /// Each service's `service.instance.id`s (process tags), which tie Prometheus series to it.
    pub instances: BTreeMap<String, BTreeSet<String>>,
    /// Spans per name.
    pub span_names: BTreeMap<String, usize>,
    /// Names of the spans without a parent: a whole batch trace has one, `batch`.
    pub roots: Vec<String>,
    /// Spans whose parent is not (or not yet) in Jaeger.
    pub orphans: usize,
    /// Spans whose parent is a span of another service: at least one when the trace context
    /// crossed the HTTP hop from the bot to the API.
    pub cross_service_links: usize,
    /// Spans with status Error.
    pub error_spans: usize,
    /// Start of the first span and end of the last, in microseconds since the Unix epoch.
    pub start_us: u64,
    pub end_us: u64,
}

impl TraceSummary {
    fn new(trace: &TraceDetail) -> Self {
        let by_id: HashMap<&str, &SpanDetail> = trace
            .spans
            .iter()
            .map(|s| (s.span_id.as_str(), s))
            .collect();
        let mut summary = Self {
            trace_id: trace.trace_id.clone(),
            span_count: trace.spans.len(),
            instances: trace.instances.clone(),
            start_us: trace.spans.iter().map(|s| s.start_us).min().unwrap_or(0),
            end_us: trace
                .spans
                .iter()
                .map(SpanDetail::end_us)
                .max()
                .unwrap_or(0),
            ..Self::default()
        };
        for s in &trace.spans {
            *summary.services.entry(s.service.clone()).or_default() += 1;
            *summary.span_names.entry(s.name.clone()).or_default() += 1;
            summary.error_spans += usize::from(s.error);
            match s.parent_id.as_deref().map(|p| by_id.get(p)) {
                None => summary.roots.push(s.name.clone()),
                Some(None) => summary.orphans += 1,
                Some(Some(parent)) => {
                    summary.cross_service_links += usize::from(parent.service != s.service);
                }
            }
        }
        summary.roots.sort();
        summary
    }

    fn missing(&self, out: &mut Vec<String>) {
        let id = &self.trace_id;
        for svc in [service::BOT, service::API] {
            if !self.services.contains_key(svc) {
                out.push(format!("traces: trace {id} has no spans of {svc}"));
            }
        }
        if self.cross_service_links == 0 {
            out.push(format!(
                "traces: trace {id} has no parent link across services (no span is the child of \
                 another service's span)"
            ));
        }
        if self.roots != [span::BATCH] {
            out.push(format!(
                "traces: trace {id} has root spans [{}], expected one `{}`",
                self.roots.join(", "),
                span::BATCH
            ));
        }
        if self.orphans > 0 {
            out.push(format!(
                "traces: trace {id} has {} spans whose parent is not in Jaeger",
                self.orphans
            ));
        }
    }
}

impl Pillar for TracesReport {
    const NAME: &'static str = "traces";

    fn missing(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.traces.is_empty() {
            out.push(match &self.target {
                Target::Trace(id) => format!("traces: Jaeger has no trace {id}"),
                Target::Run(run_id) => format!(
                    "traces: Jaeger has no {} trace with {}={run_id}",
                    service::BOT,
                    attr::RUN_ID
                ),
            });
        }
        for trace in &self.traces {
            trace.missing(&mut out);
        }
        out
    }
}

/// All traces together: one line of counts, one of span names.
impl fmt::Display for TracesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.traces.is_empty() {
            return f.write_str("no trace found");
        }
        let mut total = TraceSummary::default();
        for t in &self.traces {
            total.span_count += t.span_count;
            total.cross_service_links += t.cross_service_links;
            total.error_spans += t.error_spans;
            add_counts(&mut total.services, &t.services);
            add_counts(&mut total.span_names, &t.span_names);
        }
        writeln!(
            f,
            "{} trace(s), {} spans; services {}; {} parent links cross services; {} error spans",
            self.traces.len(),
            total.span_count,
            counts(&total.services),
            total.cross_service_links,
            total.error_spans
        )?;
        write!(f, "span names: {}", counts(&total.span_names))
    }
}

// Jaeger's answers: only the fields the checks read.

#[derive(Debug, Deserialize)]
struct Response {
    /// `null` in the 404 answer for an unknown trace.
    data: Option<Vec<Trace>>,
}

#[derive(Debug, Deserialize)]
struct Trace {
    #[serde(rename = "traceID")]
    trace_id: String,
    spans: Vec<Span>,
    processes: HashMap<String, Process>,
}

#[derive(Debug, Deserialize)]
struct Span {
    #[serde(rename = "spanID")]
    span_id: String,
    #[serde(rename = "operationName")]
    operation_name: String,
    #[serde(default)]
    references: Vec<Reference>,
    /// Microseconds since the Unix epoch.
    #[serde(rename = "startTime")]
    start_time: u64,
    /// Microseconds.
    duration: u64,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(rename = "processID")]
    process_id: String,
}

impl Span {
    fn parent(&self) -> Option<&str> {
        self.references
            .iter()
            .find(|r| r.ref_type == "CHILD_OF")
            .map(|r| r.span_id.as_str())
    }

    /// Jaeger shows an OTel Error status as the tags `error=true` and `otel.status_code=ERROR`.
    fn is_error(&self) -> bool {
        self.tags.iter().any(|t| {
            (t.key == "error" && t.value == true)
                || (t.key == "otel.status_code" && t.value == "ERROR")
        })
    }
}

#[derive(Debug, Deserialize)]
struct Reference {
    #[serde(rename = "refType")]
    ref_type: String,
    #[serde(rename = "spanID")]
    span_id: String,
}

#[derive(Debug, Deserialize)]
struct Process {
    #[serde(rename = "serviceName")]
    service_name: String,
    #[serde(default)]
    tags: Vec<Tag>,
}

impl Process {
    fn instance_id(&self) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.key == resource::SERVICE_INSTANCE_ID)
            .and_then(|t| t.value.as_str())
    }
}

/// A span or process tag; its value is a string, bool, integer or float by the tag's `type`.
#[derive(Debug, Deserialize)]
struct Tag {
    key: String,
    value: serde_json::Value,
}

impl Tag {
    /// The value as text: a string as it is, anything else in JSON.
    fn text(&self) -> String {
        match &self.value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}
