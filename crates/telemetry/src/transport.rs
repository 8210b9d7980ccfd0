//! Our sender of encoded OTLP export requests, as a [`SignalExport`] describes it: gRPC (tonic's
//! channel, the request written as one gRPC message without a codec's copy of it) or OTLP/HTTP
//! with protobuf (hyper, each request run on the tokio runtime the library was set
//! up in: the sending threads are plain threads, where hyper has no reactor), headers, gzip, and
//! TLS with rustls (ring) when the endpoint is `https://`: the given CA or the system's roots,
//! a client certificate if given.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::ExporterBuildError;
use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
use opentelemetry_sdk::error::OTelSdkError::InternalFailure;
use opentelemetry_sdk::error::OTelSdkResult;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::{Code, Status};

use crate::export::Signal;
use crate::{Compression, SignalExport, TlsFiles};

fn invalid(reason: impl std::fmt::Display) -> ExporterBuildError {
    ExporterBuildError::InvalidConfiguration(reason.to_string())
}

/// `c`'s headers (OTEL_EXPORTER_OTLP_HEADERS), as a request carries them.
fn header_map(c: &SignalExport) -> Result<http::HeaderMap, ExporterBuildError> {
    c.headers
        .iter()
        .map(|(k, v)| {
            // Checked when the configuration was read.
            let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(invalid)?;
            let value = http::HeaderValue::from_str(v.expose())
                .map_err(|_| invalid(format!("the value of header {k:?} is not valid")))?;
            Ok((name, value))
        })
        .collect()
}

fn tonic_tls(tls: &TlsFiles) -> ClientTlsConfig {
    let config = match &tls.certificate {
        Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca.pem())),
        None => ClientTlsConfig::new().with_native_roots(),
    };
    match &tls.client {
        Some((cert, key)) => config.identity(Identity::from_pem(cert.pem(), key.pem())),
        None => config,
    }
}

/// The HTTP client of `c`: hyper over TCP, with rustls when the endpoint is `https://`.
fn http_client(c: &SignalExport) -> Result<OnRuntime<dyn HttpClient>, ExporterBuildError> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| invalid("OTLP/HTTP needs a tokio runtime"))?;
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    let client: Arc<dyn HttpClient> = if c.uses_tls() {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(rustls_config(&c.tls)?)
            .https_only()
            .enable_http1()
            .wrap_connector(connector);
        Arc::new(HyperClient::new(https, c.timeout, None))
    } else {
        Arc::new(HyperClient::new(connector, c.timeout, None))
    };
    Ok(OnRuntime {
        inner: client,
        runtime,
    })
}

/// An HTTP client whose requests run on `runtime`, whichever thread awaits them.
#[derive(Debug)]
pub(crate) struct OnRuntime<C: ?Sized> {
    inner: Arc<C>,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl<C: HttpClient + ?Sized + 'static> HttpClient for OnRuntime<C> {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let inner = self.inner.clone();
        self.runtime
            .spawn(async move { inner.send_bytes(request).await })
            .await?
    }
}

