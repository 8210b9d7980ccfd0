//! Telemetry configuration: the standard `OTEL_*` variables plus the project's `INV_*` ones.
//!
//! Read once at start-up from a lookup function (the process environment in binaries, a map in
//! tests); a binary then overrides fields from its command-line flags, so a flag beats the
//! environment. Every variable read here is listed in the README's table. [`Config`] is grouped
//! the way the library reads it: the resource (one for all signals), the export (the three
//! providers), the logs (the subscriber's layers) and the address of the process's own endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// A variable that is set but cannot be used; says which one, what it held and why.
#[derive(Debug, thiserror::Error)]
#[error("{var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

/// Which traces to keep (OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerConfig {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

/// Queue and batch sizes of a batch processor (OTEL_BSP_* for spans, OTEL_BLRP_* for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    pub max_queue_size: usize,
    pub max_export_batch_size: usize,
    pub scheduled_delay: Duration,
}

/// Where the JSON log file goes and how many rotated files are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFileConfig {
    /// `dir/name.log`; rotation puts the date between name and extension.
    pub path: PathBuf,
    pub max_files: usize,
}

/// Everything the telemetry library needs; built by [`Config::from_env`], then adjusted by flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub resource: ResourceConfig,
    pub export: ExportConfig,
    pub logs: LogsConfig,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (INV_METRICS_ADDR); None: nowhere.
    pub metrics_addr: Option<SocketAddr>,
}

/// Who emits: the one OTel Resource all three signals carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceConfig {
    pub service_name: String,
    pub service_namespace: String,
    pub service_version: String,
    pub deployment_environment: String,
    /// Further attributes (from OTEL_RESOURCE_ATTRIBUTES), applied before the fields above.
    pub attributes: Vec<(String, String)>,
}

/// Where the three signals go, and how they are sampled, batched and flushed.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportConfig {
    /// OTEL_SDK_DISABLED: no OTel providers at all (console and file logs still work).
    pub sdk_disabled: bool,
    pub traces: SignalExport,
    pub logs: SignalExport,
    pub metrics: SignalExport,
    /// OTEL_PROPAGATORS, in order; empty for `none`.
    pub propagators: Vec<Propagator>,
    pub span_limits: SpanLimitsConfig,
    pub sampler: SamplerConfig,
    pub span_batch: BatchSettings,
    pub log_batch: BatchSettings,
    pub metric_interval: Duration,
    /// How often the resource metrics (CPU, memory, disk I/O) are sampled.
    pub resource_sample_interval: Duration,
    /// Deadline for flushing all three signals at shutdown.
    pub shutdown_timeout: Duration,
    /// Where undelivered telemetry is kept for the next process; None: nowhere (dropped).
    pub spool: Option<SpoolConfig>,
}

/// The local log outputs: the console and the JSON file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsConfig {
    /// RUST_LOG-style directives for the file and the OTel log bridge (and the console, unless
    /// `console_filter` is set).
    pub filter: String,
    pub console: bool,
    /// INV_CONSOLE_FILTER: directives for the console alone (a binary may pick a quieter default).
    pub console_filter: Option<String>,
    pub file: Option<LogFileConfig>,
}

/// The spec's default endpoints: OTLP/gRPC, and OTLP/HTTP (before the signal's path).
pub const DEFAULT_ENDPOINT: &str = "http://localhost:4317";
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318";

/// OTEL_*_EXPORTER: where a signal goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExporterKind {
    Otlp,
    /// The SDK's stdout exporter (for debugging).
    Console,
    /// Nowhere: spans still get ids (the log files keep their trace ids), `/metrics` still
    /// serves, but nothing is exported.
    None,
}

/// OTEL_EXPORTER_OTLP_*PROTOCOL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        })
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            _ => Err("expected grpc or http/protobuf (http/json is not supported)".into()),
        }
    }
}

/// OTEL_EXPORTER_OTLP_*COMPRESSION.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// One of OTEL_PROPAGATORS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagator {
    TraceContext,
    Baggage,
}

/// Where a signal's endpoint came from; the URL depends on it and on the protocol
/// ([`SignalExport::url`]), so a flag changing either keeps the spec's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSource {
    Default,
    /// OTEL_EXPORTER_OTLP_ENDPOINT or `--otlp-endpoint`: OTLP/HTTP appends `/v1/<signal>`.
    General(OtlpEndpoint),
    /// OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT: used as it is.
    Signal(OtlpEndpoint),
}

/// A value never to be printed: Debug shows only that it is there.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// OTEL_EXPORTER_OTLP_*HEADERS: sent with every export. Keys are lowercase; values are secrets
/// (a bearer token, an API key), so Debug prints the keys only.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Headers(Vec<(String, Secret)>);

impl Headers {
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Secret)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

/// A PEM file named by a variable, read when the configuration is: Debug shows its path only
/// (it may be a private key).
#[derive(Clone, PartialEq, Eq)]
pub struct PemFile {
    pub path: PathBuf,
    pem: Vec<u8>,
}

impl PemFile {
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }
}

impl std::fmt::Debug for PemFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PemFile").field(&self.path).finish()
    }
}

/// OTEL_EXPORTER_OTLP_*CERTIFICATE, *CLIENT_CERTIFICATE, *CLIENT_KEY. Used when the endpoint is
/// `https://`; without a certificate the system's roots are trusted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFiles {
    /// The CA to trust instead of the system's roots.
    pub certificate: Option<PemFile>,
    /// Certificate chain and key for mutual TLS (both or neither).
    pub client: Option<(PemFile, PemFile)>,
}

