//! Building and serving the gateway: router, listener.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::response::IntoResponse;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::state::AppState;
use shared::queue::{Broker, Publisher};

/// The whole HTTP API.
pub fn router(state: AppState, readiness: shared::health::Readiness) -> Router {
    let body_limit = state.config.max_body_bytes;
    let api = crate::routes::router()
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state);
    Router::new()
        .merge(api)
        .merge(shared::health::router(readiness))
        .route("/openapi.json", axum::routing::get(crate::openapi::serve))
        .fallback(|| async { crate::error::ApiError::NotFound("route") })
        .layer(axum::middleware::from_fn(shared::metrics::http::track))
        // A bug must never take a connection down without an answer: a panic becomes a 500.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            crate::error::ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
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
    let publisher = Arc::new(Publisher::new(broker.clone()));
    // Carrier callbacks stored while the broker was unavailable go out once it is back; its
    // own publisher (channel), so a relay batch never queues behind live callbacks.
    tokio::spawn(crate::callback_outbox::relay(
        db.clone(),
        Arc::new(Publisher::new(broker)),
        shutdown.clone(),
    ));
    // The batch counters' deltas (migration V12) are folded every second, so a count reads
    // about a second of them at most; any number of replicas may run this (one folds at a time).
    tokio::spawn(shared::db::counters::fold_every(
        db.clone(),
        std::time::Duration::from_secs(1),
        shutdown.clone(),
    ));
    let config = crate::monitor::secret::resolve(&db, config).await?;
    let monitor = Arc::new(crate::monitor::hub::Hub::new(
        db.clone(),
        config.monitor_refresh,
        shutdown.clone(),
    ));
    let limiter = crate::rate_limit::RequestLimiter::start(
        &config.service,
        &config.rate_limit,
        shutdown.clone(),
    );
    let state = AppState {
        monitor,
        limiter,
        db,
        publisher,
        config: Arc::new(config.clone()),
    };
    let app = router(state, readiness);
    let served = shared::health::serve(config.addr, app, shutdown.clone()).await?;
    // Listening now: callbacks from here on arrive; those sent before may be lost.
    tokio::spawn(crate::callbacks_epoch::announce(
        config.service.clone(),
        shutdown,
    ));
    Ok(served)
}

/// Serves until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (addr, server) = spawn(config, shutdown).await?;
    tracing::info!(
        %addr,
        rules_version = crate::jurisdiction::version(),
        "api-gateway listening"
    );
    server.await??;
    Ok(())
}
