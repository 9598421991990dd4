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
//!
//! The steps, each in a module of its own: the job and its gate ([`crate::job`]), the careful
//! read and the attempt's writes ([`crate::attempt`]), the slots and caller ID
//! ([`crate::acquire`]), the calling-hours and frequency-cap re-checks ([`crate::compliance`]),
//! the paced carrier request ([`crate::place`]); an existing attempt goes to
//! [`crate::reconcile`], a call's end to [`crate::end`].

use std::time::Duration;

use shared::compliance::hours::parse_zones;
use shared::compliance::zones_for_number;
use shared::domain::CallOutcome;
use shared::metrics::HandBack;
use shared::queue::messages::DialV1;
use uuid::Uuid;

use crate::acquire::{Acquired, acquire};
use crate::attempt::{self, Inserted, Placed};
use crate::carrier::CarrierError;
use crate::compliance::{Callee, List, last_look, refuse};
use crate::ctx::Ctx;
use crate::end::{EndReport, record_end};
use crate::error::StepError;
use crate::job::{Gate, Job};
use crate::place::{CARRIER_BACKOFF, PlaceError, SendClock, carrier_side, place_with_retry};
use crate::reconcile::reconcile;

/// What a dial did.
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

/// How a dial learns where its contact stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// A first delivery skips the up-front read: the attempt insert itself checks the contact.
    /// Anything short of a written attempt (the insert refused, the job does not let the call
    /// start) takes the careful path, which reads why.
    FirstDelivery,
    /// The contact and any existing attempt are read first (existing attempt → reconcile;
    /// moved on → stale; listed → suppressed; job stopped → hand back).
    Careful,
}

/// Where one pass of [`dial`] got to.
enum Pass {
    /// Finished.
    Done(DialResult),
    /// Not dialed, and the contact must be read before anything is done with it: the careful
    /// path again, with the job's cached row dropped.
    LookCarefully,
}

/// Dials the contact of one `DialV1` message (or hands it back, or reconciles it), reading
/// the contact and any existing attempt first. Redelivered messages take this path.
pub async fn dial_one(ctx: &Ctx, msg: &DialV1) -> Result<DialResult, StepError> {
    dial(ctx, msg, Path::Careful).await
}

/// Like [`dial_one`] for a first delivery, without the up-front read: the attempt insert
/// itself checks the contact, and only when it refuses (or the job does not let the call
/// start) does the worker take the careful path and read why. That saves a round trip on
/// every normal dial.
pub async fn dial_first_delivery(ctx: &Ctx, msg: &DialV1) -> Result<DialResult, StepError> {
    dial(ctx, msg, Path::FirstDelivery).await
}

/// The first pass on `first`, then careful passes until one finishes. A careful pass looks
/// again only when its insert was refused after its read (the job paused, or another delivery
/// won the race meanwhile); its next read then sees why.
#[tracing::instrument(skip_all, fields(batch_id = %msg.batch_id, contact_id = %msg.contact_id, attempt_no = msg.attempt_no))]
async fn dial(ctx: &Ctx, msg: &DialV1, first: Path) -> Result<DialResult, StepError> {
    let attempt_no = i32::try_from(msg.attempt_no)
        .map_err(|_| StepError::Invalid("attempt number out of range".into()))?;
    let mut path = first;
    loop {
        match dial_pass(ctx, msg, attempt_no, path).await? {
            Pass::Done(result) => return Ok(result),
            Pass::LookCarefully => path = Path::Careful,
        }
    }
}

