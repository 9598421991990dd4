//! Re-calling a finished batch's contacts by outcome (`POST …/retry`): a new batch with the
//! same agent, settings, webhooks and schedule, holding the contacts whose last outcome is one
//! of those asked for, linked to the original by `retry_of`.
//!
//! Everything happens in one transaction inside PostgreSQL: the contacts are copied with an
//! `INSERT … SELECT` (no row passes through the gateway, whatever the batch's size), numbered
//! 0.. in the original's row order, each keeping its own name, inputs, timezone and
//! place (declared state, postal code and its state). Numbers on
//! the workspace's do-not-call list are not copied: they become rejected rows
//! (`do_not_call`), as ingestion records them. The batch is born `ready`; asked through the
//! Dialgen surface it starts itself, as a Dialgen batch does once ingested; asked through the
//! Vogent surface it waits in INIT for `/paused`, as a Vogent job does.

use deadpool_postgres::Transaction;
use serde::Deserialize;
use uuid::Uuid;

use shared::domain::{CallOutcome, ContactState, IngestState, JobState, Surface};

use super::model::{Batch, COLUMNS, VISIBLE};
use crate::error::ApiError;
use crate::validate::{Text, Violations};

/// The body of `POST …/retry`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    /// The last outcomes whose contacts are called again (`CallOutcome` names).
    #[schema(required = true, value_type = Vec<CallOutcome>, min_items = 1)]
    pub outcomes: Option<Vec<String>>,
    /// The new batch's name; `"<original name> (retry)"` by default.
    #[schema(value_type = Option<String>, min_length = 1, max_length = 500, pattern = "\\S")]
    pub name: Option<Text>,
}

/// A checked retry request.
#[derive(Debug, Clone)]
pub struct Retry {
    /// The outcomes, each once.
    pub outcomes: Vec<CallOutcome>,
    /// The name asked for, if any.
    pub name: Option<String>,
}

impl RetryBody {
    /// Checks the body: `outcomes` is required, non-empty, each a known outcome (422 naming
    /// `outcomes[i]`); `name` 1 to 500 characters.
    pub fn check(self) -> Result<Retry, ApiError> {
        let mut v = Violations::default();
        let mut outcomes = Vec::new();
        match self.outcomes {
            None => v.add("outcomes", "is required"),
            Some(list) if list.is_empty() => v.add("outcomes", "must name at least one outcome"),
            Some(list) => {
                for (i, o) in list.iter().enumerate() {
                    match CallOutcome::parse(o) {
                        Some(o) if !outcomes.contains(&o) => outcomes.push(o),
                        Some(_) => {}
                        None => v.add(
                            format!("outcomes[{i}]"),
                            format!(
                                "{o:?} is not an outcome; one of {}",
                                CallOutcome::ALL.map(|o| o.as_str()).join(", ")
                            ),
                        ),
                    }
                }
            }
        }
        let name = self.name.map(Text::into_string);
        if let Some(n) = &name
            && (n.trim().is_empty() || n.trim().chars().count() > crate::validate::MAX_NAME_CHARS)
        {
            v.add("name", "must be 1 to 500 characters");
        }
        v.into_result(Retry {
            outcomes,
            name: name.map(|n| n.trim().to_owned()),
        })
    }
}

/// Why a batch cannot be retried (409), or `None` when it can: only a completed or cancelled
/// batch has settled outcomes.
pub fn refusal(state: JobState) -> Option<String> {
    match state {
        JobState::Completed | JobState::Cancelled => None,
        other => Some(format!(
            "only a completed or cancelled batch can be retried; this one is {}",
            other.as_str()
        )),
    }
}

