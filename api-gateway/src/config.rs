//! api-gateway settings, from the environment with local defaults.

use std::net::SocketAddr;

use shared::config::{ConfigError, Env, ServiceConfig};

/// Everything the gateway reads at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Database, broker and Redis connections.
    pub service: ServiceConfig,
    /// `GATEWAY_ADDR`: where the HTTP API (and its `/healthz`, `/readyz`) is served.
    pub addr: SocketAddr,
    /// `PUBLIC_URL`: how carriers and clients reach the gateway (for status links and callbacks).
    pub public_url: String,
    /// `CARRIER_AUTH_TOKEN`: the carrier account's auth token, which signs its status callbacks
    /// (`X-Twilio-Signature`). The default matches the carrier-sim.
    pub carrier_auth_token: String,
    /// `MAX_BODY_BYTES`: the largest request body; sized for 100,000 contacts with metadata.
    pub max_body_bytes: usize,
    /// `MONITOR_TOKEN_SECRET`: signs the tokens of the monitor pages' links (`links.dashboard`).
    /// Unset (empty), the installation's own random secret (migration V19) is used, filled in by
    /// `monitor::secret::resolve` at start; the old development default is never used.
    pub monitor_token_secret: String,
    /// `MONITOR_REFRESH_MS`: how often an open monitor page's figures are recomputed (once per
    /// batch, shared by every page open on it).
    pub monitor_refresh: std::time::Duration,
    /// `WEBHOOK_ALLOWED_NETWORKS`: private or reserved networks a webhook URL may nevertheless
    /// name literally (CIDRs, comma-separated; none by default). The dial worker reads the same
    /// setting for where it delivers (`shared::destination`).
    pub webhook_allowed_networks: std::sync::Arc<shared::destination::AllowedNetworks>,
    /// How the per-workspace request rate reaches Redis (`RATE_LIMIT_TIMEOUT_MS`).
    pub rate_limit: crate::rate_limit::Settings,
}

/// The development default `MONITOR_TOKEN_SECRET` once had: public, so it signs nothing now
/// (`monitor::secret::resolve` ignores it).
pub const DEV_MONITOR_TOKEN_SECRET: &str = "dialfleet-dev-monitor-secret-change-me";

impl Config {
    /// Reads the settings; a malformed value names its variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let addr = env.addr("GATEWAY_ADDR", "127.0.0.1:8080")?;
        let config = Self {
            service: ServiceConfig::from_env(env)?,
            addr,
            public_url: env.url("PUBLIC_URL", &format!("http://{addr}"), &["http", "https"])?,
            carrier_auth_token: env.string("CARRIER_AUTH_TOKEN", "sim-token"),
            max_body_bytes: env.parse("MAX_BODY_BYTES", 64 * 1024 * 1024)?,
            monitor_token_secret: env.string("MONITOR_TOKEN_SECRET", ""),
            monitor_refresh: std::time::Duration::from_millis(
                env.parse::<u64>("MONITOR_REFRESH_MS", 500)?
                    .clamp(50, 60_000),
            ),
            webhook_allowed_networks: std::sync::Arc::new(
                env.parse("WEBHOOK_ALLOWED_NETWORKS", Default::default())?,
            ),
            rate_limit: crate::rate_limit::Settings {
                timeout: env.millis("RATE_LIMIT_TIMEOUT_MS", 100)?,
            },
        };
        // The compliance rule pack (COMPLIANCE_RULES_FILE): a bad file refuses the start (its
        // release is logged when the gateway listens).
        crate::jurisdiction::load(env)?;
        Ok(config)
    }
}
