//! One dial: from a `DialV1` message to a placed call.
//!
//! **The no-double-dial rule.** The attempt row (`UNIQUE (contact_id, attempt_no)`) is committed
//! *before* the carrier is asked for the call, and the carrier receives the attempt id as its
//! idempotency key. So:
//!
//! - a message whose attempt row already exists is never dialed again, whatever the reason it
//!   came back (a worker died after dialing, an ack was lost, the scheduler published twice): the
//!   worker *reconciles* it instead (`reconcile`): nothing to do if the outcome is known; if the
//!   carrier's call id is known, it asks the carrier for the call's status and records a final
//!   one; otherwise it waits for the status callback (whose URL carries the attempt id), and the
//!   periodic reconciler closes the attempt as `unknown` after `UNKNOWN_AFTER_SECS`;
//! - a message for a contact that is no longer `released` with `attempts = attempt_no - 1` is a
//!   stale duplicate and is dropped;
//! - a carrier request is retried only when it provably never left (connection refused); after
//!   an ambiguous failure (timeout, 5xx) the attempt is left for reconciliation, never re-sent.
//!
//! Redis losing its data cannot break this: the limits live there, the guard does not.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::compliance::hours::{DeferReason, Verdict, parse_zones, verdict};
use shared::compliance::{RecipientHours, zones_for_number};
use shared::domain::{CallOutcome, MachineDetection};
use shared::metrics::HandBack;
use shared::queue::messages::DialV1;
use shared::schedule::{StoredSchedule, Window};
use tokio::time::Instant;
use uuid::Uuid;

use crate::Ctx;
use crate::carrier::{CallRequest, CarrierError};
use crate::error::StepError;
use crate::limits::{SlotRequest, TryAcquire};
use crate::outcome::{EndReport, record_end};
pub use crate::reconcile::{reconcile, reconcile_once};

/// How often a waiting dial re-reads its job, so pause and cancel act within a second.
const RECHECK_EVERY: Duration = Duration::from_millis(400);
/// The longest a waiter sleeps without a wake-up (a lost pub/sub message costs at most this).
const POLL_CAP: Duration = Duration::from_millis(250);

/// What [`dial_one`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialResult {
    /// The call was placed.
    Dialed {
        /// The attempt.
        attempt_id: Uuid,
        /// The carrier's call id.
        call_sid: String,
    },
    /// The attempt was written but the carrier refused or failed: recorded as this outcome, or
    /// left open for reconciliation (`None`).
    NotPlaced(Option<CallOutcome>),
    /// Not dialed: the contact went back (`queued` or `cancelled`).
    HandedBack(&'static str),
    /// The attempt already existed: reconciled, not dialed.
    Reconciled,
    /// A stale duplicate: nothing done.
    Stale,
    /// Not dialed: the number is on the do-not-call list; the contact ended `suppressed`.
    Suppressed,
}

/// Whether the job lets a call start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Go,
    /// Back to `queued` (paused, not started, or the window is closed).
    Requeue,
    /// `cancelled` (the job is cancelled or over).
    Cancel,
}

#[derive(Debug, Clone)]
pub(crate) struct Job {
    state: String,
    workspace_id: Uuid,
    job_limit: i32,
    /// The job's own rate; `None`: the workspace's rate alone bounds it.
    job_cps: Option<i32>,
    workspace_limit: i32,
    workspace_cps: Option<i32>,
    window: Window,
    answer_url: String,
    callers: Vec<(Uuid, String)>,
    /// The workspace's recipient calling hours (`None` = off) and whether unknown zones pass.
    recipient_hours: Option<RecipientHours>,
    allow_unknown_timezone: bool,
    /// The workspace's frequency cap: at most `.0` attempts to a number in `.1` days.
    cap: Option<(i32, i32)>,
    /// The job asks the carrier to detect answering machines (`machineDetection`), and how.
    machine_detection: Option<MachineDetection>,
}

/// A short-lived per-process cache of jobs: a busy job's row is read a few times a second
/// rather than once per call. Pause and cancel still act at once for new calls, because the
/// attempt insert itself re-checks `batches.state = 'active'`; only limits and schedules may be
/// up to [`JOB_CACHE_TTL`] old.
#[derive(Debug, Clone, Default)]
pub struct JobCache {
    inner: Arc<std::sync::Mutex<CachedJobs>>,
}

/// Job → when it was read, and the job.
type CachedJobs = std::collections::HashMap<Uuid, (Instant, Arc<Job>)>;

/// How long a cached job is used.
pub const JOB_CACHE_TTL: Duration = Duration::from_millis(250);

impl JobCache {
    /// The cached copy, if younger than [`JOB_CACHE_TTL`]. Shared, not copied: the dial path
    /// looks at the job several times per call.
    fn fresh(&self, batch_id: Uuid) -> Option<Arc<Job>> {
        self.lock()
            .get(&batch_id)
            .filter(|(at, _)| at.elapsed() < JOB_CACHE_TTL)
            .map(|(_, job)| job.clone())
    }

