//! The slots this process holds, and the task that keeps their leases alive.
//!
//! A slot is held from the dial until the call's outcome is recorded, which may happen in another
//! worker (whichever consumes the carrier's callback). So each pass the renewer first renews
//! every lease it holds, then asks the database, the system of record, which of its calls have
//! ended, and releases and forgets those. Renewing first keeps the counts right while the
//! database is unreachable; renewing a call that has in fact ended is harmless, because its
//! release's tombstone refuses the renewal (see [`super::scripts::RENEW`]). A renewal re-adds a
//! missing member, so after a Redis flush the count is rebuilt within one period; until then the
//! fleet takes no new slot (the generation mark of [`super::scripts::ACQUIRE`]).
//!
//! A worker that stops cleanly hands the calls still connected at the end of its grace over to
//! the fleet ([`Limits::hand_over`]); every renewal pass takes some up ([`Limits::adopt`]). A
//! worker that crashes hands nothing over: its slots come back when their leases run out.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::db::Pool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Limits;

/// The most handed-over calls one pass takes up (one script call, one pipelined renewal).
const ADOPT_PER_PASS: usize = 500;

/// How long an attempt whose carrier request ended ambiguously keeps its slot by default (see
/// [`HeldLeases::new`]): the default ring timeout of 30 s and a minute of slack.
pub const UNPLACED_AFTER: Duration = Duration::from_secs(90);

/// One held slot: its workspace and job, and whether its attempt is written yet.
#[derive(Debug, Clone, Copy)]
struct Held {
    workspace_id: Uuid,
    batch_id: Uuid,
    /// Taken, but its attempt not written yet (see [`HeldLeases::hold_pending`]).
    pending: bool,
}

/// The calls in flight that this process dialed or took up, by attempt id.
#[derive(Debug, Clone)]
pub struct HeldLeases {
    inner: Arc<Mutex<HashMap<Uuid, Held>>>,
    unplaced_after: Duration,
}

impl Default for HeldLeases {
    fn default() -> Self {
        Self::new(UNPLACED_AFTER)
    }
}

impl HeldLeases {
    /// Leases of calls this process places. An attempt whose carrier request ended ambiguously
    /// (a timeout or a 5xx: the call may or may not exist) and that is still silent
    /// `unplaced_after` its start — no call id, no outcome, although a placed call reports its
    /// answer or its end within the ring timeout — gives its slot back: it was almost surely
    /// never placed, and holding the slot until the reconciler closes the attempt (an hour)
    /// would let a carrier outage stall the job. The attempt itself stays open for the
    /// reconciler; it is never dialed again.
    pub fn new(unplaced_after: Duration) -> Self {
        Self {
            inner: Arc::default(),
            unplaced_after,
        }
    }

    /// Remembers a slot to renew, whose attempt is written (the database says when it ends).
    pub fn hold(&self, attempt_id: Uuid, workspace_id: Uuid, batch_id: Uuid) {
        self.insert(attempt_id, workspace_id, batch_id, false);
    }

    /// Remembers a slot taken for an attempt not written yet, the moment it is taken: renewed
    /// like any other, but never released for want of its row (the database cannot know it
    /// yet). So a slow attempt insert — a starved pool — cannot let the lease lapse and the
    /// slot go to another call while this one goes ahead. [`Self::written`] follows the insert;
    /// a dial that writes nothing gives the slot back (`Ctx::give_back_slot`).
    pub fn hold_pending(&self, attempt_id: Uuid, workspace_id: Uuid, batch_id: Uuid) {
        self.insert(attempt_id, workspace_id, batch_id, true);
    }

    /// The attempt of a pending slot is written: from now on the database says when it ends.
    pub fn written(&self, attempt_id: Uuid) {
        if let Some(held) = self.lock().get_mut(&attempt_id) {
            held.pending = false;
        }
    }

    fn insert(&self, attempt_id: Uuid, workspace_id: Uuid, batch_id: Uuid, pending: bool) {
        self.lock().insert(
            attempt_id,
            Held {
                workspace_id,
                batch_id,
                pending,
            },
        );
    }

    /// The workspace and job of a slot this process holds.
    pub fn get(&self, attempt_id: Uuid) -> Option<(Uuid, Uuid)> {
        self.lock()
            .get(&attempt_id)
            .map(|h| (h.workspace_id, h.batch_id))
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
        self.lock()
            .iter()
            .map(|(a, h)| (*a, h.workspace_id, h.batch_id))
            .collect()
    }

