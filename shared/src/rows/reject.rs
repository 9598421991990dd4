//! Why a submitted row was not accepted. Rejected rows are kept in `rejected_rows` with the
//! reason's code and a human detail, so the client can see and fix them.

use std::fmt;

/// The reason codes stored in `rejected_rows.reason` (a public contract: clients match on them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The phone number is missing or blank.
    MissingNumber,
    /// The phone number cannot be read as a dialable number (see the detail).
    InvalidNumber,
    /// The same E.164 number appears on an earlier row of the batch; the earlier row is kept.
    Duplicate,
    /// A text field holds a character PostgreSQL cannot store (a NUL byte).
    InvalidText,
    /// The number is on the workspace's do-not-call list.
    DoNotCall,
}

impl Reason {
    /// Every reason, for documentation and tests.
    pub const ALL: [Reason; 5] = [
        Reason::MissingNumber,
        Reason::InvalidNumber,
        Reason::Duplicate,
        Reason::InvalidText,
        Reason::DoNotCall,
    ];

    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingNumber => "missing_number",
            Reason::InvalidNumber => "invalid_number",
            Reason::Duplicate => "duplicate",
            Reason::InvalidText => "invalid_text",
            Reason::DoNotCall => "do_not_call",
        }
    }
}

impl Reason {
    /// The bounded `reason` label of `dialfleet_contacts_rejected_total`.
    pub fn metric(self) -> crate::metrics::RejectReason {
        use crate::metrics::RejectReason as M;
        match self {
            Reason::MissingNumber | Reason::InvalidNumber => M::InvalidNumber,
            Reason::Duplicate => M::Duplicate,
            Reason::InvalidText => M::InvalidField,
            Reason::DoNotCall => M::DoNotCall,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reason with its detail ("too short", "duplicate of row 12").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The code.
    pub reason: Reason,
    /// What exactly was wrong, for people.
    pub detail: String,
}

impl Rejection {
    /// A rejection with its detail.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}
