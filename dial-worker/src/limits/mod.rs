//! The fleet-wide limits, kept in Redis so every dial worker sees the same counts:
//!
//! - concurrency: a counting semaphore per workspace and per job, whose slots are leases
//!   ([`scripts::ACQUIRE`]); a slot is held for the call's whole life, renewed by its holder
//!   ([`leases`]), handed over to the fleet when its holder stops cleanly, and reclaimed when its
//!   lease runs out (a dead worker's slots come back);
//! - rate: a GCRA limiter per job and, optionally, per workspace;
//! - caller IDs: a round-robin counter per job over its phone-number pool.
//!
//! Slots and caller ID are taken in one script call, all or nothing; the start token is taken in
//! a second one right before the carrier request, so the jitter of the work in between (writing
//! the attempt) cannot bunch starts together.
//!
//! Redis holds only what may be lost: after a flush the counts start from zero. Until they are
//! back they are too low, so the semaphores carry a generation mark: when it is missing the
//! fleet takes no new slot. The worker that finds it missing first puts the counts back from
//! the database's open attempts ([`rebuild`]) and asks every holder to renew now, and the fleet
//! takes slots again [`rebuild::MARGIN`] later; a worker without the database (or a database
//! too slow to answer) waits the whole rebuild window ([`Limits::rebuild_window`], one renewal
//! period and a margin) while the holders put their calls back at their next renewal. Either
//! way the limits hold through a flush. The database, not Redis, guards against double dials
//! (see `crate::dial`).

pub mod gauges;
pub mod leases;
pub mod rebuild;
pub mod scripts;
pub mod wakeups;
pub mod window;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shared::redis_conn::Redis;
use uuid::Uuid;

pub use leases::HeldLeases;
pub use wakeups::Wakeups;
pub use window::Window;

/// What one call needs from the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRequest {
    /// The workspace (its `max_concurrent_dials` and optional rate).
    pub workspace_id: Uuid,
    /// The job.
    pub batch_id: Uuid,
    /// The attempt the slot is for (the semaphore member).
    pub attempt_id: Uuid,
    /// `workspaces.max_concurrent_dials`.
    pub workspace_limit: u32,
    /// The job's `max_concurrent_dials`.
    pub job_limit: u32,
    /// How many caller IDs the job's pool holds (0: pick none).
    pub caller_pool: u32,
}

/// The answer to one try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryAcquire {
    /// Both slots are ours; the caller ID to use is `caller_index` of the pool.
    Acquired {
        /// Index into the job's caller-ID pool (`None` when the pool is empty).
        caller_index: Option<u32>,
    },
    /// The job has `max_concurrent_dials` calls in flight.
    JobFull,
    /// The workspace has its limit of calls in flight, or the counts are being rebuilt after a
    /// Redis flush (no slot is given out until the holders have put their leases back): either
    /// way, wait for a release or try again shortly.
    WorkspaceFull,
}

/// Access to the Redis limits.
///
/// The dial path's calls (slots, start tokens, releases) go through an adaptive [`Window`],
/// so a slow Redis slows dialing down instead of timing every call out. Renewals and
/// hand-overs use `leases`, a connection of their own when the worker gives one
/// ([`Limits::with_lease_connection`]): they keep the limits true and must never wait behind
/// the dials.
#[derive(Debug, Clone)]
pub struct Limits {
    redis: Redis,
    leases: Redis,
    window: Window,
    lease: Duration,
    rate_margin: Duration,
    wakeups: Wakeups,
    /// Whether this process has had an answer from [`scripts::ACQUIRE`] yet (see its first-try
    /// rule).
    seen_generation: Arc<AtomicBool>,
    /// Where the counts are rebuilt from after a flush (none: the whole window is waited).
    rebuild: Option<rebuild::Source>,
}

impl Limits {
    /// Limits on `redis` with leases of `lease`; `rate_margin` widens each rate interval (a
    /// second becomes `1 s + rate_margin`) so the jitter between taking a token and the carrier
    /// receiving the request cannot squeeze `rate + 1` starts into one second.
    pub fn new(redis: Redis, lease: Duration, rate_margin: Duration) -> Self {
        Self {
            leases: redis.clone(),
            redis,
            window: Window::new(DEFAULT_SLOW),
            lease,
            rate_margin,
            wakeups: Wakeups::default(),
            seen_generation: Arc::default(),
            rebuild: None,
        }
    }

    /// The same limits, rebuilt from `source`'s open attempts after a flush (see [`rebuild`]).
    pub fn with_rebuild(mut self, source: rebuild::Source) -> Self {
        self.rebuild = Some(source);
        self
    }

    /// The same limits with renewals, hand-overs and adoptions on `leases` (a connection of
    /// their own, with a response timeout fit for large pipelines).
    pub fn with_lease_connection(mut self, leases: Redis) -> Self {
        self.leases = leases;
        self
    }

