//! Building and serving the gateway: state, router, listener.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use shared::db::Pool;
use shared::queue::{Broker, Publisher};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The system of record.
    pub db: Pool,
    /// Confirmed publishing to the ingest and call-event queues.
    pub publisher: Arc<Publisher>,
    /// Settings.
    pub config: Arc<Config>,
}

/// The whole HTTP API.
pub fn router(state: AppState, readiness: shared::health::Readiness) -> Router {
    Router::new()
        .merge(crate::routes::carrier::router())
        .with_state(state)
        .merge(shared::health::router(readiness))
}

/// Connects to the services, binds `config.addr`, and returns the bound address and the server
/// task; the server stops when `shutdown` is cancelled. Tests bind port 0 through this.
pub async fn spawn(
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let db = shared::db::connect(&config.service).await?;
    let broker = Broker::connect(&config.service, "api-gateway").await?;
    let readiness = shared::health::Readiness {
        db: Some(db.clone()),
        broker: Some(broker.clone()),
        ..Default::default()
    };
    let state = AppState {
        db,
        publisher: Arc::new(Publisher::new(broker)),
        config: Arc::new(config.clone()),
    };
    let app = router(state, readiness);
    Ok(shared::health::serve(config.addr, app, shutdown).await?)
}

/// Serves until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (addr, server) = spawn(config, shutdown).await?;
    tracing::info!(%addr, "api-gateway listening");
    server.await??;
    Ok(())
}
