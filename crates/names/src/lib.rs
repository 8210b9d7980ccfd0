//! The pipeline's vocabulary, in one place: the names the bot and the API emit (services, spans,
//! events, attributes, metrics, alerts) and the names the backends show them by (Jaeger's span
//! names, the Prometheus forms of the metrics and labels), for the code that emits them, the
//! verifier that looks for them, and the tests that hold the dashboards and alert rules to them.
//!
//! Standard OpenTelemetry keys (`http.route`, `error.type`, `service.instance.id`, ...) come from
//! `opentelemetry-semantic-conventions` where they are used; only the project's own live here.

/// Service names (resource `service.name`) and their namespace (`service.namespace`).
pub mod service {
    pub const BOT: &str = "invbot";
    pub const API: &str = "inventory-api";
    pub const NAMESPACE: &str = "inventory";
}

/// Meter (instrumentation scope) names; Prometheus shows them as `otel_scope_name`.
pub mod scope {
    pub const BOT: &str = super::service::BOT;
    pub const API: &str = super::service::API;
    /// The telemetry library's resource metrics (CPU, memory, disk).
    pub const RESOURCES: &str = "telemetry.resources";
}

/// Span names, as Jaeger shows them.
pub mod span {
    /// Root span of one batch of the bot.
    pub const BATCH: &str = "batch";
    /// One inventory transaction of a batch.
    pub const ITEM: &str = "item";
    /// A retry attempt after a failed call.
    pub const RETRY: &str = "retry";
    /// The bot's client span of one API call attempt, as the JSON log file names it; Jaeger
    /// shows it by its `otel.name`, [`POST_TRANSACTIONS`].
    pub const API_CALL: &str = "api_call";
    /// The API's server span of one request, as the JSON log file names it; Jaeger shows it as
    /// `{method} {route}` (for the transactions endpoint, [`POST_TRANSACTIONS`]).
    pub const HTTP_REQUEST: &str = "HTTP request";
    /// The API's span of one database operation, as the JSON log file names it; Jaeger shows it
    /// as `{DB_SYSTEM} {operation}` (for a transaction, [`DB_APPLY_TRANSACTION`]).
    pub const DB: &str = "db";
    /// The route of the API's transactions endpoint.
    pub const TRANSACTIONS_ROUTE: &str = "/transactions";
    /// One attempt at calling the API: the bot's client span and the API's server span both
    /// carry the HTTP semantic-convention name `{method} {route}`.
    pub const POST_TRANSACTIONS: &str = "POST /transactions";
    /// The database of the API's spans `sqlite <operation>` (`db.system.name`).
    pub const DB_SYSTEM: &str = "sqlite";
    /// The API's database span of one transaction.
    pub const DB_APPLY_TRANSACTION: &str = "sqlite apply_transaction";
}

/// The `event` field of structured log events.
pub mod event {
    pub const RUN_START: &str = "run_start";
    pub const RUN_END: &str = "run_end";
    pub const BATCH_START: &str = "batch_start";
    pub const BATCH_END: &str = "batch_end";
    pub const ITEM_PROCESSED: &str = "item_processed";
    pub const ITEM_REJECTED: &str = "item_rejected";
    pub const API_ERROR: &str = "api_error";
    pub const RETRY_SUCCESS: &str = "retry_success";
    pub const ALERT: &str = "alert";
    pub const TRANSACTION_APPLIED: &str = "transaction_applied";
}

/// The project's own attribute keys, on spans, log events and metrics.
pub mod attr {
    /// Every batch span and run event: ties a whole run together (Jaeger tag search).
    pub const RUN_ID: &str = "run_id";
    pub const BATCH_ID: &str = "batch_id";
    pub const WAREHOUSE_ID: &str = "warehouse_id";
    /// `applied`, `replayed`, `failed` on `invbot.transactions`.
    pub const OUTCOME: &str = "outcome";
    /// The transaction's operation (`receive`, `ship`, `adjust`).
    pub const OPERATION: &str = "operation";
    /// `ok` or `failed` on the batch metrics.
    pub const BATCH_RESULT: &str = "batch.result";
    /// An alert event's name and state (`firing`, `resolved`).
    pub const ALERTNAME: &str = "alertname";
    pub const ALERTSTATE: &str = "alertstate";
}

/// A metric instrument: its OTel name and unit, and the name Prometheus shows it by (the
/// collector's exporter with `UnderscoreEscapingWithSuffixes`: dots become underscores, the unit
/// a suffix, counters end in `_total`; a histogram's series add `_bucket`, `_sum`, `_count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub unit: &'static str,
    pub prometheus: &'static str,
}

/// Metric instruments.
pub mod metric {
    use super::Metric;

    const fn m(name: &'static str, unit: &'static str, prometheus: &'static str) -> Metric {
        Metric {
            name,
            unit,
            prometheus,
        }
    }

