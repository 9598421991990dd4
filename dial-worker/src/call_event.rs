//! One carrier status event from the call-events queue: a final one ends the attempt (slot
//! first, then [`crate::end::record_end`]); a progress one (ringing, answered) updates the
//! attempt's state.
//!
//! An event for an attempt that no longer exists because it was taken back (its request was
//! not known to have left, so the contact was handed back) is recorded on the attempt's
//! tombstone ([`record_late`]) and never applied: see docs/reliability.md, "Races closed".

use shared::domain::AttemptState;
use shared::queue::messages::{CallEventV1, CarrierCallStatus};

use crate::carrier::is_final;
use crate::ctx::Ctx;
use crate::end::{EndReport, Recorded, record_end};
use crate::error::StepError;

/// Handles one call event from the queue.
#[tracing::instrument(skip_all, fields(attempt_id = %event.attempt_id, status = ?event.status))]
pub async fn handle_event(ctx: &Ctx, event: &CallEventV1) -> Result<(), StepError> {
    if is_final(event.status) {
        // The call is over, so it no longer counts against the limits: give its slot back
        // before the (slower, disk-flushing) outcome transaction, so the next call can start
        // meanwhile. Only if that failed does `record_end` try again after its commit.
        let keys = match ctx.leases.get(event.attempt_id) {
            Some(keys) => Some(keys),
            None => {
                let client = ctx.db.get().await?;
                let read = client
                    .prepare_cached(
                        "SELECT workspace_id, batch_id FROM dial_attempts WHERE id = $1",
                    )
                    .await?;
                match client.query_opt(&read, &[&event.attempt_id]).await? {
                    Some(r) => Some((r.try_get("workspace_id")?, r.try_get("batch_id")?)),
                    None => None,
                }
            }
        };
        let slot_released = match keys {
            Some((workspace_id, batch_id)) => {
                ctx.release_slot(workspace_id, batch_id, event.attempt_id)
                    .await
            }
            None => false,
        };
        let recorded = record_end(
            ctx,
            event.attempt_id,
            EndReport {
                status: event.status,
                answered_by: event.answered_by.clone(),
                duration_secs: event.duration_secs,
                call_sid: Some(event.call_sid.clone()),
                at: event.received_at,
                slot_released,
            },
            None,
        )
        .await?;
        if recorded == Recorded::NoAttempt {
            record_late(ctx, event).await?;
        }
        return Ok(());
    }
    let state = match event.status {
        CarrierCallStatus::InProgress => AttemptState::InProgress,
        _ => AttemptState::Ringing,
    };
    let answered_at = (event.status == CarrierCallStatus::InProgress).then_some(event.received_at);
    let client = ctx.db.get().await?;
    let update = client
        .prepare_cached(
            "UPDATE dial_attempts SET
                 state = CASE WHEN state = $6 THEN state ELSE $2 END,
                 answered_at = COALESCE(answered_at, $3),
                 answered_by = COALESCE($4, answered_by),
                 carrier_call_sid = COALESCE(carrier_call_sid, $5),
                 updated_at = now()
             WHERE id = $1 AND outcome IS NULL",
        )
        .await?;
    let updated = client
        .execute(
            &update,
            &[
                &event.attempt_id,
                &state,
                &answered_at,
                &event.answered_by,
                &event.call_sid,
                &AttemptState::InProgress,
            ],
        )
        .await?;
    drop(client);
    if updated == 0 {
        // Ended already (a progress event after the end: nothing to do) or taken back.
        record_late(ctx, event).await?;
    }
    Ok(())
}

/// Records a carrier event for an attempt that was taken back on its tombstone: the call id,
/// how many such events came, the last one's status and time; counted and logged. It changes
/// nothing else — the contact was handed back when the attempt was taken back (it may be
/// queued, dialled again under a new attempt, or final), so applying the late end could end a
/// newer attempt's contact or schedule a second retry, and the call it reports is already
/// over or will end on its own. A loud record is what an operator needs to see that a request
/// reached the carrier after all. An event for an attempt with no tombstone either (never
/// written, or its contact deleted) is dropped as before.
async fn record_late(ctx: &Ctx, event: &CallEventV1) -> Result<(), StepError> {
    let client = ctx.db.get().await?;
    let update = client
        .prepare_cached(
            "UPDATE taken_back_attempts SET
                 carrier_call_sid = COALESCE(carrier_call_sid, $2),
                 late_answers = late_answers + 1,
                 last_late_status = $3,
                 last_late_at = $4
             WHERE attempt_id = $1
             RETURNING contact_id",
        )
        .await?;
    let row = client
        .query_opt(
            &update,
            &[
                &event.attempt_id,
                &event.call_sid,
                &event.status.as_str(),
                &event.received_at,
            ],
        )
        .await?;
    if let Some(row) = row {
        let contact_id: uuid::Uuid = row.try_get("contact_id")?;
        shared::metrics::late_callback();
        tracing::warn!(
            %contact_id,
            call_sid = %event.call_sid,
            "carrier callback for an attempt already taken back; recorded on its tombstone, not applied"
        );
    }
    Ok(())
}
