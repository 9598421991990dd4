//! Redis connection handling. Redis holds only what may be lost and rebuilt (slots, rate
//! buckets), so a Redis outage slows dialing but never loses a contact.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::ServiceConfig;
use crate::connect::{ConnectError, with_backoff};

/// A Redis connection that reconnects by itself (redis-rs `ConnectionManager`), plus the key
/// prefix every key of this deployment carries.
#[derive(Clone)]
pub struct Redis {
    /// The multiplexed connection; clone it freely.
    pub conn: ConnectionManager,
    /// Prepended to every key (`REDIS_PREFIX`).
    pub prefix: String,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// The key (under the prefix) a gateway increments each time it starts serving: carrier
/// callbacks sent while it was down were lost, so the dial workers' reconcilers ask the carrier
/// about every silent call at once when it changes, instead of waiting for the calls' silence
/// to reach `RECONCILE_AFTER_SECS`.
pub const CALLBACKS_EPOCH: &str = "callbacks:epoch";

impl Redis {
    /// How long a request waits for its answer on a connection from [`Redis::connect`]
    /// (redis-rs's default). A caller that sends much at once bounds what it has in flight
    /// (the dial-worker's window) rather than raising this.
    pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

    /// Connects, retrying with backoff up to the connect timeout.
    pub async fn connect(cfg: &ServiceConfig) -> Result<Self, ConnectError> {
        Self::connect_with(cfg, Self::RESPONSE_TIMEOUT).await
    }

    /// Like [`Redis::connect`], with its own connection and `response_timeout`: for work that
    /// must not queue behind other traffic and may legitimately take longer (a pipeline
    /// renewing thousands of leases on a slow Redis).
    pub async fn connect_with(
        cfg: &ServiceConfig,
        response_timeout: Duration,
    ) -> Result<Self, ConnectError> {
        let client = redis::Client::open(cfg.redis_url.as_str()).map_err(|e| ConnectError {
            service: "Redis",
            url: crate::config::redact_url(&cfg.redis_url),
            cause: e.to_string(),
        })?;
        let conn = with_backoff("Redis", &cfg.redis_url, cfg.connect_timeout, || {
            let client = client.clone();
            async move {
                let config =
                    ConnectionManagerConfig::new().set_response_timeout(Some(response_timeout));
                let mut conn = ConnectionManager::new_with_config(client, config).await?;
                redis::cmd("PING").query_async::<String>(&mut conn).await?;
                Ok::<_, redis::RedisError>(conn)
            }
        })
        .await?;
        Ok(Self {
            conn,
            prefix: cfg.redis_prefix.clone(),
        })
    }

    /// `prefix` + `key`.
    pub fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    /// Whether Redis answers now (for `/readyz`).
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    }
}
