//! The slots this process holds, and the task that keeps their leases alive.
//!
//! A slot is held from the dial until the call's outcome is recorded, which may happen in another
//! worker (whichever consumes the carrier's callback). So the renewer asks the database, the
//! system of record, which of its calls have ended: those it releases and forgets; the others it
//! renews. A renewal re-adds a missing member, so after a Redis flush the count is rebuilt
//! within one period; the database check and the release's tombstone (see
//! [`super::scripts::RENEW`]) keep that from resurrecting a slot someone released.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::db::Pool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Limits;

/// The calls in flight that this process dialed: attempt id → (workspace, job).
#[derive(Debug, Clone, Default)]
pub struct HeldLeases {
    inner: Arc<Mutex<HashMap<Uuid, (Uuid, Uuid)>>>,
}

impl HeldLeases {
    /// Remembers a slot to renew.
    pub fn hold(&self, attempt_id: Uuid, workspace_id: Uuid, batch_id: Uuid) {
        self.lock().insert(attempt_id, (workspace_id, batch_id));
    }

    /// The workspace and job of a slot this process holds.
    pub fn get(&self, attempt_id: Uuid) -> Option<(Uuid, Uuid)> {
        self.lock().get(&attempt_id).copied()
    }

    /// Forgets a slot (its call ended).
    pub fn forget(&self, attempt_id: Uuid) {
        self.lock().remove(&attempt_id);
    }

    /// How many slots this process holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn snapshot(&self) -> Vec<(Uuid, Uuid, Uuid)> {
        self.lock().iter().map(|(a, (w, j))| (*a, *w, *j)).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (Uuid, Uuid)>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Renews every lease a third of a lease period. After `shutdown` it goes on while calls
    /// this worker placed are still in flight, up to `grace`: a worker stopping cleanly keeps
    /// counting its calls rather than let others exceed the limits.
    pub async fn renew_loop(
        self,
        limits: Limits,
        db: Pool,
        shutdown: CancellationToken,
        grace: Duration,
    ) {
        let period = (limits.lease() / 3).max(Duration::from_millis(50));
        let mut stopping_since: Option<tokio::time::Instant> = None;
        let mut gauges = super::gauges::InFlightGauges::default();
        loop {
            match stopping_since {
                None => tokio::select! {
                    _ = shutdown.cancelled() => {
                        stopping_since = Some(tokio::time::Instant::now());
                        continue;
                    }
                    _ = tokio::time::sleep(period) => {}
                },
                Some(since) => {
                    if self.is_empty() || since.elapsed() >= grace {
                        return;
                    }
                    tokio::time::sleep(period.min(Duration::from_millis(500))).await;
                }
            }
            if let Err(e) = self.renew_once(&limits, &db).await {
                tracing::warn!(error = %e, "lease renewal failed; retrying next period");
            }
            if let Err(e) = gauges.report(&limits, &db, &self.snapshot()).await {
                tracing::debug!(error = %e, "in-flight gauges not updated");
            }
        }
    }

    /// One renewal pass (tests drive it directly).
    pub async fn renew_once(&self, limits: &Limits, db: &Pool) -> anyhow::Result<()> {
        let held = self.snapshot();
        if held.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = held.iter().map(|h| h.0).collect();
        let client = db.get().await?;
        let ended: std::collections::HashSet<Uuid> = client
            .query(
                "SELECT id FROM dial_attempts WHERE id = ANY($1) AND outcome IS NOT NULL",
                &[&ids],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        drop(client);
        let (ended, live): (Vec<_>, Vec<_>) = held
            .into_iter()
            .partition(|(attempt, _, _)| ended.contains(attempt));
        limits.release_all(&ended).await?;
        for (attempt, _, _) in &ended {
            self.forget(*attempt);
        }
        // Slots released since the database was read (here or by another worker) are not
        // renewed: their tombstones stop it. Forget them too.
        for attempt in limits.renew(&live).await? {
            self.forget(attempt);
        }
        Ok(())
    }
}
