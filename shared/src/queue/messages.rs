//! What travels on each queue. Versioned names (`IngestChunkV1`) so a rolling upgrade can carry
//! old and new messages side by side.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A slice of a submitted batch's rows, published by the gateway, persisted by an ingest worker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngestChunkV1 {
    /// The batch the rows belong to.
    pub batch_id: Uuid,
    /// The batch's workspace (so the worker never trusts a row's own claim).
    pub workspace_id: Uuid,
    /// The chunk's position, 0-based; with `batch_id` it makes a redelivery recognisable.
    pub seq: u32,
    /// The batch's row index of this chunk's first row.
    pub first_row: u32,
    /// The rows as submitted (numbers not yet normalised).
    pub rows: Vec<RawRow>,
}

/// One contact as submitted, before normalisation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RawRow {
    /// The number as the client wrote it.
    pub phone_number: String,
    /// Dialgen's contact id, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The contact's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The contact's email (validated by the gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The contact's company.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    /// Vogent `inputs` or Dialgen `metadata`.
    #[serde(default)]
    pub inputs: serde_json::Value,
    /// The contact's own IANA timezone (Vogent `timezone` beside `toNumber`, Dialgen's
    /// `timezone` extension), validated by the gateway. When absent the zones are derived from
    /// the number (`shared::compliance::zones`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The contact's declared US state (`state`, USPS code, upper case), validated by the
    /// gateway; stored as `contacts.declared_state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The contact's US postal code (`postalCode`), validated by the gateway; stored as
    /// `contacts.postal_code`, and the state it maps to as `contacts.postal_state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
}

/// A contact released for dialing, published by the scheduler, consumed by a dial worker.
///
/// `attempt_no` is the attempt this release is for (the contact's `attempts + 1` at release);
/// `dial_attempts` is unique on `(contact_id, attempt_no)`, so a redelivered message can never
/// create a second attempt: the worker finds the existing one and reconciles it instead.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DialV1 {
    /// The job.
    pub batch_id: Uuid,
    /// The job's workspace.
    pub workspace_id: Uuid,
    /// The contact to call.
    pub contact_id: Uuid,
    /// Which attempt this is, 1-based.
    pub attempt_no: u32,
}

/// A call's status as the carrier reported it (Twilio's `CallStatus` values).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CarrierCallStatus {
    /// Accepted by the carrier, not yet ringing.
    Queued,
    /// Being placed.
    Initiated,
    /// Ringing.
    Ringing,
    /// Answered, talking.
    InProgress,
    /// Ended after being answered.
    Completed,
    /// Busy signal.
    Busy,
    /// Rang out.
    NoAnswer,
    /// Could not be placed.
    Failed,
    /// Cancelled before it connected.
    Canceled,
}

impl CarrierCallStatus {
    /// The wire name (Twilio's spelling, `canceled` included).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Initiated => "initiated",
            Self::Ringing => "ringing",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::NoAnswer => "no-answer",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// Whether this is the last status a call reports.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Busy | Self::NoAnswer | Self::Failed | Self::Canceled
        )
    }

    /// Whether nobody has picked up yet and the call is not over (Twilio's `canceled` applies).
    pub fn is_before_answer(self) -> bool {
        matches!(self, Self::Queued | Self::Initiated | Self::Ringing)
    }
}

/// A status callback from the carrier, verified and forwarded by the gateway to the dial
/// workers. Consumers must treat it as idempotent: carriers repeat callbacks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CallEventV1 {
    /// The attempt the call belongs to (carried in the StatusCallback URL).
    pub attempt_id: Uuid,
    /// The carrier's call id.
    pub call_sid: String,
    /// The new status.
    pub status: CarrierCallStatus,
    /// Twilio's `AnsweredBy` when machine detection ran (`machine_start`, `human`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// Call length in seconds, on the final callback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<u32>,
    /// When the gateway received the callback.
    pub received_at: chrono::DateTime<chrono::Utc>,
}
