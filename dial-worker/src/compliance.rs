//! The dial worker's last look at the compliance rules, just before the carrier request
//! (invariant 11; the scheduler checked the same rules at release). [`last_look`] runs once the
//! attempt is written, and again after every wait for a start token — a wait at a low rate can
//! outlast the calling hours or a number's listing:
//!
//! - the number is on the do-not-call list → the contact ends `failed` with the outcome
//!   `suppressed`, with no attempt charged ([`suppress`] before the attempt is written,
//!   `Exit::Suppress` after);
//! - a calling rule holds it now — the one decision path the scheduler also takes
//!   (`shared::compliance::enforce`: the rule pack's hours, no-call days and per-number caps
//!   of every candidate state, the workspace's hours, the job's window) — or the number reached
//!   the workspace's frequency cap ([`cap_reached`]) → its attempt is withdrawn (not charged)
//!   and it waits for its next allowed minute with its hold reason, [`deferred`] recording the
//!   rule, its citation and the pack's version.
//!
//! Both caps are written-then-checked: the attempt row is committed before the look, and the
//! look counts every other attempt to the number in the workspace, so of two workers racing for
//! the last call the one that looks second sees the first's attempt and stands down (both may
//! stand down; neither over-calls).
//!
//! What a refusal makes of the attempt is `crate::exit`'s decision.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use shared::compliance::enforce::{self, Contact, Hold, call_ages_sql, calls_from_ages};
use shared::compliance::hours::DeferReason;
use shared::compliance::jurisdiction::UsState;
use shared::db::rules::suppress_contacts;
use shared::domain::ContactState;
use uuid::Uuid;

use crate::ctx::Ctx;
use crate::error::StepError;
use crate::exit::{Refusal, Written};
use crate::job::Job;

/// Whom a written attempt calls, the zones their calling hours are judged in, and where they
/// say they are.
pub(crate) struct Callee {
    pub(crate) to: String,
    pub(crate) zones: Vec<Tz>,
    pub(crate) declared_state: Option<UsState>,
    pub(crate) postal_state: Option<UsState>,
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
    let rules = enforce::Policy {
        pack: ctx.config.pack,
        mode: job.mode,
        job: &job.window,
        hours: job.recipient_hours,
        allow_unknown_timezone: job.allow_unknown_timezone,
    };
    let contact = Contact {
        number: &callee.to,
        zones: &callee.zones,
        declared_state: callee.declared_state,
        postal_state: callee.postal_state,
    };
    // The pack's caps count the workspace's other attempts to the number, this one written
    // first: of two workers racing for the last call, the later to look sees the other's.
    if let Some(window) = rules.cap_lookback(&contact, now) {
        let (sent, unsent) = call_ages(
            ctx,
            job.workspace_id,
            &callee.to,
            written.attempt_id,
            window,
        )
        .await?;
        let all: Vec<i64> = sent.iter().chain(&unsent).copied().collect();
        if let Some(mut hold) = rules.judge(&contact, &calls_from_ages(&all, now), now) {
            if hold.reason == DeferReason::StateCallCap
                && rules
                    .judge(&contact, &calls_from_ages(&sent, now), now)
                    .is_none()
            {
                // Only attempts not yet sent fill the cap: another worker is racing for the
                // same call. Both may stand down; each looks again after its own short,
                // attempt-keyed delay, so the next race is unlikely to be a tie.
                hold.until = now + race_backoff(written.attempt_id);
            }
            return Ok(Some(Refusal::Defer(hold)));
        }
    } else if let Some(hold) = rules.judge(&contact, &[], now) {
        return Ok(Some(Refusal::Defer(hold)));
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
        return Ok(Some(Refusal::Defer(Hold::plain(
            DeferReason::FrequencyCap,
            until,
        ))));
    }
    Ok(None)
}

/// How long a worker that stood down in a race for a capped number's last call waits before
/// it looks again: 1 to 5 s, keyed by its attempt so two racers rarely pick the same.
fn race_backoff(attempt_id: Uuid) -> chrono::Duration {
    chrono::Duration::milliseconds(1_000 + (attempt_id.as_u128() % 4_000) as i64)
}

/// The ages (ms before the database's `now()`) of the workspace's attempts to `number` within
/// `window`, other than `attempt_id`: those sent (or ended) and those not sent yet.
async fn call_ages(
    ctx: &Ctx,
    workspace_id: Uuid,
    number: &str,
    attempt_id: Uuid,
    window: chrono::Duration,
) -> Result<(Vec<i64>, Vec<i64>), StepError> {
    let client = ctx.db.get().await?;
    let sql = format!(
        "SELECT {} AS sent, {} AS unsent",
        call_ages_sql(
            "$1::uuid",
            "$2::text",
            "$3::float8",
            "$4::uuid AND (a.carrier_call_sid IS NOT NULL OR a.outcome IS NOT NULL)"
        ),
        call_ages_sql(
            "$1::uuid",
            "$2::text",
            "$3::float8",
            "$4::uuid AND a.carrier_call_sid IS NULL AND a.outcome IS NULL"
        ),
    );
    let secs = window.num_milliseconds() as f64 / 1000.0;
    let row = client
        .query_one(&sql, &[&workspace_id, &number, &secs, &attempt_id])
        .await?;
    Ok((row.try_get("sent")?, row.try_get("unsent")?))
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

/// Records that the last look deferred a contact, naming the rule, its citation and the pack's
/// version (best effort: the audit row must not decide whether the contact is handed back).
pub async fn deferred(ctx: &Ctx, contact_id: Uuid, hold: Hold) {
    let Hold { until, reason, .. } = hold;
    let write = async {
        let client = ctx.db.get().await?;
        client
            .execute(
                "INSERT INTO contact_events (contact_id, at, kind, reason, detail)
                 VALUES ($1, $2, 'deferred', $3,
                         jsonb_build_object('until', $4::timestamptz, 'by', 'dial-worker',
                                            'rule', $5::text, 'citation', $6::text,
                                            'version', $7::text))",
                &[
                    &contact_id,
                    &ctx.config.service.clock.now(),
                    &reason.as_str(),
                    &until,
                    &hold.rule_id(),
                    &hold.citation(),
                    &ctx.config.pack.version(),
                ],
            )
            .await?;
        Ok::<_, StepError>(())
    };
    if let Err(e) = write.await {
        tracing::warn!(%contact_id, error = %e, "deferral event not recorded");
    }
    tracing::info!(%contact_id, %until, reason = reason.as_str(), rule = hold.rule_id(),
                   "deferred at the last look; handed back");
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