/// One signal's exporter: the OTLP settings of the spec, per signal over general.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalExport {
    pub exporter: ExporterKind,
    pub protocol: Protocol,
    pub endpoint: EndpointSource,
    pub headers: Headers,
    pub compression: Compression,
    pub timeout: Duration,
    pub tls: TlsFiles,
    /// `/v1/traces`, `/v1/logs` or `/v1/metrics`.
    path: &'static str,
}

impl SignalExport {
    /// The URL the exporter posts to, by the spec's rules: a per-signal endpoint as it is, the
    /// general one (or the protocol's default) with the signal's path appended for OTLP/HTTP.
    pub fn url(&self) -> String {
        let base = match (&self.endpoint, self.protocol) {
            (EndpointSource::Signal(e), _) => return e.0.clone(),
            (EndpointSource::General(e), Protocol::Grpc) => return e.0.clone(),
            (EndpointSource::Default, Protocol::Grpc) => return DEFAULT_ENDPOINT.to_owned(),
            (EndpointSource::General(e), Protocol::HttpProtobuf) => e.as_str(),
            (EndpointSource::Default, Protocol::HttpProtobuf) => DEFAULT_HTTP_ENDPOINT,
        };
        format!("{}{}", base.trim_end_matches('/'), self.path)
    }

    /// Whether exports go over TLS (an `https://` URL).
    pub fn uses_tls(&self) -> bool {
        self.url().starts_with("https://")
    }
}

/// Span limits (OTEL_SPAN_*_COUNT_LIMIT, OTEL_EVENT_/LINK_ATTRIBUTE_COUNT_LIMIT, with
/// OTEL_ATTRIBUTE_COUNT_LIMIT as the attributes' default; 128 each, as the spec says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanLimitsConfig {
    pub attributes_per_span: u32,
    pub events_per_span: u32,
    pub links_per_span: u32,
    pub attributes_per_event: u32,
    pub attributes_per_link: u32,
    /// OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT (default OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT): string
    /// span attribute values are cut to this many characters; None: no limit.
    pub attribute_value_length: Option<usize>,
}
/// Items queued for export, per signal: a batch job's burst (200,000 items of a span and two
/// log records each, see the item_cost bench) fits whole. Queued items are kept encoded (some
/// 180 bytes a span and 160 a log record of the bench's: a record carries its callsite as event
/// name), so full queues hold about 45 and 80 MiB; the spec's 2048 drops most of such a burst.
const DEFAULT_SPAN_QUEUE_SIZE: usize = 262_144;
const DEFAULT_LOG_QUEUE_SIZE: usize = 524_288;
const DEFAULT_BATCH_SIZE: usize = 512;

/// Where `/metrics`, `/healthz` and `/readyz` are served: an address, or `off`. The same syntax
/// for INV_METRICS_ADDR and the binaries' `--metrics-addr` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddr(pub Option<SocketAddr>);

impl FromStr for MetricsAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "off" {
            return Ok(Self(None));
        }
        s.parse()
            .map(|a| Self(Some(a)))
            .map_err(|e| format!("not a socket address like 127.0.0.1:9100 or \"off\" ({e})"))
    }
}

/// An OTLP endpoint with its scheme. The same syntax for OTEL_EXPORTER_OTLP_*ENDPOINT and the
/// binaries' `--otlp-endpoint` flag. A scheme-less endpoint may silently become https in the
/// exporter (a known pitfall), so it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpEndpoint(String);

impl OtlpEndpoint {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for OtlpEndpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("http://") || s.starts_with("https://") {
            Ok(Self(s.to_owned()))
        } else {
            Err("an OTLP endpoint needs a scheme, e.g. http://localhost:4317".into())
        }
    }
}

/// Per-binary defaults that the environment may override.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub service_name: String,
    pub service_version: String,
    /// The service's own default for its `/metrics` endpoint (None: off unless INV_METRICS_ADDR).
    pub metrics_addr: Option<SocketAddr>,
    /// Its own default spool directory (None: no spool unless INV_TELEMETRY_SPOOL names one).
    pub spool_dir: Option<PathBuf>,
}

/// The spool (INV_TELEMETRY_SPOOL*): where a process keeps the export requests it could not
/// deliver, for the next process with the same spool to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// INV_TELEMETRY_SPOOL_MAX_MB: past it, undelivered requests are dropped (and counted).
    pub max_bytes: u64,
    /// INV_TELEMETRY_SPOOL_MAX_AGE_H: older files are deleted unsent (and counted).
    pub max_age: Duration,
}

impl SpoolConfig {
    fn read(
        get: &impl Fn(&str) -> Option<String>,
        default_dir: Option<PathBuf>,
    ) -> Result<Option<Self>, ConfigError> {
        let dir = match get(SPOOL_VAR).as_deref() {
            Some("off") => None,
            Some(dir) => Some(PathBuf::from(dir)),
            None => default_dir,
        };
        dir.map(|dir| {
            Ok(Self {
                dir,
                max_bytes: parse_num(get, "INV_TELEMETRY_SPOOL_MAX_MB", 256)? as u64 * 1024 * 1024,
                max_age: Duration::from_secs(
                    parse_num(get, "INV_TELEMETRY_SPOOL_MAX_AGE_H", 24)? as u64 * 3600,
                ),
            })
        })
        .transpose()
    }
}

