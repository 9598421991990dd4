//! Recording an attempt's end: one outcome per attempt, the contact's next state (as
//! [`crate::outcome::decide`] says), the `call.completed` webhook queued in the same
//! transaction, and the slot given back.
//!
//! Exactly once: the attempt's outcome is written with `WHERE outcome IS NULL`, so a repeated
//! callback, a redelivered event or a reconciliation racing a callback changes nothing the
//! second time (it only gives back the slot again, which is idempotent).

use chrono::{DateTime, Utc};
use shared::domain::{CallOutcome, ContactState, JobState, RetryStrategy};
use shared::queue::messages::CarrierCallStatus;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::ctx::Ctx;
use crate::error::StepError;
use crate::outcome::{ContactNext, decide, outcome_of};
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

/// Whether [`record_end`] wrote the outcome or found it already written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// This call recorded it.
    Now(CallOutcome),
    /// It was recorded before (a repeated report).
    Already,
    /// No such attempt.
    NoAttempt,
}

/// Records an attempt's end exactly once, moves the contact on, queues the webhook, and gives
/// the slot back. `forced` overrides the outcome (`unknown` when the carrier cannot tell us).
#[tracing::instrument(skip_all, fields(attempt_id = %attempt_id))]
pub async fn record_end(
    ctx: &Ctx,
    attempt_id: Uuid,
    report: EndReport,
    forced: Option<(CallOutcome, &str)>,
) -> Result<Recorded, StepError> {
    let (outcome, error) = match forced {
        Some((o, e)) => (o, Some(e.to_owned())),
        None => (
            outcome_of(report.status, report.answered_by.as_deref()),
            None,
        ),
    };
    // Saturating on purpose: the column is `integer` seconds, and a carrier's talk time past
    // 68 years is nonsense that must not keep the attempt from ending (an error here would
    // retry the event until it is dead-lettered, the outcome never recorded).
    let duration = report
        .duration_secs
        .map(|d| i32::try_from(d).unwrap_or(i32::MAX));
    let client = ctx.db.get().await?;
    let ended = match end_in_transaction(
        &client,
        attempt_id,
        outcome,
        error.as_deref(),
        duration,
        &report,
    )
    .await
    {
        Ok(ended) => ended,
        Err(e) => {
            // Never hand a connection back to the pool inside a transaction.
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e);
        }
    };
    drop(client);
    match ended {
        Ended::Now {
            workspace_id,
            batch_id,
            next,
        } => {
            if !report.slot_released {
                release(ctx, workspace_id, batch_id, attempt_id).await;
            }
            ctx.held.forget(attempt_id);
            shared::metrics::call_outcome(outcome.as_str());
            if matches!(next, ContactNext::Retry(_)) {
                shared::metrics::retry_scheduled(outcome.as_str());
            }
            tracing::debug!(outcome = outcome.as_str(), ?next, "attempt ended");
            Ok(Recorded::Now(outcome))
        }
        Ended::Already {
            workspace_id,
            batch_id,
        } => {
            // Repeated report: the slot may still be held if the first release was lost.
            release(ctx, workspace_id, batch_id, attempt_id).await;
            ctx.held.forget(attempt_id);
            Ok(Recorded::Already)
        }
        Ended::NoAttempt => Ok(Recorded::NoAttempt),
    }
}

/// Gives a slot back, best effort: the outcome is the system of record's business and must
/// not wait for Redis. A release that fails here is made by the call's holder, whose renewal
/// pass releases every call the database shows ended (or, if the holder is gone, by the
/// lease running out).
pub(crate) async fn release(
    ctx: &Ctx,
    workspace_id: Uuid,
    batch_id: Uuid,
    attempt_id: Uuid,
) -> bool {
    match ctx.limits.release(workspace_id, batch_id, attempt_id).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(%attempt_id, error = %e, "slot not released now; the holder will");
            false
        }
    }
}

