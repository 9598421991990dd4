//! What every dial, event and reconciliation step is given: the connections, the limits, the
//! carrier, the settings, the job cache and the shutdown signal.

use std::sync::Arc;

use shared::db::Pool;
use shared::redis_conn::Redis;
use tokio_util::sync::CancellationToken;

use crate::carrier::Carrier;
use crate::config::Config;
use crate::job::JobCache;
use crate::limits::{HeldLeases, Limits};

/// What every step needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The system of record.
    pub db: Pool,
    /// The Redis limits.
    pub limits: Limits,
    /// The slots this process renews.
    pub held: HeldLeases,
    /// Where calls are placed.
    pub carrier: Carrier,
    /// Settings.
    pub config: Arc<Config>,
    /// Recently read jobs.
    pub jobs: JobCache,
    /// Cancelled at shutdown: dials still waiting for a slot give their message back.
    pub shutdown: CancellationToken,
}

impl Ctx {
    /// A context over already-open connections, stopped by `shutdown` (a test that never stops
    /// its context passes a token nothing cancels).
    pub fn new(
        db: Pool,
        redis: Redis,
        carrier: Carrier,
        config: Config,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            db,
            limits: Limits::new(redis, config.slot_lease, config.rate_margin)
                .with_slow_threshold(config.redis_slow),
            held: HeldLeases::new(std::time::Duration::from_secs(
                u64::from(config.call_timeout_secs) + 60,
            )),
            carrier,
            config: Arc::new(config),
            jobs: JobCache::default(),
            shutdown,
        }
    }
}
