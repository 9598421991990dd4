//! The attempts' ends, written in groups: one outcome per attempt (`WHERE outcome IS NULL`:
//! exactly once), the contact's next state (as `crate::outcome::decide` says) and the
//! `call.completed` webhook queued in the same transaction.

use chrono::{DateTime, Utc};
use shared::domain::{AttemptState, CallOutcome, ContactState, JobState, RetryStrategy};
use shared::queue::messages::CarrierCallStatus;
use std::collections::HashMap;
use std::sync::LazyLock;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::BEGIN_GROUP;
use crate::error::StepError;
use crate::outcome::{ContactNext, decide};
use crate::payload::{EndedCall, call_completed};

/// What the carrier said about a call's end.
#[derive(Debug, Clone)]
pub struct EndReport {
    /// The carrier's final status.
    pub status: CarrierCallStatus,
    /// Twilio's `AnsweredBy`.
    pub answered_by: Option<String>,
    /// Talk time in seconds.
    pub duration_secs: Option<u32>,
    /// The carrier's call id, when known.
    pub call_sid: Option<String>,
    /// When the call ended.
    pub at: DateTime<Utc>,
    /// Whether the caller already gave the slot back (the event handler does, before the
    /// outcome's transaction): then it is not released a second time.
    pub slot_released: bool,
}

impl EndReport {
    /// An end the carrier never reported (the attempt is closed by us: refused, or unknown):
    /// no call id, no answer, now.
    pub fn unreported() -> Self {
        Self {
            status: CarrierCallStatus::Failed,
            answered_by: None,
            duration_secs: None,
            call_sid: None,
            at: Utc::now(),
            slot_released: false,
        }
    }
}

/// One attempt's end to write: the outcome decided, and what the carrier reported.
pub(crate) struct EndRequest {
    pub(crate) attempt_id: Uuid,
    pub(crate) outcome: CallOutcome,
    pub(crate) error: Option<String>,
    pub(crate) duration: Option<i32>,
    pub(crate) report: EndReport,
}

/// What writing an end did.
pub(crate) enum Ended {
    Now {
        workspace_id: Uuid,
        batch_id: Uuid,
        next: ContactNext,
    },
    Already {
        workspace_id: Uuid,
        batch_id: Uuid,
    },
    NoAttempt,
}

/// One row of [`END_SQL`]: the attempt as ended, its contact and its job.
struct EndRow {
    contact_id: Uuid,
    batch_id: Uuid,
    workspace_id: Uuid,
    attempt_no: i32,
    from_number: Option<String>,
    started_at: Option<DateTime<Utc>>,
    answered_at: Option<DateTime<Utc>>,
    carrier_call_sid: Option<String>,
    contact_state: ContactState,
    contact_attempts: i32,
    batch_state: JobState,
    retry_max_attempts: i32,
    retry_busy_delay_ms: i64,
    retry_no_answer_delay_ms: i64,
    retry_voicemail_delay_ms: Option<i64>,
    on_call_complete: Option<String>,
    agent_id: Uuid,
    tags: Vec<String>,
    phone_number: String,
    contact_name: Option<String>,
    inputs: serde_json::Value,
    external_id: Option<String>,
}

impl EndRow {
    /// The row as read, its states typed here: a name outside the vocabulary fails the read.
    fn from_row(r: &Row) -> Result<Self, StepError> {
        Ok(Self {
            contact_id: r.try_get("contact_id")?,
            batch_id: r.try_get("batch_id")?,
            workspace_id: r.try_get("workspace_id")?,
            attempt_no: r.try_get("attempt_no")?,
            from_number: r.try_get("from_number")?,
            started_at: r.try_get("started_at")?,
            answered_at: r.try_get("answered_at")?,
            carrier_call_sid: r.try_get("carrier_call_sid")?,
            contact_state: r.try_get("contact_state")?,
            contact_attempts: r.try_get("contact_attempts")?,
            batch_state: r.try_get("batch_state")?,
            retry_max_attempts: r.try_get("retry_max_attempts")?,
            retry_busy_delay_ms: r.try_get("retry_busy_delay_ms")?,
            retry_no_answer_delay_ms: r.try_get("retry_no_answer_delay_ms")?,
            retry_voicemail_delay_ms: r.try_get("retry_voicemail_delay_ms")?,
            on_call_complete: r.try_get("on_call_complete")?,
            agent_id: r.try_get("agent_id")?,
            tags: r.try_get("tags")?,
            phone_number: r.try_get("phone_number")?,
            contact_name: r.try_get("contact_name")?,
            inputs: r.try_get("inputs")?,
            external_id: r.try_get("external_id")?,
        })
    }

