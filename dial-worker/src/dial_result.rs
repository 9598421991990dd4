//! What one dial did, as the dial path's steps report it to the queue's handler (and to tests).

use shared::domain::{CallOutcome, ContactState};
use uuid::Uuid;

/// What a dial did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialResult {
    /// The call was placed.
    Dialed {
        /// The attempt.
        attempt_id: Uuid,
        /// The carrier's call id.
        call_sid: String,
    },
    /// The attempt was written but the carrier refused or failed: recorded as this outcome, or
    /// left open for reconciliation (`None`).
    NotPlaced(Option<CallOutcome>),
    /// Not dialed: the contact went back (`queued` or `cancelled`).
    HandedBack(ContactState),
    /// The attempt already existed: reconciled, not dialed.
    Reconciled,
    /// A stale duplicate: nothing done.
    Stale,
    /// Not dialed: the number is on the do-not-call list; the contact ended `suppressed`.
    Suppressed,
}