/// One pass: read (careful path only), gate, slots, the attempt's insert, then the call.
async fn dial_pass(
    ctx: &Ctx,
    msg: &DialV1,
    attempt_no: i32,
    path: Path,
) -> Result<Pass, StepError> {
    let client = ctx.db.get().await?;
    if path == Path::Careful {
        let contact = attempt::read_contact(&client, msg, attempt_no).await?;
        if let Some(existing) = contact.existing {
            drop(client);
            reconcile(
                ctx,
                existing.id,
                existing.call_sid,
                existing.ended,
                existing.created_at,
            )
            .await?;
            return Ok(Pass::Done(DialResult::Reconciled));
        }
        if contact.state != "released" || contact.attempts != attempt_no - 1 {
            return Ok(Pass::Done(DialResult::Stale));
        }
        if contact.do_not_call {
            drop(client);
            return crate::compliance::suppress(ctx, msg.contact_id)
                .await
                .map(Pass::Done);
        }
    }
    let mut job = ctx.jobs.get(&client, msg.batch_id).await?;
    drop(client);
    let gate = job.gate(ctx.config.service.clock.now());
    if gate != Gate::Go {
        return not_started(ctx, msg, path, gate).await;
    }

    // Wait for both slots (the start token comes right before the request).
    let attempt_id = Uuid::now_v7();
    let caller_index = match acquire(ctx, msg, attempt_id, &mut job).await? {
        Acquired::Slots { caller_index } => caller_index,
        Acquired::Stopped(gate) => return not_started(ctx, msg, path, gate).await,
    };
    let (from_id, from) = match caller_index.and_then(|i| job.callers.get(i as usize)) {
        Some((id, number)) => (Some(*id), number.clone()),
        None => (None, ctx.config.default_caller_id.clone()),
    };

    // The attempt is written before the call, and sent only within the send window of its
    // last write (see `crate::reconcile`), timed from before the write.
    let clock = SendClock::new(attempt_id);
    let inserted = attempt::insert_attempt(ctx, attempt_id, msg, attempt_no, from_id, &from).await;
    let inserted = match inserted {
        Ok(Some(inserted)) => inserted,
        Ok(None) => {
            // Paused or cancelled in the meantime, a duplicate, or another delivery won the
            // race: look again, carefully, with fresh data.
            ctx.jobs.forget(msg.batch_id);
            ctx.limits
                .release(job.workspace_id, msg.batch_id, attempt_id)
                .await?;
            return Ok(Pass::LookCarefully);
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
    call(ctx, &job, &placed, inserted, from, clock)
        .await
        .map(Pass::Done)
}

/// The job does not let the call start (no slot held, no attempt written). The careful path
/// hands the contact back. A first delivery must not: nothing has read the contact yet, its
/// release may not have committed, and a hand-back now would find it still `queued` and do
/// nothing, leaving it `released` once the release lands. The careful path waits for the
/// release (docs/architecture.md, invariant 1).
async fn not_started(ctx: &Ctx, msg: &DialV1, path: Path, gate: Gate) -> Result<Pass, StepError> {
    match path {
        Path::FirstDelivery => {
            ctx.jobs.forget(msg.batch_id);
            Ok(Pass::LookCarefully)
        }
        Path::Careful => attempt::hand_back(ctx, msg.contact_id, gate)
            .await
            .map(Pass::Done),
    }
}

/// A written attempt: the compliance rules looked at again (see [`crate::compliance`]), then
/// the request.
async fn call(
    ctx: &Ctx,
    job: &Job,
    placed: &Placed,
    inserted: Inserted,
    from: String,
    mut clock: SendClock,
) -> Result<DialResult, StepError> {
    let Inserted {
        to_number: to,
        timezones,
    } = inserted;
    let zones = timezones.map_or_else(|| zones_for_number(&to), |z| parse_zones(&z));
    let callee = Callee { to, zones };
    // The scheduler checked at release; the hours may have closed, or the cap filled, while
    // the contact waited for a slot.
    if let Some(refusal) = last_look(ctx, job, placed, &callee, List::JustRead).await? {
        return refuse(ctx, placed, refusal).await;
    }
    let request = crate::place::call_request(ctx, job, placed.attempt_id, &callee, from);
    let sent = place_with_retry(ctx, &request, placed, job, &callee, &mut clock).await;
    settle(ctx, placed, sent).await
}

/// What the request's answer makes of the attempt: dialed, taken back, closed, or left for
/// reconciliation.
async fn settle(
    ctx: &Ctx,
    placed: &Placed,
    sent: Result<String, PlaceError>,
) -> Result<DialResult, StepError> {
    let attempt_id = placed.attempt_id;
    match sent {
        Ok(call_sid) => {
            shared::metrics::call_started();
            attempt::store_call_sid(ctx, attempt_id, &call_sid).await?;
            tracing::debug!(%attempt_id, "dialed");
            Ok(DialResult::Dialed {
                attempt_id,
                call_sid,
            })
        }
        Err(PlaceError::Stopped(gate)) => {
            // Paused, cancelled or out of its window while waiting for the start token.
            attempt::unplace(ctx, placed, gate, Duration::ZERO, HandBack::Job).await
        }
        Err(PlaceError::Refused(refusal)) => {
            // The hours closed, the cap filled or the number was listed during that wait.
            refuse(ctx, placed, refusal).await
        }
        Err(PlaceError::NoToken(e)) => {
            // Redis failed before the request left: the call was provably not placed.
            tracing::warn!(%attempt_id, error = %e, "no start token; contact handed back");
            attempt::unplace(ctx, placed, Gate::Requeue, CARRIER_BACKOFF, HandBack::Redis).await
        }
        Err(PlaceError::Unconfirmed(e)) => {
            // Past its send window and the row could not be touched: not sent.
            tracing::warn!(%attempt_id, error = %e, "attempt not confirmed before its request; contact handed back");
            attempt::unplace(
                ctx,
                placed,
                Gate::Requeue,
                CARRIER_BACKOFF,
                HandBack::Database,
            )
            .await
        }
        Err(PlaceError::TakenBack) => {
            // The reconciler took the attempt back while it waited (past its send window):
            // the contact is queued again and someone else's now; only the slot is ours.
            attempt::give_back_slot(ctx, placed).await;
            Ok(DialResult::Stale)
        }
        Err(PlaceError::Carrier(CarrierError::Rejected { status, body }))
            if carrier_side(status) =>
        {
            // Throttled (429) or our credentials refused (401/403): the carrier's or our
            // problem, not the contact's, so it is not charged an attempt.
            tracing::error!(%attempt_id, status, %body, "carrier refused the request; contact handed back");
            attempt::unplace(
                ctx,
                placed,
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
            attempt::unplace(
                ctx,
                placed,
                Gate::Requeue,
                CARRIER_BACKOFF,
                HandBack::Carrier,
            )
            .await
        }
        Err(PlaceError::Carrier(e)) => {
            // It may have been placed: never re-send; the callback or the reconciler decides.
            tracing::warn!(%attempt_id, error = %e, "call state unknown; left for reconciliation");
            attempt::leave_for_reconciliation(ctx, attempt_id, &e.to_string()).await?;
            Ok(DialResult::NotPlaced(None))
        }
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

/// Closes an attempt the carrier refused with `outcome`, as no callback will.
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