    async fn get(
        &self,
        client: &deadpool_postgres::Client,
        batch_id: Uuid,
    ) -> Result<Arc<Job>, StepError> {
        if let Some(job) = self.fresh(batch_id) {
            return Ok(job);
        }
        let job = Arc::new(
            load_job(client, batch_id)
                .await?
                .ok_or_else(|| StepError::Invalid("no such batch".into()))?,
        );
        let mut map = self.lock();
        if map.len() > 10_000 {
            map.retain(|_, (at, _)| at.elapsed() < JOB_CACHE_TTL);
        }
        map.insert(batch_id, (Instant::now(), job.clone()));
        Ok(job)
    }

    /// Like `get`, taking a connection only when the cached copy is too old.
    async fn current(&self, db: &shared::db::Pool, batch_id: Uuid) -> Result<Arc<Job>, StepError> {
        if let Some(job) = self.fresh(batch_id) {
            return Ok(job);
        }
        let client = db.get().await?;
        self.get(&client, batch_id).await
    }

    /// Drops a job so the next read goes to the database.
    fn forget(&self, batch_id: Uuid) {
        self.lock().remove(&batch_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CachedJobs> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Gate {
    /// What a contact handed back becomes.
    fn contact_state(self) -> &'static str {
        if self == Gate::Cancel {
            "cancelled"
        } else {
            "queued"
        }
    }
}

impl Job {
    fn gate(&self, now: DateTime<Utc>) -> Gate {
        match self.state.as_str() {
            "active" if self.window.is_open(now) => Gate::Go,
            "active" | "paused" | "created" => Gate::Requeue,
            _ => Gate::Cancel,
        }
    }
}

/// The careful read. `FOR SHARE OF c` is the release hand-off: the scheduler publishes a
/// contact's message inside the transaction that marks it `released` and holds the row's lock
/// until it commits, so a message can arrive first. Waiting on that lock (never longer than
/// the scheduler's publish timeout) returns the contact as the release left it: `released` once
/// it commits, still `queued` only when it rolled back, which is the one case where the message
/// truly is stale. See `docs/scheduler.md`, "The release hand-off".
const CONTACT_SQL: &str = "
    SELECT c.state, c.attempts, c.phone_number,
           a.id, a.carrier_call_sid, a.outcome IS NOT NULL, a.created_at,
           EXISTS (SELECT 1 FROM dnc_numbers d
                   WHERE d.workspace_id = c.workspace_id AND d.number = c.phone_number)
    FROM contacts c
    LEFT JOIN dial_attempts a ON a.contact_id = c.id AND a.attempt_no = $3
    WHERE c.id = $1 AND c.batch_id = $2
    FOR SHARE OF c";

/// Moves the contact to `dialing` and writes the attempt, in one statement, only if the job is
/// still active, the contact still released for this attempt, and its number not on the
/// workspace's do-not-call list (the last look before the carrier request: a number listed a
/// moment ago is not called). Returns the contact's zones for the calling-hours re-check.
const INSERT_SQL: &str = "WITH c AS (
                 UPDATE contacts c SET state = 'dialing', attempts = $3, updated_at = now()
                 FROM batches b
                 WHERE c.id = $2 AND b.id = c.batch_id AND b.state = 'active'
                   AND c.state = 'released' AND c.attempts = $3 - 1
                   AND NOT EXISTS (SELECT 1 FROM dnc_numbers d
                                   WHERE d.workspace_id = c.workspace_id
                                     AND d.number = c.phone_number)
                 RETURNING c.id, c.batch_id, c.workspace_id, c.phone_number, c.timezones)
             INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no,
                                        to_number, from_number_id, from_number, state, started_at)
             SELECT $1, c.id, c.batch_id, c.workspace_id, $3, c.phone_number, $4, $5, 'dialing', now()
             FROM c
             ON CONFLICT (contact_id, attempt_no) DO NOTHING
             RETURNING id, to_number, (SELECT c.timezones FROM c)";

const JOB_SQL: &str = "
    SELECT b.state, b.workspace_id, b.max_concurrent_dials,
           -- A job without a rate of its own follows its workspace's; in a workspace without
           -- one either, the workspace's ceiling bounds it (never no rate at all).
           COALESCE(b.max_calls_per_second,
                    CASE WHEN w.max_calls_per_second IS NULL THEN w.cps_ceiling END),
           w.max_concurrent_dials, w.max_calls_per_second, b.schedule, b.timezone,
           b.scheduled_start_time, a.answer_url,
           w.recipient_hours_start, w.recipient_hours_end, w.allow_unknown_timezone,
           COALESCE(
               (SELECT array_agg(p.id ORDER BY u.ord) FROM unnest(b.from_phone_number_ids)
                    WITH ORDINALITY u(id, ord)
                JOIN phone_numbers p ON p.id = u.id AND p.deleted_at IS NULL),
               (SELECT array_agg(p.id ORDER BY p.created_at, p.id) FROM phone_numbers p
                WHERE p.workspace_id = b.workspace_id AND p.deleted_at IS NULL),
               '{}'),
           COALESCE(
               (SELECT array_agg(p.number ORDER BY u.ord) FROM unnest(b.from_phone_number_ids)
                    WITH ORDINALITY u(id, ord)
                JOIN phone_numbers p ON p.id = u.id AND p.deleted_at IS NULL),
               (SELECT array_agg(p.number ORDER BY p.created_at, p.id) FROM phone_numbers p
                WHERE p.workspace_id = b.workspace_id AND p.deleted_at IS NULL),
               '{}'),
           w.max_calls_per_number_count, w.max_calls_per_number_days, b.machine_detection
    FROM batches b
    JOIN workspaces w ON w.id = b.workspace_id
    JOIN agents a ON a.id = b.agent_id
    WHERE b.id = $1";

