//! The webhook bodies the dial worker queues, built from typed values rather than by hand:
//! `call.completed` (Dialgen's payload, `callData` extended with `attempts`, `outcome`,
//! `callerId`, `metadata` and `tags`). One status, duration and time format for a call on every
//! surface (`shared::domain::views` and `::timing`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::domain::CallOutcome;
use shared::domain::timing::{api_time, api_time_opt, call_duration_secs};
use shared::domain::views::{DialgenCallStatus, dialgen_call_status};
use uuid::Uuid;

/// The event name of [`call_completed`].
pub const CALL_COMPLETED: &str = "call.completed";

/// An ended call as `call.completed` reports it: the attempt's, the contact's and the job's
/// columns the outcome's statement returns, and the outcome recorded.
#[derive(Debug, Clone)]
pub struct EndedCall {
    /// The attempt (`callData.id`).
    pub attempt_id: Uuid,
    /// The contact.
    pub contact_id: Uuid,
    /// The contact's id as the client gave it; `callData.contactId` falls back to ours.
    pub external_id: Option<String>,
    /// The job's agent.
    pub agent_id: Uuid,
    /// The job.
    pub batch_id: Uuid,
    /// The outcome recorded.
    pub outcome: CallOutcome,
    /// When the call was placed.
    pub started_at: Option<DateTime<Utc>>,
    /// When it was answered, if it was.
    pub answered_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: DateTime<Utc>,
    /// The number called.
    pub phone_number: String,
    /// The contact's name.
    pub contact_name: Option<String>,
    /// The attempt's number (1 for the first call).
    pub attempt_no: i32,
    /// The caller ID used.
    pub from_number: Option<String>,
    /// The carrier's call id.
    pub call_sid: Option<String>,
    /// The contact's inputs (`callData.metadata`).
    pub inputs: serde_json::Value,
    /// The job's tags.
    pub tags: Vec<String>,
}

#[derive(Serialize)]
struct Event<D> {
    event: &'static str,
    success: bool,
    #[serde(rename = "callData")]
    call_data: D,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CallData<'a> {
    id: Uuid,
    contact_id: String,
    agent_id: Uuid,
    batch_id: Uuid,
    status: DialgenCallStatus,
    outcome: &'static str,
    start_time: Option<String>,
    answer_time: Option<String>,
    end_time: String,
    duration: Option<i64>,
    phone_number: &'a str,
    contact_name: Option<&'a str>,
    attempts: i32,
    caller_id: Option<&'a str>,
    call_sid: Option<&'a str>,
    metadata: &'a serde_json::Value,
    tags: &'a [String],
}

/// The `call.completed` body for a contact whose final call this was.
pub fn call_completed(call: &EndedCall) -> serde_json::Value {
    let body = Event {
        event: CALL_COMPLETED,
        success: true,
        call_data: CallData {
            id: call.attempt_id,
            contact_id: call
                .external_id
                .clone()
                .unwrap_or_else(|| call.contact_id.to_string()),
            agent_id: call.agent_id,
            batch_id: call.batch_id,
            status: dialgen_call_status(Some(call.outcome)),
            outcome: call.outcome.as_str(),
            start_time: api_time_opt(call.started_at),
            answer_time: api_time_opt(call.answered_at),
            end_time: api_time(call.ended_at),
            duration: call_duration_secs(call.answered_at, Some(call.ended_at)),
            phone_number: &call.phone_number,
            contact_name: call.contact_name.as_deref(),
            attempts: call.attempt_no,
            caller_id: call.from_number.as_deref(),
            call_sid: call.call_sid.as_deref(),
            metadata: &call.inputs,
            tags: &call.tags,
        },
    };
    // Plain data with string keys: serializing it cannot fail.
    serde_json::to_value(body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn call(outcome: CallOutcome) -> EndedCall {
        let at = |s: i64| Utc.timestamp_opt(1_767_225_600 + s, 0).unwrap();
        EndedCall {
            attempt_id: Uuid::from_u128(1),
            contact_id: Uuid::from_u128(2),
            external_id: None,
            agent_id: Uuid::from_u128(3),
            batch_id: Uuid::from_u128(4),
            outcome,
            started_at: Some(at(0)),
            answered_at: Some(at(5)),
            ended_at: at(47),
            phone_number: "+14155550100".into(),
            contact_name: Some("Ada".into()),
            attempt_no: 2,
            from_number: Some("+14155550199".into()),
            call_sid: Some("CA123".into()),
            inputs: json!({"plan": "gold"}),
            tags: vec!["spring".into()],
        }
    }

    #[test]
    fn call_completed_is_dialgens_body_extended() {
        let id = |n: u128| Uuid::from_u128(n).to_string();
        assert_eq!(
            call_completed(&call(CallOutcome::Completed)),
            json!({
                "event": "call.completed",
                "success": true,
                "callData": {
                    "id": id(1),
                    "contactId": id(2),
                    "agentId": id(3),
                    "batchId": id(4),
                    "status": "COMPLETED",
                    "outcome": "completed",
                    "startTime": "2026-01-01T00:00:00.000Z",
                    "answerTime": "2026-01-01T00:00:05.000Z",
                    "endTime": "2026-01-01T00:00:47.000Z",
                    "duration": 42,
                    "phoneNumber": "+14155550100",
                    "contactName": "Ada",
                    "attempts": 2,
                    "callerId": "+14155550199",
                    "callSid": "CA123",
                    "metadata": {"plan": "gold"},
                    "tags": ["spring"],
                }
            })
        );
    }

    #[test]
    fn a_call_never_answered_has_no_answer_time_and_no_talk() {
        let mut busy = call(CallOutcome::Busy);
        busy.answered_at = None;
        busy.contact_name = None;
        busy.from_number = None;
        let body = call_completed(&busy);
        let data = &body["callData"];
        assert_eq!(data["answerTime"], serde_json::Value::Null);
        assert_eq!(data["duration"], 0);
        assert_eq!(data["outcome"], "busy");
        assert_eq!(data["contactName"], serde_json::Value::Null);
        assert_eq!(data["callerId"], serde_json::Value::Null);
    }

    proptest! {
        #[test]
        fn every_outcome_reports_its_surfaces_status(
            oi in 0usize..CallOutcome::ALL.len(),
            external in proptest::option::of("[a-z0-9-]{1,20}"),
        ) {
            let outcome = CallOutcome::ALL[oi];
            let mut c = call(outcome);
            c.external_id = external.clone();
            let body = call_completed(&c);
            let data = body["callData"].as_object().unwrap();
            prop_assert_eq!(data.len(), 17);
            prop_assert_eq!(&body["event"], CALL_COMPLETED);
            prop_assert_eq!(&data["outcome"], outcome.as_str());
            prop_assert_eq!(
                &data["status"],
                &serde_json::to_value(dialgen_call_status(Some(outcome))).unwrap()
            );
            // The client's own contact id when it gave one, ours otherwise.
            let contact = external.unwrap_or_else(|| c.contact_id.to_string());
            prop_assert_eq!(&data["contactId"], contact.as_str());
        }
    }
}
