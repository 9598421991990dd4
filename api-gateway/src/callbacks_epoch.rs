//! Telling the dial workers that this gateway has just started serving: carrier callbacks sent
//! while no gateway listened were lost (the carrier gives up after its retries), and the calls
//! they ended still hold their slots. Each start increments
//! [`shared::redis_conn::CALLBACKS_EPOCH`]; the reconcilers watching it ask the carrier about
//! every silent call at once (docs/reliability.md).

use std::time::Duration;

use shared::config::ServiceConfig;
use shared::redis_conn::{CALLBACKS_EPOCH, Redis};
use tokio_util::sync::CancellationToken;

/// Increments the epoch, retrying with backoff until Redis answers or `shutdown`.
pub async fn announce(service: ServiceConfig, shutdown: CancellationToken) {
    let mut pause = Duration::from_millis(100);
    loop {
        let done = async {
            let redis = Redis::connect(&service).await?;
            let mut conn = redis.conn.clone();
            let epoch: i64 = redis::cmd("INCR")
                .arg(redis.key(CALLBACKS_EPOCH))
                .query_async(&mut conn)
                .await?;
            anyhow::Ok(epoch)
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = done => match r {
                Ok(epoch) => {
                    tracing::info!(epoch, "callbacks epoch announced");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "callbacks epoch not announced; retrying"),
            },
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}
