//! The OTLP exporters' transports as a [`SignalExport`] describes them: gRPC (tonic) or
//! OTLP/HTTP with protobuf (hyper, each request run on the tokio runtime the library was set up
//! in: the batch processors export from threads of their own, where hyper has no reactor),
//! headers, gzip, and TLS with rustls (ring) when the endpoint is `https://`: the given CA or the
//! system's roots, a client certificate if given.

use std::collections::HashMap;
use std::sync::Arc;

use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::tonic_types::metadata::MetadataMap;
use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
use opentelemetry_otlp::{ExporterBuildError, WithExportConfig, WithHttpConfig, WithTonicConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Compression, SignalExport, TlsFiles};

fn invalid(reason: impl std::fmt::Display) -> ExporterBuildError {
    ExporterBuildError::InvalidConfiguration(reason.to_string())
}

/// A tonic exporter builder with `c`'s endpoint, timeout, headers, compression and TLS.
pub(crate) fn grpc<B: WithExportConfig + WithTonicConfig>(
    builder: B,
    c: &SignalExport,
) -> Result<B, ExporterBuildError> {
    let headers: http::HeaderMap = c
        .headers
        .iter()
        .map(|(k, v)| {
            // Checked when the configuration was read.
            let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(invalid)?;
            let value = http::HeaderValue::from_str(v.expose())
                .map_err(|_| invalid(format!("the value of header {k:?} is not valid")))?;
            Ok((name, value))
        })
        .collect::<Result<_, ExporterBuildError>>()?;
    let mut builder = builder
        .with_endpoint(c.url())
        .with_timeout(c.timeout)
        .with_metadata(MetadataMap::from_headers(headers));
    if c.compression == Compression::Gzip {
        builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
    }
    if c.uses_tls() {
        builder = builder.with_tls_config(tonic_tls(&c.tls));
    }
    Ok(builder)
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

/// An OTLP/HTTP exporter builder with `c`'s endpoint, timeout, headers, compression and client.
pub(crate) fn http<B: WithExportConfig + WithHttpConfig>(
    builder: B,
    c: &SignalExport,
) -> Result<B, ExporterBuildError> {
    let headers: HashMap<String, String> = c
        .headers
        .iter()
        .map(|(k, v)| (k.to_owned(), v.expose().to_owned()))
        .collect();
    // Set, so that the exporter does not take OTEL_EXPORTER_OTLP_*PROTOCOL=grpc from the
    // environment when a flag chose http/protobuf (it would refuse to build).
    let mut builder = builder
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(c.url())
        .with_timeout(c.timeout)
        .with_headers(headers);
    if c.compression == Compression::Gzip {
        builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
    }
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| invalid("OTLP/HTTP needs a tokio runtime"))?;
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    Ok(if c.uses_tls() {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(rustls_config(&c.tls)?)
            .https_only()
            .enable_http1()
            .wrap_connector(connector);
        builder.with_http_client(OnRuntime::new(
            HyperClient::new(https, c.timeout, None),
            runtime,
        ))
    } else {
        builder.with_http_client(OnRuntime::new(
            HyperClient::new(connector, c.timeout, None),
            runtime,
        ))
    })
}

/// An HTTP client whose requests run on `runtime`, whichever thread awaits them.
#[derive(Debug)]
struct OnRuntime<C> {
    inner: Arc<C>,
    runtime: tokio::runtime::Handle,
}

impl<C> OnRuntime<C> {
    fn new(inner: C, runtime: tokio::runtime::Handle) -> Self {
        Self {
            inner: Arc::new(inner),
            runtime,
        }
    }
}

#[async_trait::async_trait]
impl<C: HttpClient + 'static> HttpClient for OnRuntime<C> {
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

/// The OTLP exporter of `$exporter` (`SpanExporter`, `LogExporter`, `MetricExporter`) over the
/// transport `$c` names; the three builders share no trait for `build`.
macro_rules! otlp_exporter {
    ($exporter:ty, $c:expr) => {{
        let c: &$crate::SignalExport = $c;
        match c.protocol {
            $crate::Protocol::Grpc => {
                $crate::transport::grpc(<$exporter>::builder().with_tonic(), c)
                    .and_then(|b| b.build())
            }
            $crate::Protocol::HttpProtobuf => {
                $crate::transport::http(<$exporter>::builder().with_http(), c)
                    .and_then(|b| b.build())
            }
        }
    }};
}
pub(crate) use otlp_exporter;
