//! Telemetry names shared by the bot, the API, the dashboards' tests and the verifier: one
//! vocabulary for spans, events, metrics and alerts. Prometheus names derive from these (dots
//! become underscores, the unit and `_total` are appended by the exporters).

/// Service names (resource `service.name`).
pub mod service {
    pub const BOT: &str = "invbot";
    pub const API: &str = "inventory-api";
}

/// Span names.
pub mod span {
    /// Root span of one batch of the bot.
    pub const BATCH: &str = "batch";
    /// One inventory transaction of a batch.
    pub const ITEM: &str = "item";
    /// One attempt at calling the API (client span).
    pub const API_CALL: &str = "api_call";
    /// A retry attempt after a failed call.
    pub const RETRY: &str = "retry";
    /// One database statement or transaction in the API.
    pub const DB: &str = "db";
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

/// Metric instrument names (OTel style).
pub mod metric {
    pub const BATCH_DURATION: &str = "invbot.batch.duration";
    pub const BATCHES: &str = "invbot.batches";
    pub const TRANSACTIONS: &str = "invbot.transactions";
    pub const TRANSACTION_DURATION: &str = "invbot.transaction.duration";
    pub const ERRORS: &str = "invbot.errors";
    pub const RETRIES: &str = "invbot.retries";
    pub const BATCH_SUCCESS_RATIO: &str = "invbot.batch.success_ratio";
    pub const ROWS_REJECTED: &str = "invbot.rows.rejected";
    pub const ALERTS: &str = "invbot.alerts";
    pub const HTTP_SERVER_DURATION: &str = "http.server.request.duration";
    pub const HTTP_SERVER_ERRORS: &str = "http.server.request.errors";
    pub const HTTP_CLIENT_DURATION: &str = "http.client.request.duration";
    pub const DB_DURATION: &str = "db.client.operation.duration";
}

/// Alert names, the same in the bot's alert events and in the Prometheus rules.
pub mod alert {
    pub const BATCH_SLOW: &str = "InvbotBatchSlow";
    pub const ERROR_RATE_HIGH: &str = "InvbotErrorRateHigh";
    pub const CPU_HIGH: &str = "InvbotCpuHigh";
}