/// The spool's directory, or `off`.
const SPOOL_VAR: &str = "INV_TELEMETRY_SPOOL";

impl Config {
    /// Reads the process environment.
    pub fn from_env(defaults: Defaults) -> Result<Self, ConfigError> {
        Self::from_lookup(defaults, |k| std::env::var(k).ok())
    }

    /// Reads configuration through `lookup`; empty values count as unset, as the OTel spec says.
    pub fn from_lookup(
        defaults: Defaults,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let resource = ResourceConfig::read(&get, defaults.service_name, defaults.service_version)?;
        let logs = LogsConfig::read(&get, &resource.service_name)?;
        Ok(Self {
            export: ExportConfig::read(&get, defaults.spool_dir)?,
            metrics_addr: match parse_var::<MetricsAddr>(&get, "INV_METRICS_ADDR")? {
                Some(MetricsAddr(addr)) => addr,
                None => defaults.metrics_addr,
            },
            resource,
            logs,
        })
    }

    /// The variables that give another process of the same run this configuration's OTLP
    /// endpoints and protocols and shared resource (namespace, deployment environment, further
    /// attributes) and spool, whatever flags changed them here: set on its `Command`, they are what its
    /// [`Config::from_env`] reads. It keeps its own service name, version and `/metrics` address.
    pub fn child_env(&self) -> [(&'static str, String); 8] {
        let r = &self.resource;
        let shared = [
            ("service.namespace", r.service_namespace.as_str()),
            (
                "deployment.environment.name",
                r.deployment_environment.as_str(),
            ),
        ];
        let attributes: Vec<String> = r
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(shared)
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect();
        let e = &self.export;
        // Per-signal variables, which beat whatever general ones the child inherits; the URL
        // as resolved here, since a per-signal endpoint is used as it is.
        [
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", e.traces.url()),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", e.logs.url()),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", e.metrics.url()),
            (
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                e.traces.protocol.to_string(),
            ),
            (
                "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
                e.logs.protocol.to_string(),
            ),
            (
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
                e.metrics.protocol.to_string(),
            ),
            ("OTEL_RESOURCE_ATTRIBUTES", attributes.join(",")),
            (
                SPOOL_VAR,
                e.spool
                    .as_ref()
                    .map_or_else(|| "off".to_owned(), |s| s.dir.display().to_string()),
            ),
        ]
    }
}

impl ResourceConfig {
    fn read(
        get: &impl Fn(&str) -> Option<String>,
        default_name: String,
        default_version: String,
    ) -> Result<Self, ConfigError> {
        let mut attributes = match get("OTEL_RESOURCE_ATTRIBUTES") {
            Some(raw) => parse_resource_attributes(&raw)?,
            None => Vec::new(),
        };
        // The well-known keys become fields; what remains is passed through as is.
        let mut take = |key: &str| {
            let pos = attributes.iter().position(|(k, _)| k == key)?;
            Some(attributes.remove(pos).1)
        };
        let service_name_attr = take("service.name");
        let service_namespace =
            take("service.namespace").unwrap_or_else(|| names::service::NAMESPACE.into());
        let service_version = take("service.version").unwrap_or(default_version);
        let deployment_environment = take("deployment.environment.name")
            .or_else(|| take("deployment.environment"))
            .unwrap_or_else(|| "local".into());
        let service_name = get("OTEL_SERVICE_NAME")
            .or(service_name_attr)
            .unwrap_or(default_name);
        Ok(Self {
            service_name,
            service_namespace,
            service_version,
            deployment_environment,
            attributes,
        })
    }
}

/// The variables of one signal's OTLP settings (or the general ones), from their common prefix.
struct OtlpVars {
    endpoint: &'static str,
    headers: &'static str,
    compression: &'static str,
    timeout: &'static str,
    protocol: &'static str,
    certificate: &'static str,
    client_key: &'static str,
    client_certificate: &'static str,
    insecure: &'static str,
}

macro_rules! otlp_vars {
    ($prefix:literal) => {
        OtlpVars {
            endpoint: concat!($prefix, "ENDPOINT"),
            headers: concat!($prefix, "HEADERS"),
            compression: concat!($prefix, "COMPRESSION"),
            timeout: concat!($prefix, "TIMEOUT"),
            protocol: concat!($prefix, "PROTOCOL"),
            certificate: concat!($prefix, "CERTIFICATE"),
            client_key: concat!($prefix, "CLIENT_KEY"),
            client_certificate: concat!($prefix, "CLIENT_CERTIFICATE"),
            insecure: concat!($prefix, "INSECURE"),
        }
    };
}

const GENERAL: OtlpVars = otlp_vars!("OTEL_EXPORTER_OTLP_");

