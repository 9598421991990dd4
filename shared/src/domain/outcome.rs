//! A dial attempt's life ([`AttemptState`], `dial_attempts.state`) and how it ended
//! ([`CallOutcome`], `dial_attempts.outcome` and `contacts.last_outcome`). CHECK constraints
//! hold the columns to these names (migration V8).

use serde::{Deserialize, Serialize};

use super::names::named_enum;

named_enum! {
    /// Where a call is, as the carrier last told us (`dial_attempts.state`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum AttemptState {
        /// Written before the carrier request; the call may not be placed yet.
        Dialing = "dialing",
        /// The carrier accepted the call and it rings.
        Ringing = "ringing",
        /// Answered: connected to the agent.
        InProgress = "in-progress",
        /// Over: the outcome is recorded.
        Ended = "ended",
    }
}

named_enum! {
    /// The outcome of one attempt (docs/architecture.md#outcome).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "kebab-case")]
    pub enum CallOutcome {
        /// Answered and ended normally.
        Completed = "completed",
        /// The line was busy: retried after `busyDelay`.
        Busy = "busy",
        /// Rang out unanswered: retried after `noAnswerDelay`.
        NoAnswer = "no-answer",
        /// The carrier could not place the call.
        Failed = "failed",
        /// An answering machine picked up.
        Voicemail = "voicemail",
        /// Cancelled before it connected (pause or cancel of the job). Spelled `cancelled`, like
        /// every other state of ours; the carrier's own status keeps Twilio's `canceled`. JSON
        /// written before the rename (a carrier-sim record) still reads.
        #[serde(alias = "canceled")]
        Cancelled = "cancelled",
        /// The worker lost track of the call and the carrier could not tell us: closed without a
        /// retry so the contact is never dialed twice.
        Unknown = "unknown",
        /// Never dialed: the number is on the workspace's do-not-call list (listed after ingest,
        /// or opted out). Recorded on the contact only (`contacts.last_outcome`); no attempt is
        /// written or charged.
        Suppressed = "suppressed",
    }
}

impl CallOutcome {
    /// Whether another attempt may follow (busy and no-answer only).
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Busy | Self::NoAnswer)
    }

    /// Whether someone or something picked up: a person (`completed`) or a machine
    /// (`voicemail`). Such an attempt is final and its contact `completed`.
    pub fn is_answered(self) -> bool {
        matches!(self, Self::Completed | Self::Voicemail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for o in CallOutcome::ALL {
            assert_eq!(CallOutcome::parse(o.as_str()), Some(o));
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        for s in AttemptState::ALL {
            assert_eq!(AttemptState::parse(s.as_str()), Some(s));
        }
        assert_eq!(CallOutcome::parse("canceled"), None, "one spelling");
    }
}