    /// The same limits whose Redis window counts a call slower than `slow` as congestion.
    pub fn with_slow_threshold(mut self, slow: Duration) -> Self {
        self.window = Window::new(slow);
        self
    }

    /// The dial path's Redis connection.
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// The dial path's Redis window.
    pub fn window(&self) -> &Window {
        &self.window
    }

    /// How often a holder renews its leases (see [`HeldLeases::renew_loop`]).
    pub fn renewal_period(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(50))
    }

    /// How long the fleet takes no new slot after Redis lost the counts: one renewal period,
    /// in which every holder puts its leases back, and a margin for a pass that is late or
    /// slow and for a slot taken just before the flush whose holder registers it just after
    /// (up to a second, or one more period when periods are shorter).
    pub fn rebuild_window(&self) -> Duration {
        let period = self.renewal_period();
        period + period.min(Duration::from_secs(1))
    }

    /// How long a slot lasts without renewal.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The local wake-up registry (release notifications).
    pub fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }

    /// The pub/sub channel on which releases are announced.
    pub fn channel(&self) -> String {
        self.redis.key("slots:freed")
    }

    fn ws_slots(&self, ws: Uuid) -> String {
        self.redis.key(&format!("slots:ws:{ws}"))
    }

    fn job_slots(&self, job: Uuid) -> String {
        self.redis.key(&format!("slots:job:{job}"))
    }

    fn job_tombstones(&self, job: Uuid) -> String {
        self.redis.key(&format!("slots:gone:{job}"))
    }

    fn orphans(&self) -> String {
        self.redis.key("slots:orphans")
    }

    fn generation(&self) -> String {
        self.redis.key("slots:gen")
    }

    fn rebuild_end(&self) -> String {
        self.redis.key("slots:rebuild")
    }

    /// One atomic try at both slots (job and workspace) and a caller ID. No start token: that
    /// is taken separately, right before the carrier request ([`Limits::try_start`]).
    pub async fn try_acquire(&self, req: &SlotRequest) -> Result<TryAcquire, redis::RedisError> {
        let mut conn = self.redis.conn.clone();
        let mut invocation = scripts::ACQUIRE.prepare_invoke();
        invocation
            .key(self.ws_slots(req.workspace_id))
            .key(self.job_slots(req.batch_id))
            .key(self.redis.key(&format!("callerid:{}", req.batch_id)))
            .key(self.generation())
            .key(self.rebuild_end())
            .arg(req.attempt_id.to_string())
            .arg(micros(self.lease))
            .arg(req.workspace_limit)
            .arg(req.job_limit)
            .arg(req.caller_pool)
            .arg(u8::from(!self.seen_generation.load(Ordering::Relaxed)))
            .arg(micros(self.rebuild_window()));
        let (code, idx): (i64, i64) = self.window.run(invocation.invoke_async(&mut conn)).await?;
        self.seen_generation.store(true, Ordering::Relaxed);
        Ok(match code {
            1 => TryAcquire::Acquired {
                // The script answers -1 when the job has no caller-ID pool (see
                // `scripts::ACQUIRE`): no index, the configured default is used.
                caller_index: u32::try_from(idx).ok(),
            },
            -1 => TryAcquire::JobFull,
            -3 => {
                tracing::debug!("slot counts being rebuilt after a Redis flush; waiting");
                TryAcquire::WorkspaceFull
            }
            -4 => {
                self.rebuild_counts().await;
                TryAcquire::WorkspaceFull
            }
            _ => TryAcquire::WorkspaceFull,
        })
    }

    /// This try found the counts lost: put them back from the database, if this process has it.
    async fn rebuild_counts(&self) {
        let Some(source) = &self.rebuild else {
            tracing::warn!("slot counts lost (Redis flushed); waiting for the holders' renewals");
            return;
        };
        match rebuild::rebuild(self, source).await {
            Ok(calls) => tracing::warn!(
                calls,
                "slot counts lost (Redis flushed); rebuilt from the open attempts"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "slot counts lost (Redis flushed) and not rebuilt; waiting for the holders' renewals"
            ),
        }
    }

    /// One try at a start token: `None` when taken, else how long until the next one. A job
    /// without a rate of its own (`job_cps` `None`) is paced by its workspace's alone.
    pub async fn try_start(
        &self,
        workspace_id: Uuid,
        batch_id: Uuid,
        job_cps: Option<u32>,
        workspace_cps: Option<u32>,
    ) -> Result<Option<Duration>, redis::RedisError> {
        let mut conn = self.redis.conn.clone();
        let mut invocation = scripts::RATE.prepare_invoke();
        invocation
            .key(self.redis.key(&format!("rate:job:{batch_id}")))
            .key(self.redis.key(&format!("rate:ws:{workspace_id}")))
            .key(self.generation())
            .arg(job_cps.map_or(0, |r| interval_micros(r, self.rate_margin)))
            .arg(workspace_cps.map_or(0, |r| interval_micros(r, self.rate_margin)))
            .arg(u8::from(self.seen_generation.load(Ordering::Relaxed)));
        let wait_ms: u64 = self.window.run(invocation.invoke_async(&mut conn)).await?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
    }

    /// Extends the leases of calls still in flight, in one pipeline. Returns the attempts whose
    /// slot had been released meanwhile (by whichever worker recorded their outcome): those were
    /// not renewed, and their holder should forget them.
    pub async fn renew(
        &self,
        lease_keys: &[(Uuid, Uuid, Uuid)],
    ) -> Result<Vec<Uuid>, redis::RedisError> {
        if lease_keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.leases.conn.clone();
        let mut released = Vec::new();
        // Pipelines of bounded size: each answers well within the response timeout even on a
        // slow Redis, and Redis serves other clients between them.
        for chunk in lease_keys.chunks(RENEW_CHUNK) {
            let renewed: Vec<i64> = self.renewals(chunk).query_async(&mut conn).await?;
            released.extend(
                chunk
                    .iter()
                    .zip(renewed)
                    .filter(|(_, r)| *r == 0)
                    .map(|(h, _)| h.0),
            );
        }
        Ok(released)
    }

    /// Hands calls still in flight over to the rest of the fleet (a worker stopping before they
    /// ended): renews their leases, so an adopter has a whole lease period to take them up, and
    /// lists them in the orphans hash. Slots released meanwhile are listed too, harmlessly:
    /// [`Limits::adopt`] skips them.
    pub async fn hand_over(
        &self,
        lease_keys: &[(Uuid, Uuid, Uuid)],
    ) -> Result<(), redis::RedisError> {
        if lease_keys.is_empty() {
            return Ok(());
        }
        let mut conn = self.leases.conn.clone();
        let mut pipe = self.renewals(lease_keys);
        let mut hset = redis::cmd("HSET");
        hset.arg(self.orphans());
        for (attempt, ws, job) in lease_keys {
            hset.arg(attempt.to_string()).arg(format!("{ws}:{job}"));
        }
        pipe.add_command(hset).ignore();
        // Entries older than a lease are dead anyway; the key goes once nobody hands over.
        pipe.cmd("PEXPIRE")
            .arg(self.orphans())
            .arg(micros(self.lease).div_ceil(1000) * 2)
            .ignore();
        // The renewals' answers (released or not) do not matter here: an adopter skips
        // released ones.
        let _: Vec<i64> = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// One `RENEW` per held lease, in one pipeline; each answers 1 (renewed) or 0 (released).
    fn renewals(&self, lease_keys: &[(Uuid, Uuid, Uuid)]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        for (attempt, ws, job) in lease_keys {
            pipe.cmd("EVAL")
                .arg(scripts::RENEW)
                .arg(3)
                .arg(self.ws_slots(*ws))
                .arg(self.job_slots(*job))
                .arg(self.job_tombstones(*job))
                .arg(attempt.to_string())
                .arg(micros(self.lease));
        }
        pipe
    }

    /// Takes up to `max` calls that stopping workers handed over and renews their leases; the
    /// caller renews them from then on. One whose lease lapsed before anyone took it up is
    /// dropped (its slot came back, as after a crash).
    ///
    /// The picks leave the orphans hash only in the pipeline that adopts them, so an adopter
    /// dying in between loses nothing. Two workers may pick the same call at once and both hold
    /// it: harmless, since renewing and releasing are idempotent and a release's tombstone
    /// stops the other's renewals.
    pub async fn adopt(&self, max: usize) -> Result<Vec<(Uuid, Uuid, Uuid)>, redis::RedisError> {
        let mut conn = self.leases.conn.clone();
        // Random picks keep the pass bounded however many are waiting.
        let picked: Vec<String> = redis::cmd("HRANDFIELD")
            .arg(self.orphans())
            .arg(max)
            .arg("WITHVALUES")
            .query_async(&mut conn)
            .await?;
        let orphans: Vec<(Uuid, Uuid, Uuid)> = picked
            .chunks_exact(2)
            .filter_map(|pair| {
                let (ws, job) = pair[1].split_once(':')?;
                Some((pair[0].parse().ok()?, ws.parse().ok()?, job.parse().ok()?))
            })
            .collect();
        let mut pipe = redis::pipe();
        for (attempt, ws, job) in &orphans {
            pipe.cmd("EVAL")
                .arg(scripts::ADOPT)
                .arg(2)
                .arg(self.ws_slots(*ws))
                .arg(self.job_slots(*job))
                .arg(attempt.to_string())
                .arg(micros(self.lease));
        }
        // Every pick leaves the hash, adopted or lapsed (an unreadable one too).
        let fields: Vec<&String> = picked.iter().step_by(2).collect();
        if fields.is_empty() {
            return Ok(Vec::new());
        }
        pipe.cmd("HDEL").arg(self.orphans()).arg(fields).ignore();
        let adopted: Vec<i64> = pipe.query_async(&mut conn).await?;
        Ok(orphans
            .into_iter()
            .zip(adopted)
            .filter(|(_, a)| *a == 1)
            .map(|(o, _)| o)
            .collect())
    }

    /// Gives the slot of `attempt_id` back (idempotent) and wakes the workers waiting on the
    /// workspace.
    pub async fn release(
        &self,
        workspace_id: Uuid,
        batch_id: Uuid,
        attempt_id: Uuid,
    ) -> Result<(), redis::RedisError> {
        let mut conn = self.redis.conn.clone();
        let mut invocation = scripts::RELEASE.prepare_invoke();
        invocation
            .key(self.ws_slots(workspace_id))
            .key(self.job_slots(batch_id))
            .key(self.job_tombstones(batch_id))
            .arg(attempt_id.to_string())
            .arg(self.channel())
            .arg(workspace_id.to_string())
            .arg(micros(self.lease));
        let _: i64 = self.window.run(invocation.invoke_async(&mut conn)).await?;
        // Waiters in this process need not wait for the pub/sub round trip.
        self.wakeups.notify(workspace_id);
        Ok(())
    }

    /// Gives many slots back, in pipelines of bounded size (`(attempt, workspace, job)`). The
    /// renewer's call: on its own connection, outside the dial path's window.
    pub async fn release_all(&self, slots: &[(Uuid, Uuid, Uuid)]) -> Result<(), redis::RedisError> {
        let mut conn = self.leases.conn.clone();
        for chunk in slots.chunks(RENEW_CHUNK) {
            self.release_chunk(&mut conn, chunk).await?;
        }
        for (_, ws, _) in slots {
            self.wakeups.notify(*ws);
        }
        Ok(())
    }

    async fn release_chunk(
        &self,
        conn: &mut shared::redis_conn::RedisConn,
        slots: &[(Uuid, Uuid, Uuid)],
    ) -> Result<(), redis::RedisError> {
        let mut pipe = redis::pipe();
        for (attempt, ws, job) in slots {
            pipe.cmd("EVAL")
                .arg(scripts::RELEASE_LUA.as_str())
                .arg(3)
                .arg(self.ws_slots(*ws))
                .arg(self.job_slots(*job))
                .arg(self.job_tombstones(*job))
                .arg(attempt.to_string())
                .arg(self.channel())
                .arg(ws.to_string())
                .arg(micros(self.lease))
                .ignore();
        }
        pipe.query_async::<()>(conn).await
    }

    /// How many slots are taken now (expired leases not counted), for tests and metrics.
    pub async fn in_use(
        &self,
        workspace_id: Uuid,
        batch_id: Uuid,
    ) -> Result<(u32, u32), redis::RedisError> {
        let mut conn = self.leases.conn.clone();
        let now: (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await?;
        let now_us = now.0 * 1_000_000 + now.1;
        let ws: u32 = redis::cmd("ZCOUNT")
            .arg(self.ws_slots(workspace_id))
            .arg(format!("({now_us}"))
            .arg("+inf")
            .query_async(&mut conn)
            .await?;
        let job: u32 = redis::cmd("ZCOUNT")
            .arg(self.job_slots(batch_id))
            .arg(format!("({now_us}"))
            .arg("+inf")
            .query_async(&mut conn)
            .await?;
        Ok((ws, job))
    }
}

/// The most leases renewed (or released) in one pipeline.
const RENEW_CHUNK: usize = 500;

/// The dial path's default congestion threshold (`REDIS_SLOW_MS`).
pub const DEFAULT_SLOW: Duration = Duration::from_millis(100);

/// Saturating on purpose: `u64` microseconds reach 584,000 years, so only a setting meant as
/// "forever" gets there, and the longest representable wait is what it means.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The GCRA emission interval for `rate` starts per second, widened by `margin`.
pub fn interval_micros(rate: u32, margin: Duration) -> u64 {
    let second = 1_000_000 + micros(margin);
    second.div_ceil(u64::from(rate.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Starts spaced one interval apart never put more than `rate` into any second.
        #[test]
        fn spaced_starts_fit_the_rate(rate in 1u32..5000, margin_ms in 0u64..50) {
            let i = interval_micros(rate, Duration::from_millis(margin_ms));
            // rate + 1 starts span rate intervals; that must reach a full second.
            prop_assert!(i * u64::from(rate) >= 1_000_000);
        }
    }
}
