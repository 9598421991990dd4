//! Outcomes: turning the carrier's status reports into one recorded outcome per attempt, the
//! contact's next state (retry after a delay, or final), the `call.completed` webhook, and the
//! slot given back.
//!
//! Exactly once: the attempt's outcome is written with `WHERE outcome IS NULL`, so a repeated
//! callback, a redelivered event or a reconciliation racing a callback changes nothing the
//! second time (it only gives back the slot again, which is idempotent).

use chrono::{DateTime, Utc};
use serde_json::json;
use shared::domain::timing::{api_time, api_time_opt, call_duration_secs};
use shared::domain::views::dialgen_call_status;
use shared::domain::{AttemptState, CallOutcome, ContactState, JobState, RetryStrategy};
use shared::queue::messages::{CallEventV1, CarrierCallStatus};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::Ctx;
use crate::carrier::is_final;
use crate::error::StepError;

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

/// The outcome for a final carrier status: an answering machine makes a completed call a
/// voicemail.
pub fn outcome_of(status: CarrierCallStatus, answered_by: Option<&str>) -> CallOutcome {
    match status {
        CarrierCallStatus::Completed
            if answered_by.is_some_and(|a| a.starts_with("machine") || a == "fax") =>
        {
            CallOutcome::Voicemail
        }
        CarrierCallStatus::Busy => CallOutcome::Busy,
        CarrierCallStatus::NoAnswer => CallOutcome::NoAnswer,
        CarrierCallStatus::Failed => CallOutcome::Failed,
        CarrierCallStatus::Canceled => CallOutcome::Cancelled,
        _ => CallOutcome::Completed,
    }
}

/// What becomes of the contact after an attempt's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactNext {
    /// Back to `queued`, due after this many milliseconds.
    Retry(u64),
    /// Final: `completed`, `failed` or `cancelled`.
    Final(ContactState),
    /// The contact has moved on (a stale attempt): leave it alone.
    Leave,
}

