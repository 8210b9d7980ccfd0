//! The telemetry flags both binaries take (feature `cli`): flatten [`TelemetryArgs`] into the
//! binary's parser, then [`TelemetryArgs::apply`] it to the [`Config`] read from the environment,
//! so a flag beats the environment.
//!
//! No flag reads a variable itself (no clap `env`): [`Config::from_lookup`] already reads each
//! one, with the OTel rules (an empty value is unset; a per-signal endpoint beats the general
//! one), and a second reader would break them.

use crate::{Config, MetricsAddr, OtlpEndpoint, Protocol};

/// Overrides of the telemetry configuration.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Telemetry")]
pub struct TelemetryArgs {
    /// OTLP endpoint for traces, metrics and logs, with its scheme; as the general endpoint,
    /// so OTLP/HTTP appends /v1/<signal> [default: OTEL_EXPORTER_OTLP_*ENDPOINT or
    /// http://localhost:4317 (grpc), http://localhost:4318 (http/protobuf)].
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<OtlpEndpoint>,
    /// OTLP protocol of all three signals, grpc or http/protobuf [default:
    /// OTEL_EXPORTER_OTLP_*PROTOCOL or grpc].
    #[arg(long, value_name = "PROTOCOL")]
    pub otlp_protocol: Option<Protocol>,
    /// service.name [default: OTEL_SERVICE_NAME, or the program's own].
    #[arg(long, value_name = "NAME")]
    pub service_name: Option<String>,
    /// deployment.environment.name [default: from OTEL_RESOURCE_ATTRIBUTES, or local].
    #[arg(long, value_name = "NAME")]
    pub environment: Option<String>,
    /// Address of /metrics, /healthz and /readyz, or "off" [default: INV_METRICS_ADDR, or the
    /// program's own: 127.0.0.1:9100 for invbot, 127.0.0.1:9101 for inventory-api].
    #[arg(long, value_name = "ADDR|off")]
    pub metrics_addr: Option<MetricsAddr>,
}

impl TelemetryArgs {
    /// Overrides what each given flag names; the rest of `config` stays as the environment made it.
    pub fn apply(&self, config: &mut Config) {
        if let Some(endpoint) = &self.otlp_endpoint {
            config.export.set_endpoint(endpoint);
        }
        if let Some(protocol) = self.otlp_protocol {
            config.export.set_protocol(protocol);
        }
        if let Some(name) = &self.service_name {
            config.resource.service_name.clone_from(name);
        }
        if let Some(environment) = &self.environment {
            config
                .resource
                .deployment_environment
                .clone_from(environment);
        }
        if let Some(MetricsAddr(addr)) = self.metrics_addr {
            config.metrics_addr = addr;
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::Defaults;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        telemetry: TelemetryArgs,
    }

    fn parse(args: &[&str]) -> Result<TelemetryArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("prog").chain(args.iter().copied()))
            .map(|cli| cli.telemetry)
    }

    fn config() -> Config {
        let env = [("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://a:1")];
        Config::from_lookup(
            Defaults {
                service_name: "svc".into(),
                service_version: "1".into(),
                metrics_addr: Some(([127, 0, 0, 1], 9100).into()),
                spool_dir: None,
            },
            |k| {
                env.iter()
                    .find(|(v, _)| *v == k)
                    .map(|(_, x)| (*x).to_owned())
            },
        )
        .expect("a valid configuration")
    }

    #[test]
    fn each_flag_overrides_its_setting_and_nothing_else() {
        let mut c = config();
        let untouched = c.clone();
        parse(&[]).unwrap().apply(&mut c);
        assert_eq!(c, untouched);

        parse(&[
            "--otlp-endpoint",
            "http://b:2",
            "--service-name",
            "other",
            "--environment",
            "ci",
            "--metrics-addr",
            "off",
        ])
        .unwrap()
        .apply(&mut c);
        let urls = |c: &Config| c.export.signals().map(|s| s.url());
        assert_eq!(urls(&c), ["http://b:2"; 3]);

        // The flag's endpoint is a general one, whichever flag comes first.
        parse(&["--otlp-protocol", "http/protobuf"])
            .unwrap()
            .apply(&mut c);
        assert_eq!(
            urls(&c),
            [
                "http://b:2/v1/traces",
                "http://b:2/v1/logs",
                "http://b:2/v1/metrics"
            ]
        );
        assert_eq!(c.resource.service_name, "other");
        assert_eq!(c.resource.deployment_environment, "ci");
        assert_eq!(c.metrics_addr, None);
        assert_eq!(c.logs, untouched.logs);
    }

    #[test]
    fn a_bad_value_is_a_usage_error_naming_the_flag() {
        let err = parse(&["--otlp-endpoint", "b:2"]).unwrap_err().to_string();
        assert!(
            err.contains("--otlp-endpoint") && err.contains("needs a scheme"),
            "{err}"
        );
        let err = parse(&["--metrics-addr", "nine"]).unwrap_err().to_string();
        assert!(err.contains("--metrics-addr"), "{err}");
        let err = parse(&["--otlp-protocol", "http/json"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--otlp-protocol") && err.contains("grpc or http/protobuf"),
            "{err}"
        );
    }
}