    /// The pending slots (attempts not written yet) among those held now.
    fn pending(&self) -> HashSet<Uuid> {
        self.lock()
            .iter()
            .filter(|(_, h)| h.pending)
            .map(|(a, _)| *a)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Held>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Renews every lease a third of a lease period, and takes up calls stopping workers handed
    /// over. After `shutdown` it goes on, up to `grace`, while this worker holds calls or may
    /// still take slots (until `dialing_done`: the dial handlers drain after the signal, and one
    /// may place a call then); when the grace runs out it hands the calls still in flight over
    /// to the fleet rather than let their slots lapse while they are still connected.
    pub async fn renew_loop(
        self,
        limits: Limits,
        db: Pool,
        shutdown: CancellationToken,
        dialing_done: CancellationToken,
        grace: Duration,
    ) {
        let period = limits.renewal_period();
        let mut stopping_since: Option<Instant> = None;
        let mut gauges = super::gauges::InFlightGauges::default();
        // The first pass at once: calls handed over by a worker that stopped before this one
        // started have less than a lease left.
        let mut next_pass = Instant::now();
        loop {
            match stopping_since {
                None => {
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => {
                            stopping_since = Some(Instant::now());
                            continue;
                        }
                        _ = tokio::time::sleep_until(next_pass) => {}
                        // The counts are being rebuilt after a flush: put ours back now.
                        _ = limits.wakeups().renewal_requested() => {}
                    }
                    next_pass = Instant::now() + period;
                }
                Some(since) => {
                    // Checked in this order: once the handlers are done nothing new is held.
                    if dialing_done.is_cancelled() && self.is_empty() {
                        return;
                    }
                    let left = grace.saturating_sub(since.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    tokio::time::sleep(period.min(Duration::from_millis(500)).min(left)).await;
                }
            }
            // A stopping worker takes no orphans: it would only hand them on again.
            let adopt = stopping_since.is_none();
            if let Err(e) = self.pass(&limits, &db, adopt).await {
                tracing::warn!(error = %e, "lease renewal pass failed; retrying next period");
            }
            // Bounded: a starved pool must not hold up the next renewal.
            match tokio::time::timeout(period, gauges.report(&limits, &db, &self.snapshot())).await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "in-flight gauges not updated"),
                Err(_) => tracing::debug!("in-flight gauges not updated: timed out"),
            }
        }
        let calls = self.len();
        match self.hand_over(&limits).await {
            Ok(()) if calls > 0 => {
                tracing::info!(
                    calls,
                    "calls still in flight at the end of the grace handed over"
                );
            }
            Ok(()) => {}
            Err(e) => tracing::warn!(
                error = %e,
                calls,
                "hand-over failed; these slots come back when their leases run out"
            ),
        }
    }

    /// Hands every call this worker holds over to the fleet (see [`Limits::hand_over`]) and
    /// forgets them (tests drive it directly; [`Self::renew_loop`] does it at the end of the
    /// grace).
    pub async fn hand_over(&self, limits: &Limits) -> Result<(), redis::RedisError> {
        let lease_keys = self.snapshot();
        limits.hand_over(&lease_keys).await?;
        for (attempt, _, _) in &lease_keys {
            self.forget(*attempt);
        }
        Ok(())
    }

    /// One renewal pass, orphans adopted first (tests drive it directly).
    pub async fn renew_once(&self, limits: &Limits, db: &Pool) -> anyhow::Result<()> {
        self.pass(limits, db, true).await
    }

    /// Renews first and asks the database second, so that a database down or a pool starved
    /// for longer than a lease cannot let the leases lapse (and other tasks fill the slots that
    /// the next renewal would then add back on top). Renewing a call that has in fact ended is
    /// harmless: its release's tombstone refuses the renewal, or the check below releases it.
    async fn pass(&self, limits: &Limits, db: &Pool, adopt: bool) -> anyhow::Result<()> {
        if adopt {
            match limits.adopt(ADOPT_PER_PASS).await {
                Ok(adopted) => {
                    if !adopted.is_empty() {
                        tracing::info!(calls = adopted.len(), "took up calls handed over");
                    }
                    for (attempt, ws, job) in adopted {
                        self.hold(attempt, ws, job);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "taking up handed-over calls failed"),
            }
        }
        let lease_keys = self.snapshot();
        // Read after the snapshot: a slot held since is not in it, and one marked written by
        // now has its row in the database.
        let pending = self.pending();
        if lease_keys.is_empty() {
            return Ok(());
        }
        let released: HashSet<Uuid> = limits.renew(&lease_keys).await?.into_iter().collect();
        // Released by whoever recorded the outcome (here or elsewhere): forget them.
        for attempt in &released {
            self.forget(*attempt);
        }
        // Pending slots are renewed, not judged: their rows are not written yet.
        let live: Vec<(Uuid, Uuid, Uuid)> = lease_keys
            .into_iter()
            .filter(|(attempt, _, _)| !released.contains(attempt) && !pending.contains(attempt))
            .collect();
        if live.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = live.iter().map(|h| h.0).collect();
        // The calls still holding their slot: an attempt that is gone (taken back by the
        // reconciler: it never reached the carrier) holds nothing, like an ended one.
        let query = async {
            let client = db.get().await?;
            let rows = client
                .query(
                    "SELECT id FROM dial_attempts WHERE id = ANY($1)
                       AND outcome IS NULL
                       AND NOT (carrier_call_sid IS NULL AND error IS NOT NULL
                                AND started_at < now() - make_interval(secs => $2))",
                    &[&ids, &self.unplaced_after.as_secs_f64()],
                )
                .await?;
            let open = rows
                .iter()
                .map(|r| r.try_get("id"))
                .collect::<Result<HashSet<Uuid>, _>>()?;
            anyhow::Ok(
                ids.iter()
                    .filter(|id| !open.contains(id))
                    .copied()
                    .collect::<HashSet<Uuid>>(),
            )
        };
        // The leases are renewed already; a slow database only delays the releases below.
        let ended = tokio::time::timeout(limits.lease() / 3, query)
            .await
            .map_err(|_| anyhow::anyhow!("ended-call check timed out (leases renewed)"))?
            .map_err(|e| e.context("ended-call check failed (leases renewed)"))?;
        let ended: Vec<_> = live
            .into_iter()
            .filter(|(attempt, _, _)| ended.contains(attempt))
            .collect();
        limits.release_all(&ended).await?;
        for (attempt, _, _) in &ended {
            self.forget(*attempt);
        }
        Ok(())
    }
}
