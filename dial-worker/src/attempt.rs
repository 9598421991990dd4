//! The attempt's SQL on the dial path: the careful read of the contact and its attempt, the
//! attempt's insert (the no-double-dial guard, see `crate::dial`), the carrier's call id, the
//! send window's touch, and the ways a contact goes back unplaced.

use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::compliance::hours::DeferReason;
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

/// Moves each contact to `dialing` and writes its attempt, for a group of dials in one
/// statement (see `crate::group`), each only if its job is still active, its contact still
/// released for this attempt, and its number not on the workspace's do-not-call list (the last
/// look before the carrier request: a number listed a moment ago is not called). Returns, for
/// each attempt written, the number and the contact's zones for the calling-hours re-check.
///
/// Two requests of one group for the same contact (a duplicate message) update it once: one
/// attempt is written, the other finds none and takes the careful path, which reconciles it.
// Written so that the contacts can only be found by their keys (`id = ANY`), whatever the
// statistics say: the planner believed a batch just ingested (not analyzed yet) to have one
// in-flight contact, and scanned all 8,000 of them through the in-flight index for every group.
// So the state is compared with a value it cannot match to that index's predicate, and the
// job's state is read by a scalar subquery rather than joined. The last filter is an array
// test because the planner would rescan `a` for every row of `c`.
const INSERT_SQL: &str = "WITH c AS (
                 UPDATE contacts c SET state = 'dialing', attempts = u.attempt_no, updated_at = now()
                 FROM unnest($1::uuid[], $2::uuid[], $3::int4[], $4::uuid[], $5::text[])
                          AS u(attempt_id, contact_id, attempt_no, from_number_id, from_number)
                 WHERE c.id = ANY ($2::uuid[]) AND c.id = u.contact_id
                   AND c.state = (SELECT 'released'::text) AND c.attempts = u.attempt_no - 1
                   AND (SELECT b.state FROM batches b WHERE b.id = c.batch_id) = 'active'
                   AND NOT EXISTS (SELECT 1 FROM dnc_numbers d
                                   WHERE d.workspace_id = c.workspace_id
                                     AND d.number = c.phone_number)
                 RETURNING u.attempt_id, u.attempt_no, u.from_number_id, u.from_number,
                           c.id, c.batch_id, c.workspace_id, c.phone_number, c.timezones),
             a AS (
                 INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no,
                                            to_number, from_number_id, from_number, state,
                                            started_at)
                 SELECT c.attempt_id, c.id, c.batch_id, c.workspace_id, c.attempt_no,
                        c.phone_number, c.from_number_id, c.from_number, 'dialing', now()
                 FROM c
                 ON CONFLICT (contact_id, attempt_no) DO NOTHING
                 RETURNING id)
             SELECT c.attempt_id AS id, c.phone_number AS to_number, c.timezones FROM c
             WHERE c.attempt_id = ANY (ARRAY(SELECT id FROM a))";

/// Opens a group's transaction. A group statement joins its arrays to tables by key; on a
/// table not analyzed yet (a new database, a batch just ingested) the planner may believe it
/// tiny and scan it once per element. Without sequential scans the keys are looked up through
/// their indexes, whatever the statistics say (see also [`INSERT_SQL`]).
pub(crate) const BEGIN_GROUP: &str = "BEGIN; SET LOCAL enable_seqscan = off";

/// [`BEGIN_GROUP`] for a transaction whose commit does not wait for the disk.
const BEGIN_UNFLUSHED_GROUP: &str =
    "BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL synchronous_commit = off";

/// The attempt as written: the number to call and the contact's stored zones (if any).
pub(crate) struct Inserted {
    pub(crate) to_number: String,
    pub(crate) timezones: Option<Vec<String>>,
}

/// One dial's attempt to write.
pub(crate) struct NewAttempt {
    attempt_id: Uuid,
    contact_id: Uuid,
    attempt_no: i32,
    from_id: Option<Uuid>,
    from: String,
}