impl ExportConfig {
    fn read(
        get: &impl Fn(&str) -> Option<String>,
        spool_dir: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        let batch =
            |queue: (&'static str, usize), size: &'static str, delay: &'static str, delay_ms| {
                Ok(BatchSettings {
                    max_queue_size: parse_num(get, queue.0, queue.1)?,
                    max_export_batch_size: parse_num(get, size, DEFAULT_BATCH_SIZE)?,
                    scheduled_delay: parse_millis(get, delay, delay_ms)?,
                })
            };
        Ok(Self {
            sdk_disabled: parse_bool(get, "OTEL_SDK_DISABLED", false)?,
            traces: SignalExport::read(
                get,
                "OTEL_TRACES_EXPORTER",
                &otlp_vars!("OTEL_EXPORTER_OTLP_TRACES_"),
                "/v1/traces",
            )?,
            logs: SignalExport::read(
                get,
                "OTEL_LOGS_EXPORTER",
                &otlp_vars!("OTEL_EXPORTER_OTLP_LOGS_"),
                "/v1/logs",
            )?,
            metrics: SignalExport::read(
                get,
                "OTEL_METRICS_EXPORTER",
                &otlp_vars!("OTEL_EXPORTER_OTLP_METRICS_"),
                "/v1/metrics",
            )?,
            propagators: parse_propagators(get)?,
            span_limits: SpanLimitsConfig::read(get)?,
            sampler: parse_sampler(get("OTEL_TRACES_SAMPLER"), get("OTEL_TRACES_SAMPLER_ARG"))?,
            span_batch: batch(
                ("OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_SPAN_QUEUE_SIZE),
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                "OTEL_BSP_SCHEDULE_DELAY",
                5_000,
            )?,
            log_batch: batch(
                ("OTEL_BLRP_MAX_QUEUE_SIZE", DEFAULT_LOG_QUEUE_SIZE),
                "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
                "OTEL_BLRP_SCHEDULE_DELAY",
                1_000,
            )?,
            metric_interval: parse_millis(get, "OTEL_METRIC_EXPORT_INTERVAL", 10_000)?,
            resource_sample_interval: parse_millis(get, "INV_RESOURCE_INTERVAL_MS", 5_000)?,
            shutdown_timeout: parse_millis(get, "INV_SHUTDOWN_TIMEOUT_MS", 5_000)?,
            spool: SpoolConfig::read(get, spool_dir)?,
        })
    }

    pub fn signals(&self) -> [&SignalExport; 3] {
        [&self.traces, &self.logs, &self.metrics]
    }

    fn signals_mut(&mut self) -> [&mut SignalExport; 3] {
        [&mut self.traces, &mut self.logs, &mut self.metrics]
    }

    /// Points all three signals at one endpoint, as the general endpoint would (what
    /// `--otlp-endpoint` does).
    pub fn set_endpoint(&mut self, endpoint: &OtlpEndpoint) {
        for s in self.signals_mut() {
            s.endpoint = EndpointSource::General(endpoint.clone());
        }
    }

    /// Sets all three signals' protocol (what `--otlp-protocol` does).
    pub fn set_protocol(&mut self, protocol: Protocol) {
        for s in self.signals_mut() {
            s.protocol = protocol;
        }
    }
}

impl SignalExport {
    fn read(
        get: &impl Fn(&str) -> Option<String>,
        exporter_var: &'static str,
        vars: &OtlpVars,
        path: &'static str,
    ) -> Result<Self, ConfigError> {
        // The per-signal variable when it is set, else the general one.
        let var = |signal: &'static str, general: &'static str| {
            if get(signal).is_some() {
                signal
            } else {
                general
            }
        };
        let endpoint = match parse_var::<OtlpEndpoint>(get, vars.endpoint)? {
            Some(e) => EndpointSource::Signal(e),
            None => parse_var(get, GENERAL.endpoint)?
                .map_or(EndpointSource::Default, EndpointSource::General),
        };
        // INSECURE only matters for an endpoint without a scheme (the spec), and every endpoint
        // here has one: read so that a typo is still an error.
        parse_bool(get, var(vars.insecure, GENERAL.insecure), false)?;
        let compression = var(vars.compression, GENERAL.compression);
        Ok(Self {
            exporter: parse_exporter(get, exporter_var)?,
            protocol: parse_var(get, var(vars.protocol, GENERAL.protocol))?
                .unwrap_or(Protocol::Grpc),
            endpoint,
            headers: parse_headers(get, var(vars.headers, GENERAL.headers))?,
            compression: match get(compression).as_deref() {
                None | Some("none") => Compression::None,
                Some("gzip") => Compression::Gzip,
                Some(other) => {
                    return Err(ConfigError {
                        var: compression,
                        value: other.to_owned(),
                        reason: "expected gzip or none".into(),
                    });
                }
            },
            timeout: parse_millis(get, var(vars.timeout, GENERAL.timeout), 5_000)?,
            tls: TlsFiles::read(get, vars)?,
            path,
        })
    }
}

impl TlsFiles {
    fn read(get: &impl Fn(&str) -> Option<String>, vars: &OtlpVars) -> Result<Self, ConfigError> {
        let file = |signal: &'static str, general: &'static str, kind: PemKind| {
            let var = if get(signal).is_some() {
                signal
            } else {
                general
            };
            get(var).map(|path| read_pem(var, path, kind)).transpose()
        };
        let certificate = file(vars.certificate, GENERAL.certificate, PemKind::Certificates)?;
        let cert = file(
            vars.client_certificate,
            GENERAL.client_certificate,
            PemKind::Certificates,
        )?;
        let key = file(vars.client_key, GENERAL.client_key, PemKind::PrivateKey)?;
        let client = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(cert), None) => {
                return Err(ConfigError {
                    var: vars.client_key,
                    value: String::new(),
                    reason: format!(
                        "a client certificate ({}) needs its key (this or {})",
                        cert.path.display(),
                        GENERAL.client_key
                    ),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError {
                    var: vars.client_certificate,
                    value: String::new(),
                    reason: format!(
                        "a client key needs its certificate (this or {})",
                        GENERAL.client_certificate
                    ),
                });
            }
        };
        Ok(Self {
            certificate,
            client,
        })
    }
}

