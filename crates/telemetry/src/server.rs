//! The service's own HTTP endpoint: `/metrics` (Prometheus text, from the same meter provider that
//! exports over OTLP), `/healthz` (the process is alive) and `/readyz` (what the service needs is
//! reachable; the service supplies the check).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::{Encoder, TextEncoder};
use tokio_util::sync::CancellationToken;

/// A readiness check: `Ok(())` when ready, `Err(reason)` otherwise.
pub type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

#[derive(Clone)]
struct AppState {
    registry: Option<prometheus::Registry>,
    readiness: Option<ReadinessCheck>,
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    let families = state.registry.map(|r| r.gather()).unwrap_or_default();
    let mut body = Vec::new();
    let encoder = TextEncoder::new();
    match encoder.encode(&families, &mut body) {
        Ok(()) => ([(header::CONTENT_TYPE, encoder.format_type())], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    let result = match &state.readiness {
        Some(check) => check().await,
        None => Ok(()),
    };
    match result {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "not ready", "reason": reason })),
        )
            .into_response(),
    }
}

/// The running endpoint; stops when the token is cancelled.
#[derive(Debug)]
pub(crate) struct MetricsServer {
    pub(crate) addr: SocketAddr,
    stop: CancellationToken,
}

impl MetricsServer {
    /// Starts the endpoint, or warns through `dispatch` and goes on without it: a busy port
    /// (9100 is node_exporter's too) must not stop the program.
    pub(crate) fn start_or_warn(
        addr: SocketAddr,
        registry: Option<prometheus::Registry>,
        readiness: Option<ReadinessCheck>,
        dispatch: &tracing::Dispatch,
    ) -> Option<Self> {
        Self::start(addr, registry, readiness)
            .inspect_err(|error| {
                tracing::dispatcher::with_default(dispatch, || {
                    tracing::warn!(%addr, %error,
                        "cannot serve /metrics, /healthz and /readyz; going on without them");
                });
            })
            .ok()
    }

    /// Binds synchronously so a busy port is known at init, then serves on the current runtime.
    fn start(
        addr: SocketAddr,
        registry: Option<prometheus::Registry>,
        readiness: Option<ReadinessCheck>,
    ) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let app = router(AppState {
            registry,
            readiness,
        });
        let stopped = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await;
        });
        Ok(Self { addr, stop })
    }

    pub(crate) fn stop(&self) {
        self.stop.cancel();
    }
}
