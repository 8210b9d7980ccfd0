//! The inventory HTTP service the bot calls: items per warehouse and idempotent stock
//! transactions, over an embedded SQLite database.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use inventory_api::{AppState, Db, FaultConfig};
//! let db = Db::open(std::path::Path::new("inventory.db"))?;
//! db.seed_demo_catalog().await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = inventory_api::spawn(listener, AppState::new(db, FaultConfig::default()))?;
//! println!("serving on {}", server.url()); // the port the OS chose
//! server.stop().await?; // graceful: open requests finish first
//! # Ok(()) }
//! ```
//!
//! Telemetry goes through `tracing` and the global OTel meter; [`cli::main_from`] (what the
//! binary runs) sets both up through the workspace's telemetry crate.

pub mod cli;
mod db;
mod error;
mod fault;
mod http_telemetry;
mod model;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::AppError;

pub use db::{Db, DbError, OpenError};
pub use fault::{ErrorRate, ErrorRateError, FaultConfig};
pub use model::{
    DEMO_QUANTITY, DEMO_SKUS, DEMO_WAREHOUSES, ErrorBody, Item, Kind, TransactionRequest,
    TransactionResponse, demo_sku, demo_warehouse,
};

/// What every handler shares; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    db: Db,
    faults: FaultConfig,
    http_metrics: Arc<http_telemetry::HttpMetrics>,
}

impl AppState {
    /// Creates the HTTP instruments from the global meter: build it after telemetry is set up.
    pub fn new(db: Db, faults: FaultConfig) -> Self {
        Self {
            db,
            faults,
            http_metrics: Arc::new(http_telemetry::HttpMetrics::new()),
        }
    }
}

/// The API routes, traced and measured, plus the untraced `/healthz` and `/readyz`.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/items", post(routes::create_item))
        .route("/items/{warehouse_id}/{sku}", get(routes::get_item))
        .route(
            names::span::TRANSACTIONS_ROUTE,
            post(routes::create_transaction),
        )
        .fallback(|| async { AppError::NoRoute })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        // `layer` (not `route_layer`) so the fallbacks are measured too, as route "unmatched".
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.http_metrics),
            http_telemetry::track,
        ));
    let probes = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(routes::readyz));
    api.merge(probes).with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, then waits for open requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves the API on a background task: `spawn(TcpListener::bind("127.0.0.1:0").await?, state)`
/// runs an instance on a free port for tests and for programs that embed the API.
pub fn spawn(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<Server> {
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve(listener, state, stop.clone().cancelled_owned()));
    Ok(Server { addr, stop, task })
}

/// A running instance from [`spawn`]; dropping it starts a graceful shutdown.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops taking connections and waits for open requests to finish.
    pub async fn stop(mut self) -> std::io::Result<()> {
        self.stop.cancel();
        (&mut self.task).await.map_err(std::io::Error::other)?
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