#[derive(Clone, Copy)]
enum PemKind {
    Certificates,
    PrivateKey,
}

/// Reads and checks a PEM file now, so a wrong path or content is a configuration error that
/// names its variable rather than a failed handshake later.
fn read_pem(var: &'static str, path: String, kind: PemKind) -> Result<PemFile, ConfigError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let err = |path: &str, reason: String| ConfigError {
        var,
        value: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(&path).map_err(|e| err(&path, format!("cannot read it: {e}")))?;
    let ok = match kind {
        PemKind::Certificates => {
            let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
            certs.is_ok_and(|c| !c.is_empty())
        }
        PemKind::PrivateKey => PrivateKeyDer::from_pem_slice(&pem).is_ok(),
    };
    if !ok {
        let what = match kind {
            PemKind::Certificates => "PEM certificates",
            PemKind::PrivateKey => "a PEM private key",
        };
        return Err(err(&path, format!("does not hold {what}")));
    }
    Ok(PemFile {
        path: path.into(),
        pem,
    })
}

impl SpanLimitsConfig {
    fn read(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        const SPEC_DEFAULT: usize = 128;
        let count = |var, default| {
            parse_num(get, var, default).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        };
        let attributes = parse_num(get, "OTEL_ATTRIBUTE_COUNT_LIMIT", SPEC_DEFAULT)?;
        let value_length = match get("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT") {
            Some(_) => Some("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT"),
            None => get("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT")
                .map(|_| "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"),
        };
        Ok(Self {
            attributes_per_span: count("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", attributes)?,
            events_per_span: count("OTEL_SPAN_EVENT_COUNT_LIMIT", SPEC_DEFAULT)?,
            links_per_span: count("OTEL_SPAN_LINK_COUNT_LIMIT", SPEC_DEFAULT)?,
            attributes_per_event: count("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", attributes)?,
            attributes_per_link: count("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", attributes)?,
            attribute_value_length: value_length
                .map(|var| parse_num(get, var, usize::MAX))
                .transpose()?,
        })
    }
}

fn parse_exporter(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
) -> Result<ExporterKind, ConfigError> {
    match get(var).as_deref() {
        None | Some("otlp") => Ok(ExporterKind::Otlp),
        Some("console") => Ok(ExporterKind::Console),
        Some("none") => Ok(ExporterKind::None),
        Some(other) => Err(ConfigError {
            var,
            value: other.to_owned(),
            reason: "expected one of otlp, console or none".into(),
        }),
    }
}

/// OTEL_PROPAGATORS: a comma list of `tracecontext`, `baggage`, or `none` alone; the spec's
/// default is `tracecontext,baggage`.
fn parse_propagators(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<Propagator>, ConfigError> {
    const VAR: &str = "OTEL_PROPAGATORS";
    let Some(raw) = get(VAR) else {
        return Ok(vec![Propagator::TraceContext, Propagator::Baggage]);
    };
    let err = |reason: String| ConfigError {
        var: VAR,
        value: raw.clone(),
        reason,
    };
    let names: Vec<&str> = raw.split(',').map(str::trim).collect();
    if names == ["none"] {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for name in names {
        let p = match name {
            "tracecontext" => Propagator::TraceContext,
            "baggage" => Propagator::Baggage,
            "none" => return Err(err("none cannot be combined with others".into())),
            other => {
                return Err(err(format!(
                    "{other:?} is not supported: tracecontext, baggage or none"
                )));
            }
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// OTEL_EXPORTER_OTLP_*HEADERS. The error names the variable and the keys, never a value.
fn parse_headers(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
) -> Result<Headers, ConfigError> {
    let Some(raw) = get(var) else {
        return Ok(Headers::default());
    };
    let redacted = || {
        raw.split(',')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) => format!("{}=<redacted>", k.trim()),
                None => "<redacted>".to_owned(),
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let err = |reason: String| ConfigError {
        var,
        value: redacted(),
        reason,
    };
    let pairs = parse_pairs(&raw).map_err(err)?;
    pairs
        .into_iter()
        .map(|(k, v)| {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| err(format!("{k:?} is not a valid header name")))?;
            http::HeaderValue::from_str(&v)
                .map_err(|_| err(format!("the value of {k:?} is not a valid header value")))?;
            Ok((name.as_str().to_owned(), Secret(v)))
        })
        .collect::<Result<_, _>>()
        .map(Headers)
}

impl LogsConfig {
    fn read(
        get: &impl Fn(&str) -> Option<String>,
        service_name: &str,
    ) -> Result<Self, ConfigError> {
        let file = match get("INV_LOG_FILE").as_deref() {
            Some("off") => None,
            Some(path) => Some(PathBuf::from(path)),
            None => Some(PathBuf::from("logs").join(format!("{service_name}.log"))),
        }
        .map(|path| -> Result<LogFileConfig, ConfigError> {
            Ok(LogFileConfig {
                path,
                max_files: parse_num(get, "INV_LOG_MAX_FILES", 7)?,
            })
        })
        .transpose()?;
        Ok(Self {
            filter: get("RUST_LOG").unwrap_or_else(|| "info".into()),
            console: parse_bool(get, "INV_LOG_CONSOLE", true)?,
            console_filter: get("INV_CONSOLE_FILTER"),
            file,
        })
    }

    /// The directives the console uses.
    pub fn console_directives(&self) -> &str {
        self.console_filter.as_deref().unwrap_or(&self.filter)
    }
}

/// A variable in a syntax of its own ([`MetricsAddr`], [`OtlpEndpoint`]); None when unset.
fn parse_var<T: FromStr<Err = String>>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
) -> Result<Option<T>, ConfigError> {
    get(var)
        .map(|value| {
            value
                .parse()
                .map_err(|reason| ConfigError { var, value, reason })
        })
        .transpose()
}

fn parse_num(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: usize,
) -> Result<usize, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConfigError {
                var,
                value: v,
                reason: "not a positive integer".into(),
            }),
        },
    }
}

