//! An in-process OTLP/gRPC receiver for tests and benchmarks.
//!
//! It serves the real OTLP trace, logs and metrics services (the opentelemetry-proto tonic
//! definitions) on `127.0.0.1:0` and records every request, so tests can assert on exactly what
//! the exporters put on the wire.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
pub use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
pub use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
pub use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
pub use opentelemetry_proto::tonic::logs::v1::LogRecord;
pub use opentelemetry_proto::tonic::metrics::v1::{
    Metric, metric, number_data_point as metric_value,
};
pub use opentelemetry_proto::tonic::resource::v1::Resource;
pub use opentelemetry_proto::tonic::trace::v1::Span;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

/// Everything the receiver has been sent, in arrival order.
#[derive(Debug, Default)]
pub struct Received {
    pub traces: Vec<ExportTraceServiceRequest>,
    pub logs: Vec<ExportLogsServiceRequest>,
    pub metrics: Vec<ExportMetricsServiceRequest>,
}

/// A span together with the resource it was exported under.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub resource: Resource,
    pub scope: String,
    pub span: Span,
}

/// A log record together with the resource it was exported under.
#[derive(Debug, Clone)]
pub struct ReceivedLog {
    pub resource: Resource,
    pub record: LogRecord,
}

impl Received {
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let mut out = Vec::new();
        for rs in self.traces.iter().flat_map(|r| &r.resource_spans) {
            let resource = rs.resource.clone().unwrap_or_default();
            for ss in &rs.scope_spans {
                let scope = ss
                    .scope
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                out.extend(ss.spans.iter().map(|span| ReceivedSpan {
                    resource: resource.clone(),
                    scope: scope.clone(),
                    span: span.clone(),
                }));
            }
        }
        out
    }

    pub fn log_records(&self) -> Vec<ReceivedLog> {
        let mut out = Vec::new();
        for rl in self.logs.iter().flat_map(|r| &r.resource_logs) {
            let resource = rl.resource.clone().unwrap_or_default();
            out.extend(
                rl.scope_logs
                    .iter()
                    .flat_map(|sl| &sl.log_records)
                    .map(|record| ReceivedLog {
                        resource: resource.clone(),
                        record: record.clone(),
                    }),
            );
        }
        out
    }

    /// Every metric data item received, with its resource; a metric exported N times appears N times.
    pub fn metrics(&self) -> Vec<(Resource, Metric)> {
        let mut out = Vec::new();
        for rm in self.metrics.iter().flat_map(|r| &r.resource_metrics) {
            let resource = rm.resource.clone().unwrap_or_default();
            out.extend(
                rm.scope_metrics
                    .iter()
                    .flat_map(|sm| &sm.metrics)
                    .map(|m| (resource.clone(), m.clone())),
            );
        }
        out
    }
}

/// Looks up a string, int, double or bool attribute and renders it as a string.
pub fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    let value = attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    Some(match value.value.as_ref()? {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    })
}

/// Renders a trace or span id as the lowercase hex that W3C traceparent and log files use.
pub fn hex_id(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

type Store = Arc<Mutex<Received>>;

#[derive(Clone)]
struct Services(Store);

impl Services {
    fn store(&self) -> MutexGuard<'_, Received> {
        // A panicking test thread must not hide what was received from the others.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[tonic::async_trait]
impl TraceService for Services {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.store().traces.push(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Services {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.store().logs.push(request.into_inner());
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Services {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.store().metrics.push(request.into_inner());
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub struct OtlpSink {
    addr: SocketAddr,
    store: Store,
    stop: Option<oneshot::Sender<()>>,
}

impl OtlpSink {
    /// Binds 127.0.0.1:0 and serves the three OTLP services on the current tokio runtime.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let store = Store::default();
        let services = Services(store.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(services.clone()))
                .add_service(LogsServiceServer::new(services.clone()))
                .add_service(MetricsServiceServer::new(services))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        Ok(Self {
            addr,
            store,
            stop: Some(stop),
        })
    }

    /// The endpoint to give an OTLP exporter, with its scheme.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A snapshot of what has arrived so far.
    pub fn received(&self) -> MutexGuard<'_, Received> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets everything received so far (benchmarks call this between runs to bound memory).
    pub fn clear(&self) {
        *self.received() = Received::default();
    }

    /// Polls until `done` holds for what has arrived, or the deadline passes; returns whether it held.
    pub async fn wait_until(&self, deadline: Duration, done: impl Fn(&Received) -> bool) -> bool {
        poll_until(deadline, || done(&self.received())).await
    }
}

/// Polls `done` every 20 ms until it holds or `deadline` passes.
pub async fn poll_until(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Runs `f` on a fresh multi-thread runtime; a convenience for `harness = false` tests.
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(f)
}
