//! What every dial, event and reconciliation step is given: the connections, the limits, the
//! carrier, the settings, the job cache and the shutdown signal.

use std::sync::Arc;

use shared::db::Pool;
use shared::redis_conn::Redis;
use tokio_util::sync::CancellationToken;

use crate::attempt::{AttemptWriter, CallSid, CallSidWriter, Inserted, NewAttempt};
use crate::carrier::Carrier;
use crate::config::Config;
use crate::end::{EndRequest, EndWriter, Ended};
use crate::group::Group;
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
    /// The dial path's group-committed writes.
    pub(crate) writes: Writes,
}

/// The dial path's writes that many dials make at once, each gathered into groups
/// (`crate::group`).
#[derive(Debug, Clone)]
pub(crate) struct Writes {
    /// The attempt inserts (durable).
    pub(crate) attempts: Group<NewAttempt, Option<Inserted>>,
    /// The carriers' call ids (committed without a flush).
    pub(crate) call_sids: Group<CallSid, ()>,
    /// The attempts' ends (durable).
    pub(crate) ends: Group<EndRequest, Ended>,
}

/// Groups written at once per statement: one forming while others commit. 4 measured the
/// same as 2 in the utilization run (within its noise); more make smaller groups, so more
/// commits, for no gain once PostgreSQL is the bottleneck.
const GROUPS_IN_FLIGHT: usize = 2;

/// The most requests in one group: bounds a statement's arrays and its row locks.
const GROUP_MAX: usize = 256;

impl Writes {
    /// Starts the writers on the current runtime.
    fn start(db: &Pool) -> Self {
        Self {
            attempts: Group::start(db.clone(), AttemptWriter, GROUPS_IN_FLIGHT, GROUP_MAX),
            call_sids: Group::start(db.clone(), CallSidWriter, GROUPS_IN_FLIGHT, GROUP_MAX),
            ends: Group::start(db.clone(), EndWriter, GROUPS_IN_FLIGHT, GROUP_MAX),
        }
    }
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
            writes: Writes::start(&db),
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
