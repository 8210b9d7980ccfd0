//! An in-process OTLP receiver for tests and benchmarks.
//!
//! It serves the real OTLP trace, logs and metrics services on `127.0.0.1:0`, over gRPC (the
//! opentelemetry-proto tonic definitions, gzip accepted) and OTLP/HTTP with protobuf
//! (`/v1/traces`, `/v1/logs`, `/v1/metrics`, gzip bodies accepted) on the same port, optionally
//! over TLS ([`TestCa`] makes the certificates) and behind a bearer token. It records every
//! request and its headers, so tests can assert on exactly what the exporters put on the wire.

mod pki;

use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
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
pub use pki::{CertAndKey, TestCa};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{MethodRouter, post};
use axum::serve::ListenerExt as _;
use http::{HeaderMap, StatusCode, header};
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
use rustls_pki_types::pem::PemObject;
use tokio::sync::oneshot;
use tonic::codec::CompressionEncoding;
use tonic::{Request as GrpcRequest, Response, Status};

/// One request as it arrived: its path and its headers (names lowercase).
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl RequestInfo {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether this was an OTLP/gRPC call (else OTLP/HTTP).
    pub fn is_grpc(&self) -> bool {
        grpc_content_type(self.header("content-type"))
    }
}

fn grpc_content_type(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|t| t.starts_with("application/grpc"))
}

fn request_is_grpc(request: &Request) -> bool {
    let content_type = request.headers().get(http::header::CONTENT_TYPE);
    grpc_content_type(content_type.and_then(|v| v.to_str().ok()))
}

/// Everything the receiver has been sent, in arrival order.
#[derive(Debug, Default)]
pub struct Received {
    pub traces: Vec<ExportTraceServiceRequest>,
    pub logs: Vec<ExportLogsServiceRequest>,
    pub metrics: Vec<ExportMetricsServiceRequest>,
    /// Every request, accepted or refused, in arrival order.
    pub requests: Vec<RequestInfo>,
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

fn lock(store: &Store) -> MutexGuard<'_, Received> {
    // A panicking test thread must not hide what was received from the others.
    store.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Clone)]
struct Services(Store);

