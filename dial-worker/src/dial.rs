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
//! ([`crate::acquire`]) after the workspace's pre-dial check if it has one
//! ([`crate::predial`]), the calling-hours and frequency-cap re-checks ([`crate::compliance`]),
//! the paced carrier request ([`crate::place`]); an existing attempt goes to
//! [`crate::reconcile`], a call's end to [`crate::end`]. Once the attempt is written, whatever
//! came of it (a refusal, a stopped job, the carrier's answer) is decided by one pure function,
//! `crate::exit::exit`, and carried out here, in `settle`.

use shared::compliance::enforce::Contact;
use shared::compliance::hours::parse_zones;
use shared::compliance::zones_for_number;
use shared::domain::ContactState;
use shared::metrics::HandBack;
use shared::queue::messages::DialV1;
use uuid::Uuid;

use crate::acquire::{Acquired, acquire};
use crate::attempt;
use crate::compliance::{Callee, List, last_look};
use crate::ctx::Ctx;
use crate::end::{EndReport, record_end};
use crate::error::StepError;
use crate::exit::{Exit, PlaceError, Written, exit};
use crate::job::{Gate, Job};
use crate::place::{SendClock, place_with_retry};
use crate::reconcile::reconcile;
use crate::writes::attempts::Inserted;

pub use crate::dial_result::DialResult;

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
        if contact.state != ContactState::Released || contact.attempts != attempt_no - 1 {
            return Ok(Pass::Done(DialResult::Stale));
        }
        if contact.do_not_call {
            drop(client);
            crate::compliance::suppress(ctx, msg.contact_id).await?;
            return Ok(Pass::Done(DialResult::Suppressed));
        }
    }
    let mut job = ctx.jobs.get(&client, msg.batch_id).await?;
    drop(client);
    let gate = job.gate(ctx.config.service.clock.now());
    if gate != Gate::Go {
        return not_started(ctx, msg, path, gate).await;
    }
    // The pre-dial check comes before any slot or start token, so its wait holds no line; only
    // a contact whose release is known to have committed is checked (the careful read).
    if let Some(predial) = &job.predial {
        if path == Path::FirstDelivery {
            return Ok(Pass::LookCarefully);
        }
        if let Some(done) = crate::predial::check_before_dial(ctx, predial, msg).await? {
            return Ok(Pass::Done(done));
        }
    }

    // Wait for both slots (the start token comes right before the request).
    let attempt_id = Uuid::now_v7();
    let caller_index = match acquire(ctx, msg, attempt_id, &mut job).await? {
        Acquired::Slots { caller_index } => caller_index,
        Acquired::Stopped(gate) => return not_started(ctx, msg, path, gate).await,
    };
    // Renewed from now on, before the insert that may wait for the pool (see
    // `HeldLeases::hold_pending`).
    ctx.leases
        .hold_pending(attempt_id, job.workspace_id, msg.batch_id);
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
            ctx.leases.forget(attempt_id);
            ctx.limits
                .release(job.workspace_id, msg.batch_id, attempt_id)
                .await?;
            return Ok(Pass::LookCarefully);
        }
        Err(e) => {
            // Nothing was written: give the slot back now rather than after its lease.
            ctx.give_back_slot(job.workspace_id, msg.batch_id, attempt_id)
                .await;
            return Err(e);
        }
    };
    ctx.leases.written(attempt_id);
    failpoint_after_insert(ctx);
    let written = Written {
        attempt_id,
        contact_id: msg.contact_id,
        attempt_no,
        workspace_id: job.workspace_id,
        batch_id: msg.batch_id,
    };
    call(ctx, &job, &written, inserted, from, clock)
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
        Path::Careful => {
            shared::metrics::dial_handed_back(HandBack::Job);
            let state = gate.contact_state();
            attempt::hand_back(ctx, msg.contact_id, state).await?;
            Ok(Pass::Done(DialResult::HandedBack(state)))
        }
    }
}

/// A written attempt: the compliance rules looked at again (see [`crate::compliance`]), then
/// the request; whatever came of it is decided by [`exit`] and carried out by [`settle`].
async fn call(
    ctx: &Ctx,
    job: &Job,
    written: &Written,
    inserted: Inserted,
    from: String,
    mut clock: SendClock,
) -> Result<DialResult, StepError> {
    let Inserted {
        to_number: to,
        timezones,
        declared_state,
        postal_state,
    } = inserted;
    let zones = timezones.map_or_else(|| zones_for_number(&to), |z| parse_zones(&z));
    let callee = Callee {
        to,
        zones,
        declared_state: Contact::state(declared_state.as_deref()),
        postal_state: Contact::state(postal_state.as_deref()),
    };
    // The scheduler checked at release; the hours may have closed, or the cap filled, while
    // the contact waited for a slot.
    let sent = match last_look(ctx, job, written, &callee, List::JustRead).await? {
        Some(refusal) => Err(PlaceError::Refused(refusal)),
        None => {
            let request = crate::place::call_request(ctx, job, written.attempt_id, &callee, from);
            place_with_retry(ctx, &request, written, job, &callee, &mut clock).await
        }
    };
    settle(ctx, written, exit(sent, ctx.config.service.clock.now())).await
}

/// Carries out an [`Exit`]: the one place where a written attempt's end on the dial path is
/// written.
async fn settle(ctx: &Ctx, written: &Written, exit: Exit) -> Result<DialResult, StepError> {
    let Written {
        attempt_id,
        contact_id,
        workspace_id,
        batch_id,
        ..
    } = *written;
    match exit {
        Exit::Dialed { call_sid } => {
            shared::metrics::call_started();
            attempt::store_call_sid(ctx, attempt_id, &call_sid).await?;
            tracing::debug!(%attempt_id, "dialed");
            Ok(DialResult::Dialed {
                attempt_id,
                call_sid,
            })
        }
        Exit::Withdraw {
            state,
            delay,
            why,
            deferred,
            note,
        } => {
            if let Some(note) = note {
                tracing::warn!(%attempt_id, ?why, "{note}; contact handed back");
            }
            if let Some(hold) = deferred {
                crate::compliance::deferred(ctx, contact_id, hold).await;
            }
            shared::metrics::dial_handed_back(why);
            // No call exists, so the slot goes back first, whatever the database says next.
            ctx.give_back_slot(workspace_id, batch_id, attempt_id).await;
            attempt::withdraw(ctx, written, state, delay, deferred.map(|h| h.reason)).await?;
            Ok(DialResult::HandedBack(state))
        }
        Exit::Suppress => {
            shared::metrics::dial_handed_back(HandBack::Compliance);
            ctx.give_back_slot(workspace_id, batch_id, attempt_id).await;
            attempt::suppress_written(ctx, written).await?;
            tracing::info!(%contact_id, "number listed while the call waited; contact suppressed");
            Ok(DialResult::Suppressed)
        }
        Exit::Close { outcome, reason } => {
            // Closed by us, as no callback will.
            record_end(
                ctx,
                attempt_id,
                EndReport::unreported(),
                Some((outcome, &reason)),
            )
            .await?;
            Ok(DialResult::NotPlaced(Some(outcome)))
        }
        Exit::Reconcile { error } => {
            tracing::warn!(%attempt_id, %error, "call state unknown; left for reconciliation");
            attempt::leave_for_reconciliation(ctx, attempt_id, &error).await?;
            Ok(DialResult::NotPlaced(None))
        }
        Exit::SlotOnly => {
            ctx.give_back_slot(workspace_id, batch_id, attempt_id).await;
            Ok(DialResult::Stale)
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
