//! What the dial worker does when a compliance rule refuses a call at the last look, just
//! before the carrier request (invariant 11; the scheduler checked the same rules at release):
//!
//! - the number is on the do-not-call list → the contact ends `failed` with the outcome
//!   `suppressed`, with no attempt written or charged ([`suppress`]);
//! - the recipient's calling hours closed while it waited, or the number reached the
//!   workspace's frequency cap ([`cap_reached`]) → its attempt is taken back (not charged) and
//!   it waits for its next allowed minute (`crate::dial`, with [`deferred`] recording why).

use chrono::{DateTime, Utc};
use shared::compliance::hours::DeferReason;
use uuid::Uuid;

use crate::ctx::Ctx;
use crate::dial::DialResult;
use crate::error::StepError;

/// Ends a released contact whose number is on the do-not-call list, and records the event.
pub async fn suppress(ctx: &Ctx, contact_id: Uuid) -> Result<DialResult, StepError> {
    let client = ctx.db.get().await?;
    client
        .execute(
            "WITH c AS (
                 UPDATE contacts SET state = 'failed', last_outcome = 'suppressed',
                     released_at = NULL, hold_reason = NULL, updated_at = now()
                 WHERE id = $1 AND state = 'released'
                 RETURNING id)
             INSERT INTO contact_events (contact_id, at, kind, reason)
             SELECT id, now(), 'suppressed', 'do_not_call' FROM c",
            &[&contact_id],
        )
        .await?;
    tracing::info!(%contact_id, "number on the do-not-call list; contact suppressed");
    Ok(DialResult::Suppressed)
}

/// Records that the last look deferred a contact (best effort: the audit row must not decide
/// whether the contact is handed back).
pub async fn deferred(ctx: &Ctx, contact_id: Uuid, until: DateTime<Utc>, reason: DeferReason) {
    let write = async {
        let client = ctx.db.get().await?;
        client
            .execute(
                "INSERT INTO contact_events (contact_id, at, kind, reason, detail)
                 VALUES ($1, $2, 'deferred', $3, jsonb_build_object('until', $4::timestamptz,
                                                                    'by', 'dial-worker'))",
                &[
                    &contact_id,
                    &ctx.config.service.clock.now(),
                    &reason.as_str(),
                    &until,
                ],
            )
            .await?;
        Ok::<_, StepError>(())
    };
    if let Err(e) = write.await {
        tracing::warn!(%contact_id, error = %e, "deferral event not recorded");
    }
    tracing::info!(%contact_id, %until, reason = reason.as_str(), "outside calling hours at the last look; handed back");
}

/// With the workspace's frequency cap on: whether the number already had `count` attempts
/// (other than `attempt_id`, just written) in the last `days` days, across the workspace's
/// batches; if so, when the oldest of them leaves the window.
pub async fn cap_reached(
    ctx: &Ctx,
    workspace_id: Uuid,
    number: &str,
    attempt_id: Uuid,
    count: i32,
    days: i32,
) -> Result<Option<DateTime<Utc>>, StepError> {
    let client = ctx.db.get().await?;
    let row = client
        .query_opt(
            "SELECT created_at + make_interval(days => $4::int) AS frees_at FROM dial_attempts
             WHERE workspace_id = $1 AND to_number = $2 AND id <> $3
               AND created_at > now() - make_interval(days => $4::int)
             ORDER BY created_at DESC OFFSET $5::int - 1 LIMIT 1",
            &[&workspace_id, &number, &attempt_id, &days, &count],
        )
        .await?;
    Ok(row.map(|r| r.try_get("frees_at")).transpose()?)
}
