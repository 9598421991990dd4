//! How a dial attempt ended.

use serde::{Deserialize, Serialize};

/// The outcome of one attempt (ARCHITECTURE.md, "Outcomes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallOutcome {
    /// Answered and ended normally.
    Completed,
    /// The line was busy: retried after `busyDelay`.
    Busy,
    /// Rang out unanswered: retried after `noAnswerDelay`.
    NoAnswer,
    /// The carrier could not place the call.
    Failed,
    /// An answering machine picked up.
    Voicemail,
    /// Cancelled before it connected (pause or cancel of the job).
    Canceled,
    /// The worker lost track of the call and the carrier could not tell us: closed without a
    /// retry so the contact is never dialed twice.
    Unknown,
}

impl CallOutcome {
    /// Every outcome, in a fixed order.
    pub const ALL: [CallOutcome; 7] = [
        Self::Completed,
        Self::Busy,
        Self::NoAnswer,
        Self::Failed,
        Self::Voicemail,
        Self::Canceled,
        Self::Unknown,
    ];

    /// Whether another attempt may follow (busy and no-answer only).
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Busy | Self::NoAnswer)
    }

    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::NoAnswer => "no-answer",
            Self::Failed => "failed",
            Self::Voicemail => "voicemail",
            Self::Canceled => "canceled",
            Self::Unknown => "unknown",
        }
    }

    /// Parses the database name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}
