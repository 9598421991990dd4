//! What every dial, event and reconciliation step is given: the connections, the limits, the
//! carrier, the settings, the job cache and the shutdown signal.

use std::sync::Arc;

use shared::db::Pool;
use shared::redis_conn::Redis;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::carrier::Carrier;
use crate::config::Config;
use crate::job::JobCache;
use crate::limits::{HeldLeases, Limits};
use crate::writes::Writes;

/// What every step needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The system of record.
    pub db: Pool,
    /// The Redis limits.
    pub limits: Limits,
    /// The slots' leases this process renews.
    pub leases: HeldLeases,
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
    /// The pre-dial check's client, guarded like the webhooks' (`shared::destination`);
    /// `None` when it cannot be built, and then every check is unavailable (fail closed).
    pub(crate) predial_http: Option<reqwest::Client>,
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
        let predial_http = shared::destination::guarded_client(
            reqwest::Client::builder(),
            Arc::new(config.webhook_allowed_networks.clone()),
        )
        .build()
        .inspect_err(|e| tracing::error!(error = %e, "cannot build the pre-dial client; every check will hold its contact"))
        .ok();
        let unplaced_after =
            std::time::Duration::from_secs(u64::from(config.call_timeout_secs) + 60);
        Self {
            predial_http,
            writes: Writes::start(&db),
            limits: Limits::new(redis, config.slot_lease, config.rate_margin)
                .with_slow_threshold(config.redis_slow)
                .with_rebuild(crate::limits::rebuild::Source {
                    db: db.clone(),
                    unplaced_after,
                }),
            db,
            leases: HeldLeases::new(unplaced_after),
            carrier,
            config: Arc::new(config),
            jobs: JobCache::default(),
            shutdown,
        }
    }

    /// Gives a slot back now, best effort: whether Redis took it. A release that fails is
    /// never an error of the step that asked: the slot's holder releases it at its next renewal
    /// pass if the database shows the call over (so a caller that wants that keeps the lease),
    /// and otherwise the lease runs out.
    pub(crate) async fn release_slot(
        &self,
        workspace_id: Uuid,
        batch_id: Uuid,
        attempt_id: Uuid,
    ) -> bool {
        match self
            .limits
            .release(workspace_id, batch_id, attempt_id)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%attempt_id, error = %e, "slot not released now; its holder or its lease will");
                false
            }
        }
    }

    /// The slot of an attempt that will not be renewed any more (never sent, or taken back):
    /// its lease forgotten and the slot given back now rather than after its lease.
    pub(crate) async fn give_back_slot(
        &self,
        workspace_id: Uuid,
        batch_id: Uuid,
        attempt_id: Uuid,
    ) {
        self.leases.forget(attempt_id);
        self.release_slot(workspace_id, batch_id, attempt_id).await;
    }
}