fn parse_millis(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default_ms: u64,
) -> Result<Duration, ConfigError> {
    parse_num(get, var, default_ms as usize)
        .map(|ms| Duration::from_millis(ms as u64))
        .map_err(|e| ConfigError {
            reason: "not a positive number of milliseconds".into(),
            ..e
        })
}

fn parse_bool(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "on" | "yes" => Ok(true),
            "false" | "0" | "off" | "no" => Ok(false),
            _ => Err(ConfigError {
                var,
                value: v,
                reason: "expected true or false".into(),
            }),
        },
    }
}

fn parse_sampler(name: Option<String>, arg: Option<String>) -> Result<SamplerConfig, ConfigError> {
    let ratio = || -> Result<f64, ConfigError> {
        match &arg {
            None => Ok(1.0),
            Some(v) => match v.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(ConfigError {
                    var: "OTEL_TRACES_SAMPLER_ARG",
                    value: v.clone(),
                    reason: "a ratio sampler needs a number between 0 and 1".into(),
                }),
            },
        }
    };
    let Some(name) = name else {
        return Ok(SamplerConfig::ParentBasedAlwaysOn);
    };
    Ok(match name.as_str() {
        "always_on" => SamplerConfig::AlwaysOn,
        "always_off" => SamplerConfig::AlwaysOff,
        "traceidratio" => SamplerConfig::TraceIdRatio(ratio()?),
        "parentbased_always_on" => SamplerConfig::ParentBasedAlwaysOn,
        "parentbased_always_off" => SamplerConfig::ParentBasedAlwaysOff,
        "parentbased_traceidratio" => SamplerConfig::ParentBasedTraceIdRatio(ratio()?),
        _ => {
            return Err(ConfigError {
                var: "OTEL_TRACES_SAMPLER",
                value: name,
                reason: "expected always_on, always_off, traceidratio or their parentbased_ forms"
                    .into(),
            });
        }
    })
}

/// `key1=value1,key2=value2`, values percent-encoded (W3C Baggage octets), as the OTel spec says.
fn parse_resource_attributes(raw: &str) -> Result<Vec<(String, String)>, ConfigError> {
    parse_pairs(raw).map_err(|reason| ConfigError {
        var: "OTEL_RESOURCE_ATTRIBUTES",
        value: raw.to_owned(),
        reason,
    })
}