/// Creates the retry of batch `id` of `workspace`, asked through `asked_on`; returns the new
/// batch. 404 for another workspace's batch (as `what`), 409 when it is not finished, 422 when
/// no contact matches.
pub async fn create(
    db: &shared::db::Pool,
    workspace: Uuid,
    id: Uuid,
    what: &'static str,
    asked_on: Surface,
    retry: Retry,
) -> Result<Batch, ApiError> {
    let mut client = db.get().await?;
    let txn = client.transaction().await?;
    let original = lock_original(&txn, workspace, id, what).await?;
    if let Some(why) = refusal(original.state) {
        return Err(ApiError::Conflict(why));
    }
    let new_id = Uuid::now_v7();
    let name = retry
        .name
        .unwrap_or_else(|| format!("{} (retry)", original.name));
    let outcomes: Vec<&str> = retry.outcomes.iter().map(|o| o.as_str()).collect();
    insert_batch(&txn, id, new_id, &name, asked_on).await?;
    let (accepted, rejected) = copy_contacts(&txn, id, new_id, &outcomes).await?;
    if let Some(err) = nothing_matched(accepted, rejected, &outcomes) {
        // Dropping the transaction rolls the new batch back.
        return Err(err);
    }
    txn.execute(
        "UPDATE batches SET total_rows = $2, accepted_rows = $3, rejected_rows = $4 WHERE id = $1",
        &[&new_id, &(accepted + rejected), &accepted, &rejected],
    )
    .await?;
    let batch = Batch::load(&txn, workspace, new_id).await?;
    txn.commit().await?;
    tracing::info!(batch_id = %new_id, retry_of = %id, accepted, rejected, "retry batch created");
    Ok(batch)
}

/// Reads batch `id` of `workspace` and holds it against changes until the transaction ends;
/// 404 (as `what`) when it is not there or not the workspace's.
async fn lock_original(
    txn: &Transaction<'_>,
    workspace: Uuid,
    id: Uuid,
    what: &'static str,
) -> Result<Batch, ApiError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM batches WHERE id = $1 AND workspace_id = $2 AND {VISIBLE} FOR SHARE"
    );
    let original = txn
        .query_opt(&sql, &[&id, &workspace])
        .await?
        .ok_or(ApiError::NotFound(what))?;
    Batch::from_row(&original)
}

/// Inserts batch `new_id` as a copy of batch `id`'s settings, named `name`: started at once
/// when asked through Dialgen, waiting in INIT when asked through Vogent.
async fn insert_batch(
    txn: &Transaction<'_>,
    id: Uuid,
    new_id: Uuid,
    name: &str,
    asked_on: Surface,
) -> Result<(), ApiError> {
    txn.execute(
        "INSERT INTO batches (id, workspace_id, surface, name, agent_id, user_id, state, ingest_state,
             max_concurrent_dials, max_calls_per_second, priority, schedule, timezone, scheduled_start_time,
             from_phone_number_ids, retry_max_attempts, retry_busy_delay_ms, retry_no_answer_delay_ms,
             webhooks, tags, default_region, machine_detection, retry_voicemail_delay_ms,
             retry_of, started_at)
         SELECT $1, workspace_id, surface, $3, agent_id, user_id,
             CASE WHEN $4 THEN $5::text ELSE $6::text END, $7::text,
             max_concurrent_dials, max_calls_per_second, priority, schedule, timezone, scheduled_start_time,
             from_phone_number_ids, retry_max_attempts, retry_busy_delay_ms, retry_no_answer_delay_ms,
             webhooks, tags, default_region, machine_detection, retry_voicemail_delay_ms,
             id, CASE WHEN $4 THEN now() END
         FROM batches WHERE id = $2",
        &[
            &new_id,
            &id,
            &name,
            &(asked_on == Surface::Dialgen),
            &JobState::Active,
            &JobState::Created,
            &IngestState::Ready,
        ],
    )
    .await?;
    Ok(())
}

