//! The results export (`…/results.csv`): one CSV line per contact, in row order, written from
//! one statement's snapshot while the campaign runs or after it, streamed (never built in
//! memory; see `row_stream`).
//!
//! Columns: `row` (1-based, as the user counts the list), `contactId`, `id` (Dialgen's own
//! contact id), `phoneNumber` (E.164), `name`, `status`, `outcome`, `attempts`, `lastCallAt`,
//! `durationSeconds`, `callerId`, `state` and `postalCode` (where the contact said it is, empty
//! when not given), `holdReason` and `nextAttemptAt` (why and until when a queued contact waits,
//! `super::waiting`; empty when it does not), then `inputs` (Vogent) or `metadata` (Dialgen) as
//! JSON.
//! `status` is the contact's status as Dialgen shows it in `/api/v1/status/batch`
//! (`shared::domain::views::dialgen_contact_status`: Vogent has no per-contact status), and
//! `outcome` its last call's outcome in the one vocabulary (`CallOutcome`); the duration follows
//! `shared::domain::timing` as on every other surface. Times are RFC 3339 UTC milliseconds.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::Row;

use shared::domain::ContactState;
use shared::domain::Surface;
use shared::domain::timing::{api_time_opt, call_duration_secs};
use shared::domain::views::dialgen_contact_status;

use super::stats::outcome_column;
use crate::error::ApiError;
use crate::row_stream;

/// Every contact of batch `$1` with its latest attempt, in row order.
pub const SQL: &str = concat!(
    "SELECT c.row_index, c.id, c.external_id, c.phone_number, c.name, c.state,
        c.last_outcome, c.attempts, c.inputs, c.declared_state, c.postal_code, ",
    super::waiting::columns!(),
    ",
        a.started_at, a.created_at AS attempt_created_at, a.answered_at, a.ended_at, a.from_number
    FROM contacts c
    LEFT JOIN LATERAL (SELECT d.started_at, d.created_at, d.answered_at, d.ended_at, d.from_number
                       FROM dial_attempts d WHERE d.contact_id = c.id
                       ORDER BY d.attempt_no DESC LIMIT 1) a ON TRUE
    WHERE c.batch_id = $1
    ORDER BY c.row_index"
);

/// The header line for a batch created through `surface`.
pub fn header(surface: Surface) -> Result<Vec<u8>, ApiError> {
    let inputs = match surface {
        Surface::Vogent => "inputs",
        Surface::Dialgen => "metadata",
    };
    let mut out = Vec::new();
    row_stream::push_csv(
        &mut out,
        [
            "row",
            "contactId",
            "id",
            "phoneNumber",
            "name",
            "status",
            "outcome",
            "attempts",
            "lastCallAt",
            "durationSeconds",
            "callerId",
            "state",
            "postalCode",
            "holdReason",
            "nextAttemptAt",
            inputs,
        ],
    )?;
    Ok(out)
}

/// Appends one contact's line.
pub fn line(r: &Row, out: &mut Vec<u8>) -> Result<(), ApiError> {
    let state: &str = r.get("state");
    let state = ContactState::parse(state).ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!("a contact has an invalid state {state:?}"))
    })?;
    let outcome = outcome_column(r.get("last_outcome"))?;
    let started: Option<DateTime<Utc>> = r.get("started_at");
    let created: Option<DateTime<Utc>> = r.get("attempt_created_at");
    let duration = call_duration_secs(r.get("answered_at"), r.get("ended_at"));
    let inputs: Value = r.get("inputs");
    let row = (i64::from(r.get::<_, i32>("row_index")) + 1).to_string();
    let contact_id = r.get::<_, uuid::Uuid>("id").to_string();
    let external: Option<String> = r.get("external_id");
    let number: String = r.get("phone_number");
    let name: Option<String> = r.get("name");
    let attempts = r.get::<_, i32>("attempts").to_string();
    let last_call = api_time_opt(started.or(created)).unwrap_or_default();
    let duration = duration.map(|d| d.to_string()).unwrap_or_default();
    let caller: Option<String> = r.get("from_number");
    let declared: Option<String> = r.get("declared_state");
    let postal: Option<String> = r.get("postal_code");
    let inputs = serde_json::to_string(&inputs).map_err(|e| ApiError::Internal(e.into()))?;
    let waiting = super::waiting::Waiting::of(r)?;
    row_stream::push_csv(
        out,
        [
            row.as_str(),
            contact_id.as_str(),
            external.as_deref().unwrap_or_default(),
            number.as_str(),
            name.as_deref().unwrap_or_default(),
            dialgen_contact_status(state, outcome).as_str(),
            outcome.map(|o| o.as_str()).unwrap_or_default(),
            attempts.as_str(),
            last_call.as_str(),
            duration.as_str(),
            caller.as_deref().unwrap_or_default(),
            declared.as_deref().unwrap_or_default(),
            postal.as_deref().unwrap_or_default(),
            waiting.hold_reason.as_deref().unwrap_or_default(),
            waiting.next_attempt_at.as_deref().unwrap_or_default(),
            inputs.as_str(),
        ],
    )
}
