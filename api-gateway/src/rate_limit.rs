//! Each workspace's request rate, fleet-wide: one token bucket per workspace in Redis
//! (`shared::gcra`), so every gateway replica draws from the same one.
//!
//! Checked when a request authenticates ([`crate::auth::Workspace`]), from the limits read
//! with the key in the same query, before the body is read: every tenant request is counted and
//! nothing else is — health and readiness probes, the carrier's status callbacks (signed by
//! the carrier, never to be dropped) and the monitor pages (signed links) carry no API key.
//!
//! Redis is a guard here, not a dependency: when it cannot answer (not connected yet, down,
//! slower than [`Settings::timeout`]) the request is let through and counted in
//! `dialfleet_rate_limit_fail_open_total`. Refusing instead would turn a Redis blip into an
//! outage of the whole API.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use shared::config::ServiceConfig;
use shared::gcra::Limit;
use shared::redis_conn::Redis;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The defaults a new workspace gets (also the columns' defaults, migration V20).
pub const DEFAULT_REQUESTS_PER_SECOND: i32 = 50;
/// See [`DEFAULT_REQUESTS_PER_SECOND`].
pub const DEFAULT_REQUEST_BURST: i32 = 100;

/// How the limiter reaches Redis.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The longest a request waits for Redis's answer before it is let through
    /// (`RATE_LIMIT_TIMEOUT_MS`).
    pub timeout: Duration,
}

/// The buckets' Redis, connected in the background.
#[derive(Debug, Default)]
pub struct RequestLimiter {
    redis: OnceLock<Redis>,
}

impl RequestLimiter {
    /// A limiter that connects to `service`'s Redis in the background (retrying until
    /// `shutdown`), letting every request through until it has. The gateway starts and serves
    /// without Redis.
    pub fn start(
        service: &ServiceConfig,
        settings: &Settings,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let limiter = Arc::new(Self::default());
        let (service, timeout, this) = (service.clone(), settings.timeout, limiter.clone());
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(100);
            loop {
                let connect = Redis::connect_with(&service, timeout);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    connected = connect => match connected {
                        Ok(redis) => {
                            let _ = this.redis.set(redis);
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "rate limiter: Redis unreachable; requests are not limited until it is"),
                    },
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        });
        limiter
    }

    /// Takes one request from `workspace`'s bucket: `Err(wait)` when over the limit.
    pub async fn check(
        &self,
        workspace: Uuid,
        per_second: i32,
        burst: i32,
    ) -> Result<(), Duration> {
        let Some(redis) = self.redis.get() else {
            shared::metrics::rate_limit_fail_open();
            return Ok(());
        };
        let limit = Limit {
            per_second: u32::try_from(per_second).unwrap_or(1).max(1),
            burst: u32::try_from(burst).unwrap_or(1).max(1),
        };
        let key = redis.key(&format!("requests:{workspace}"));
        let mut conn = redis.conn.clone();
        match shared::gcra::take(&mut conn, &key, limit).await {
            Ok(None) => Ok(()),
            Ok(Some(wait)) => Err(wait),
            Err(e) => {
                tracing::debug!(error = %e, "rate limiter: Redis failed; request let through");
                shared::metrics::rate_limit_fail_open();
                Ok(())
            }
        }
    }
}