async fn load_job(
    client: &deadpool_postgres::Client,
    batch_id: Uuid,
) -> Result<Option<Job>, StepError> {
    let Some(r) = client.query_opt(JOB_SQL, &[&batch_id]).await? else {
        return Ok(None);
    };
    let schedule_json: Option<serde_json::Value> = r.get(6);
    let timezone: String = r.get(7);
    let ids: Vec<Uuid> = r.get(13);
    let numbers: Vec<String> = r.get(14);
    Ok(Some(Job {
        state: r.get(0),
        workspace_id: r.get(1),
        job_limit: r.get(2),
        job_cps: r.get(3),
        workspace_limit: r.get(4),
        workspace_cps: r.get(5),
        window: StoredSchedule::load(schedule_json, &timezone).window(r.get(8)),
        answer_url: r.get(9),
        callers: ids.into_iter().zip(numbers).collect(),
        recipient_hours: RecipientHours::from_minutes(r.get(10), r.get(11)),
        allow_unknown_timezone: r.get(12),
        cap: r.get::<_, Option<i32>>(15).zip(r.get::<_, Option<i32>>(16)),
        machine_detection: r
            .get::<_, Option<&str>>(17)
            .and_then(MachineDetection::parse),
    }))
}

/// Dials the contact of one `DialV1` message (or hands it back, or reconciles it), reading
/// the contact and any existing attempt first.
pub async fn dial_one(ctx: &Ctx, msg: &DialV1) -> Result<DialResult, StepError> {
    dial(ctx, msg, true).await
}