    // The bot.
    pub const BATCH_DURATION: Metric = m(
        "invbot.batch.duration",
        "s",
        "invbot_batch_duration_seconds",
    );
    pub const BATCHES: Metric = m("invbot.batches", "{batch}", "invbot_batches_total");
    pub const BATCH_SUCCESS_RATIO: Metric = m(
        "invbot.batch.success_ratio",
        "1",
        "invbot_batch_success_ratio",
    );
    pub const TRANSACTIONS: Metric = m(
        "invbot.transactions",
        "{transaction}",
        "invbot_transactions_total",
    );
    pub const TRANSACTION_DURATION: Metric = m(
        "invbot.transaction.duration",
        "s",
        "invbot_transaction_duration_seconds",
    );
    pub const ERRORS: Metric = m("invbot.errors", "{error}", "invbot_errors_total");
    pub const RETRIES: Metric = m("invbot.retries", "{retry}", "invbot_retries_total");
    pub const ROWS_REJECTED: Metric = m(
        "invbot.rows.rejected",
        "{row}",
        "invbot_rows_rejected_total",
    );
    pub const ALERTS: Metric = m("invbot.alerts", "{alert}", "invbot_alerts_total");
    pub const HTTP_CLIENT_DURATION: Metric = m(
        "http.client.request.duration",
        "s",
        "http_client_request_duration_seconds",
    );
    // The API.
    pub const HTTP_SERVER_DURATION: Metric = m(
        "http.server.request.duration",
        "s",
        "http_server_request_duration_seconds",
    );
    pub const HTTP_SERVER_ERRORS: Metric = m(
        "http.server.request.errors",
        "{error}",
        "http_server_request_errors_total",
    );
    pub const DB_DURATION: Metric = m(
        "db.client.operation.duration",
        "s",
        "db_client_operation_duration_seconds",
    );
    // Both, from the telemetry library's resource sampler.
    pub const PROCESS_CPU_UTILIZATION: Metric = m(
        "process.cpu.utilization",
        "1",
        "process_cpu_utilization_ratio",
    );
    pub const PROCESS_MEMORY_USAGE: Metric =
        m("process.memory.usage", "By", "process_memory_usage_bytes");
    pub const PROCESS_MEMORY_VIRTUAL: Metric = m(
        "process.memory.virtual",
        "By",
        "process_memory_virtual_bytes",
    );
    pub const PROCESS_DISK_IO: Metric = m("process.disk.io", "By", "process_disk_io_bytes_total");
    pub const SYSTEM_CPU_UTILIZATION: Metric = m(
        "system.cpu.utilization",
        "1",
        "system_cpu_utilization_ratio",
    );
    pub const SYSTEM_MEMORY_USAGE: Metric =
        m("system.memory.usage", "By", "system_memory_usage_bytes");
    pub const SYSTEM_MEMORY_UTILIZATION: Metric = m(
        "system.memory.utilization",
        "1",
        "system_memory_utilization_ratio",
    );

    /// Every metric the bot and the API emit.
    pub const ALL: [Metric; 20] = [
        BATCH_DURATION,
        BATCHES,
        BATCH_SUCCESS_RATIO,
        TRANSACTIONS,
        TRANSACTION_DURATION,
        ERRORS,
        RETRIES,
        ROWS_REJECTED,
        ALERTS,
        HTTP_CLIENT_DURATION,
        HTTP_SERVER_DURATION,
        HTTP_SERVER_ERRORS,
        DB_DURATION,
        PROCESS_CPU_UTILIZATION,
        PROCESS_MEMORY_USAGE,
        PROCESS_MEMORY_VIRTUAL,
        PROCESS_DISK_IO,
        SYSTEM_CPU_UTILIZATION,
        SYSTEM_MEMORY_USAGE,
        SYSTEM_MEMORY_UTILIZATION,
    ];
}

/// Alert names, the same in the bot's alert events and in the Prometheus rules.
pub mod alert {
    pub const BATCH_SLOW: &str = "InvbotBatchSlow";
    pub const ERROR_RATE_HIGH: &str = "InvbotErrorRateHigh";
    pub const CPU_HIGH: &str = "InvbotCpuHigh";

    /// The bot's own threshold alerts.
    pub const ALL: [&str; 3] = [BATCH_SLOW, ERROR_RATE_HIGH, CPU_HIGH];
}

/// Names as Prometheus shows them, beyond the metrics' own.
pub mod prometheus {
    /// Labels made from resource attributes (`resource_to_telemetry_conversion`) and spans.
    pub mod label {
        pub const SERVICE_NAME: &str = "service_name";
        pub const SERVICE_INSTANCE_ID: &str = "service_instance_id";
        pub const DEPLOYMENT_ENVIRONMENT_NAME: &str = "deployment_environment_name";
        pub const SPAN_NAME: &str = "span_name";
        pub const TRACE_ID: &str = "trace_id";
        pub const SPAN_ID: &str = "span_id";
    }

    /// The collector's spanmetrics connector (namespace `traces.span.metrics`).
    pub mod spanmetrics {
        pub const CALLS: &str = "traces_span_metrics_calls_total";
        pub const DURATION: &str = "traces_span_metrics_duration_seconds";
    }
}

/// How an error reads in every log line and report, in every crate: the error and its sources,
/// `outer: inner: innermost` (an error's own message, reqwest's for one, rarely says why). Here
/// because this is the one crate the bot, the API and the verifier all depend on.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{error_chain, metric};

    #[test]
    fn an_error_chain_names_every_cause() {
        let error = Wrapped(std::io::Error::other("connection refused"));
        assert_eq!(error_chain(&error), "cannot connect: connection refused");
        assert_eq!(error_chain(&error.0), "connection refused");
    }

    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("cannot connect")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn prometheus_forms_follow_the_exporters_translation() {
        for m in metric::ALL {
            let base = m.name.replace('.', "_");
            let suffix = match m.unit {
                "s" => "_seconds",
                "By" => "_bytes",
                "1" if !base.ends_with("_ratio") => "_ratio",
                _ => "",
            };
            let counter = m.prometheus.ends_with("_total");
            let expected = format!("{base}{suffix}{}", if counter { "_total" } else { "" });
            assert_eq!(m.prometheus, expected, "{}", m.name);
        }
    }
}