/// Writes groups of attempts ([`INSERT_SQL`]), each group in one durable commit.
pub(crate) struct AttemptWriter;

impl crate::group::Write<NewAttempt, Option<Inserted>> for AttemptWriter {
    async fn write(
        &self,
        db: &shared::db::Pool,
        group: &[NewAttempt],
    ) -> Result<Vec<Option<Inserted>>, StepError> {
        let client = db.get().await?;
        let insert = client.prepare_cached(INSERT_SQL).await?;
        // Rows locked in contact-id order: two groups never wait on each other in opposite
        // orders.
        let mut sorted: Vec<&NewAttempt> = group.iter().collect();
        sorted.sort_by_key(|a| a.contact_id);
        let ids: Vec<Uuid> = sorted.iter().map(|a| a.attempt_id).collect();
        let contacts: Vec<Uuid> = sorted.iter().map(|a| a.contact_id).collect();
        let numbers: Vec<i32> = sorted.iter().map(|a| a.attempt_no).collect();
        let from_ids: Vec<Option<Uuid>> = sorted.iter().map(|a| a.from_id).collect();
        let froms: Vec<&str> = sorted.iter().map(|a| a.from.as_str()).collect();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&ids, &contacts, &numbers, &from_ids, &froms];
        // Polled together, the three travel in one round trip.
        let (begin, rows, commit) = tokio::join!(
            client.batch_execute(BEGIN_GROUP),
            client.query(&insert, &params),
            client.batch_execute("COMMIT")
        );
        let rows = match begin.and(rows).and_then(|rows| commit.map(|()| rows)) {
            Ok(rows) => rows,
            Err(e) => {
                // Never hand a connection back to the pool inside a transaction.
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(e.into());
            }
        };
        let mut written = std::collections::HashMap::with_capacity(rows.len());
        for r in rows {
            let id: Uuid = r.try_get("id")?;
            written.insert(
                id,
                Inserted {
                    to_number: r.try_get("to_number")?,
                    timezones: r.try_get("timezones")?,
                },
            );
        }
        Ok(group
            .iter()
            .map(|a| written.remove(&a.attempt_id))
            .collect())
    }
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

/// The carriers' call ids of a group of placed calls, in one statement. `num_nulls` is
/// `IS NULL` that the planner cannot answer from the call-id index, which it scanned whole
/// (13,000 entries for 20 rows) when it took the table for small (see [`INSERT_SQL`]).
const CALL_SID_SQL: &str = "
    UPDATE dial_attempts a SET carrier_call_sid = u.call_sid, started_at = now(),
        state = CASE WHEN a.state = 'dialing' THEN 'ringing' ELSE a.state END,
        updated_at = now()
    FROM unnest($1::uuid[], $2::text[]) AS u(id, call_sid)
    WHERE a.id = ANY ($1::uuid[]) AND a.id = u.id AND num_nulls(a.carrier_call_sid) = 1";

/// One placed call's id to store.
pub(crate) struct CallSid {
    attempt_id: Uuid,
    call_sid: String,
}

/// Stores groups of call ids ([`CALL_SID_SQL`]). Committed asynchronously
/// (`synchronous_commit = off` for this transaction only): if PostgreSQL crashed before
/// flushing it, nothing breaks — the attempt row itself was committed durably before the call,
/// and the call id comes back with the status callback — so the dial path saves a disk flush.
pub(crate) struct CallSidWriter;

impl crate::group::Write<CallSid, ()> for CallSidWriter {
    async fn write(&self, db: &shared::db::Pool, group: &[CallSid]) -> Result<Vec<()>, StepError> {
        let client = db.get().await?;
        let update = client.prepare_cached(CALL_SID_SQL).await?;
        let ids: Vec<Uuid> = group.iter().map(|c| c.attempt_id).collect();
        let sids: Vec<&str> = group.iter().map(|c| c.call_sid.as_str()).collect();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&ids, &sids];
        // Polled together, the three travel in one round trip.
        let (begin, updated, commit) = tokio::join!(
            client.batch_execute(BEGIN_UNFLUSHED_GROUP),
            client.execute(&update, &params),
            client.batch_execute("COMMIT")
        );
        if let Err(e) = begin.and(updated.map(drop)).and(commit) {
            // Never hand a connection back to the pool inside a transaction.
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e.into());
        }
        Ok(vec![(); group.len()])
    }
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
    take_back(ctx, placed, gate.contact_state(), delay, None, why).await
}

