//! The attempts' group writes: the attempt insert (the no-double-dial guard, see `crate::dial`)
//! and the carriers' call ids.

use std::sync::LazyLock;

use shared::domain::{AttemptState, ContactState, JobState};
use uuid::Uuid;

use super::{BEGIN_GROUP, BEGIN_UNFLUSHED_GROUP};
use crate::error::StepError;

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
static INSERT_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH c AS (
                 UPDATE contacts c SET state = '{contact_dialing}', attempts = u.attempt_no, updated_at = now()
                 FROM unnest($1::uuid[], $2::uuid[], $3::int4[], $4::uuid[], $5::text[])
                          AS u(attempt_id, contact_id, attempt_no, from_number_id, from_number)
                 WHERE c.id = ANY ($2::uuid[]) AND c.id = u.contact_id
                   AND c.state = (SELECT '{released}'::text) AND c.attempts = u.attempt_no - 1
                   AND (SELECT b.state FROM batches b WHERE b.id = c.batch_id) = '{active}'
                   AND NOT EXISTS (SELECT 1 FROM dnc_numbers d
                                   WHERE d.workspace_id = c.workspace_id
                                     AND d.number = c.phone_number)
                 RETURNING u.attempt_id, u.attempt_no, u.from_number_id, u.from_number,
                           c.id, c.batch_id, c.workspace_id, c.phone_number, c.timezones,
                           c.declared_state, c.postal_state),
             a AS (
                 INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no,
                                            to_number, from_number_id, from_number, state,
                                            started_at)
                 SELECT c.attempt_id, c.id, c.batch_id, c.workspace_id, c.attempt_no,
                        c.phone_number, c.from_number_id, c.from_number, '{attempt_dialing}', now()
                 FROM c
                 ON CONFLICT (contact_id, attempt_no) DO NOTHING
                 RETURNING id)
             SELECT c.attempt_id AS id, c.phone_number AS to_number, c.timezones,
                    c.declared_state, c.postal_state FROM c
             WHERE c.attempt_id = ANY (ARRAY(SELECT id FROM a))",
        contact_dialing = ContactState::Dialing, released = ContactState::Released, active = JobState::Active, attempt_dialing = AttemptState::Dialing
    )
});

/// The attempt as written: the number to call, the contact's stored zones (if any) and where
/// it says it is (its declared state, its postal code's state).
pub(crate) struct Inserted {
    pub(crate) to_number: String,
    pub(crate) timezones: Option<Vec<String>>,
    pub(crate) declared_state: Option<String>,
    pub(crate) postal_state: Option<String>,
}

/// One dial's attempt to write.
pub(crate) struct NewAttempt {
    pub(crate) attempt_id: Uuid,
    pub(crate) contact_id: Uuid,
    pub(crate) attempt_no: i32,
    pub(crate) from_id: Option<Uuid>,
    pub(crate) from: String,
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
        let insert = client.prepare_cached(&INSERT_SQL).await?;
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
                    declared_state: r.try_get("declared_state")?,
                    postal_state: r.try_get("postal_state")?,
                },
            );
        }
        Ok(group
            .iter()
            .map(|a| written.remove(&a.attempt_id))
            .collect())
    }
}

/// The carriers' call ids of a group of placed calls, in one statement. `num_nulls` is
/// `IS NULL` that the planner cannot answer from the call-id index, which it scanned whole
/// (13,000 entries for 20 rows) when it took the table for small (see [`INSERT_SQL`]).
static CALL_SID_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "
    UPDATE dial_attempts a SET carrier_call_sid = u.call_sid, started_at = now(),
        state = CASE WHEN a.state = '{dialing}' THEN '{ringing}' ELSE a.state END,
        updated_at = now()
    FROM unnest($1::uuid[], $2::text[]) AS u(id, call_sid)
    WHERE a.id = ANY ($1::uuid[]) AND a.id = u.id AND num_nulls(a.carrier_call_sid) = 1",
        dialing = AttemptState::Dialing,
        ringing = AttemptState::Ringing
    )
});

/// One placed call's id to store.
pub(crate) struct CallSid {
    pub(crate) attempt_id: Uuid,
    pub(crate) call_sid: String,
}

/// Stores groups of call ids ([`CALL_SID_SQL`]). Committed asynchronously
/// (`synchronous_commit = off` for this transaction only): if PostgreSQL crashed before
/// flushing it, nothing breaks — the attempt row itself was committed durably before the call,
/// and the call id comes back with the status callback — so the dial path saves a disk flush.
pub(crate) struct CallSidWriter;

impl crate::group::Write<CallSid, ()> for CallSidWriter {
    async fn write(&self, db: &shared::db::Pool, group: &[CallSid]) -> Result<Vec<()>, StepError> {
        let client = db.get().await?;
        let update = client.prepare_cached(&CALL_SID_SQL).await?;
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
