//! Telemetry configuration: the standard `OTEL_*` variables plus the project's `INV_*` ones.
//!
//! Read once at start-up from a lookup function (the process environment in binaries, a map in
//! tests); a binary then overrides fields from its command-line flags, so a flag beats the
//! environment. Every variable read here is listed in the README's table.

use std::net::SocketAddr;
use std::path::PathBuf;
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
#[derive(Debug, Clone)]
pub struct Config {
    pub service_name: String,
    pub service_namespace: String,
    pub service_version: String,
    pub deployment_environment: String,
    /// Further resource attributes (from OTEL_RESOURCE_ATTRIBUTES), applied before the fields above.
    pub resource_attributes: Vec<(String, String)>,
    /// OTEL_SDK_DISABLED: no OTel providers at all (console and file logs still work).
    pub sdk_disabled: bool,
    pub traces_endpoint: String,
    pub logs_endpoint: String,
    pub metrics_endpoint: String,
    pub export_timeout: Duration,
    pub sampler: SamplerConfig,
    pub span_batch: BatchSettings,
    pub log_batch: BatchSettings,
    pub metric_export_interval: Duration,
    /// RUST_LOG-style directives for the file and the OTel log bridge (and the console, unless
    /// `console_filter` is set).
    pub log_filter: String,
    pub console: bool,
    /// INV_CONSOLE_FILTER: directives for the console alone (a binary may pick a quieter default).
    pub console_filter: Option<String>,
    pub log_file: Option<LogFileConfig>,
    pub metrics_addr: Option<SocketAddr>,
    pub resource_sample_interval: Duration,
    pub shutdown_timeout: Duration,
}

pub const DEFAULT_ENDPOINT: &str = "http://localhost:4317";
const DEFAULT_QUEUE_SIZE: usize = 8192;
const DEFAULT_BATCH_SIZE: usize = 512;

/// Where `/metrics`, `/healthz` and `/readyz` are served: an address, or `off`. The same syntax
/// for INV_METRICS_ADDR and the binaries' `--metrics-addr` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddr(pub Option<SocketAddr>);

impl std::str::FromStr for MetricsAddr {
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

        let mut resource_attributes = match get("OTEL_RESOURCE_ATTRIBUTES") {
            Some(raw) => parse_resource_attributes(&raw)?,
            None => Vec::new(),
        };
        // The well-known keys become fields; what remains is passed through as is.
        let mut take = |key: &str| {
            let pos = resource_attributes.iter().position(|(k, _)| k == key)?;
            Some(resource_attributes.remove(pos).1)
        };
        let service_name_attr = take("service.name");
        let service_namespace = take("service.namespace").unwrap_or_else(|| "inventory".into());
        let service_version = take("service.version").unwrap_or(defaults.service_version);
        let deployment_environment = take("deployment.environment.name")
            .or_else(|| take("deployment.environment"))
            .unwrap_or_else(|| "local".into());
        let service_name = get("OTEL_SERVICE_NAME")
            .or(service_name_attr)
            .unwrap_or(defaults.service_name);