/// [`unplace`] for a call the last look deferred: the contact waits `delay` with its hold
/// reason, exactly as a deferral at release leaves it, so the counters, the ETA and the audit
/// trail see why it waits.
pub(crate) async fn defer(
    ctx: &Ctx,
    placed: &Placed,
    delay: Duration,
    reason: DeferReason,
) -> Result<DialResult, StepError> {
    let state = Gate::Requeue.contact_state();
    take_back(
        ctx,
        placed,
        state,
        delay,
        Some(reason.as_str()),
        HandBack::Compliance,
    )
    .await
}

async fn take_back(
    ctx: &Ctx,
    placed: &Placed,
    state: &'static str,
    delay: Duration,
    hold_reason: Option<&str>,
    why: HandBack,
) -> Result<DialResult, StepError> {
    shared::metrics::dial_handed_back(why);
    // No call exists, so the slot goes back first, whatever the database says next.
    give_back_slot(ctx, placed).await;
    // The contact goes back only with its attempt row, and the row goes only with the contact:
    // never a `dialing` contact without its attempt.
    let client = ctx.db.get().await?;
    client
        .execute(
            "WITH c AS (
                 UPDATE contacts SET state = $3, attempts = attempts - 1, released_at = NULL,
                     next_attempt_at = now() + make_interval(secs => $4), hold_reason = $6,
                     updated_at = now()
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
                &hold_reason,
            ],
        )
        .await?;
    Ok(DialResult::HandedBack(state))
}

/// A written attempt whose number was put on the do-not-call list before its request left:
/// the attempt goes (never charged), the contact ends `failed` with the outcome `suppressed`,
/// and the audit trail says why — in one statement, so a contact is never left `dialing`
/// without its attempt.
pub(crate) async fn suppress_placed(ctx: &Ctx, placed: &Placed) -> Result<DialResult, StepError> {
    shared::metrics::dial_handed_back(HandBack::Compliance);
    give_back_slot(ctx, placed).await;
    let client = ctx.db.get().await?;
    client
        .execute(
            "WITH c AS (
                 UPDATE contacts SET state = 'failed', last_outcome = 'suppressed',
                     attempts = attempts - 1, released_at = NULL, hold_reason = NULL,
                     updated_at = now()
                 WHERE id = $2 AND state = 'dialing' AND attempts = $3
                   AND EXISTS (SELECT 1 FROM dial_attempts WHERE id = $1
                               AND carrier_call_sid IS NULL AND outcome IS NULL)
                 RETURNING id),
             d AS (
                 DELETE FROM dial_attempts a USING c
                 WHERE a.id = $1 AND a.contact_id = c.id
                   AND a.carrier_call_sid IS NULL AND a.outcome IS NULL
                 RETURNING a.contact_id)
             INSERT INTO contact_events (contact_id, at, kind, reason)
             SELECT contact_id, now(), 'suppressed', 'do_not_call' FROM d",
            &[&placed.attempt_id, &placed.contact_id, &placed.attempt_no],
        )
        .await?;
    tracing::info!(contact_id = %placed.contact_id, "number listed while the call waited; contact suppressed");
    Ok(DialResult::Suppressed)
}

/// The slot of an attempt that was never sent goes back now rather than after its lease.
pub(crate) async fn give_back_slot(ctx: &Ctx, placed: &Placed) {
    ctx.held.forget(placed.attempt_id);
    if let Err(e) = ctx
        .limits
        .release(placed.workspace_id, placed.batch_id, placed.attempt_id)
        .await
    {
        tracing::warn!(error = %e, "slot not released; its lease will lapse");
    }
}
