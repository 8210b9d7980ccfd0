//! Our sender of encoded OTLP export requests, as a [`SignalExport`] describes it: gRPC (tonic)
//! or OTLP/HTTP with protobuf (hyper, each request run on the tokio runtime the library was set
//! up in: the sending threads are plain threads, where hyper has no reactor), headers, gzip, and
//! TLS with rustls (ring) when the endpoint is `https://`: the given CA or the system's roots,
//! a client certificate if given.

use std::sync::Arc;

use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::ExporterBuildError;
use opentelemetry_otlp::tonic_types::metadata::MetadataMap;
use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

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
        grpc: tonic::client::Grpc<tonic::transport::Channel>,
        path: http::uri::PathAndQuery,
        headers: http::HeaderMap,
        timeout: std::time::Duration,
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
                // The collector (grpc-go) gzips its answer to a gzipped request, whatever the
                // request accepts; only the e2e auth check against it shows this.
                let mut grpc = tonic::client::Grpc::new(endpoint.connect_lazy())
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
                if c.compression == Compression::Gzip {
                    grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                Self::Grpc {
                    grpc,
                    path: http::uri::PathAndQuery::from_static(grpc_path(signal)),
                    headers,
                    timeout: c.timeout,
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
    pub(crate) async fn send(&self, body: Bytes) -> opentelemetry_sdk::error::OTelSdkResult {
        use opentelemetry_sdk::error::OTelSdkError::InternalFailure;
        match self {
            Self::Grpc {
                grpc,
                path,
                headers,
                timeout,
            } => {
                let mut grpc = grpc.clone();
                grpc.ready()
                    .await
                    .map_err(|e| InternalFailure(format!("gRPC channel: {e}")))?;
                let mut request = tonic::Request::new(body);
                *request.metadata_mut() = MetadataMap::from_headers(headers.clone());
                request.set_timeout(*timeout);
                grpc.unary::<_, Bytes, _>(request, path.clone(), RawCodec)
                    .await
                    .map(drop)
                    .map_err(|s| {
                        InternalFailure(format!(
                            "export failed: gRPC code: {:?}, message: {}",
                            s.code(),
                            s.message()
                        ))
                    })
            }
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

/// Sends and takes protobuf bytes as they are: the request is encoded already, and the answer
/// (partial success) is not read.
#[derive(Debug, Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        Self
    }

    fn decoder(&mut self) -> Self {
        Self
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        use bytes::Buf as _;
        Ok(Some(src.copy_to_bytes(src.remaining())))
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