        let general = match get("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Some(v) => check_endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", v)?,
            None => DEFAULT_ENDPOINT.into(),
        };
        let endpoint = |var: &'static str| match get(var) {
            Some(v) => check_endpoint(var, v),
            None => Ok(general.clone()),
        };

        let log_file = match get("INV_LOG_FILE").as_deref() {
            Some("off") => None,
            Some(path) => Some(PathBuf::from(path)),
            None => Some(PathBuf::from("logs").join(format!("{service_name}.log"))),
        }
        .map(|path| -> Result<LogFileConfig, ConfigError> {
            Ok(LogFileConfig {
                path,
                max_files: parse_num(&get, "INV_LOG_MAX_FILES", 7)?,
            })
        })
        .transpose()?;

        let metrics_addr = match get("INV_METRICS_ADDR") {
            Some(v) => {
                v.parse::<MetricsAddr>()
                    .map_err(|reason| ConfigError {
                        var: "INV_METRICS_ADDR",
                        value: v.clone(),
                        reason,
                    })?
                    .0
            }
            None => defaults.metrics_addr,
        };

        Ok(Self {
            service_name,
            service_namespace,
            service_version,
            deployment_environment,
            resource_attributes,
            sdk_disabled: parse_bool(&get, "OTEL_SDK_DISABLED", false)?,
            traces_endpoint: endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")?,
            logs_endpoint: endpoint("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")?,
            metrics_endpoint: endpoint("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")?,
            export_timeout: parse_millis(&get, "OTEL_EXPORTER_OTLP_TIMEOUT", 5_000)?,
            sampler: parse_sampler(get("OTEL_TRACES_SAMPLER"), get("OTEL_TRACES_SAMPLER_ARG"))?,
            span_batch: BatchSettings {
                max_queue_size: parse_num(&get, "OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_QUEUE_SIZE)?,
                max_export_batch_size: parse_num(
                    &get,
                    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                    DEFAULT_BATCH_SIZE,
                )?,
                scheduled_delay: parse_millis(&get, "OTEL_BSP_SCHEDULE_DELAY", 5_000)?,
            },
            log_batch: BatchSettings {
                max_queue_size: parse_num(&get, "OTEL_BLRP_MAX_QUEUE_SIZE", DEFAULT_QUEUE_SIZE)?,
                max_export_batch_size: parse_num(
                    &get,
                    "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
                    DEFAULT_BATCH_SIZE,
                )?,
                scheduled_delay: parse_millis(&get, "OTEL_BLRP_SCHEDULE_DELAY", 1_000)?,
            },
            metric_export_interval: parse_millis(&get, "OTEL_METRIC_EXPORT_INTERVAL", 10_000)?,
            log_filter: get("RUST_LOG").unwrap_or_else(|| "info".into()),
            console: parse_bool(&get, "INV_LOG_CONSOLE", true)?,
            console_filter: get("INV_CONSOLE_FILTER"),
            log_file,
            metrics_addr,
            resource_sample_interval: parse_millis(&get, "INV_RESOURCE_INTERVAL_MS", 5_000)?,
            shutdown_timeout: parse_millis(&get, "INV_SHUTDOWN_TIMEOUT_MS", 5_000)?,
        })
    }

    /// Points all three signals at one endpoint (what `--otlp-endpoint` does).
    pub fn set_endpoint(&mut self, endpoint: &str) -> Result<(), ConfigError> {
        let endpoint = check_endpoint("--otlp-endpoint", endpoint.to_owned())?;
        self.traces_endpoint.clone_from(&endpoint);
        self.logs_endpoint.clone_from(&endpoint);
        self.metrics_endpoint = endpoint;
        Ok(())
    }
}

/// A scheme-less endpoint may silently become https in the exporter (a known pitfall): refuse it.
fn check_endpoint(var: &'static str, value: String) -> Result<String, ConfigError> {
    if value.starts_with("http://") || value.starts_with("https://") {
        Ok(value)
    } else {
        Err(ConfigError {
            var,
            reason: "an OTLP endpoint needs a scheme, e.g. http://localhost:4317".into(),
            value,
        })
    }
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
        assert_eq!(c.service_name, "invbot");
        assert_eq!(c.service_namespace, "inventory");
        assert_eq!(c.service_version, "1.2.3");
        assert_eq!(c.traces_endpoint, DEFAULT_ENDPOINT);
        assert_eq!(c.sampler, SamplerConfig::ParentBasedAlwaysOn);
        assert!(!c.sdk_disabled);
        assert_eq!(c.log_file.unwrap().path, PathBuf::from("logs/invbot.log"));
        assert_eq!(c.metrics_addr, Some(([127, 0, 0, 1], 9100).into()));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
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
        assert_eq!(c.service_name, "bot-a");
        assert_eq!(c.deployment_environment, "prod");
        assert_eq!(
            c.resource_attributes,
            vec![("team".to_owned(), "ops,inventory".to_owned())]
        );
        assert_eq!(c.traces_endpoint, "http://collector:4317");
        assert_eq!(c.logs_endpoint, "http://logs:4317");
        assert_eq!(c.sampler, SamplerConfig::ParentBasedTraceIdRatio(0.25));
        assert_eq!(c.span_batch.max_queue_size, 100);
        assert_eq!(c.log_batch.max_export_batch_size, 7);
        assert_eq!(c.metric_export_interval, Duration::from_millis(1500));
        assert!(c.sdk_disabled);
        assert!(c.log_file.is_none());
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
        c.set_endpoint("http://b:2").unwrap();
        assert_eq!(
            [&c.traces_endpoint, &c.logs_endpoint, &c.metrics_endpoint],
            ["http://b:2"; 3]
        );
        assert!(c.set_endpoint("b:2").is_err());
    }
}