/// Like [`dial_one`], but when `check_first` is false (a first delivery) it skips the up-front
/// read: the attempt insert itself checks the contact, and only when it refuses does the worker
/// read why (existing attempt → reconcile; moved on → stale; job stopped → hand back). That
/// saves a round trip on every normal dial; redelivered messages take the careful path.
#[tracing::instrument(skip_all, fields(batch_id = %msg.batch_id, contact_id = %msg.contact_id, attempt_no = msg.attempt_no))]
pub async fn dial(ctx: &Ctx, msg: &DialV1, check_first: bool) -> Result<DialResult, StepError> {
    let attempt_no = i32::try_from(msg.attempt_no)
        .map_err(|_| StepError::Invalid("attempt number out of range".into()))?;
    let client = ctx.db.get().await?;
    if check_first {
        // Prepared once per connection: a statement given as text costs a second round trip.
        let read = client.prepare_cached(CONTACT_SQL).await?;
        let row = client
            .query_opt(&read, &[&msg.contact_id, &msg.batch_id, &attempt_no])
            .await?
            .ok_or_else(|| StepError::Invalid("no such contact in this batch".into()))?;
        if let Some(existing) = row.get::<_, Option<Uuid>>(3) {
            drop(client);
            reconcile(ctx, existing, row.get(4), row.get(5), row.get(6)).await?;
            return Ok(DialResult::Reconciled);
        }
        let (state, attempts): (String, i32) = (row.get(0), row.get(1));
        if state != "released" || attempts != attempt_no - 1 {
            return Ok(DialResult::Stale);
        }
        if row.get::<_, bool>(7) {
            drop(client);
            return crate::compliance::suppress(ctx, msg.contact_id).await;
        }
    }
    let mut job = ctx.jobs.get(&client, msg.batch_id).await?;
    drop(client);
    let gate = job.gate(ctx.config.service.clock.now());
    if gate != Gate::Go {
        if !check_first {
            // Nothing has read the contact yet: its release may not have committed, and a
            // hand-back now would find it still `queued` and do nothing, leaving it
            // `released` once the release lands. The careful path waits for the release.
            ctx.jobs.forget(msg.batch_id);
            return Box::pin(dial(ctx, msg, true)).await;
        }
        return hand_back(ctx, msg.contact_id, gate).await;
    }

    // Wait for both slots (the start token comes right before the request).
    let attempt_id = Uuid::now_v7();
    let caller_index = match acquire(ctx, msg, attempt_id, &mut job).await? {
        Ok(idx) => idx,
        Err(_) if !check_first => {
            // As above: settle the release before handing the contact back.
            ctx.jobs.forget(msg.batch_id);
            return Box::pin(dial(ctx, msg, true)).await;
        }
        Err(gate) => return hand_back(ctx, msg.contact_id, gate).await,
    };
    let (from_id, from) = match caller_index.and_then(|i| job.callers.get(i as usize)) {
        Some((id, number)) => (Some(*id), number.clone()),
        None => (None, ctx.config.default_caller_id.clone()),
    };

    // The attempt is written before the call, and sent only within the send window of its
    // last write (see `crate::reconcile`), timed from before the write.
    let mut clock = SendClock::new(attempt_id);
    let inserted = insert_attempt(ctx, attempt_id, msg, attempt_no, from_id, &from).await;
    let (to, zones) = match inserted {
        Ok(Some(to)) => to,
        Ok(None) => {
            // Paused or cancelled in the meantime, a duplicate, or another delivery won the
            // race: look again, carefully, with fresh data.
            ctx.jobs.forget(msg.batch_id);
            ctx.limits
                .release(job.workspace_id, msg.batch_id, attempt_id)
                .await?;
            return Box::pin(dial(ctx, msg, true)).await;
        }
        Err(e) => {
            // Nothing was written: give the slot back now rather than after its lease.
            if let Err(r) = ctx
                .limits
                .release(job.workspace_id, msg.batch_id, attempt_id)
                .await
            {
                tracing::warn!(error = %r, "slot not released; its lease will lapse");
            }
            return Err(e);
        }
    };
    ctx.held.hold(attempt_id, job.workspace_id, msg.batch_id);
    failpoint_after_insert(ctx);
    let placed = Placed {
        attempt_id,
        contact_id: msg.contact_id,
        attempt_no,
        workspace_id: job.workspace_id,
        batch_id: msg.batch_id,
    };
    // Calling hours, again, now (the scheduler checked at release): the hours may have closed
    // while the contact waited for a slot.
    let now = ctx.config.service.clock.now();
    let zones = zones.map_or_else(|| zones_for_number(&to), |z| parse_zones(&z));
    if let Verdict::Defer { until, reason } = verdict(
        &job.window,
        job.recipient_hours,
        job.allow_unknown_timezone,
        &zones,
        now,
    ) {
        let wait = (until - now).to_std().unwrap_or_default();
        crate::compliance::deferred(ctx, msg.contact_id, until, reason).await;
        return unplace(ctx, &placed, Gate::Requeue, wait, HandBack::Compliance).await;
    }
    if let Some((count, days)) = job.cap
        && let Some(until) =
            crate::compliance::cap_reached(ctx, job.workspace_id, &to, attempt_id, count, days)
                .await?
    {
        let wait = (until - now).to_std().unwrap_or_default();
        crate::compliance::deferred(ctx, msg.contact_id, until, DeferReason::FrequencyCap).await;
        return unplace(ctx, &placed, Gate::Requeue, wait, HandBack::Compliance).await;
    }

    let request = CallRequest {
        attempt_id,
        to,
        from,
        answer_url: with_dial_id(&job.answer_url, attempt_id),
        status_callback: format!("{}/carrier/status/{attempt_id}", ctx.config.public_url),
        timeout_secs: ctx.config.call_timeout_secs,
        // The job's own choice; `MACHINE_DETECTION` turns on `Enable` for jobs that made none.
        machine_detection: job.machine_detection.or(ctx
            .config
            .machine_detection
            .then_some(MachineDetection::Enable)),
    };
    match place_with_retry(ctx, &request, msg.batch_id, &job, &mut clock).await {
        Ok(call_sid) => {
            shared::metrics::call_started();
            store_call_sid(ctx, attempt_id, &call_sid).await?;
            tracing::debug!(%attempt_id, "dialed");
            Ok(DialResult::Dialed {
                attempt_id,
                call_sid,
            })
        }
        Err(PlaceError::Stopped(gate)) => {
            // Paused, cancelled or out of its window while waiting for the start token.
            unplace(ctx, &placed, gate, Duration::ZERO, HandBack::Job).await
        }
        Err(PlaceError::NoToken(e)) => {
            // Redis failed before the request left: the call was provably not placed.
            tracing::warn!(%attempt_id, error = %e, "no start token; contact handed back");
            unplace(
                ctx,
                &placed,
                Gate::Requeue,
                CARRIER_BACKOFF,
                HandBack::Redis,
            )
            .await
        }
        Err(PlaceError::Unconfirmed(e)) => {
            // Past its send window and the row could not be touched: not sent.
            tracing::warn!(%attempt_id, error = %e, "attempt not confirmed before its request; contact handed back");
            unplace(
                ctx,
                &placed,
                Gate::Requeue,
                CARRIER_BACKOFF,
                HandBack::Database,
            )
            .await
        }
        Err(PlaceError::TakenBack) => {
            // The reconciler took the attempt back while it waited (past its send window):
            // the contact is queued again and someone else's now; only the slot is ours.
            ctx.held.forget(attempt_id);
            if let Err(e) = ctx
                .limits
                .release(job.workspace_id, msg.batch_id, attempt_id)
                .await
            {
                tracing::warn!(error = %e, "slot not released; its lease will lapse");
            }
            Ok(DialResult::Stale)
        }
        Err(PlaceError::Carrier(CarrierError::Rejected { status, body }))
            if carrier_side(status) =>
        {
            // Throttled (429) or our credentials refused (401/403): the carrier's or our
            // problem, not the contact's, so it is not charged an attempt.
            tracing::error!(%attempt_id, status, %body, "carrier refused the request; contact handed back");
            unplace(
                ctx,
                &placed,
                Gate::Requeue,
                CARRIER_BACKOFF,
                HandBack::Carrier,
            )
            .await
        }
        Err(PlaceError::Carrier(CarrierError::Rejected { status, body })) => {
            let reason = format!("carrier refused: HTTP {status}: {body}");
            close(ctx, attempt_id, CallOutcome::Failed, &reason).await?;
            Ok(DialResult::NotPlaced(Some(CallOutcome::Failed)))
        }
        Err(PlaceError::Carrier(CarrierError::Unreachable(e))) => {
            // Never reached the carrier, even after retries: not the contact's fault either.
            tracing::warn!(%attempt_id, error = %e, "carrier unreachable; contact handed back");
            unplace(
                ctx,
                &placed,
                Gate::Requeue,
                CARRIER_BACKOFF,
                HandBack::Carrier,
            )
            .await
        }
        Err(PlaceError::Carrier(e)) => {
            // It may have been placed: never re-send; the callback or the reconciler decides.
            tracing::warn!(%attempt_id, error = %e, "call state unknown; left for reconciliation");
            let client = ctx.db.get().await?;
            client
                .execute(
                    // The silence that frees its slot is counted from here (see
                    // `HeldLeases::new`), not from before the token wait and the request.
                    "UPDATE dial_attempts SET error = $2, started_at = now(), updated_at = now()
                     WHERE id = $1",
                    &[&attempt_id, &e.to_string()],
                )
                .await?;
            Ok(DialResult::NotPlaced(None))
        }
    }
}

