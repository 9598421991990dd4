//! ingest-worker settings, from the environment with local defaults.

use std::net::SocketAddr;
use std::time::Duration;

use shared::config::{ConfigError, Env, ServiceConfig};

use crate::normalize::NumberCheck;

/// Everything the ingest-worker reads at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Database, broker and Redis connections.
    pub service: ServiceConfig,
    /// `HEALTH_ADDR`: where `/healthz`, `/readyz` (and later `/metrics`) are served.
    pub health_addr: SocketAddr,
    /// `INGEST_CONCURRENCY`: chunks this process persists at once. A chunk spends most of its
    /// time waiting on PostgreSQL, so a few per core keep the cores busy.
    pub concurrency: usize,
    /// `INGEST_PREFETCH`: chunks the broker may push ahead of the acks. Twice the concurrency
    /// keeps the next chunk at hand without hoarding work other workers could take.
    pub prefetch: u16,
    /// `INGEST_TIMEOUT_SECS`: a batch with no chunk committed for this long fails.
    pub ingest_timeout: Duration,
    /// `INGEST_SWEEP_INTERVAL_SECS`: how often this worker looks for timed-out batches.
    pub sweep_interval: Duration,
    /// `INGEST_NUMBER_CHECK`: `strict` (libphonenumber's validity) or `possible` (length only).
    pub number_check: NumberCheck,
}

impl Config {
    /// Reads the settings; a malformed value names its variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let concurrency: usize = env.parse("INGEST_CONCURRENCY", 4)?;
        let concurrency = concurrency.max(1);
        // Saturating is right here: AMQP's prefetch is a u16, and a worker that runs more
        // than half of that at once is served best by the largest prefetch there is.
        let default_prefetch = u16::try_from(concurrency.saturating_mul(2)).unwrap_or(u16::MAX);
        Ok(Self {
            service: ServiceConfig::from_env(env)?,
            health_addr: env.addr("HEALTH_ADDR", "127.0.0.1:8081")?,
            concurrency,
            prefetch: env.parse("INGEST_PREFETCH", default_prefetch)?.max(1),
            ingest_timeout: env.secs("INGEST_TIMEOUT_SECS", 600)?,
            sweep_interval: env.secs("INGEST_SWEEP_INTERVAL_SECS", 30)?,
            number_check: env.parse("INGEST_NUMBER_CHECK", NumberCheck::Possible)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::from_env(&Env::from_pairs::<_, String, String>([])).unwrap();
        assert_eq!((c.concurrency, c.prefetch), (4, 8));
        assert_eq!(c.ingest_timeout, Duration::from_secs(600));
        assert_eq!(c.number_check, NumberCheck::Possible);
        let c = Config::from_env(&Env::from_pairs([
            ("INGEST_CONCURRENCY", "3"),
            ("INGEST_NUMBER_CHECK", "strict"),
        ]))
        .unwrap();
        assert_eq!((c.concurrency, c.prefetch), (3, 6));
        assert_eq!(c.number_check, NumberCheck::Strict);
        let err = Config::from_env(&Env::from_pairs([("INGEST_NUMBER_CHECK", "loose")]));
        assert_eq!(err.unwrap_err().name, "INGEST_NUMBER_CHECK");
    }
}