    /// The job's retry strategy, by the one conversion of stored retry columns
    /// (`RetryStrategy::from_columns`). A negative count or delay is a corrupt job (the
    /// gateway validates both), an error rather than a guess: no retries, or retries at once.
    fn strategy(&self, attempt_id: Uuid) -> Result<RetryStrategy, StepError> {
        let subject = format!("attempt {attempt_id}");
        let stored = RetryStrategy::from_columns(
            self.retry_max_attempts,
            self.retry_busy_delay_ms,
            self.retry_no_answer_delay_ms,
        )
        .map_err(|e| StepError::Invalid(format!("{subject}: {e}")))?;
        let voicemail_delay = self
            .retry_voicemail_delay_ms
            .map(|v| {
                u64::try_from(v)
                    .map_err(|_| StepError::corrupt(&subject, "retry_voicemail_delay_ms", v))
            })
            .transpose()?;
        Ok(RetryStrategy {
            voicemail_delay,
            ..stored
        })
    }

    /// What becomes of the contact after `outcome` ([`decide`] on this row); an error when
    /// the row holds what its columns cannot (a corrupt job).
    fn decide(&self, attempt_id: Uuid, outcome: CallOutcome) -> Result<ContactNext, StepError> {
        let strategy = self.strategy(attempt_id)?;
        Ok(decide(
            outcome,
            self.attempt_no,
            self.contact_state,
            self.contact_attempts,
            self.batch_state,
            &strategy,
        ))
    }

    /// The call as `call.completed` reports it.
    fn ended_call(&self, attempt_id: Uuid, outcome: CallOutcome, at: DateTime<Utc>) -> EndedCall {
        EndedCall {
            attempt_id,
            contact_id: self.contact_id,
            external_id: self.external_id.clone(),
            agent_id: self.agent_id,
            batch_id: self.batch_id,
            outcome,
            started_at: self.started_at,
            answered_at: self.answered_at,
            ended_at: at,
            phone_number: self.phone_number.clone(),
            contact_name: self.contact_name.clone(),
            attempt_no: self.attempt_no,
            from_number: self.from_number.clone(),
            call_sid: self.carrier_call_sid.clone(),
            inputs: self.inputs.clone(),
            tags: self.tags.clone(),
        }
    }
}

/// Writes the outcomes of a group of attempts (`WHERE outcome IS NULL`: exactly once) and reads
/// what each decision needs, in one statement. The attempts are found by key only: `num_nulls(outcome) = 1` is `outcome IS NULL` written
/// so that the planner cannot match it to the open-attempt indexes' predicate, which it
/// scanned whole (22,000 entries for 7 rows) when it took the table for small.
static END_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "
    WITH a AS (UPDATE dial_attempts a SET
         outcome = u.outcome,
         state = '{ended}',
         ended_at = u.at,
         answered_at = CASE WHEN u.outcome IN ('{completed}', '{voicemail}')
             THEN COALESCE(a.answered_at, u.at - make_interval(secs => COALESCE(u.duration, 0)::float8))
             ELSE a.answered_at END,
         answered_by = COALESCE(u.answered_by, a.answered_by),
         duration_secs = u.duration,
         carrier_call_sid = COALESCE(a.carrier_call_sid, u.call_sid),
         error = u.error,
         updated_at = now()
     FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::int4[], $5::text[], $6::text[],
                 $7::text[])
          AS u(id, outcome, at, duration, answered_by, call_sid, error)
     WHERE a.id = ANY ($1::uuid[]) AND a.id = u.id AND num_nulls(a.outcome) = 1
     RETURNING a.id, a.contact_id, a.batch_id, a.workspace_id, a.attempt_no, a.from_number,
               a.started_at, a.answered_at, a.carrier_call_sid)
    SELECT a.id AS attempt_id, a.contact_id, a.batch_id, a.workspace_id, a.attempt_no,
           a.from_number, a.started_at, a.answered_at, a.carrier_call_sid,
           c.state AS contact_state, c.attempts AS contact_attempts, b.state AS batch_state,
           b.retry_max_attempts, b.retry_busy_delay_ms, b.retry_no_answer_delay_ms,
           b.retry_voicemail_delay_ms, b.webhooks->>'onCallComplete' AS on_call_complete,
           b.agent_id, b.tags, c.phone_number, c.name AS contact_name, c.inputs, c.external_id
    FROM a JOIN contacts c ON c.id = a.contact_id JOIN batches b ON b.id = a.batch_id",
        ended = AttemptState::Ended, completed = CallOutcome::Completed, voicemail = CallOutcome::Voicemail
    )
});