/// The rustls configuration of an OTLP/HTTP client: the same trust as [`tonic_tls`] (the given CA,
/// else the system's roots) and client certificate, with ring as the crypto provider.
fn rustls_config(tls: &TlsFiles) -> Result<rustls::ClientConfig, ExporterBuildError> {
    let mut roots = rustls::RootCertStore::empty();
    match &tls.certificate {
        Some(ca) => {
            for cert in CertificateDer::pem_slice_iter(ca.pem()) {
                let cert = cert.map_err(|e| invalid(format!("{}: {e}", ca.path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| invalid(format!("{}: {e}", ca.path.display())))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            if native.certs.is_empty() {
                return Err(invalid(
                    "no system root certificates found: set OTEL_EXPORTER_OTLP_CERTIFICATE",
                ));
            }
            roots.add_parsable_certificates(native.certs);
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(invalid)?
    .with_root_certificates(roots);
    match &tls.client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.pem())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(format!("{}: {e}", cert.path.display())))?;
            let key = PrivateKeyDer::from_pem_slice(key.pem())
                .map_err(|_| invalid(format!("{}: not a private key", key.path.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| invalid(format!("client certificate {}: {e}", cert.path.display())))
        }
    }
}

/// The gRPC method that takes `signal`'s export requests.
fn grpc_path(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    }
}

/// Sends encoded OTLP export requests (see hotpath/otlp.rs) over the transport `c` names, with
/// its headers, compression, timeout and TLS: what the SDK's exporters do after encoding.
#[derive(Debug)]
pub(crate) enum Sender {
    Grpc {
        channel: tonic::transport::Channel,
        path: http::uri::PathAndQuery,
        /// The configured headers and gRPC's own.
        headers: http::HeaderMap,
        gzip: bool,
    },
    Http {
        client: OnRuntime<dyn HttpClient>,
        url: String,
        headers: http::HeaderMap,
        gzip: bool,
    },
}

impl Sender {
    /// Needs the tokio runtime (the gRPC channel's worker runs on it).
    pub(crate) fn new(c: &SignalExport, signal: Signal) -> Result<Self, ExporterBuildError> {
        let headers = header_map(c)?;
        Ok(match c.protocol {
            crate::Protocol::Grpc => {
                let mut endpoint = tonic::transport::Endpoint::from_shared(c.url())
                    .map_err(invalid)?
                    .timeout(c.timeout)
                    .connect_timeout(c.timeout);
                if c.uses_tls() {
                    endpoint = endpoint.tls_config(tonic_tls(&c.tls)).map_err(invalid)?;
                }
                let gzip = c.compression == Compression::Gzip;
                Self::Grpc {
                    channel: endpoint.connect_lazy(),
                    path: http::uri::PathAndQuery::from_static(grpc_path(signal)),
                    headers: grpc_headers(headers, c.timeout, gzip),
                    gzip,
                }
            }
            crate::Protocol::HttpProtobuf => Self::Http {
                client: http_client(c)?,
                url: c.url(),
                headers,
                gzip: c.compression == Compression::Gzip,
            },
        })
    }

    /// One export request; an error says what the collector answered, in the words
    /// export.rs' `AUTH_REFUSALS` recognises.
    pub(crate) async fn send(&self, body: Bytes) -> OTelSdkResult {
        match self {
            Self::Grpc {
                channel,
                path,
                headers,
                gzip,
            } => grpc_export(channel.clone(), path, headers, *gzip, body)
                .await
                .map_err(|s| {
                    InternalFailure(format!(
                        "export failed: gRPC code: {:?}, message: {}",
                        s.code(),
                        s.message()
                    ))
                }),
            Self::Http {
                client,
                url,
                headers,
                gzip,
            } => {
                let mut builder = http::Request::post(url.as_str())
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf");
                let body = if *gzip {
                    builder = builder.header(http::header::CONTENT_ENCODING, "gzip");
                    gzipped(&body)
                        .map_err(|e| InternalFailure(format!("gzip: {e}")))?
                        .into()
                } else {
                    body
                };
                let mut request = builder
                    .body(body)
                    .map_err(|e| InternalFailure(e.to_string()))?;
                request.headers_mut().extend(headers.clone());
                let response = client
                    .send_bytes(request)
                    .await
                    .map_err(|e| InternalFailure(format!("OTLP/HTTP request to {url}: {e}")))?;
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(InternalFailure(format!(
                        "OTLP/HTTP export failed: status code: {}",
                        status.as_u16()
                    )))
                }
            }
        }
    }
}

fn gzipped(body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body)?;
    gz.finish()
}