enum Ended {
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

/// Writes the outcome, reads what the decision needs, in one statement.
const END_SQL: &str = "
    WITH a AS (UPDATE dial_attempts SET
         outcome = $2,
         state = 'ended',
         ended_at = $3::timestamptz,
         answered_at = CASE WHEN $2 IN ('completed', 'voicemail')
             THEN COALESCE(answered_at, $3::timestamptz - make_interval(secs => COALESCE($4, 0)::float8))
             ELSE answered_at END,
         answered_by = COALESCE($5, answered_by),
         duration_secs = $4,
         carrier_call_sid = COALESCE(carrier_call_sid, $6),
         error = $7,
         updated_at = now()
     WHERE id = $1 AND outcome IS NULL
     RETURNING contact_id, batch_id, workspace_id, attempt_no, from_number,
               started_at, answered_at, carrier_call_sid)
    SELECT a.contact_id, a.batch_id, a.workspace_id, a.attempt_no, a.from_number,
           a.started_at, a.answered_at, a.carrier_call_sid,
           c.state AS contact_state, c.attempts AS contact_attempts, b.state AS batch_state,
           b.retry_max_attempts, b.retry_busy_delay_ms, b.retry_no_answer_delay_ms,
           b.retry_voicemail_delay_ms, b.webhooks->>'onCallComplete' AS on_call_complete,
           b.agent_id, b.tags, c.phone_number, c.name AS contact_name, c.inputs, c.external_id
    FROM a JOIN contacts c ON c.id = a.contact_id JOIN batches b ON b.id = a.batch_id";

// The contact is changed only if it is still `dialing` this very attempt; no other writer
// touches a dialing contact, and a second report of this attempt is stopped by the attempt's
// row lock and `outcome IS NULL`.
const RETRY_SQL: &str = "
    UPDATE contacts SET state = 'queued', last_outcome = $2, released_at = NULL,
        next_attempt_at = now() + make_interval(secs => $3::float8 / 1000.0),
        updated_at = now()
    WHERE id = $1 AND state = 'dialing' AND attempts = $4";

const FINAL_SQL: &str = "
    UPDATE contacts SET state = $2, last_outcome = $3, updated_at = now()
    WHERE id = $1 AND state = 'dialing' AND attempts = $4";

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
    contact_state: String,
    contact_attempts: i32,
    batch_state: String,
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
    fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
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

/// The outcome's transaction in two round trips: `BEGIN` travels with the first statement,
/// `COMMIT` with the last ones (tokio-postgres pipelines requests polled together), and the
/// statements are prepared once per connection. Short transactions keep the attempt's and the
/// contact's row locks brief. On error the caller rolls back.
async fn end_in_transaction(
    client: &deadpool_postgres::Client,
    attempt_id: Uuid,
    outcome: CallOutcome,
    error: Option<&str>,
    duration: Option<i32>,
    report: &EndReport,
) -> Result<Ended, StepError> {
    let end = client.prepare_cached(END_SQL).await?;
    let retry = client.prepare_cached(RETRY_SQL).await?;
    let fin = client.prepare_cached(FINAL_SQL).await?;
    let outbox = client
        .prepare_cached(crate::webhooks::outbox::INSERT_SQL)
        .await?;
    let outcome_name = outcome.as_str();
    let params: [&(dyn ToSql + Sync); 7] = [
        &attempt_id,
        &outcome_name,
        &report.at,
        &duration,
        &report.answered_by,
        &report.call_sid,
        &error,
    ];
    let (begin, row) = tokio::join!(
        client.batch_execute("BEGIN"),
        client.query_opt(&end, &params)
    );
    begin?;
    let Some(row) = row? else {
        let existing = client
            .query_opt(
                "SELECT workspace_id, batch_id FROM dial_attempts WHERE id = $1",
                &[&attempt_id],
            )
            .await?;
        client.batch_execute("COMMIT").await?;
        return Ok(match existing {
            Some(r) => Ended::Already {
                workspace_id: r.try_get("workspace_id")?,
                batch_id: r.try_get("batch_id")?,
            },
            None => Ended::NoAttempt,
        });
    };
    let row = EndRow::from_row(&row)?;
    let strategy = row.strategy(attempt_id)?;
    let corrupt = |what: &str, value: &str| {
        StepError::Invalid(format!(
            "attempt {attempt_id}: {what} {value:?} is not in the vocabulary"
        ))
    };
    let contact_state = ContactState::parse(&row.contact_state)
        .ok_or_else(|| corrupt("contact state", &row.contact_state))?;
    let batch_state =
        JobState::parse(&row.batch_state).ok_or_else(|| corrupt("job state", &row.batch_state))?;
    let (contact_id, batch_id, workspace_id, attempt_no) = (
        row.contact_id,
        row.batch_id,
        row.workspace_id,
        row.attempt_no,
    );
    let next = decide(
        outcome,
        attempt_no,
        contact_state,
        row.contact_attempts,
        batch_state,
        &strategy,
    );
    match next {
        ContactNext::Retry(ms) => {
            let delay_ms = ms as f64;
            let params: [&(dyn ToSql + Sync); 4] =
                [&contact_id, &outcome_name, &delay_ms, &attempt_no];
            let (updated, commit) = tokio::join!(
                client.execute(&retry, &params),
                client.batch_execute("COMMIT")
            );
            updated?;
            commit?;
        }
        ContactNext::Final(state) => {
            let state = state.as_str();
            let payload = row
                .on_call_complete
                .clone()
                .filter(|u| !u.trim().is_empty())
                .map(|url| {
                    (
                        url,
                        call_completed(&row.ended_call(attempt_id, outcome, report.at)),
                    )
                });
            let webhook = async {
                match &payload {
                    Some((url, payload)) => {
                        let delivery = crate::webhooks::outbox::Delivery {
                            workspace_id,
                            batch_id: Some(batch_id),
                            event: crate::payload::CALL_COMPLETED,
                            subject_id: contact_id,
                            url,
                            payload,
                        };
                        crate::webhooks::outbox::enqueue(client, &outbox, delivery).await
                    }
                    None => Ok(false),
                }
            };
            let params: [&(dyn ToSql + Sync); 4] =
                [&contact_id, &state, &outcome_name, &attempt_no];
            // Polled in this order, the three are sent in this order: the webhook row (its
            // statement already prepared) commits with the contact's final state or not at all.
            let (updated, queued, commit) = tokio::join!(
                client.execute(&fin, &params),
                webhook,
                client.batch_execute("COMMIT")
            );
            updated?;
            queued?;
            commit?;
        }
        ContactNext::Leave => client.batch_execute("COMMIT").await?,
    }
    Ok(Ended::Now {
        workspace_id,
        batch_id,
        next,
    })
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
            contact_state: "dialing".into(),
            contact_attempts: 1,
            batch_state: "active".into(),
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
