//! The start-up every worker role shares: connect to its services (each with backoff, up to the
//! connect timeout), serve `/healthz`, `/readyz` (checking exactly those services) and
//! `/metrics`, and, at the end, close the broker and wait for the health server.
//!
//! ```ignore
//! let started = Startup::new(&config.service, "scheduler", config.health_addr).start(&shutdown).await?;
//! // … the role's own work with started.db, started.broker …
//! started.finish().await?;
//! ```

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

use crate::config::ServiceConfig;
use crate::db::Pool;
use crate::health::{self, Readiness};
use crate::queue::Broker;
use crate::redis_conn::Redis;

/// What a role connects to before it starts working.
#[derive(Debug, Clone)]
pub struct Startup<'a> {
    service: &'a ServiceConfig,
    name: &'static str,
    health_addr: SocketAddr,
    redis: bool,
}

impl<'a> Startup<'a> {
    /// A role named `name` (the broker connection's name) that needs PostgreSQL and RabbitMQ,
    /// with its health endpoints on `health_addr`.
    pub fn new(service: &'a ServiceConfig, name: &'static str, health_addr: SocketAddr) -> Self {
        Self {
            service,
            name,
            health_addr,
            redis: false,
        }
    }

    /// Redis too (the dial worker's limits).
    pub fn with_redis(mut self) -> Self {
        self.redis = true;
        self
    }

    /// Connects and serves the health endpoints until `shutdown`.
    pub async fn start(self, shutdown: &CancellationToken) -> anyhow::Result<Started> {
        let db = crate::db::connect(self.service).await?;
        let broker = Broker::connect(self.service, self.name).await?;
        let redis = match self.redis {
            true => Some(Redis::connect(self.service).await?),
            false => None,
        };
        let readiness = Readiness {
            db: Some(db.clone()),
            broker: Some(broker.clone()),
            redis: redis.clone(),
        };
        let (health_addr, health) = health::serve(
            self.health_addr,
            health::router(readiness),
            shutdown.clone(),
        )
        .await?;
        Ok(Started {
            db,
            broker,
            redis,
            health_addr,
            health,
        })
    }
}

/// A role's open connections and its running health server.
#[derive(Debug)]
pub struct Started {
    /// The PostgreSQL pool.
    pub db: Pool,
    /// The broker connection.
    pub broker: Broker,
    /// The Redis connection, when asked for.
    pub redis: Option<Redis>,
    /// Where the health endpoints listen (the port is known once bound).
    pub health_addr: SocketAddr,
    health: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Started {
    /// After the role's work has stopped: closes the broker connection and waits for the health
    /// server (which stops with the same shutdown token).
    pub async fn finish(self) -> anyhow::Result<()> {
        self.broker.close().await;
        self.health.await??;
        Ok(())
    }
}
