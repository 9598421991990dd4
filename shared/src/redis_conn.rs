//! Redis connection handling. Redis holds only what may be lost and rebuilt (slots, rate
//! buckets), so a Redis outage slows dialing but never loses a contact.

use redis::aio::ConnectionManager;

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

impl Redis {
    /// Connects, retrying with backoff up to the connect timeout.
    pub async fn connect(cfg: &ServiceConfig) -> Result<Self, ConnectError> {
        let client = redis::Client::open(cfg.redis_url.as_str()).map_err(|e| ConnectError {
            service: "Redis",
            url: crate::config::redact_url(&cfg.redis_url),
            cause: e.to_string(),
        })?;
        let conn = with_backoff("Redis", &cfg.redis_url, cfg.connect_timeout, || {
            let client = client.clone();
            async move {
                let mut conn = ConnectionManager::new(client).await?;
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
