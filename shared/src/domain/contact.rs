//! A contact's life, as `contacts.state` stores it (a CHECK constraint holds the column to these
//! names; migration V8).
//!
//! ```text
//! queued ──scheduler──▶ released ──dial worker──▶ dialing ──outcome──▶ completed | failed | cancelled
//!   ▲                      │                         │
//!   └── handed back ───────┘                         └── busy / no-answer with attempts left: queued
//! ```

use serde::{Deserialize, Serialize};

use super::names::named_enum;

named_enum! {
    /// Where a contact is in its life.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum ContactState {
        /// Waiting to be released: never dialed yet, or waiting for a retry (`next_attempt_at`).
        Queued = "queued",
        /// Claimed by the scheduler; a dial message is on its way to a dial worker.
        Released = "released",
        /// A dial worker wrote an attempt and is placing (or holding) the call.
        Dialing = "dialing",
        /// Final: a call was answered (by a person, or by a machine: a voicemail).
        Completed = "completed",
        /// Final: no attempt was answered and no attempt is left (or the last one cannot be
        /// retried).
        Failed = "failed",
        /// Final: its job was cancelled before it was answered.
        Cancelled = "cancelled",
    }
}

impl ContactState {
    /// Whether nothing more happens to the contact in this batch.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in ContactState::ALL {
            assert_eq!(ContactState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(ContactState::parse("canceled"), None);
    }
}