/// The headers of every gRPC export request: `headers` (the configured ones), then gRPC's, as
/// tonic's client sets them.
fn grpc_headers(
    mut headers: http::HeaderMap,
    timeout: std::time::Duration,
    gzip: bool,
) -> http::HeaderMap {
    use http::header::{CONTENT_TYPE, HeaderValue, TE};
    headers.insert(TE, HeaderValue::from_static("trailers"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    // At most 8 digits (gRPC's limit), in milliseconds.
    let millis = timeout.as_millis().min(99_999_999);
    if let Ok(value) = HeaderValue::from_str(&format!("{millis}m")) {
        headers.insert("grpc-timeout", value);
    }
    // The collector (grpc-go) gzips its answer to a gzipped request, whatever the request
    // accepts; only the e2e auth check against it shows this.
    headers.insert("grpc-accept-encoding", HeaderValue::from_static("gzip"));
    if gzip {
        headers.insert("grpc-encoding", HeaderValue::from_static("gzip"));
    }
    headers
}

/// One unary gRPC call of `path` with `message` (protobuf, encoded already) on `channel`: its
/// answer is read to its trailers and only its status kept (an export's partial success is not
/// read, as the SDK's exporter does not).
async fn grpc_export(
    mut channel: tonic::transport::Channel,
    path: &http::uri::PathAndQuery,
    headers: &http::HeaderMap,
    gzip: bool,
    message: Bytes,
) -> Result<(), Status> {
    use http_body_util::BodyExt as _;
    use tower::{Service as _, ServiceExt as _};
    let message: Bytes = if gzip {
        gzipped(&message)
            .map_err(|e| Status::internal(format!("gzip: {e}")))?
            .into()
    } else {
        message
    };
    let length = u32::try_from(message.len())
        .map_err(|_| Status::resource_exhausted("an export request past 4 GiB"))?;
    let mut prefix = [0; 5];
    prefix[0] = u8::from(gzip);
    prefix[1..].copy_from_slice(&length.to_be_bytes());
    let mut request = http::Request::post(http::Uri::from(path.clone()))
        .version(http::Version::HTTP_2)
        .body(tonic::body::Body::new(GrpcMessage([
            Some(Bytes::copy_from_slice(&prefix)),
            Some(message),
        ])))
        .map_err(|e| Status::internal(e.to_string()))?;
    *request.headers_mut() = headers.clone();
    let channel = channel
        .ready()
        .await
        .map_err(|e| Status::unavailable(format!("gRPC channel: {e}")))?;
    let response = channel
        .call(request)
        .await
        .map_err(|e| Status::from_error(e.into()))?;
    // A refusal often comes as headers alone ("trailers-only").
    if let Some(status) = Status::from_header_map(response.headers()) {
        return ok_or(status);
    }
    let http_status = response.status();
    let answer = response
        .into_body()
        .collect()
        .await
        .map_err(|e| Status::from_error(e.into()))?;
    match answer.trailers().and_then(Status::from_header_map) {
        Some(status) => ok_or(status),
        None => Err(Status::new(
            code_of_http(http_status),
            format!("no grpc-status in the answer (HTTP status {http_status})"),
        )),
    }
}

fn ok_or(status: Status) -> Result<(), Status> {
    if status.code() == Code::Ok {
        Ok(())
    } else {
        Err(status)
    }
}

/// The gRPC code of an answer without one, from its HTTP status (gRPC's
/// http-grpc-status-mapping.md).
fn code_of_http(status: http::StatusCode) -> Code {
    use http::StatusCode as S;
    match status {
        S::BAD_REQUEST => Code::Internal,
        S::UNAUTHORIZED => Code::Unauthenticated,
        S::FORBIDDEN => Code::PermissionDenied,
        S::NOT_FOUND => Code::Unimplemented,
        S::TOO_MANY_REQUESTS | S::BAD_GATEWAY | S::SERVICE_UNAVAILABLE | S::GATEWAY_TIMEOUT => {
            Code::Unavailable
        }
        _ => Code::Unknown,
    }
}

/// A gRPC message as a request body: its 5-byte prefix, then the message itself, each a frame of
/// its own, so the message is sent from the encoder's buffer as it is.
struct GrpcMessage([Option<Bytes>; 2]);

impl http_body::Body for GrpcMessage {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let next = self.get_mut().0.iter_mut().find_map(Option::take);
        Poll::Ready(next.map(|data| Ok(http_body::Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let len = self.0.iter().flatten().map(|b| b.len() as u64).sum();
        http_body::SizeHint::with_exact(len)
    }
}

/// What the sender's errors say when the collector may take the request later: unavailable
/// (restarting, not listening yet), overloaded, too slow, or the connection lost; the words of
/// [`Sender::send`].
const TRANSIENT: [&str; 12] = [
    "gRPC code: Unavailable",
    // The connection lost mid-request (tonic's words): the collector may not have it.
    "gRPC code: Unknown, message: transport error",
    "gRPC code: DeadlineExceeded",
    "gRPC code: ResourceExhausted",
    "gRPC code: Aborted",
    "gRPC code: Cancelled",
    "gRPC channel:",
    "OTLP/HTTP request to",
    "status code: 429",
    "status code: 502",
    "status code: 503",
    "status code: 504",
];

pub(crate) fn transient(error: &opentelemetry_sdk::error::OTelSdkError) -> bool {
    let text = error.to_string();
    TRANSIENT.iter().any(|t| text.contains(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[tokio::test]
    async fn a_grpc_message_is_its_prefix_then_the_message_unchanged() {
        let message = Bytes::from_static(b"protobuf");
        let mut body = GrpcMessage([
            Some(Bytes::from_static(&[0, 0, 0, 0, 8])),
            Some(message.clone()),
        ]);
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(13));
        let first = body
            .frame()
            .await
            .and_then(Result::ok)
            .and_then(|f| f.into_data().ok());
        assert_eq!(first.as_deref(), Some(&[0, 0, 0, 0, 8][..]));
        let second = body
            .frame()
            .await
            .and_then(Result::ok)
            .and_then(|f| f.into_data().ok());
        // The encoder's bytes themselves, not a copy.
        assert_eq!(second.map(|b| b.as_ptr()), Some(message.as_ptr()));
        assert!(http_body::Body::is_end_stream(&body));
        assert!(body.frame().await.is_none());
    }

    #[test]
    fn answers_without_a_grpc_status_are_mapped_as_grpc_maps_http_statuses() {
        let code = |status: u16| code_of_http(http::StatusCode::from_u16(status).unwrap());
        assert_eq!(code(401), Code::Unauthenticated);
        assert_eq!(code(503), Code::Unavailable);
        assert_eq!(code(429), Code::Unavailable);
        assert_eq!(code(404), Code::Unimplemented);
        assert_eq!(code(200), Code::Unknown);
    }

    #[test]
    fn grpc_headers_keep_the_configured_ones_and_add_grpcs() {
        let mut configured = http::HeaderMap::new();
        configured.insert("authorization", "Bearer t".parse().unwrap());
        let headers = grpc_headers(configured, std::time::Duration::from_secs(10), true);
        assert_eq!(headers["authorization"], "Bearer t");
        assert_eq!(headers["content-type"], "application/grpc");
        assert_eq!(headers["te"], "trailers");
        assert_eq!(headers["grpc-timeout"], "10000m");
        assert_eq!(headers["grpc-encoding"], "gzip");
    }
}
