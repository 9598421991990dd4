//! Answering-machine detection, as a job asks for it (Dialgen `options.machineDetection`, Vogent
//! `machineDetection`) and as the carrier takes it (Twilio's `MachineDetection` form field, the
//! same two names). Stored in `batches.machine_detection` (a CHECK constraint holds the names).

use serde::{Deserialize, Serialize};

/// Which kind of detection the carrier runs on the job's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum MachineDetection {
    /// Tell a person from a machine as soon as possible after the answer.
    Enable,
    /// Also wait for the end of the machine's greeting (the beep), to leave a message.
    DetectMessageEnd,
}

impl MachineDetection {
    /// Every value.
    pub const ALL: [MachineDetection; 2] = [Self::Enable, Self::DetectMessageEnd];

    /// The wire, carrier and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enable => "Enable",
            Self::DetectMessageEnd => "DetectMessageEnd",
        }
    }

    /// Parses the name (exact spelling, as Twilio takes it).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl std::fmt::Display for MachineDetection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in MachineDetection::ALL {
            assert_eq!(MachineDetection::parse(m.as_str()), Some(m));
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
        assert_eq!(MachineDetection::parse("enable"), None);
    }
}
