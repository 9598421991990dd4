//! scheduler settings, from the environment with local defaults.

use std::net::SocketAddr;
use std::time::Duration;

use shared::config::{ConfigError, Env, ServiceConfig};

use crate::release::ReleaseSettings;

/// The longest tick that still lets a window opening, a due retry, a start or a resume act
/// within one second (a tick plus one release transaction, with room to spare).
const MAX_TICK_MS: u64 = 250;

/// Everything the scheduler reads at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Database, broker and Redis connections.
    pub service: ServiceConfig,
    /// Where `/healthz`, `/readyz` (and later `/metrics`) are served.
    pub health_addr: SocketAddr,
    /// How often the release loop runs (`SCHEDULER_TICK_MS`, default 200, at most 250).
    pub tick: Duration,
    /// How much each tick may release.
    pub release: ReleaseSettings,
}

impl Config {
    /// Reads the settings; a malformed value names its variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let tick = env.millis("SCHEDULER_TICK_MS", 200)?;
        if tick.is_zero() || tick > Duration::from_millis(MAX_TICK_MS) {
            return Err(ConfigError {
                name: "SCHEDULER_TICK_MS".into(),
                value: tick.as_millis().to_string(),
                reason: format!("must be 1 to {MAX_TICK_MS} so changes act within 1 s"),
            });
        }
        let in_flight_multiplier: u32 = env.parse("SCHEDULER_IN_FLIGHT_MULTIPLIER", 2)?;
        if in_flight_multiplier == 0 {
            return Err(ConfigError {
                name: "SCHEDULER_IN_FLIGHT_MULTIPLIER".into(),
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(Self {
            service: ServiceConfig::from_env(env)?,
            health_addr: env.addr("HEALTH_ADDR", "127.0.0.1:8082")?,
            tick,
            release: ReleaseSettings {
                in_flight_multiplier,
                publish_timeout: env.millis("SCHEDULER_PUBLISH_TIMEOUT_MS", 5000)?,
                release_timeout: env.secs("SCHEDULER_RELEASE_TIMEOUT_SECS", 900)?,
                max_per_workspace_tick: env.parse("SCHEDULER_MAX_RELEASE_PER_TICK", 500)?,
                pack: shared::compliance::enforce::load_pack(env)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        let c = Config::from_env(&Env::from_pairs::<_, String, String>([])).unwrap();
        assert_eq!(c.tick, Duration::from_millis(200));
        assert_eq!(c.release.in_flight_multiplier, 2);
        assert!(Config::from_env(&Env::from_pairs([("SCHEDULER_TICK_MS", "1000")])).is_err());
        assert!(
            Config::from_env(&Env::from_pairs([("SCHEDULER_IN_FLIGHT_MULTIPLIER", "0")])).is_err()
        );
    }
}