/// The contacts' next states for a group, in one statement (one run of the contacts' counter
/// trigger): a retry (`retry_ms` set) goes back to `queued`, a final state is set. A contact is
/// changed only if it is still `dialing` this very attempt; no other writer touches a dialing
/// contact, and a second report of the attempt is stopped by its row lock and `outcome IS NULL`.
/// The contacts are found by key only, as in `crate::attempt`'s insert: `'dialing'` written
/// as a subquery is not matched to the in-flight index's predicate.
static CONTACTS_GROUP_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "
    UPDATE contacts c SET state = u.state, last_outcome = u.outcome,
        released_at = CASE WHEN u.retry_ms IS NULL THEN c.released_at END,
        next_attempt_at = CASE WHEN u.retry_ms IS NULL THEN c.next_attempt_at
            ELSE now() + make_interval(secs => u.retry_ms / 1000.0) END,
        updated_at = now()
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int4[], $5::float8[])
         AS u(id, state, outcome, attempts, retry_ms)
    WHERE c.id = ANY ($1::uuid[]) AND c.id = u.id
      AND c.state = (SELECT '{dialing}'::text) AND c.attempts = u.attempts",
        dialing = ContactState::Dialing
    )
});

/// Writes attempts' ends in groups: one transaction, one durable commit and one run of the
/// counter trigger for the whole group (`crate::group`, which writes each end of a failed group
/// again on its own, so one bad row fails only itself).
pub(crate) struct EndWriter;

impl crate::group::Write<EndRequest, Ended> for EndWriter {
    async fn write(
        &self,
        db: &shared::db::Pool,
        group: &[EndRequest],
    ) -> Result<Vec<Ended>, StepError> {
        let client = db.get().await?;
        let ended = end_group_in_transaction(&client, group).await;
        if ended.is_err() {
            // Never hand a connection back to the pool inside a transaction.
            let _ = client.batch_execute("ROLLBACK").await;
        }
        ended
    }
}

/// The group's transaction in two round trips: `BEGIN` travels with the outcomes' statement,
/// `COMMIT` with the contacts' and the webhook rows' (tokio-postgres pipelines requests polled
/// together; the statements are prepared once per connection). Short, so the row locks are
/// brief; rows are locked in attempt-id order, so two groups never wait on each other in
/// opposite orders. On error the caller rolls back.
async fn end_group_in_transaction(
    client: &deadpool_postgres::Client,
    group: &[EndRequest],
) -> Result<Vec<Ended>, StepError> {
    let end = client.prepare_cached(&END_SQL).await?;
    let contacts = client.prepare_cached(&CONTACTS_GROUP_SQL).await?;
    let outbox = client
        .prepare_cached(crate::webhooks::outbox::INSERT_GROUP_SQL)
        .await?;
    let (mut rows, ids) = write_outcomes(client, &end, group).await?;
    let known = whereabouts(client, &rows, &ids).await?;
    let mut changes = Changes::default();
    let mut ended = Vec::with_capacity(group.len());
    for request in group {
        ended.push(match rows.remove(&request.attempt_id) {
            Some(row) => changes.add(request, &row)?,
            None => match known.get(&request.attempt_id) {
                Some(&(workspace_id, batch_id)) => Ended::Already {
                    workspace_id,
                    batch_id,
                },
                None => Ended::NoAttempt,
            },
        });
    }
    changes.commit(client, &contacts, &outbox).await?;
    Ok(ended)
}

