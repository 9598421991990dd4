//! The dial worker's last look at the compliance rules, just before the carrier request
//! (invariant 11; the scheduler checked the same rules at release). [`last_look`] runs once the
//! attempt is written, and again after every wait for a start token — a wait at a low rate can
//! outlast the calling hours or a number's listing:
//!
//! - the number is on the do-not-call list → the contact ends `failed` with the outcome
//!   `suppressed`, with no attempt charged ([`suppress`] before the attempt is written,
//!   `Exit::Suppress` after);
//! - the recipient's calling hours closed while it waited, or the number reached the
//!   workspace's frequency cap ([`cap_reached`]) → its attempt is withdrawn (not charged) and
//!   it waits for its next allowed minute with its hold reason, [`deferred`] recording why.
//!
//! What a refusal makes of the attempt is `crate::exit`'s decision.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use shared::compliance::hours::{DeferReason, Verdict, verdict};
use shared::db::rules::suppress_contacts;
use shared::domain::ContactState;
use uuid::Uuid;

use crate::ctx::Ctx;
use crate::error::StepError;
use crate::exit::{Refusal, Written};
use crate::job::Job;

/// Whom a written attempt calls, and the zones their calling hours are judged in.
pub(crate) struct Callee {
    pub(crate) to: String,
    pub(crate) zones: Vec<Tz>,
}

/// Whether the last look reads the do-not-call list. The attempt insert has just read it, so
/// the first look does not; a look after a start-token wait does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum List {
    JustRead,
    ReadAgain,
}

/// The rules for a written attempt at this moment, as `job` (read afresh after a wait) sets
/// them: the do-not-call list (when `list` says so), the recipient's calling hours with the
/// job's window, and the frequency cap.
pub(crate) async fn last_look(
    ctx: &Ctx,
    job: &Job,
    written: &Written,
    callee: &Callee,
    list: List,
) -> Result<Option<Refusal>, StepError> {
    if list == List::ReadAgain && listed(ctx, job.workspace_id, &callee.to).await? {
        return Ok(Some(Refusal::Listed));
    }
    let now = ctx.config.service.clock.now();
    if let Verdict::Defer { until, reason } = verdict(
        &job.window,
        job.recipient_hours,
        job.allow_unknown_timezone,
        &callee.zones,
        now,
    ) {
        return Ok(Some(Refusal::Defer { until, reason }));
    }
    if let Some((count, days)) = job.cap
        && let Some(until) = cap_reached(
            ctx,
            job.workspace_id,
            &callee.to,
            written.attempt_id,
            count,
            days,
        )
        .await?
    {
        return Ok(Some(Refusal::Defer {
            until,
            reason: DeferReason::FrequencyCap,
        }));
    }
    Ok(None)
}

/// Whether `number` is on the workspace's do-not-call list.
async fn listed(ctx: &Ctx, workspace_id: Uuid, number: &str) -> Result<bool, StepError> {
    let client = ctx.db.get().await?;
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM dnc_numbers WHERE workspace_id = $1 AND number = $2)
                 AS listed",
            &[&workspace_id, &number],
        )
        .await?;
    Ok(row.try_get("listed")?)
}

/// Ends a released contact whose number is on the do-not-call list, and records the event.
pub async fn suppress(ctx: &Ctx, contact_id: Uuid) -> Result<(), StepError> {
    let client = ctx.db.get().await?;
    suppress_contacts(&**client, &[contact_id], ContactState::Released, None).await?;
    tracing::info!(%contact_id, "number on the do-not-call list; contact suppressed");
    Ok(())
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
    tracing::info!(%contact_id, %until, reason = reason.as_str(), "deferred at the last look; handed back");
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
    // The cap's one statement (`shared::db::rules`), judged at the database's time.
    let row = client
        .query_one(
            "SELECT frequency_cap_frees_at($1::uuid, $2::text, now(), $3::int4, $4::int4,
                                           $5::uuid) AS frees_at",
            &[&workspace_id, &number, &count, &days, &attempt_id],
        )
        .await?;
    Ok(row.try_get("frees_at")?)
}