/// The send window of one attempt (see `crate::reconcile`): when its row was last written,
/// timed from before the write, so the window is never longer on the database's clock.
struct SendClock {
    attempt_id: Uuid,
    written: Instant,
}

impl SendClock {
    /// Started just before the attempt's insert.
    fn new(attempt_id: Uuid) -> Self {
        Self {
            attempt_id,
            written: Instant::now(),
        }
    }

    /// Touches the row once half the window has passed, so that a long start-token wait never
    /// lets it run out. A failure is only logged: [`Self::confirm`] decides before the request.
    async fn keep_open(&mut self, ctx: &Ctx) -> Result<(), PlaceError> {
        if self.written.elapsed() < crate::reconcile::SEND_WINDOW / 2 {
            return Ok(());
        }
        match self.touch(ctx).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(PlaceError::TakenBack),
            Err(e) => {
                tracing::warn!(attempt_id = %self.attempt_id, error = %e, "attempt not touched while waiting for its start token");
                Ok(())
            }
        }
    }

    /// Makes sure the request may be sent now: inside the window, or the row touched again.
    async fn confirm(&mut self, ctx: &Ctx) -> Result<(), PlaceError> {
        if self.written.elapsed() < crate::reconcile::SEND_WINDOW {
            return Ok(());
        }
        match self.touch(ctx).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(PlaceError::TakenBack),
            Err(e) => Err(PlaceError::Unconfirmed(e)),
        }
    }

    /// `false` when the attempt is gone (taken back) or no longer waiting to be sent.
    async fn touch(&mut self, ctx: &Ctx) -> Result<bool, StepError> {
        let started = Instant::now();
        let client = ctx.db.get().await?;
        let n = client
            .execute(
                "UPDATE dial_attempts SET updated_at = now()
                 WHERE id = $1 AND carrier_call_sid IS NULL AND outcome IS NULL",
                &[&self.attempt_id],
            )
            .await?;
        if n == 1 {
            self.written = started;
        }
        Ok(n == 1)
    }
}

/// `DIAL_FAILPOINT=abort_after_insert:N` (tests only): the process aborts, as `kill -9` would
/// stop it, right after its N-th attempt insert commits and before that attempt's request.
fn failpoint_after_insert(ctx: &Ctx) {
    static INSERTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if let Some(n) = ctx.config.abort_after_insert {
        let seen = INSERTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if seen == n {
            eprintln!("DIAL_FAILPOINT: aborting after attempt insert {seen}");
            std::process::abort();
        }
    }
}

/// How long a contact waits before it is released again when the carrier could not take its
/// call (unreachable, throttling, credentials): long enough not to hammer a carrier that is down.
const CARRIER_BACKOFF: Duration = Duration::from_secs(30);

/// Carrier refusals that say nothing about the number: throttling and authentication.
fn carrier_side(status: u16) -> bool {
    matches!(status, 401 | 403 | 429)
}

/// An attempt written but not yet sent to the carrier.
struct Placed {
    attempt_id: Uuid,
    contact_id: Uuid,
    attempt_no: i32,
    workspace_id: Uuid,
    batch_id: Uuid,
}

