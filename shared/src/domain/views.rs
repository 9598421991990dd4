//! How each API surface names a contact's and a call's state: one function per surface, so the
//! same call shows the same status wherever it is shown (docs/architecture.md, invariant 12).
//!
//! Two views, one rule each:
//! - **a call** (one dial attempt): Dialgen's `recentCalls[].status`, the `call.completed`
//!   webhook's `callData.status`, `/status/batch`'s `dialStatus`, and Vogent's Dial
//!   (`status`, `systemResultType`) show the attempt's own outcome: a busy call is `MISSED`
//!   even when its contact will be dialed again;
//! - **a contact**: `/api/v1/status/batch`'s `calls[].status` shows where the contact is now: a
//!   contact waiting for its retry is `SCHEDULED`, whatever its last call was.
//!
//! A voicemail is a call answered by a machine: it is final, not retried, its contact is
//! `completed`, and every surface shows it as `COMPLETED` (its `outcome` says `voicemail`).

use serde::{Deserialize, Serialize};

use super::contact::ContactState;
use super::outcome::{AttemptState, CallOutcome};

/// Dialgen's call statuses (docs/api.md#vendor-api-reference), plus `CANCELLED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum DialgenCallStatus {
    /// Not dialed yet, or waiting for a retry (contact view only).
    Scheduled,
    /// Being placed, ringing or connected.
    Ongoing,
    /// Answered, by a person or a machine (voicemail).
    Completed,
    /// Not answered: busy or rang out.
    Missed,
    /// Could not be placed, or ended in a way we cannot tell (`unknown`).
    Failed,
    /// Extension: cancelled with its job before it was answered.
    Cancelled,
}

impl DialgenCallStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "SCHEDULED",
            Self::Ongoing => "ONGOING",
            Self::Completed => "COMPLETED",
            Self::Missed => "MISSED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }
}

/// Dialgen's status of one call: `None` while it has no outcome yet.
pub fn dialgen_call_status(outcome: Option<CallOutcome>) -> DialgenCallStatus {
    match outcome {
        None => DialgenCallStatus::Ongoing,
        Some(CallOutcome::Completed | CallOutcome::Voicemail) => DialgenCallStatus::Completed,
        Some(CallOutcome::Busy | CallOutcome::NoAnswer) => DialgenCallStatus::Missed,
        Some(CallOutcome::Cancelled) => DialgenCallStatus::Cancelled,
        Some(CallOutcome::Failed | CallOutcome::Unknown | CallOutcome::Suppressed) => {
            DialgenCallStatus::Failed
        }
    }
}

/// Dialgen's status of a contact, from its state and its last call's outcome.
pub fn dialgen_contact_status(
    state: ContactState,
    last_outcome: Option<CallOutcome>,
) -> DialgenCallStatus {
    match state {
        ContactState::Queued | ContactState::Released => DialgenCallStatus::Scheduled,
        ContactState::Dialing => DialgenCallStatus::Ongoing,
        ContactState::Completed => DialgenCallStatus::Completed,
        ContactState::Cancelled => DialgenCallStatus::Cancelled,
        // Out of attempts: the last call says whether nobody answered or it could not be made.
        ContactState::Failed => match last_outcome.map(|o| dialgen_call_status(Some(o))) {
            Some(DialgenCallStatus::Missed) => DialgenCallStatus::Missed,
            _ => DialgenCallStatus::Failed,
        },
    }
}

/// Vogent's Dial `status`: `completed` once the call has an outcome, else where it is
/// (`dialing`, `ringing`, `in-progress`).
pub fn vogent_dial_status(state: AttemptState, outcome: Option<CallOutcome>) -> &'static str {
    match outcome {
        Some(_) => "completed",
        None if state == AttemptState::Ended => "completed",
        None => state.as_str(),
    }
}

/// Vogent's Dial `systemResultType`: the outcome in upper snake case (`NO_ANSWER`), `None`
/// while the call has none.
pub fn vogent_system_result_type(outcome: Option<CallOutcome>) -> Option<&'static str> {
    outcome.map(|o| match o {
        CallOutcome::Completed => "COMPLETED",
        CallOutcome::Busy => "BUSY",
        CallOutcome::NoAnswer => "NO_ANSWER",
        CallOutcome::Failed => "FAILED",
        CallOutcome::Voicemail => "VOICEMAIL",
        CallOutcome::Cancelled => "CANCELLED",
        CallOutcome::Unknown => "UNKNOWN",
        CallOutcome::Suppressed => "SUPPRESSED",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_voicemail_is_completed_everywhere() {
        assert_eq!(
            dialgen_call_status(Some(CallOutcome::Voicemail)),
            DialgenCallStatus::Completed
        );
        assert_eq!(
            dialgen_contact_status(ContactState::Completed, Some(CallOutcome::Voicemail)),
            DialgenCallStatus::Completed
        );
        assert_eq!(
            vogent_system_result_type(Some(CallOutcome::Voicemail)),
            Some("VOICEMAIL")
        );
    }

    #[test]
    fn a_busy_call_waiting_for_its_retry() {
        // The call was missed; the contact is scheduled again.
        assert_eq!(
            dialgen_call_status(Some(CallOutcome::Busy)),
            DialgenCallStatus::Missed
        );
        assert_eq!(
            dialgen_contact_status(ContactState::Queued, Some(CallOutcome::Busy)),
            DialgenCallStatus::Scheduled
        );
        // Out of attempts, it stays missed.
        assert_eq!(
            dialgen_contact_status(ContactState::Failed, Some(CallOutcome::Busy)),
            DialgenCallStatus::Missed
        );
        assert_eq!(
            dialgen_contact_status(ContactState::Failed, Some(CallOutcome::Unknown)),
            DialgenCallStatus::Failed
        );
    }

    #[test]
    fn every_final_contact_agrees_with_its_last_call() {
        // A final contact shows what its last call shows (cancelled contacts may have a last
        // call from before the cancel, which keeps its own status).
        for o in CallOutcome::ALL {
            let call = dialgen_call_status(Some(o));
            let state = if o.is_answered() {
                ContactState::Completed
            } else {
                ContactState::Failed
            };
            let contact = dialgen_contact_status(state, Some(o));
            if call != DialgenCallStatus::Cancelled {
                assert_eq!(contact, call, "{o}");
            }
        }
    }

    #[test]
    fn vogent_dials() {
        assert_eq!(vogent_dial_status(AttemptState::Ringing, None), "ringing");
        assert_eq!(
            vogent_dial_status(AttemptState::Ended, Some(CallOutcome::Busy)),
            "completed"
        );
        assert_eq!(
            vogent_system_result_type(Some(CallOutcome::NoAnswer)),
            Some("NO_ANSWER")
        );
        assert_eq!(vogent_system_result_type(None), None);
    }
}
