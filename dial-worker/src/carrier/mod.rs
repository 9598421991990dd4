//! Where calls are placed: a Twilio-compatible REST carrier ([`twilio`]: Twilio, SignalWire,
//! Telnyx TeXML, our carrier-sim) or an in-process simulator ([`sim`]) for tests and benchmarks.
//! Both report outcomes the same way: `CallEventV1` messages on the call-events queue.

pub mod sim;
pub mod twilio;

use chrono::{DateTime, Utc};
use shared::domain::MachineDetection;
use shared::queue::messages::CarrierCallStatus;
use uuid::Uuid;

/// One call to place.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// The attempt: the idempotency key, and the `dialId` the agent receives.
    pub attempt_id: Uuid,
    /// The number to call (E.164).
    pub to: String,
    /// The caller ID (E.164).
    pub from: String,
    /// The agent's answer URL with `dialId` appended.
    pub answer_url: String,
    /// Where the carrier posts status changes.
    pub status_callback: String,
    /// Seconds to let it ring.
    pub timeout_secs: u32,
    /// Answering-machine detection to ask for (Twilio's `MachineDetection`, passed with its
    /// exact value), or none.
    pub machine_detection: Option<MachineDetection>,
}

/// A call's state as the carrier reports it when asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallStatusReport {
    /// The status.
    pub status: CarrierCallStatus,
    /// Twilio's `AnsweredBy`, when machine detection ran.
    pub answered_by: Option<String>,
    /// Length in seconds, once ended.
    pub duration_secs: Option<u32>,
}

/// What is known of an attempt whose call id was never stored, to find its call (if any) at
/// the carrier: the attempt id was the create request's `Idempotency-Key`, and Twilio's call
/// list filters by `To` and `StartTime`.
#[derive(Debug, Clone)]
pub struct CallLookup {
    /// The attempt (the idempotency key).
    pub attempt_id: Uuid,
    /// The number it was to call.
    pub to: String,
    /// The caller ID it was to use, when recorded.
    pub from: Option<String>,
    /// When the attempt was written: its call, if any, was created after this.
    pub since: DateTime<Utc>,
}

/// Why a carrier request failed, by what it means for the attempt.
#[derive(Debug, thiserror::Error)]
pub enum CarrierError {
    /// The carrier answered and refused: the call was definitely not placed.
    #[error("carrier refused the call: HTTP {status}: {body}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The body, truncated.
        body: String,
    },
    /// The request never reached the carrier (connection refused): safe to send again.
    #[error("carrier unreachable: {0}")]
    Unreachable(String),
    /// No usable answer: the call may or may not have been placed.
    #[error("carrier unreachable or answered unreadably: {0}")]
    Transport(String),
    /// The carrier does not know the call.
    #[error("carrier does not know the call")]
    NotFound,
}

/// The configured carrier.
#[derive(Debug, Clone)]
pub enum Carrier {
    /// A Twilio-compatible REST API.
    Twilio(twilio::TwilioCarrier),
    /// The in-process simulator.
    Sim(sim::SimCarrier),
}

impl Carrier {
    /// Places a call and returns the carrier's call id. Sends the attempt id as the idempotency
    /// key, so a retried request never creates a second call at carriers that honour it.
    pub async fn place_call(&self, req: &CallRequest) -> Result<String, CarrierError> {
        match self {
            Carrier::Twilio(c) => c.place_call(req).await,
            Carrier::Sim(c) => c.place_call(req),
        }
    }

    /// Asks the carrier where a call stands (for reconciling a call whose worker died).
    pub async fn fetch_status(&self, call_sid: &str) -> Result<CallStatusReport, CarrierError> {
        match self {
            Carrier::Twilio(c) => c.fetch_status(call_sid).await,
            Carrier::Sim(c) => c.fetch_status(call_sid),
        }
    }
}

/// What the carrier has for an attempt whose call id was never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The call created with the attempt's idempotency key.
    Exact(String),
    /// Calls that may be the attempt's (to its number, from its caller ID, created since it
    /// was written) when the carrier does not show keys, as Twilio does not: the reconciler
    /// sets aside those other attempts own. None at all means the attempt was never placed,
    /// provided the ring timeout has passed since it could last have been sent.
    Candidates(Vec<String>),
}

impl Carrier {
    /// Looks for an attempt's call (see [`Found`]). The simulator knows its calls by
    /// idempotency key; a Twilio-compatible carrier is asked for its calls to `to` (from
    /// `from`) since the attempt's day, and only those created after the attempt count; when
    /// the list shows each call's key (the carrier-sim's extension) the match is exact.
    pub async fn find_calls(&self, lookup: &CallLookup) -> Result<Found, CarrierError> {
        match self {
            Carrier::Twilio(c) => c.find_calls(lookup).await,
            Carrier::Sim(c) => Ok(match c.find_call(lookup.attempt_id) {
                Some(sid) => Found::Exact(sid),
                None => Found::Candidates(Vec::new()),
            }),
        }
    }
}

/// Whether a status is the last one a call reports.
pub fn is_final(status: CarrierCallStatus) -> bool {
    status.is_final()
}