/// Writes the attempt and moves the contact to `dialing`; `None` when the insert refused (job
/// not active, contact moved on, attempt already there).
async fn insert_attempt(
    ctx: &Ctx,
    attempt_id: Uuid,
    msg: &DialV1,
    attempt_no: i32,
    from_id: Option<Uuid>,
    from: &str,
) -> Result<Option<(String, Option<Vec<String>>)>, StepError> {
    let client = ctx.db.get().await?;
    let insert = client.prepare_cached(INSERT_SQL).await?;
    let row = client
        .query_opt(
            &insert,
            &[&attempt_id, &msg.contact_id, &attempt_no, &from_id, &from],
        )
        .await?;
    Ok(row.map(|r| (r.get(1), r.get(2))))
}

/// Takes back an attempt that provably never reached the carrier: the attempt row goes (no call
/// was made, so there is nothing to record), the contact returns to `queued` due after `delay`
/// (or to `cancelled`) with its attempt count as before, and the slot is given back. If the
/// database refuses, the attempt stays for the reconciler, as any unplaced attempt would.
async fn unplace(
    ctx: &Ctx,
    placed: &Placed,
    gate: Gate,
    delay: Duration,
    why: HandBack,
) -> Result<DialResult, StepError> {
    shared::metrics::dial_handed_back(why);
    let state = gate.contact_state();
    // No call exists, so the slot goes back first, whatever the database says next.
    ctx.held.forget(placed.attempt_id);
    if let Err(e) = ctx
        .limits
        .release(placed.workspace_id, placed.batch_id, placed.attempt_id)
        .await
    {
        tracing::warn!(error = %e, "slot not released; its lease will lapse");
    }
    // The contact goes back only with its attempt row, and the row goes only with the contact:
    // never a `dialing` contact without its attempt.
    let client = ctx.db.get().await?;
    client
        .execute(
            "WITH c AS (
                 UPDATE contacts SET state = $3, attempts = attempts - 1, released_at = NULL,
                     next_attempt_at = now() + make_interval(secs => $4), updated_at = now()
                 WHERE id = $2 AND state = 'dialing' AND attempts = $5
                   AND EXISTS (SELECT 1 FROM dial_attempts WHERE id = $1
                               AND carrier_call_sid IS NULL AND outcome IS NULL)
                 RETURNING id)
             DELETE FROM dial_attempts a USING c
             WHERE a.id = $1 AND a.contact_id = c.id
               AND a.carrier_call_sid IS NULL AND a.outcome IS NULL",
            &[
                &placed.attempt_id,
                &placed.contact_id,
                &state,
                &delay.as_secs_f64(),
                &placed.attempt_no,
            ],
        )
        .await?;
    Ok(DialResult::HandedBack(state))
}

/// Waits for the job's and the workspace's slots, and picks the caller ID with them; the start
/// token is not taken here but right before the carrier request (`take_start_token`). `Err(gate)`
/// when the job stopped wanting the call.
async fn acquire(
    ctx: &Ctx,
    msg: &DialV1,
    attempt_id: Uuid,
    job: &mut Arc<Job>,
) -> Result<Result<Option<u32>, Gate>, StepError> {
    if ctx.shutdown.is_cancelled() {
        // A stopping worker takes no new slot: the message goes back for another worker.
        return Err(StepError::ShuttingDown);
    }
    let started = Instant::now();
    let wakeups = ctx.limits.wakeups().clone();
    let gate_lock = wakeups.gate(msg.batch_id);
    // Fast path: when nobody here is waiting for this job, try at once, in parallel with other
    // such tries; only when that fails does the task line up behind the gate.
    let line_empty = gate_lock.try_lock().is_ok();
    if line_empty
        && let TryAcquire::Acquired { caller_index } =
            try_acquire(ctx, &slot_request(msg, attempt_id, job)).await?
    {
        shared::metrics::slot_wait(shared::metrics::Limit::Job, started.elapsed());
        return Ok(Ok(caller_index));
    }
    let _turn = gate_lock.lock().await;
    let notify = wakeups.workspace(job.workspace_id);
    // The job was read when the message arrived, perhaps minutes ago: read it again before the
    // first try in line, so a pause or a closed window stops the call.
    let mut checked_at: Option<Instant> = None;
    let mut backoff = Duration::from_millis(5);
    let mut blocked_by = shared::metrics::Limit::Job;
    loop {
        if ctx.shutdown.is_cancelled() {
            return Err(StepError::ShuttingDown);
        }
        if checked_at.is_none_or(|at| at.elapsed() >= RECHECK_EVERY) {
            *job = ctx.jobs.current(&ctx.db, msg.batch_id).await?;
            checked_at = Some(Instant::now());
            let gate = job.gate(ctx.config.service.clock.now());
            if gate != Gate::Go {
                return Ok(Err(gate));
            }
        }
        let req = slot_request(msg, attempt_id, job);
        // Register for the wake-up before trying, so a release between the try and the wait
        // is not missed.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match try_acquire(ctx, &req).await? {
            TryAcquire::Acquired { caller_index } => {
                shared::metrics::slot_wait(blocked_by, started.elapsed());
                return Ok(Ok(caller_index));
            }
            full @ (TryAcquire::JobFull | TryAcquire::WorkspaceFull) => {
                blocked_by = if matches!(full, TryAcquire::WorkspaceFull) {
                    shared::metrics::Limit::Workspace
                } else {
                    shared::metrics::Limit::Job
                };
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Err(StepError::ShuttingDown),
                    _ = &mut notified => backoff = Duration::from_millis(5),
                    _ = tokio::time::sleep(backoff.min(RECHECK_EVERY)) => {
                        backoff = (backoff * 2).min(POLL_CAP);
                    }
                }
            }
        }
    }
}

