//! Dials released contacts through the carrier within the workspace's and job's concurrency and rate limits, records outcomes and schedules retries.

pub mod config;

use tokio_util::sync::CancellationToken;

use config::Config;

/// Connects to its services (retrying with backoff), serves its health endpoints, and works
/// until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let db = shared::db::connect(&config.service).await?;
    let broker = shared::queue::Broker::connect(&config.service, "dial-worker").await?;
    let redis = shared::redis_conn::Redis::connect(&config.service).await?;
    let readiness = shared::health::Readiness {
        db: Some(db.clone()),
        broker: Some(broker.clone()),
        redis: Some(redis.clone()),
    };
    let (addr, health) = shared::health::serve(
        config.health_addr,
        shared::health::router(readiness),
        shutdown.clone(),
    )
    .await?;
    tracing::info!(%addr, "dial-worker ready");

    shutdown.cancelled().await;
    broker.close().await;
    health.await??;
    Ok(())
}
