//! Redis connection handling. Redis holds only what may be lost and rebuilt (slots, rate
//! buckets), so a Redis outage slows dialing but never loses a contact.
//!
//! With `REDIS_SENTINELS` set, the primary's address is asked of the Sentinels at connect and
//! asked again whenever a command fails in a way a failover causes (the connection lost or
//! refused, a `READONLY` answer from a demoted primary): the next command after the Sentinels
//! have promoted a replica goes to it, with no restart.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;

use crate::config::ServiceConfig;
use crate::connect::{ConnectError, with_backoff};

/// A Redis connection that reconnects by itself (redis-rs `ConnectionManager`), plus the key
/// prefix every key of this deployment carries.
#[derive(Clone)]
pub struct Redis {
    /// The multiplexed connection; clone it freely.
    pub conn: RedisConn,
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

/// Where the primary is: `REDIS_URL`, or what the Sentinels say.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    url: String,
    sentinels: Vec<String>,
    master: String,
}

impl RedisTarget {
    /// The target `cfg` names.
    pub fn from_config(cfg: &ServiceConfig) -> Self {
        Self {
            url: cfg.redis_url.clone(),
            sentinels: cfg.redis_sentinels.clone(),
            master: cfg.redis_sentinel_master.clone(),
        }
    }

    /// Whether the primary is found through Sentinels.
    pub fn uses_sentinels(&self) -> bool {
        !self.sentinels.is_empty()
    }

    /// The URL of the primary now: `REDIS_URL`, or the address the first Sentinel that answers
    /// gives for the master name (with `REDIS_URL`'s credentials and database).
    pub async fn primary_url(&self) -> Result<String, RedisError> {
        if self.sentinels.is_empty() {
            return Ok(self.url.clone());
        }
        let mut last = None;
        for sentinel in &self.sentinels {
            match ask_sentinel(sentinel, &self.master).await {
                Ok(Some((host, port))) => return Ok(with_host(&self.url, &host, port)),
                Ok(None) => {
                    last = Some(RedisError::from((
                        redis::ErrorKind::Client,
                        "the Sentinel does not know the master name",
                        self.master.clone(),
                    )))
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| RedisError::from((redis::ErrorKind::Io, "no Sentinel answered"))))
    }
}

/// `SENTINEL get-master-addr-by-name`, bounded by a second.
async fn ask_sentinel(sentinel: &str, master: &str) -> Result<Option<(String, u16)>, RedisError> {
    let client = redis::Client::open(sentinel)?;
    let ask = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(master)
            .query_async::<Option<(String, u16)>>(&mut conn)
            .await
    };
    tokio::time::timeout(Duration::from_secs(1), ask)
        .await
        .unwrap_or_else(|_| {
            Err(RedisError::from((
                redis::ErrorKind::Io,
                "Sentinel timed out",
            )))
        })
}

/// `url` (a `redis://` URL) with its host and port replaced.
fn with_host(url: &str, host: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let (user, hostrest) = match rest.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), rest),
    };
    let path = hostrest.find('/').map_or("/", |i| &hostrest[i..]);
    format!("{scheme}://{user}{host}:{port}{path}")
}

/// The process's connection to the primary: a `ConnectionManager` (which reconnects to its
/// address by itself), replaced by one to the new primary when the Sentinels name another.
#[derive(Clone)]
pub struct RedisConn {
    current: Arc<RwLock<(String, ConnectionManager)>>,
    target: RedisTarget,
    response_timeout: Duration,
    /// When the Sentinels were last asked; asked at most once a second.
    last_check: Arc<Mutex<Option<Instant>>>,
}

impl RedisConn {
    async fn open(target: RedisTarget, response_timeout: Duration) -> Result<Self, RedisError> {
        let url = target.primary_url().await?;
        let manager = manager(&url, response_timeout).await?;
        Ok(Self {
            current: Arc::new(RwLock::new((url, manager))),
            target,
            response_timeout,
            last_check: Arc::new(Mutex::new(None)),
        })
    }

    async fn manager(&self) -> ConnectionManager {
        self.current.read().await.1.clone()
    }

    /// After an error a failover may explain: asks the Sentinels where the primary is and, if
    /// it moved, connects there. Errors of the check itself are left to the next command.
    async fn after_error(&self, e: &RedisError) {
        let failover_like = e.is_io_error()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.is_timeout()
            || e.to_string().contains("READONLY");
        if !self.target.uses_sentinels() || !failover_like {
            return;
        }
        {
            let mut last = self.last_check.lock().await;
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return;
            }
            *last = Some(Instant::now());
        }
        let Ok(url) = self.target.primary_url().await else {
            return;
        };
        if self.current.read().await.0 == url {
            return;
        }
        match manager(&url, self.response_timeout).await {
            Ok(m) => {
                tracing::warn!(primary = %crate::config::redact_url(&url), "Redis primary moved (Sentinel), reconnected");
                *self.current.write().await = (url, m);
            }
            Err(e) => tracing::warn!(error = %e, "the new Redis primary is not reachable yet"),
        }
    }
}

async fn manager(url: &str, response_timeout: Duration) -> Result<ConnectionManager, RedisError> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(response_timeout))
        .set_connection_timeout(Some(Duration::from_secs(2)));
    ConnectionManager::new_with_config(client, config).await
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut m = self.manager().await;
            let result = m.req_packed_command(cmd).await;
            if let Err(e) = &result {
                self.after_error(e).await;
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut m = self.manager().await;
            let result = m.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &result {
                self.after_error(e).await;
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        0
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
        let target = RedisTarget::from_config(cfg);
        let shown = if target.uses_sentinels() {
            cfg.redis_sentinels.join(",")
        } else {
            cfg.redis_url.clone()
        };
        redis::Client::open(cfg.redis_url.as_str()).map_err(|e| ConnectError {
            service: "Redis",
            url: crate::config::redact_url(&cfg.redis_url),
            cause: e.to_string(),
        })?;
        let conn = with_backoff("Redis", &shown, cfg.connect_timeout, || {
            let target = target.clone();
            async move {
                let mut conn = RedisConn::open(target, response_timeout).await?;
                redis::cmd("PING").query_async::<String>(&mut conn).await?;
                Ok::<_, RedisError>(conn)
            }
        })
        .await?;
        Ok(Self {
            conn,
            prefix: cfg.redis_prefix.clone(),
        })
    }

    /// Where the primary is (for a connection of its own, such as a subscription).
    pub fn target(&self) -> &RedisTarget {
        &self.conn.target
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_keeps_the_urls_credentials_and_database() {
        assert_eq!(
            with_host("redis://:pw@127.0.0.1:6379/2", "10.0.0.5", 6380),
            "redis://:pw@10.0.0.5:6380/2"
        );
        assert_eq!(with_host("redis://127.0.0.1:6379", "h", 1), "redis://h:1/");
    }
}
