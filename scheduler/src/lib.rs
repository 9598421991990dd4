//! Releases due contacts for dialing, only while their job is started and its schedule window is open.

pub mod config;

use tokio_util::sync::CancellationToken;

use config::Config;

/// Connects to its services (retrying with backoff), serves its health endpoints, and works
/// until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let db = shared::db::connect(&config.service).await?;
    let broker = shared::queue::Broker::connect(&config.service, "scheduler").await?;
    let readiness = shared::health::Readiness {
        db: Some(db.clone()),
        broker: Some(broker.clone()),
        ..Default::default()
    };
    let (addr, health) = shared::health::serve(
        config.health_addr,
        shared::health::router(readiness),
        shutdown.clone(),
    )
    .await?;
    tracing::info!(%addr, "scheduler ready");

    shutdown.cancelled().await;
    broker.close().await;
    health.await??;
    Ok(())
}