/// The `k=v,k2=v2` syntax of OTEL_RESOURCE_ATTRIBUTES and OTEL_EXPORTER_OTLP_*HEADERS, values
/// percent-decoded. A reason names an entry by its key or position, never by its value (a
/// header's value is a secret).
fn parse_pairs(raw: &str) -> Result<Vec<(String, String)>, String> {
    raw.split(',')
        .enumerate()
        .filter(|(_, pair)| !pair.trim().is_empty())
        .map(|(i, pair)| {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("entry {} is not key=value", i + 1))?;
            let k = k.trim();
            if k.is_empty() {
                return Err(format!("entry {} has an empty key", i + 1));
            }
            let v = percent_decode(v.trim())
                .ok_or_else(|| format!("the value of {k:?} has a bad percent-encoding"))?;
            Ok((k.to_owned(), v))
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The inverse of [`percent_decode`], for values written into OTEL_RESOURCE_ATTRIBUTES.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~:/@".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn defaults() -> Defaults {
        Defaults {
            service_name: "invbot".into(),
            service_version: "1.2.3".into(),
            metrics_addr: Some(([127, 0, 0, 1], 9100).into()),
            spool_dir: None,
        }
    }

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(defaults(), |k| map.get(k).cloned())
    }

    #[test]
    fn defaults_without_environment() {
        let c = config(&[]).unwrap();
        assert_eq!(c.resource.service_name, "invbot");
        assert_eq!(c.resource.service_namespace, "inventory");
        assert_eq!(c.resource.service_version, "1.2.3");
        assert_eq!(c.export.traces.url(), DEFAULT_ENDPOINT);
        assert_eq!(c.export.traces.protocol, Protocol::Grpc);
        assert_eq!(c.export.traces.exporter, ExporterKind::Otlp);
        assert_eq!(c.export.logs.compression, Compression::None);
        assert_eq!(c.export.metrics.timeout, Duration::from_secs(5));
        assert_eq!(
            c.export.propagators,
            [Propagator::TraceContext, Propagator::Baggage]
        );
        assert_eq!(c.export.span_limits.attributes_per_span, 128);
        assert_eq!(c.export.span_limits.attribute_value_length, None);
        assert_eq!(c.export.sampler, SamplerConfig::ParentBasedAlwaysOn);
        assert!(!c.export.sdk_disabled);
        assert_eq!(c.logs.file.unwrap().path, PathBuf::from("logs/invbot.log"));
        assert_eq!(c.metrics_addr, Some(([127, 0, 0, 1], 9100).into()));
        assert_eq!(c.export.shutdown_timeout, Duration::from_secs(5));
    }

    #[test]
    fn standard_variables_are_honoured() {
        let c = config(&[
            ("OTEL_SERVICE_NAME", "bot-a"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=ignored,deployment.environment.name=prod,team=ops%2Cinventory",
            ),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs:4317"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "7"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1500"),
            ("OTEL_SDK_DISABLED", "true"),
            ("INV_LOG_FILE", "off"),
            ("INV_METRICS_ADDR", "off"),
        ])
        .unwrap();
        assert_eq!(c.resource.service_name, "bot-a");
        assert_eq!(c.resource.deployment_environment, "prod");
        assert_eq!(
            c.resource.attributes,
            vec![("team".to_owned(), "ops,inventory".to_owned())]
        );
        assert_eq!(c.export.traces.url(), "http://collector:4317");
        assert_eq!(c.export.logs.url(), "http://logs:4317");
        assert_eq!(
            c.export.sampler,
            SamplerConfig::ParentBasedTraceIdRatio(0.25)
        );
        assert_eq!(c.export.span_batch.max_queue_size, 100);
        assert_eq!(c.export.log_batch.max_export_batch_size, 7);
        assert_eq!(c.export.metric_interval, Duration::from_millis(1500));
        assert!(c.export.sdk_disabled);
        assert!(c.logs.file.is_none());
        assert!(c.metrics_addr.is_none());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            ("OTEL_BSP_MAX_QUEUE_SIZE", "lots"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4317"),
            ("OTEL_SDK_DISABLED", "perhaps"),
            ("OTEL_RESOURCE_ATTRIBUTES", "novalue"),
            ("INV_METRICS_ADDR", "nine-one-hundred"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "brotli"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "soon"),
            ("OTEL_EXPORTER_OTLP_INSECURE", "maybe"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
            ("OTEL_LOGS_EXPORTER", "otlp,console"),
            ("OTEL_PROPAGATORS", "b3"),
            ("OTEL_SPAN_EVENT_COUNT_LIMIT", "-1"),
            ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "long"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"),
        ];
        for (var, value) in cases {
            let mut vars = vec![(var, value)];
            if var == "OTEL_TRACES_SAMPLER_ARG" {
                vars.push(("OTEL_TRACES_SAMPLER", "traceidratio"));
            }
            let err = config(&vars).unwrap_err();
            assert!(err.to_string().starts_with(var), "{var}: {err}");
            assert!(err.to_string().contains(value), "{var}: {err}");
        }
    }

    fn urls(c: &Config) -> [String; 3] {
        c.export.signals().map(SignalExport::url)
    }

    #[test]
    fn endpoints_follow_the_spec_for_each_protocol() {
        // gRPC: the general endpoint as it is, for every signal.
        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://gw:4317")]).unwrap();
        assert_eq!(urls(&c), ["https://gw:4317"; 3]);
        assert!(c.export.traces.uses_tls());

        // OTLP/HTTP: the general endpoint gets the signal's path, a per-signal one is used as
        // it is, the default is port 4318.
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://gw:4318/"),
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "http://logs:9428/insert/v1/logs",
            ),
        ])
        .unwrap();
        assert_eq!(
            urls(&c),
            [
                "http://gw:4318/v1/traces",
                "http://logs:9428/insert/v1/logs",
                "http://gw:4318/v1/metrics"
            ]
        );
        let c = config(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).unwrap();
        assert_eq!(c.export.metrics.url(), "http://localhost:4318/v1/metrics");

        // The protocol is per signal too.
        let c = config(&[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")]).unwrap();
        assert_eq!(
            urls(&c),
            [
                "http://localhost:4318/v1/traces",
                DEFAULT_ENDPOINT,
                DEFAULT_ENDPOINT
            ]
        );
    }

    #[test]
    fn per_signal_settings_beat_the_general_ones() {
        let c = config(&[
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20general,x-tenant=a",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "authorization=Bearer%20traces",
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
            ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "700"),
            ("OTEL_METRICS_EXPORTER", "none"),
            ("OTEL_LOGS_EXPORTER", "console"),
        ])
        .unwrap();
        let e = &c.export;
        let headers = |s: &SignalExport| {
            s.headers
                .iter()
                .map(|(k, v)| format!("{k}={}", v.expose()))
                .collect::<Vec<_>>()
        };
        assert_eq!(headers(&e.traces), ["authorization=Bearer traces"]);
        assert_eq!(
            headers(&e.logs),
            ["authorization=Bearer general", "x-tenant=a"]
        );
        assert_eq!(
            e.signals().map(|s| s.compression),
            [Compression::Gzip, Compression::Gzip, Compression::None]
        );
        assert_eq!(
            e.signals().map(|s| s.timeout.as_millis()),
            [3000, 700, 3000]
        );
        assert_eq!(
            e.signals().map(|s| s.exporter),
            [
                ExporterKind::Otlp,
                ExporterKind::Console,
                ExporterKind::None
            ]
        );
    }

    #[test]
    fn header_values_never_show_in_debug_or_errors() {
        let secret = "s3cr3t-token-value";
        let c = config(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "Authorization=Bearer%20s3cr3t-token-value",
        )])
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains(secret), "{debug}");
        assert!(debug.contains("\"authorization\": <redacted>"), "{debug}");
        assert_eq!(
            c.export.traces.headers.keys().collect::<Vec<_>>(),
            ["authorization"]
        );

        for bad in [
            "authorization=Bearer%ZZs3cr3t-token-value",
            "s3cr3t-token-value",
            "bad key=s3cr3t-token-value",
            "authorization=s3cr3t-token-value%0A",
        ] {
            let err = config(&[("OTEL_EXPORTER_OTLP_LOGS_HEADERS", bad)]).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(
                text.starts_with("OTEL_EXPORTER_OTLP_LOGS_HEADERS"),
                "{text}"
            );
            assert!(!text.contains("s3cr3t"), "{bad}: {text}");
        }
    }

    #[test]
    fn propagators_and_span_limits() {
        let c = config(&[
            ("OTEL_PROPAGATORS", "baggage, tracecontext"),
            ("OTEL_ATTRIBUTE_COUNT_LIMIT", "10"),
            ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "20"),
            ("OTEL_SPAN_EVENT_COUNT_LIMIT", "5"),
            ("OTEL_SPAN_LINK_COUNT_LIMIT", "3"),
            ("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "2"),
            ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "100"),
            ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "64"),
        ])
        .unwrap();
        assert_eq!(
            c.export.propagators,
            [Propagator::Baggage, Propagator::TraceContext]
        );
        assert_eq!(
            c.export.span_limits,
            SpanLimitsConfig {
                attributes_per_span: 20,
                events_per_span: 5,
                links_per_span: 3,
                attributes_per_event: 10,
                attributes_per_link: 2,
                attribute_value_length: Some(64),
            }
        );
        let c = config(&[
            ("OTEL_PROPAGATORS", "none"),
            ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "100"),
        ])
        .unwrap();
        assert!(c.export.propagators.is_empty());
        assert_eq!(c.export.span_limits.attribute_value_length, Some(100));
        assert!(config(&[("OTEL_PROPAGATORS", "none,baggage")]).is_err());
    }

    #[test]
    fn tls_files_are_read_and_checked_when_the_configuration_is() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let cert = write(
            "cert.pem",
            "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n",
        );
        let key = write(
            "key.pem",
            "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n",
        );
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", cert.as_str()),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", cert.as_str()),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", key.as_str()),
        ])
        .unwrap();
        let t = &c.export.traces.tls;
        assert_eq!(
            t.certificate.as_ref().unwrap().path.display().to_string(),
            cert
        );
        assert!(c.export.logs.tls.certificate.is_none() && c.export.logs.tls.client.is_some());
        let (client_cert, client_key) = t.client.as_ref().unwrap();
        assert!(client_cert.pem().starts_with(b"-----BEGIN CERTIFICATE"));
        assert!(
            !format!("{client_key:?}").contains("BEGIN"),
            "{client_key:?}"
        );
        // The logs have the key (general) but not the certificate (traces only).
        let err = config(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
                cert.as_str(),
            ),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", key.as_str()),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE"),
            "{err}"
        );
        // A key where a certificate belongs.
        let err = config(&[("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", key.as_str())]).unwrap_err();
        assert!(
            err.to_string().contains("does not hold PEM certificates"),
            "{err}"
        );
    }

    #[test]
    fn flag_endpoint_overrides_all_signals() {
        let mut c = config(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://a:1")]).unwrap();
        c.export.set_endpoint(&"http://b:2".parse().unwrap());
        assert_eq!(c.export.signals().map(|s| s.url()), ["http://b:2"; 3]);
        assert!("b:2".parse::<OtlpEndpoint>().is_err());
    }

    #[test]
    fn a_child_reads_back_the_endpoints_and_shared_resource() {
        let mut parent = config(&[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.version=7,team=ops%2Cinventory,note=50%25%20off",
            ),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs:4317"),
        ])
        .unwrap();
        parent.export.traces.endpoint =
            EndpointSource::Signal("http://traces:4317".parse().unwrap());
        parent.export.set_protocol(Protocol::HttpProtobuf);
        parent.resource.deployment_environment = "ci, run=2".into();
        let env = parent.child_env();
        let child = Config::from_lookup(
            Defaults {
                service_name: "child".into(),
                service_version: "0.1.0".into(),
                metrics_addr: None,
                spool_dir: None,
            },
            |k| {
                env.iter()
                    .find(|(var, _)| *var == k)
                    .map(|(_, v)| v.clone())
            },
        )
        .unwrap();
        let (p, c) = (&parent.export, &child.export);
        assert_eq!(
            c.signals().map(|s| (s.url(), s.protocol)),
            p.signals().map(|s| (s.url(), s.protocol))
        );
        assert_eq!(c.traces.url(), "http://traces:4317");
        assert_eq!(c.logs.url(), "http://logs:4317");
        assert_eq!(c.metrics.url(), "http://localhost:4318/v1/metrics");
        assert_eq!(
            ResourceConfig {
                service_name: "invbot".into(),
                service_version: "1.2.3".into(),
                ..child.resource.clone()
            },
            ResourceConfig {
                service_version: "1.2.3".into(),
                ..parent.resource
            }
        );
        assert_eq!(
            (
                child.resource.service_name.as_str(),
                child.resource.service_version.as_str()
            ),
            ("child", "0.1.0")
        );
    }
}
