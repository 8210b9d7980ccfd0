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
    pub traces_endpoint: String,
    pub logs_endpoint: String,
    pub metrics_endpoint: String,
    pub timeout: Duration,
    pub sampler: SamplerConfig,
    pub span_batch: BatchSettings,
    pub log_batch: BatchSettings,
    pub metric_interval: Duration,
    /// How often the resource metrics (CPU, memory, disk I/O) are sampled.
    pub resource_sample_interval: Duration,
    /// Deadline for flushing all three signals at shutdown.
    pub shutdown_timeout: Duration,
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

pub const DEFAULT_ENDPOINT: &str = "http://localhost:4317";
const DEFAULT_QUEUE_SIZE: usize = 8192;
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
}

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
            export: ExportConfig::read(&get)?,
            metrics_addr: match parse_var::<MetricsAddr>(&get, "INV_METRICS_ADDR")? {
                Some(MetricsAddr(addr)) => addr,
                None => defaults.metrics_addr,
            },
            resource,
            logs,
        })
    }

    /// The variables that give another process of the same run this configuration's OTLP
    /// endpoints and shared resource (namespace, deployment environment, further attributes),
    /// whatever flags changed them here: set on its `Command`, they are what its
    /// [`Config::from_env`] reads. It keeps its own service name, version and `/metrics` address.
    pub fn child_env(&self) -> [(&'static str, String); 4] {
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
        [
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                e.traces_endpoint.clone(),
            ),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", e.logs_endpoint.clone()),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                e.metrics_endpoint.clone(),
            ),
            ("OTEL_RESOURCE_ATTRIBUTES", attributes.join(",")),
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

impl ExportConfig {
    fn read(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let general = parse_var::<OtlpEndpoint>(get, "OTEL_EXPORTER_OTLP_ENDPOINT")?
            .map_or_else(|| DEFAULT_ENDPOINT.to_owned(), |e| e.0);
        let endpoint = |var: &'static str| {
            Ok::<_, ConfigError>(
                parse_var::<OtlpEndpoint>(get, var)?.map_or_else(|| general.clone(), |e| e.0),
            )
        };
        let batch =
            |queue: &'static str, size: &'static str, delay: &'static str, delay_ms: u64| {
                Ok(BatchSettings {
                    max_queue_size: parse_num(get, queue, DEFAULT_QUEUE_SIZE)?,
                    max_export_batch_size: parse_num(get, size, DEFAULT_BATCH_SIZE)?,
                    scheduled_delay: parse_millis(get, delay, delay_ms)?,
                })
            };
        Ok(Self {
            sdk_disabled: parse_bool(get, "OTEL_SDK_DISABLED", false)?,
            traces_endpoint: endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")?,
            logs_endpoint: endpoint("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")?,
            metrics_endpoint: endpoint("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")?,
            timeout: parse_millis(get, "OTEL_EXPORTER_OTLP_TIMEOUT", 5_000)?,
            sampler: parse_sampler(get("OTEL_TRACES_SAMPLER"), get("OTEL_TRACES_SAMPLER_ARG"))?,
            span_batch: batch(
                "OTEL_BSP_MAX_QUEUE_SIZE",
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                "OTEL_BSP_SCHEDULE_DELAY",
                5_000,
            )?,
            log_batch: batch(
                "OTEL_BLRP_MAX_QUEUE_SIZE",
                "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
                "OTEL_BLRP_SCHEDULE_DELAY",
                1_000,
            )?,
            metric_interval: parse_millis(get, "OTEL_METRIC_EXPORT_INTERVAL", 10_000)?,
            resource_sample_interval: parse_millis(get, "INV_RESOURCE_INTERVAL_MS", 5_000)?,
            shutdown_timeout: parse_millis(get, "INV_SHUTDOWN_TIMEOUT_MS", 5_000)?,
        })
    }

    /// Points all three signals at one endpoint (what `--otlp-endpoint` does).
    pub fn set_endpoint(&mut self, endpoint: &OtlpEndpoint) {
        self.traces_endpoint.clone_from(&endpoint.0);
        self.logs_endpoint.clone_from(&endpoint.0);
        self.metrics_endpoint.clone_from(&endpoint.0);
    }
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
    let err = |reason: &str| ConfigError {
        var: "OTEL_RESOURCE_ATTRIBUTES",
        value: raw.to_owned(),
        reason: reason.to_owned(),
    };
    raw.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| err(&format!("{pair:?} is not key=value")))?;
            let k = k.trim();
            if k.is_empty() {
                return Err(err(&format!("{pair:?} has an empty key")));
            }
            let v = percent_decode(v.trim())
                .ok_or_else(|| err(&format!("{pair:?} has a bad percent-encoding")))?;
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
        assert_eq!(c.export.traces_endpoint, DEFAULT_ENDPOINT);
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
        assert_eq!(c.export.traces_endpoint, "http://collector:4317");
        assert_eq!(c.export.logs_endpoint, "http://logs:4317");
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

    #[test]
    fn flag_endpoint_overrides_all_signals() {
        let mut c = config(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://a:1")]).unwrap();
        c.export.set_endpoint(&"http://b:2".parse().unwrap());
        let e = &c.export;
        assert_eq!(
            [&e.traces_endpoint, &e.logs_endpoint, &e.metrics_endpoint],
            ["http://b:2"; 3]
        );
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
        parent.export.traces_endpoint = "http://traces:4317".into();
        parent.resource.deployment_environment = "ci, run=2".into();
        let env = parent.child_env();
        let child = Config::from_lookup(
            Defaults {
                service_name: "child".into(),
                service_version: "0.1.0".into(),
                metrics_addr: None,
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
            [&c.traces_endpoint, &c.logs_endpoint, &c.metrics_endpoint],
            [&p.traces_endpoint, &p.logs_endpoint, &p.metrics_endpoint]
        );
        assert_eq!(c.traces_endpoint, "http://traces:4317");
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