/// The contact's next state. `attempt_no` is the attempt that ended; the contact is touched only
/// if it is still `dialing` that very attempt.
pub fn decide(
    outcome: CallOutcome,
    attempt_no: i32,
    contact_state: ContactState,
    contact_attempts: i32,
    batch_state: JobState,
    strategy: &RetryStrategy,
) -> ContactNext {
    if contact_state != ContactState::Dialing || contact_attempts != attempt_no {
        return ContactNext::Leave;
    }
    // A person answered: done. A machine answered: done too, unless the job retries
    // voicemails (`voicemailDelay`) and has attempts left.
    let voicemail_retry = outcome == CallOutcome::Voicemail && strategy.voicemail_delay.is_some();
    if outcome.is_answered() && !voicemail_retry {
        return ContactNext::Final(ContactState::Completed);
    }
    if batch_state == JobState::Cancelled {
        return ContactNext::Final(ContactState::Cancelled);
    }
    let made = u32::try_from(attempt_no).unwrap_or(u32::MAX);
    match strategy.next_delay(outcome, made) {
        Some(delay) => ContactNext::Retry(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
        None if outcome.is_answered() => ContactNext::Final(ContactState::Completed),
        None => ContactNext::Final(ContactState::Failed),
    }
}

/// Handles one call event from the queue.
#[tracing::instrument(skip_all, fields(attempt_id = %event.attempt_id, status = ?event.status))]
pub async fn handle_event(ctx: &Ctx, event: &CallEventV1) -> Result<(), StepError> {
    if is_final(event.status) {
        // The call is over, so it no longer counts against the limits: give its slot back
        // before the (slower, disk-flushing) outcome transaction, so the next call can start
        // meanwhile. Only if that failed does `record_end` try again after its commit.
        let keys = match ctx.held.get(event.attempt_id) {
            Some(keys) => Some(keys),
            None => {
                let client = ctx.db.get().await?;
                let read = client
                    .prepare_cached(
                        "SELECT workspace_id, batch_id FROM dial_attempts WHERE id = $1",
                    )
                    .await?;
                client
                    .query_opt(&read, &[&event.attempt_id])
                    .await?
                    .map(|r| (r.get(0), r.get(1)))
            }
        };
        let slot_released = match keys {
            Some((workspace_id, batch_id)) => {
                release(ctx, workspace_id, batch_id, event.attempt_id).await
            }
            None => false,
        };
        record_end(
            ctx,
            event.attempt_id,
            EndReport {
                status: event.status,
                answered_by: event.answered_by.clone(),
                duration_secs: event.duration_secs,
                call_sid: Some(event.call_sid.clone()),
                at: event.received_at,
                slot_released,
            },
            None,
        )
        .await?;
        return Ok(());
    }
    let state = match event.status {
        CarrierCallStatus::InProgress => AttemptState::InProgress,
        _ => AttemptState::Ringing,
    }
    .as_str();
    let answered_at = (event.status == CarrierCallStatus::InProgress).then_some(event.received_at);
    let client = ctx.db.get().await?;
    let update = client
        .prepare_cached(
            "UPDATE dial_attempts SET
                 state = CASE WHEN state = 'in-progress' THEN state ELSE $2 END,
                 answered_at = COALESCE(answered_at, $3),
                 answered_by = COALESCE($4, answered_by),
                 carrier_call_sid = COALESCE(carrier_call_sid, $5),
                 updated_at = now()
             WHERE id = $1 AND outcome IS NULL",
        )
        .await?;
    client
        .execute(
            &update,
            &[
                &event.attempt_id,
                &state,
                &answered_at,
                &event.answered_by,
                &event.call_sid,
            ],
        )
        .await?;
    Ok(())
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
async fn release(ctx: &Ctx, workspace_id: Uuid, batch_id: Uuid, attempt_id: Uuid) -> bool {
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
           c.state, c.attempts, b.state, b.retry_max_attempts, b.retry_busy_delay_ms,
           b.retry_no_answer_delay_ms, b.webhooks->>'onCallComplete', b.agent_id,
           b.tags, c.phone_number, c.name, c.inputs, c.external_id, b.retry_voicemail_delay_ms
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
                workspace_id: r.get(0),
                batch_id: r.get(1),
            },
            None => Ended::NoAttempt,
        });
    };
    let contact_id: Uuid = row.get(0);
    let batch_id: Uuid = row.get(1);
    let workspace_id: Uuid = row.get(2);
    let attempt_no: i32 = row.get(3);
    let from_number: Option<String> = row.get(4);
    let started_at: Option<DateTime<Utc>> = row.get(5);
    let answered_at: Option<DateTime<Utc>> = row.get(6);
    let call_sid: Option<String> = row.get(7);
    let c = &row;
    let strategy = RetryStrategy {
        max_attempts: u32::try_from(c.get::<_, i32>(11)).unwrap_or(1),
        busy_delay: u64::try_from(c.get::<_, i64>(12)).unwrap_or(0),
        no_answer_delay: u64::try_from(c.get::<_, i64>(13)).unwrap_or(0),
        voicemail_delay: c
            .get::<_, Option<i64>>(21)
            .map(|ms| u64::try_from(ms).unwrap_or(0)),
    };
    let corrupt = |what: &str, value: &str| {
        StepError::Invalid(format!(
            "attempt {attempt_id}: {what} {value:?} is not in the vocabulary"
        ))
    };
    let contact_state =
        ContactState::parse(c.get(8)).ok_or_else(|| corrupt("contact state", c.get(8)))?;
    let batch_state = JobState::parse(c.get(10)).ok_or_else(|| corrupt("job state", c.get(10)))?;
    let next = decide(
        outcome,
        attempt_no,
        contact_state,
        c.get(9),
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
            let url: Option<String> = c.get(14);
            let payload = url.filter(|u| !u.trim().is_empty()).map(|url| {
                let payload = json!({
                    "event": "call.completed",
                    "success": true,
                    "callData": {
                        "id": attempt_id,
                        "contactId": c.get::<_, Option<String>>(20).unwrap_or_else(|| contact_id.to_string()),
                        "agentId": c.get::<_, Uuid>(15),
                        "batchId": batch_id,
                        // One status, duration and time format for a call on every surface
                        // (shared::domain::views and ::timing).
                        "status": dialgen_call_status(Some(outcome)),
                        "outcome": outcome.as_str(),
                        "startTime": api_time_opt(started_at),
                        "answerTime": api_time_opt(answered_at),
                        "endTime": api_time(report.at),
                        "duration": call_duration_secs(answered_at, Some(report.at)),
                        "phoneNumber": c.get::<_, String>(17),
                        "contactName": c.get::<_, Option<String>>(18),
                        "attempts": attempt_no,
                        "callerId": from_number,
                        "callSid": call_sid,
                        "metadata": c.get::<_, serde_json::Value>(19),
                        "tags": c.get::<_, Vec<String>>(16),
                    }
                });
                (url, payload)
            });
            let webhook = async {
                match &payload {
                    Some((url, payload)) => {
                        let delivery = crate::webhooks::outbox::Delivery {
                            workspace_id,
                            batch_id: Some(batch_id),
                            event: "call.completed",
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

    #[test]
    fn a_voicemail_is_final_unless_the_job_retries_it() {
        let final_by_default = RetryStrategy::default();
        assert_eq!(
            decide(
                CallOutcome::Voicemail,
                1,
                ContactState::Dialing,
                1,
                JobState::Active,
                &final_by_default
            ),
            ContactNext::Final(ContactState::Completed)
        );
        let retried = RetryStrategy {
            voicemail_delay: Some(60_000),
            ..RetryStrategy::default()
        };
        assert_eq!(
            decide(
                CallOutcome::Voicemail,
                1,
                ContactState::Dialing,
                1,
                JobState::Active,
                &retried
            ),
            ContactNext::Retry(60_000)
        );
        // Out of attempts: the machine still answered, the contact is completed.
        assert_eq!(
            decide(
                CallOutcome::Voicemail,
                3,
                ContactState::Dialing,
                3,
                JobState::Active,
                &retried
            ),
            ContactNext::Final(ContactState::Completed)
        );
    }
    use proptest::prelude::*;

    #[test]
    fn machines_make_voicemail() {
        assert_eq!(
            outcome_of(CarrierCallStatus::Completed, Some("machine_end_beep")),
            CallOutcome::Voicemail
        );
        assert_eq!(
            outcome_of(CarrierCallStatus::Completed, Some("human")),
            CallOutcome::Completed
        );
        assert_eq!(outcome_of(CarrierCallStatus::Busy, None), CallOutcome::Busy);
    }

    proptest! {
        #[test]
        fn retries_stop_at_max_attempts(max in 1u32..6, attempt in 1i32..8, oi in 0usize..7) {
            let outcome = CallOutcome::ALL[oi];
            let s = RetryStrategy { max_attempts: max, busy_delay: 300_000, no_answer_delay: 3_600_000, voicemail_delay: None };
            let next = decide(outcome, attempt, ContactState::Dialing, attempt, JobState::Active, &s);
            match next {
                ContactNext::Retry(ms) => {
                    prop_assert!(outcome.is_retryable());
                    prop_assert!((attempt as u32) < max);
                    prop_assert_eq!(ms, if outcome == CallOutcome::Busy { 300_000 } else { 3_600_000 });
                }
                ContactNext::Final(state) => {
                    let answered = matches!(outcome, CallOutcome::Completed | CallOutcome::Voicemail);
                    prop_assert_eq!(state, if answered { ContactState::Completed } else { ContactState::Failed });
                    prop_assert!(answered || !outcome.is_retryable() || attempt as u32 >= max);
                }
                ContactNext::Leave => prop_assert!(false),
            }
        }

        #[test]
        fn stale_attempts_leave_the_contact(attempt in 1i32..5, other in 0i32..5, si in 0usize..6) {
            let s = RetryStrategy::default();
            let state = ContactState::ALL[si];
            if state != ContactState::Dialing {
                prop_assert_eq!(decide(CallOutcome::Busy, attempt, state, other, JobState::Active, &s), ContactNext::Leave);
            }
            if other != attempt {
                prop_assert_eq!(decide(CallOutcome::Completed, attempt, ContactState::Dialing, other, JobState::Active, &s), ContactNext::Leave);
            }
        }
    }

    #[test]
    fn cancelled_jobs_do_not_retry() {
        let s = RetryStrategy::default();
        assert_eq!(
            decide(
                CallOutcome::Busy,
                1,
                ContactState::Dialing,
                1,
                JobState::Cancelled,
                &s
            ),
            ContactNext::Final(ContactState::Cancelled)
        );
    }
}