/// Copies batch `id`'s contacts whose last outcome is one of `outcomes` into batch `new_id`,
/// the listed numbers as rejected rows; returns (accepted, rejected).
async fn copy_contacts(
    txn: &Transaction<'_>,
    id: Uuid,
    new_id: Uuid,
    outcomes: &[&str],
) -> Result<(i32, i32), ApiError> {
    // A contact of a cancelled batch that was never dialed has no outcome: it counts as
    // `cancelled`.
    let copied = txn
        .query_one(
            &format!(
                "WITH picked AS (
                 SELECT c.*, (row_number() OVER (ORDER BY c.row_index) - 1)::int AS new_row,
                        EXISTS (SELECT 1 FROM dnc_numbers d
                                WHERE d.workspace_id = c.workspace_id AND d.number = c.phone_number) AS listed
                 FROM contacts c
                 WHERE c.batch_id = $1
                   AND COALESCE(c.last_outcome, CASE WHEN c.state = $4 THEN $5::text END) = ANY($3)
             ), copied AS (
                 INSERT INTO contacts (id, batch_id, workspace_id, row_index, external_id, phone_number,
                                       name, email, company, inputs, timezone, timezones,
                                       declared_state, postal_code, postal_state)
                 SELECT {UUID_V7}, $2, workspace_id, new_row, external_id, phone_number,
                        name, email, company, inputs, timezone, timezones,
                        declared_state, postal_code, postal_state
                 FROM picked WHERE NOT listed
                 RETURNING 1
             ), listed AS (
                 INSERT INTO rejected_rows (batch_id, row_index, raw_number, reason, detail)
                 SELECT $2, new_row, phone_number, 'do_not_call',
                        phone_number || ' is on the workspace''s do-not-call list'
                 FROM picked WHERE listed
                 RETURNING 1
             )
             SELECT (SELECT count(*) FROM copied)::int AS accepted,
                    (SELECT count(*) FROM listed)::int AS rejected"),
            &[
                &id,
                &new_id,
                &outcomes,
                &ContactState::Cancelled,
                &CallOutcome::Cancelled,
            ],
        )
        .await?;
    Ok((copied.get("accepted"), copied.get("rejected")))
}

/// The 422 when no contact matched `outcomes`, copied or rejected.
fn nothing_matched(accepted: i32, rejected: i32, outcomes: &[&str]) -> Option<ApiError> {
    (accepted + rejected == 0).then(|| {
        ApiError::field(
            "outcomes",
            format!(
                "no contact of this batch ended with {}",
                outcomes.join(", ")
            ),
        )
    })
}

/// A UUIDv7 made by the database, as the ingest worker mints contact ids in Rust: the audit
/// trail reads a contact's ingestion time from its id (`GET /api/contacts/{id}/events`). The
/// first 48 bits become the Unix time in milliseconds and the version nibble 4 becomes 7
/// (PostgreSQL 15 has no `uuidv7()`).
const UUID_V7: &str = "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
        placing substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
        FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_checked_by_name() {
        let body: RetryBody =
            serde_json::from_str(r#"{"outcomes": ["busy", "nope", "busy", "no-answer"]}"#).unwrap();
        let err = format!("{:?}", body.check().unwrap_err());
        assert!(err.contains("outcomes[1]"), "{err}");
        let ok: RetryBody = serde_json::from_str(r#"{"outcomes": ["busy", "busy"]}"#).unwrap();
        assert_eq!(ok.check().unwrap().outcomes, vec![CallOutcome::Busy]);
        let none: RetryBody = serde_json::from_str(r#"{"outcomes": []}"#).unwrap();
        assert!(format!("{:?}", none.check().unwrap_err()).contains("outcomes"));
    }

    #[test]
    fn only_settled_batches_are_retried() {
        assert!(refusal(JobState::Completed).is_none());
        assert!(refusal(JobState::Cancelled).is_none());
        for s in [
            JobState::Created,
            JobState::Active,
            JobState::Paused,
            JobState::Failed,
        ] {
            assert!(refusal(s).is_some(), "{s:?}");
        }
    }
}
