//! The attempt's SQL on the dial path: the careful read of the contact and its attempt, the
//! attempt's insert and call id (group-written, `crate::writes::attempts`), the send window's
//! touch, and the statements by which a contact goes back unplaced.

use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::compliance::hours::DeferReason;
use shared::db::rules::suppress_unsent_attempt;
use shared::domain::ContactState;
use shared::queue::messages::DialV1;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::ctx::Ctx;
use crate::error::StepError;
use crate::exit::Written;
use crate::writes::attempts::{CallSid, Inserted, NewAttempt};

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
    pub(crate) state: ContactState,
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

/// Writes the attempt and moves the contact to `dialing`, together with the other dials'
/// inserts waiting at the same moment; `None` when the insert refused (job not active,
/// contact moved on, attempt already there).
pub(crate) async fn insert_attempt(
    ctx: &Ctx,
    attempt_id: Uuid,
    msg: &DialV1,
    attempt_no: i32,
    from_id: Option<Uuid>,
    from: &str,
) -> Result<Option<Inserted>, StepError> {
    ctx.writes
        .attempts
        .write(NewAttempt {
            attempt_id,
            contact_id: msg.contact_id,
            attempt_no,
            from_id,
            from: from.to_owned(),
        })
        .await
}

/// Stores the carrier's call id (with the other calls' ids stored at the same moment).
pub(crate) async fn store_call_sid(
    ctx: &Ctx,
    attempt_id: Uuid,
    call_sid: &str,
) -> Result<(), StepError> {
    ctx.writes
        .call_sids
        .write(CallSid {
            attempt_id,
            call_sid: call_sid.to_owned(),
        })
        .await
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

/// Gives back a released contact that was not dialed (no attempt written): `state` (`queued`
/// again, or `cancelled` with its job).
pub(crate) async fn hand_back(
    ctx: &Ctx,
    contact_id: Uuid,
    state: ContactState,
) -> Result<(), StepError> {
    let client = ctx.db.get().await?;
    client
        .execute(
            "UPDATE contacts SET state = $2, released_at = NULL, updated_at = now()
             WHERE id = $1 AND state = $3",
            &[&contact_id, &state, &ContactState::Released],
        )
        .await?;
    Ok(())
}

/// Withdraws an attempt that provably never reached the carrier: the attempt row goes (no call
/// was made, so there is nothing to record), the contact returns to `state` (`queued` or
/// `cancelled`) due after `delay`, with `hold` as its hold reason and its attempt count as
/// before. The contact goes back only with its attempt row, and the row goes only with the
/// contact: never a `dialing` contact without its attempt. If the database refuses, the
/// attempt stays for the reconciler, as any unplaced attempt would.
pub(crate) async fn withdraw(
    ctx: &Ctx,
    written: &Written,
    state: ContactState,
    delay: Duration,
    hold: Option<DeferReason>,
) -> Result<(), StepError> {
    let client = ctx.db.get().await?;
    client
        .execute(
            "WITH c AS (
                 UPDATE contacts SET state = $3, attempts = attempts - 1, released_at = NULL,
                     next_attempt_at = now() + make_interval(secs => $4), hold_reason = $6,
                     updated_at = now()
                 WHERE id = $2 AND state = $7 AND attempts = $5
                   AND EXISTS (SELECT 1 FROM dial_attempts WHERE id = $1
                               AND carrier_call_sid IS NULL AND outcome IS NULL)
                 RETURNING id),
             d AS (
                 DELETE FROM dial_attempts a USING c
                 WHERE a.id = $1 AND a.contact_id = c.id
                   AND a.carrier_call_sid IS NULL AND a.outcome IS NULL
                 RETURNING a.id, a.contact_id, a.workspace_id, a.batch_id, a.attempt_no)
             INSERT INTO taken_back_attempts
                 (attempt_id, contact_id, workspace_id, batch_id, attempt_no)
             SELECT id, contact_id, workspace_id, batch_id, attempt_no FROM d
             ON CONFLICT (attempt_id) DO NOTHING",
            &[
                &written.attempt_id,
                &written.contact_id,
                &state,
                &delay.as_secs_f64(),
                &written.attempt_no,
                &hold.map(DeferReason::as_str),
                &ContactState::Dialing,
            ],
        )
        .await?;
    Ok(())
}

/// A written attempt whose number was put on the do-not-call list before its request left:
/// the attempt goes (never charged), the contact ends `failed` with the outcome `suppressed`,
/// and the audit trail says why — in one statement, so a contact is never left `dialing`
/// without its attempt.
pub(crate) async fn suppress_written(ctx: &Ctx, written: &Written) -> Result<(), StepError> {
    let client = ctx.db.get().await?;
    suppress_unsent_attempt(
        &**client,
        written.attempt_id,
        written.contact_id,
        written.attempt_no,
        None,
    )
    .await?;
    Ok(())
}
