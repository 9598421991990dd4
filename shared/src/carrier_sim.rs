//! The carrier simulator's contract (docs/carrier-sim.md#behaviour), shared by the
//! carrier-sim binary and the dial worker's in-process simulator so both pick the same ending
//! for the same number.

/// How a simulated call ends if nobody hangs it up early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ending {
    /// A person answers, talks for the talk time, hangs up.
    Answered,
    /// Busy signal after ringing.
    Busy,
    /// Rings until the ring timeout.
    NoAnswer,
    /// The call cannot be placed.
    Failed,
    /// An answering machine picks up and records for the talk time.
    Voicemail,
}

impl Ending {
    /// Every ending, in the order the carrier-sim's mix lists them.
    pub const ALL: [Ending; 5] = [
        Self::Answered,
        Self::Busy,
        Self::NoAnswer,
        Self::Failed,
        Self::Voicemail,
    ];

    /// The name used in `CARRIER_SIM_MIX`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Busy => "busy",
            Self::NoAnswer => "no-answer",
            Self::Failed => "failed",
            Self::Voicemail => "voicemail",
        }
    }

    /// Whether the call connects (a person or a machine picks up).
    pub fn connects(self) -> bool {
        matches!(self, Self::Answered | Self::Voicemail)
    }

    /// Reads a name of `CARRIER_SIM_MIX` (the record's `completed` is accepted too).
    pub fn parse_name(name: &str) -> Option<Self> {
        match name {
            // `completed` is the record's name for an answered call; accept both.
            "answered" | "completed" => Some(Self::Answered),
            "busy" => Some(Self::Busy),
            "no-answer" | "no_answer" | "noanswer" => Some(Self::NoAnswer),
            "failed" => Some(Self::Failed),
            "voicemail" | "machine" => Some(Self::Voicemail),
            _ => None,
        }
    }

    /// The digit rule: 0–5 answered, 6 busy, 7 no-answer, 8 failed, 9 voicemail. A number that
    /// does not end in a digit (never the case for a validated E.164 number) fails.
    pub fn by_last_digit(number: &str) -> Self {
        match number.bytes().last() {
            Some(b'0'..=b'5') => Self::Answered,
            Some(b'6') => Self::Busy,
            Some(b'7') => Self::NoAnswer,
            Some(b'8') => Self::Failed,
            Some(b'9') => Self::Voicemail,
            _ => Self::Failed,
        }
    }
}
