//! One carrier status event from the call-events queue: a final one ends the attempt (slot
//! first, then [`crate::end::record_end`]); a progress one (ringing, answered) updates the
//! attempt's state.

use shared::domain::AttemptState;
use shared::queue::messages::{CallEventV1, CarrierCallStatus};

use crate::carrier::is_final;
use crate::ctx::Ctx;
use crate::end::{EndReport, record_end};
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
        record_end(
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
    client
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
    Ok(())
}
