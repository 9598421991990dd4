//! The settings of a run and the numbers it dials: a leaf both the scenarios and the
//! replication-cost measurement use.

use std::time::Duration;

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub contacts: usize,
    pub ingest_contacts: usize,
    pub job_limit: u32,
    pub workspace_limit: u32,
    pub cps: u32,
    /// How long to wait for completion after the fault (default: 45 s + 3 s per `cps` contacts).
    pub deadline: Option<Duration>,
    /// Report what #17 fixes without failing on it.
    pub tolerate_17: bool,
}

/// The numbers of scenario `index`: distinct across scenarios; the last digit picks the
/// simulator's outcome (0–5 answered, 6 busy, 7 no-answer, 8 failed, 9 voicemail).
pub fn number(index: usize, i: usize) -> String {
    format!("+1{:03}{:07}", 300 + index, i)
}