/// How long a dial keeps retrying a Redis call that timed out (Redis slow, not gone) before it
/// gives up: well inside the reconciler's 45 s of silence for an attempt without a call id.
const REDIS_PATIENCE: Duration = Duration::from_secs(30);

/// Whether a failed Redis call is worth trying again soon: it timed out (the window shrank
/// meanwhile), and the dial has been patient for less than [`REDIS_PATIENCE`].
fn worth_retrying(ctx: &Ctx, e: &redis::RedisError, since: Instant) -> bool {
    e.is_timeout() && since.elapsed() < REDIS_PATIENCE && !ctx.shutdown.is_cancelled()
}

/// The pause before retrying a timed-out Redis call: the `n`-th retry waits 20 ms · 2^n, at most
/// one second, so a slow Redis is not hammered by the calls that timed out on it.
fn retry_pause(n: u32) -> Duration {
    Duration::from_millis(20u64 << n.min(6)).min(Duration::from_secs(1))
}

/// One try at both slots. A try that timed out is repeated with the same attempt id: the script
/// is idempotent for its member (a slot it took before the answer was lost is simply renewed),
/// so a slow Redis neither leaks slots nor sends the message back to the queue. If it never
/// answers, the slot it may hold is given back before the error goes up.
async fn try_acquire(ctx: &Ctx, req: &SlotRequest) -> Result<TryAcquire, StepError> {
    let since = Instant::now();
    let mut retries = 0;
    loop {
        match ctx.limits.try_acquire(req).await {
            Ok(answer) => return Ok(answer),
            Err(e) if worth_retrying(ctx, &e, since) => {
                tracing::debug!(error = %e, "slot try timed out; trying again");
                tokio::time::sleep(retry_pause(retries)).await;
                retries += 1;
            }
            Err(e) => {
                if let Err(r) = ctx
                    .limits
                    .release(req.workspace_id, req.batch_id, req.attempt_id)
                    .await
                {
                    tracing::debug!(error = %r, "slot of a failed try not released; its lease will lapse");
                }
                return Err(e.into());
            }
        }
    }
}

fn slot_request(msg: &DialV1, attempt_id: Uuid, job: &Job) -> SlotRequest {
    SlotRequest {
        workspace_id: job.workspace_id,
        batch_id: msg.batch_id,
        attempt_id,
        workspace_limit: u32::try_from(job.workspace_limit).unwrap_or(1),
        job_limit: u32::try_from(job.job_limit).unwrap_or(1),
        caller_pool: u32::try_from(job.callers.len()).unwrap_or(0),
    }
}

/// Stores the carrier's call id. Committed asynchronously (`synchronous_commit = off`, in this
/// one statement's implicit transaction): if PostgreSQL crashed before flushing it, nothing
/// breaks — the attempt row itself was committed durably before the call, and the call id
/// comes back with the status callback — so the dial path saves a disk flush per call.
async fn store_call_sid(ctx: &Ctx, attempt_id: Uuid, call_sid: &str) -> Result<(), StepError> {
    let client = ctx.db.get().await?;
    let plain = !call_sid.is_empty()
        && call_sid.len() <= 64
        && call_sid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if plain {
        // A simple query (no parameters) is what lets SET LOCAL share the statement's
        // transaction; the values are a UUID and a checked identifier.
        client
            .batch_execute(&format!(
                "SET LOCAL synchronous_commit = off;
                 UPDATE dial_attempts SET carrier_call_sid = '{call_sid}', started_at = now(),
                     state = CASE WHEN state = 'dialing' THEN 'ringing' ELSE state END,
                     updated_at = now()
                 WHERE id = '{attempt_id}' AND carrier_call_sid IS NULL"
            ))
            .await?;
    } else {
        client
            .execute(
                "UPDATE dial_attempts SET carrier_call_sid = $2, started_at = now(),
                     state = CASE WHEN state = 'dialing' THEN 'ringing' ELSE state END,
                     updated_at = now()
                 WHERE id = $1 AND carrier_call_sid IS NULL",
                &[&attempt_id, &call_sid],
            )
            .await?;
    }
    Ok(())
}

async fn hand_back(ctx: &Ctx, contact_id: Uuid, gate: Gate) -> Result<DialResult, StepError> {
    shared::metrics::dial_handed_back(HandBack::Job);
    let state = gate.contact_state();
    let client = ctx.db.get().await?;
    client
        .execute(
            "UPDATE contacts SET state = $2, released_at = NULL, updated_at = now()
             WHERE id = $1 AND state = 'released'",
            &[&contact_id, &state],
        )
        .await?;
    Ok(DialResult::HandedBack(state))
}