/// The first round trip: `BEGIN` and the outcomes ([`END_SQL`]), rows locked in attempt-id
/// order. Returns the rows written, by attempt, and the group's attempt ids in that order.
async fn write_outcomes(
    client: &deadpool_postgres::Client,
    end: &tokio_postgres::Statement,
    group: &[EndRequest],
) -> Result<(HashMap<Uuid, EndRow>, Vec<Uuid>), StepError> {
    let mut sorted: Vec<&EndRequest> = group.iter().collect();
    sorted.sort_by_key(|r| r.attempt_id);
    let ids: Vec<Uuid> = sorted.iter().map(|r| r.attempt_id).collect();
    let outcomes: Vec<&str> = sorted.iter().map(|r| r.outcome.as_str()).collect();
    let ats: Vec<DateTime<Utc>> = sorted.iter().map(|r| r.report.at).collect();
    let durations: Vec<Option<i32>> = sorted.iter().map(|r| r.duration).collect();
    let answered_by: Vec<Option<&str>> = sorted
        .iter()
        .map(|r| r.report.answered_by.as_deref())
        .collect();
    let call_sids: Vec<Option<&str>> = sorted
        .iter()
        .map(|r| r.report.call_sid.as_deref())
        .collect();
    let errors: Vec<Option<&str>> = sorted.iter().map(|r| r.error.as_deref()).collect();
    let params: [&(dyn ToSql + Sync); 7] = [
        &ids,
        &outcomes,
        &ats,
        &durations,
        &answered_by,
        &call_sids,
        &errors,
    ];
    let (begin, rows) = tokio::join!(
        client.batch_execute(BEGIN_GROUP),
        client.query(end, &params)
    );
    begin?;
    let rows = rows?
        .iter()
        .map(|r| Ok((r.try_get("attempt_id")?, EndRow::from_row(r)?)))
        .collect::<Result<_, StepError>>()?;
    Ok((rows, ids))
}

