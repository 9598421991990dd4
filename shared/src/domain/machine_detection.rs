//! Answering-machine detection, as a job asks for it (Dialgen `options.machineDetection`, Vogent
//! `machineDetection`) and as the carrier takes it (Twilio's `MachineDetection` form field, the
//! same two names). Stored in `batches.machine_detection` (a CHECK constraint holds the names).

use serde::{Deserialize, Serialize};

use super::names::named_enum;

named_enum! {
    /// Which kind of detection the carrier runs on the job's calls. The name is the wire,
    /// carrier and database name (exact spelling, as Twilio takes it).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
    pub enum MachineDetection {
        /// Tell a person from a machine as soon as possible after the answer.
        Enable = "Enable",
        /// Also wait for the end of the machine's greeting (the beep), to leave a message.
        DetectMessageEnd = "DetectMessageEnd",
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