#[tonic::async_trait]
impl TraceService for Services {
    async fn export(
        &self,
        request: GrpcRequest<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        lock(&self.0).traces.push(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Services {
    async fn export(
        &self,
        request: GrpcRequest<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        lock(&self.0).logs.push(request.into_inner());
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Services {
    async fn export(
        &self,
        request: GrpcRequest<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        lock(&self.0).metrics.push(request.into_inner());
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// How the receiver serves: plain or TLS, open or behind a token.
#[derive(Debug, Clone, Default)]
pub struct SinkOptions {
    /// Serve TLS with this certificate; with `client_ca` as well, require a client certificate
    /// it signed (mutual TLS).
    pub tls: Option<CertAndKey>,
    pub client_ca: Option<String>,
    /// Accept only requests with `authorization: Bearer <token>`; refuse others as a collector's
    /// bearertokenauth does (gRPC Unauthenticated, HTTP 401).
    pub bearer_token: Option<String>,
    /// Where to listen (a receiver started again where one was); 127.0.0.1:0 by default.
    pub addr: Option<std::net::SocketAddr>,
}

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub struct OtlpSink {
    addr: SocketAddr,
    tls: bool,
    store: Store,
    stop: Option<oneshot::Sender<()>>,
    /// Set when dropped: a connection still open answers as a collector that is going away.
    gone: Arc<AtomicBool>,
}

impl OtlpSink {
    /// Binds 127.0.0.1:0 and serves OTLP over plain gRPC and HTTP on the current tokio runtime.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(SinkOptions::default()).await
    }

    /// Binds 127.0.0.1:0 (or `options.addr`) and serves as `options` say.
    pub async fn start_with(options: SinkOptions) -> std::io::Result<Self> {
        let addr = options.addr.unwrap_or(([127, 0, 0, 1], 0).into());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let store = Store::default();
        let gone = Arc::new(AtomicBool::new(false));
        let app = router(store.clone(), options.bearer_token, gone.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        };
        let tls = match &options.tls {
            Some(identity) => {
                let acceptor = tls_acceptor(identity, options.client_ca.as_deref())?;
                let listener = TlsListener {
                    tcp: listener,
                    acceptor,
                };
                tokio::spawn(
                    axum::serve(listener, app)
                        .with_graceful_shutdown(stopped)
                        .into_future(),
                );
                true
            }
            None => {
                let listener = listener.tap_io(|tcp| no_delay(tcp));
                tokio::spawn(
                    axum::serve(listener, app)
                        .with_graceful_shutdown(stopped)
                        .into_future(),
                );
                false
            }
        };
        Ok(Self {
            addr,
            tls,
            store,
            stop: Some(stop),
            gone,
        })
    }

    /// The endpoint to give an OTLP exporter, with its scheme (as the general endpoint for
    /// OTLP/HTTP: the exporter appends `/v1/<signal>`).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// A snapshot of what has arrived so far.
    pub fn received(&self) -> MutexGuard<'_, Received> {
        lock(&self.store)
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

/// The gRPC services and the OTLP/HTTP routes behind one middleware that records each request
/// and checks the token.
fn router(store: Store, token: Option<String>, gone: Arc<AtomicBool>) -> axum::Router {
    let services = Services(store.clone());
    let grpc = tonic::service::Routes::new(
        TraceServiceServer::new(services.clone()).accept_compressed(CompressionEncoding::Gzip),
    )
    .add_service(
        LogsServiceServer::new(services.clone()).accept_compressed(CompressionEncoding::Gzip),
    )
    .add_service(MetricsServiceServer::new(services).accept_compressed(CompressionEncoding::Gzip))
    .into_axum_router();
    let http = axum::Router::new()
        .route("/v1/traces", otlp_http(|r, m| r.traces.push(m)))
        .route("/v1/logs", otlp_http(|r, m| r.logs.push(m)))
        .route("/v1/metrics", otlp_http(|r, m| r.metrics.push(m)))
        .with_state(store.clone());
    let expected = token.map(|t| format!("Bearer {t}"));
    grpc.merge(http).layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let store = store.clone();
            let expected = expected.clone();
            let gone = gone.clone();
            async move {
                if gone.load(Relaxed) {
                    // What a stopped collector's clients see on a connection still open.
                    return if request_is_grpc(&request) {
                        Status::unavailable("the receiver has stopped")
                            .into_http::<axum::body::Body>()
                            .into_response()
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE.into_response()
                    };
                }
                record_and_check(&store, expected.as_deref(), request, next).await
            }
        },
    ))
}

async fn record_and_check(
    store: &Store,
    expected: Option<&str>,
    request: Request,
    next: Next,
) -> HttpResponse {
    let info = RequestInfo {
        path: request.uri().path().to_owned(),
        headers: request
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    };
    let authorized = expected.is_none_or(|e| info.header("authorization") == Some(e));
    let grpc = info.is_grpc();
    lock(store).requests.push(info);
    match (authorized, grpc) {
        (true, _) => next.run(request).await,
        (false, true) => Status::unauthenticated("missing or wrong bearer token")
            .into_http::<axum::body::Body>()
            .into_response(),
        (false, false) => StatusCode::UNAUTHORIZED.into_response(),
    }
}

/// An OTLP/HTTP protobuf route whose decoded body `push` stores.
fn otlp_http<M: prost::Message + Default + 'static>(
    push: fn(&mut Received, M),
) -> MethodRouter<Store> {
    post(
        move |State(store): State<Store>, headers: HeaderMap, body: Bytes| async move {
            let gzip = headers
                .get(header::CONTENT_ENCODING)
                .is_some_and(|v| v == "gzip");
            let body = if gzip {
                let mut out = Vec::new();
                if flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut out)
                    .is_err()
                {
                    return (StatusCode::BAD_REQUEST, "bad gzip body").into_response();
                }
                Bytes::from(out)
            } else {
                body
            };
            match M::decode(body) {
                Ok(message) => {
                    push(&mut lock(&store), message);
                    // An empty Export*ServiceResponse encodes as zero bytes.
                    (
                        [(header::CONTENT_TYPE, "application/x-protobuf")],
                        Bytes::new(),
                    )
                        .into_response()
                }
                Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
            }
        },
    )
}

fn tls_acceptor(
    identity: &CertAndKey,
    client_ca: Option<&str>,
) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = |pem: &str| {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs(ca)? {
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| bad(e.to_string()))?;
    let mut config = builder
        .with_single_cert(certs(&identity.cert_pem)?, key)
        .map_err(|e| bad(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// TCP connections that completed a TLS handshake; failed handshakes (a client that does not
/// trust the server, or has no client certificate) are dropped, within a bounded wait.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            no_delay(&tcp);
            let handshake = self.acceptor.accept(tcp);
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), handshake).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Answers go out at once, as a collector's do (Go sets TCP_NODELAY on every connection): with
/// Nagle's algorithm on, a small answer written in parts waits for the client's delayed ACK,
/// about 40 ms a request.
fn no_delay(tcp: &tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
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
        self.gone.store(true, Relaxed);
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