/// Where each attempt of the group belongs (workspace, job), for a report that finds its
/// outcome written already: by an earlier report, or by another request of this very group (a
/// callback and a reconciliation of one call).
async fn whereabouts(
    client: &deadpool_postgres::Client,
    rows: &HashMap<Uuid, EndRow>,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, (Uuid, Uuid)>, StepError> {
    let mut known: HashMap<Uuid, (Uuid, Uuid)> = rows
        .iter()
        .map(|(id, row)| (*id, (row.workspace_id, row.batch_id)))
        .collect();
    let missing: Vec<Uuid> = ids
        .iter()
        .filter(|id| !rows.contains_key(id))
        .copied()
        .collect();
    if missing.is_empty() {
        return Ok(known);
    }
    for r in client
        .query(
            "SELECT id, workspace_id, batch_id FROM dial_attempts WHERE id = ANY($1)",
            &[&missing],
        )
        .await?
    {
        let id: Uuid = r.try_get("id")?;
        known.insert(id, (r.try_get("workspace_id")?, r.try_get("batch_id")?));
    }
    Ok(known)
}

/// The contacts' next states and the webhook rows a group's decisions make, gathered for the
/// second round trip.
#[derive(Default)]
struct Changes {
    contact_ids: Vec<Uuid>,
    states: Vec<&'static str>,
    outcomes: Vec<&'static str>,
    attempts: Vec<i32>,
    retry_ms: Vec<Option<f64>>,
    /// Workspace, job, contact, URL and body of each `call.completed` to queue.
    deliveries: Vec<(Uuid, Uuid, Uuid, String, serde_json::Value)>,
}

impl Changes {
    /// Decides what becomes of `row`'s contact after `request`, and gathers the change.
    fn add(&mut self, request: &EndRequest, row: &EndRow) -> Result<Ended, StepError> {
        let attempt_id = request.attempt_id;
        let next = row.decide(attempt_id, request.outcome)?;
        let state = match next {
            ContactNext::Retry(_) => Some(ContactState::Queued),
            ContactNext::Final(state) => Some(state),
            ContactNext::Leave => None,
        };
        if let Some(state) = state {
            self.contact_ids.push(row.contact_id);
            self.states.push(state.as_str());
            self.outcomes.push(request.outcome.as_str());
            self.attempts.push(row.attempt_no);
            self.retry_ms.push(match next {
                ContactNext::Retry(ms) => Some(ms as f64),
                _ => None,
            });
        }
        if let ContactNext::Final(_) = next
            && let Some(url) = row
                .on_call_complete
                .clone()
                .filter(|u| !u.trim().is_empty())
        {
            let payload =
                call_completed(&row.ended_call(attempt_id, request.outcome, request.report.at));
            self.deliveries
                .push((row.workspace_id, row.batch_id, row.contact_id, url, payload));
        }
        Ok(Ended::Now {
            workspace_id: row.workspace_id,
            batch_id: row.batch_id,
            next,
        })
    }

    /// The second round trip: the contacts' states ([`CONTACTS_GROUP_SQL`]), the webhook rows
    /// and `COMMIT`. Polled in this order, they are sent in this order: the webhook rows commit
    /// with the contacts' states or not at all.
    async fn commit(
        &self,
        client: &deadpool_postgres::Client,
        contacts: &tokio_postgres::Statement,
        outbox: &tokio_postgres::Statement,
    ) -> Result<(), StepError> {
        let params: [&(dyn ToSql + Sync); 5] = [
            &self.contact_ids,
            &self.states,
            &self.outcomes,
            &self.attempts,
            &self.retry_ms,
        ];
        let updated = async {
            if self.contact_ids.is_empty() {
                Ok(0)
            } else {
                client.execute(contacts, &params).await
            }
        };
        let d = &self.deliveries;
        let ids: Vec<Uuid> = d.iter().map(|_| Uuid::now_v7()).collect();
        let workspaces: Vec<Uuid> = d.iter().map(|d| d.0).collect();
        let batches: Vec<Uuid> = d.iter().map(|d| d.1).collect();
        let subjects: Vec<Uuid> = d.iter().map(|d| d.2).collect();
        let urls: Vec<&str> = d.iter().map(|d| d.3.as_str()).collect();
        let payloads: Vec<&serde_json::Value> = d.iter().map(|d| &d.4).collect();
        let event = crate::payload::CALL_COMPLETED;
        let w_params: [&(dyn ToSql + Sync); 7] = [
            &ids,
            &workspaces,
            &batches,
            &event,
            &subjects,
            &urls,
            &payloads,
        ];
        let queued = async {
            if d.is_empty() {
                Ok(0)
            } else {
                client.execute(outbox, &w_params).await
            }
        };
        let (updated, queued, commit) =
            tokio::join!(updated, queued, client.batch_execute("COMMIT"));
        updated?;
        queued?;
        commit?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> EndRow {
        EndRow {
            contact_id: Uuid::from_u128(2),
            batch_id: Uuid::from_u128(4),
            workspace_id: Uuid::from_u128(5),
            attempt_no: 1,
            from_number: None,
            started_at: None,
            answered_at: None,
            carrier_call_sid: None,
            contact_state: ContactState::Dialing,
            contact_attempts: 1,
            batch_state: JobState::Active,
            retry_max_attempts: 3,
            retry_busy_delay_ms: 300_000,
            retry_no_answer_delay_ms: 3_600_000,
            retry_voicemail_delay_ms: None,
            on_call_complete: None,
            agent_id: Uuid::from_u128(3),
            tags: vec![],
            phone_number: "+14155550100".into(),
            contact_name: None,
            inputs: serde_json::Value::Null,
            external_id: None,
        }
    }

    #[test]
    fn the_strategy_is_read_as_stored() {
        let s = row().strategy(Uuid::nil()).unwrap();
        assert_eq!(
            s,
            RetryStrategy {
                max_attempts: 3,
                busy_delay: 300_000,
                no_answer_delay: 3_600_000,
                voicemail_delay: None,
            }
        );
    }

    #[test]
    fn a_negative_count_or_delay_is_corrupt_not_clamped() {
        let corrupt: [fn(&mut EndRow); 4] = [
            |r| r.retry_max_attempts = -1,
            |r| r.retry_busy_delay_ms = -1,
            |r| r.retry_no_answer_delay_ms = -5,
            |r| r.retry_voicemail_delay_ms = Some(-1),
        ];
        for spoil in corrupt {
            let mut r = row();
            spoil(&mut r);
            match r.strategy(Uuid::nil()) {
                Err(e @ StepError::Invalid(_)) => {
                    let message = e.to_string();
                    assert!(
                        message.contains("negative") || message.contains("out of range"),
                        "{message}"
                    );
                }
                other => panic!("expected a corrupt row, got {other:?}"),
            }
        }
    }
}