/// Why a call was not handed to the carrier.
enum PlaceError {
    /// The job stopped wanting the call while it waited for its start token.
    Stopped(Gate),
    /// The rate limiter could not be asked.
    NoToken(redis::RedisError),
    /// Past its send window, the attempt's row could not be touched (database trouble).
    Unconfirmed(StepError),
    /// Past its send window, the attempt's row was gone: the reconciler took it back.
    TakenBack,
    /// The carrier's answer.
    Carrier(CarrierError),
}

/// Takes a start token and sends the request; retried only when the request provably never
/// left (connection refused), each retry with a token of its own so the rate holds. The job is
/// looked at again after every token wait (see [`take_start_token`]): a long wait (a low rate)
/// must not carry a call past a pause, a cancel or the window's end.
async fn place_with_retry(
    ctx: &Ctx,
    req: &CallRequest,
    batch_id: Uuid,
    job: &Job,
    clock: &mut SendClock,
) -> Result<String, PlaceError> {
    let mut tries = 0;
    loop {
        take_start_token(ctx, batch_id, job, clock).await?;
        // Nothing between the token and the request it paces — unless the token took so long
        // that the send window ran out (the wait loop keeps it open, so only a stalled Redis
        // call gets here): then the row is touched first, correctness before pacing.
        clock.confirm(ctx).await?;
        match ctx.carrier.place_call(req).await {
            Err(CarrierError::Unreachable(e)) if tries < 3 => {
                tries += 1;
                tracing::warn!(error = %e, "carrier unreachable, retrying");
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
            other => return other.map_err(PlaceError::Carrier),
        }
    }
}

/// Waits for a start token. A token granted at once needs no second look at the job (the
/// attempt insert just checked it is active, the slot wait that the window is open); after a
/// wait the job is read again *before* the next try — never between a granted token and its
/// request, which would bunch starts.
async fn take_start_token(
    ctx: &Ctx,
    batch_id: Uuid,
    job: &Job,
    clock: &mut SendClock,
) -> Result<(), PlaceError> {
    let started = Instant::now();
    let job_cps = job.job_cps.map(|r| u32::try_from(r).unwrap_or(1));
    let workspace_cps = job.workspace_cps.and_then(|r| u32::try_from(r).ok());
    let mut retries = 0;
    let mut patient_since = Instant::now();
    loop {
        // A long wait (a low rate) keeps the send window open, so the reconciler leaves the
        // attempt alone; before the try, never between a granted token and its request.
        clock.keep_open(ctx).await?;
        let wait = match ctx
            .limits
            .try_start(job.workspace_id, batch_id, job_cps, workspace_cps)
            .await
        {
            Ok(wait) => {
                patient_since = Instant::now();
                wait
            }
            // Redis slow: try again (a token the lost answer granted is wasted: fewer starts,
            // never more) rather than hand the contact back and take it again later.
            Err(e) if worth_retrying(ctx, &e, patient_since) => {
                tracing::debug!(error = %e, "start token try timed out; trying again");
                tokio::time::sleep(retry_pause(retries)).await;
                retries += 1;
                continue;
            }
            Err(e) => return Err(PlaceError::NoToken(e)),
        };
        let Some(wait) = wait else {
            shared::metrics::slot_wait(shared::metrics::Limit::Rate, started.elapsed());
            return Ok(());
        };
        tokio::time::sleep(wait).await;
        let gate = match ctx.jobs.current(&ctx.db, batch_id).await {
            Ok(fresh) => fresh.gate(ctx.config.service.clock.now()),
            Err(e) => {
                // The attempt insert checked the job a moment ago; go with that.
                tracing::warn!(error = %e, "job not re-read while waiting for a start token");
                job.gate(ctx.config.service.clock.now())
            }
        };
        if gate != Gate::Go {
            return Err(PlaceError::Stopped(gate));
        }
    }
}

async fn close(
    ctx: &Ctx,
    attempt_id: Uuid,
    outcome: CallOutcome,
    reason: &str,
) -> Result<(), StepError> {
    record_end(
        ctx,
        attempt_id,
        EndReport::unreported(),
        Some((outcome, reason)),
    )
    .await?;
    Ok(())
}

/// The agent's answer URL with `dialId=<attempt id>` added to its query.
pub fn with_dial_id(answer_url: &str, attempt_id: Uuid) -> String {
    let (base, fragment) = match answer_url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (answer_url, None),
    };
    let sep = if base.contains('?') {
        if base.ends_with('?') || base.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    let mut url = format!("{base}{sep}dialId={attempt_id}");
    if let Some(f) = fragment {
        url.push('#');
        url.push_str(f);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_id_is_appended() {
        let id = Uuid::nil();
        assert_eq!(
            with_dial_id("https://a.example/answer", id),
            format!("https://a.example/answer?dialId={id}")
        );
        assert_eq!(
            with_dial_id("https://a.example/answer?x=1#top", id),
            format!("https://a.example/answer?x=1&dialId={id}#top")
        );
    }
}
