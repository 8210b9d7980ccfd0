//! The instrumented inventory bot (seeds 000/001): reads transactions, applies them batch by batch
//! through the inventory API, and reports what happened in traces, logs, metrics and a summary.

pub mod alerts;
pub mod api_process;
pub mod client;
pub mod generate;
pub mod input;
pub mod report;
pub mod runner;
pub mod summary;
pub mod untrusted;
