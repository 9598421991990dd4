//! The attempt's SQL on the dial path: the careful read of the contact and its attempt, the
//! attempt's insert (the no-double-dial guard, see `crate::dial`), the carrier's call id, the
//! send window's touch, and the ways a contact goes back unplaced.

use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::metrics::HandBack;
use shared::queue::messages::DialV1;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::ctx::Ctx;
use crate::dial::DialResult;
use crate::error::StepError;
use crate::job::Gate;

/// The careful read. `FOR SHARE OF c` is the release hand-off: the scheduler publishes a
/// contact's message inside the transaction that marks it `released` and holds the row's lock
/// until it commits, so a message can arrive first. Waiting on that lock (never longer than
/// the scheduler's publish timeout) returns the contact as the release left it: `released` once
/// it commits, still `queued` only when it rolled back, which is the one case where the message
/// truly is stale. See `docs/scheduler.md`, "The release hand-off".
const CONTACT_SQL: &str = "
    SELECT c.state, c.attempts,
           a.id AS attempt_id, a.carrier_call_sid, a.outcome IS NOT NULL AS ended,
           a.created_at AS attempt_created_at,
           EXISTS (SELECT 1 FROM dnc_numbers d
                   WHERE d.workspace_id = c.workspace_id AND d.number = c.phone_number)
               AS do_not_call
    FROM contacts c
    LEFT JOIN dial_attempts a ON a.contact_id = c.id AND a.attempt_no = $3
    WHERE c.id = $1 AND c.batch_id = $2
    FOR SHARE OF c";

/// The contact as [`CONTACT_SQL`] found it.
pub(crate) struct ContactRow {
    pub(crate) state: String,
    pub(crate) attempts: i32,
    /// This very attempt, if its row exists already.
    pub(crate) existing: Option<ExistingAttempt>,
    /// The number is on the workspace's do-not-call list.
    pub(crate) do_not_call: bool,
}

/// An attempt row found by the careful read: it is reconciled, never dialed again.
pub(crate) struct ExistingAttempt {
    pub(crate) id: Uuid,
    pub(crate) call_sid: Option<String>,
    pub(crate) ended: bool,
    pub(crate) created_at: DateTime<Utc>,
}

impl ContactRow {
    fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
        let existing = match r.try_get::<_, Option<Uuid>>("attempt_id")? {
            Some(id) => Some(ExistingAttempt {
                id,
                call_sid: r.try_get("carrier_call_sid")?,
                ended: r.try_get("ended")?,
                created_at: r.try_get("attempt_created_at")?,
            }),
            None => None,
        };
        Ok(Self {
            state: r.try_get("state")?,
            attempts: r.try_get("attempts")?,
            existing,
            do_not_call: r.try_get("do_not_call")?,
        })
    }
}

/// The contact of `msg` and its attempt `attempt_no`, read carefully (see [`CONTACT_SQL`]).
pub(crate) async fn read_contact(
    client: &deadpool_postgres::Client,
    msg: &DialV1,
    attempt_no: i32,
) -> Result<ContactRow, StepError> {
    // Prepared once per connection: a statement given as text costs a second round trip.
    let read = client.prepare_cached(CONTACT_SQL).await?;
    let row = client
        .query_opt(&read, &[&msg.contact_id, &msg.batch_id, &attempt_no])
        .await?
        .ok_or_else(|| StepError::Invalid("no such contact in this batch".into()))?;
    Ok(ContactRow::from_row(&row)?)
}

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
             RETURNING id, to_number, (SELECT c.timezones FROM c) AS timezones";

/// The attempt as written: the number to call and the contact's stored zones (if any).
pub(crate) struct Inserted {
    pub(crate) to_number: String,
    pub(crate) timezones: Option<Vec<String>>,
}

/// Writes the attempt and moves the contact to `dialing`; `None` when the insert refused (job
/// not active, contact moved on, attempt already there).
pub(crate) async fn insert_attempt(
    ctx: &Ctx,
    attempt_id: Uuid,
    msg: &DialV1,
    attempt_no: i32,
    from_id: Option<Uuid>,
    from: &str,
) -> Result<Option<Inserted>, StepError> {
    let client = ctx.db.get().await?;
    let insert = client.prepare_cached(INSERT_SQL).await?;
    let row = client
        .query_opt(
            &insert,
            &[&attempt_id, &msg.contact_id, &attempt_no, &from_id, &from],
        )
        .await?;
    let Some(r) = row else {
        return Ok(None);
    };
    Ok(Some(Inserted {
        to_number: r.try_get("to_number")?,
        timezones: r.try_get("timezones")?,
    }))
}

/// Stores the carrier's call id. Committed asynchronously (`synchronous_commit = off`, in this
/// one statement's implicit transaction): if PostgreSQL crashed before flushing it, nothing
/// breaks — the attempt row itself was committed durably before the call, and the call id
/// comes back with the status callback — so the dial path saves a disk flush per call.
pub(crate) async fn store_call_sid(
    ctx: &Ctx,
    attempt_id: Uuid,
    call_sid: &str,
) -> Result<(), StepError> {
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

/// Touches an attempt still waiting to be sent, renewing its send window (see
/// `crate::reconcile`). `false` when the attempt is gone (taken back) or no longer waiting.
pub(crate) async fn touch(ctx: &Ctx, attempt_id: Uuid) -> Result<bool, StepError> {
    let client = ctx.db.get().await?;
    let n = client
        .execute(
            "UPDATE dial_attempts SET updated_at = now()
             WHERE id = $1 AND carrier_call_sid IS NULL AND outcome IS NULL",
            &[&attempt_id],
        )
        .await?;
    Ok(n == 1)
}

/// Notes why the carrier's answer left the call's state unknown; the attempt stays open for the
/// status callback or the reconciler.
pub(crate) async fn leave_for_reconciliation(
    ctx: &Ctx,
    attempt_id: Uuid,
    error: &str,
) -> Result<(), StepError> {
    let client = ctx.db.get().await?;
    client
        .execute(
            // The silence that frees its slot is counted from here (see
            // `HeldLeases::new`), not from before the token wait and the request.
            "UPDATE dial_attempts SET error = $2, started_at = now(), updated_at = now()
             WHERE id = $1",
            &[&attempt_id, &error],
        )
        .await?;
    Ok(())
}

/// Gives back a released contact that was not dialed (no attempt written): `queued` again, or
/// `cancelled` with its job.
pub(crate) async fn hand_back(
    ctx: &Ctx,
    contact_id: Uuid,
    gate: Gate,
) -> Result<DialResult, StepError> {
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

/// An attempt written but not yet sent to the carrier.
pub(crate) struct Placed {
    pub(crate) attempt_id: Uuid,
    pub(crate) contact_id: Uuid,
    pub(crate) attempt_no: i32,
    pub(crate) workspace_id: Uuid,
    pub(crate) batch_id: Uuid,
}

/// Takes back an attempt that provably never reached the carrier: the attempt row goes (no call
/// was made, so there is nothing to record), the contact returns to `queued` due after `delay`
/// (or to `cancelled`) with its attempt count as before, and the slot is given back. If the
/// database refuses, the attempt stays for the reconciler, as any unplaced attempt would.
pub(crate) async fn unplace(
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
