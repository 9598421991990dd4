//! ingest-worker settings, from the environment with local defaults.

use std::net::SocketAddr;

use shared::config::{ConfigError, Env, ServiceConfig};

/// Everything the ingest-worker reads at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Database, broker and Redis connections.
    pub service: ServiceConfig,
    /// Where `/healthz`, `/readyz` (and later `/metrics`) are served.
    pub health_addr: SocketAddr,
}

impl Config {
    /// Reads the settings; a malformed value names its variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceConfig::from_env(env)?,
            health_addr: env.addr("HEALTH_ADDR", "127.0.0.1:8081")?,
        })
    }
}
