//! The clock every role's decisions read: [`Clock::now`].
//!
//! In production it is the system clock. For tests across real processes it can be shifted by
//! `DIALFLEET_CLOCK_OFFSET_SECS` (whole seconds, may be negative), read in one place,
//! [`crate::config::ServiceConfig::from_env`]: a test starts the scheduler and the dial worker
//! with the same offset to put them at a chosen instant ("New York is inside its calling hours,
//! Los Angeles is not"). **Test-only**: the offset moves the instants the roles compare with
//! job windows, calling hours and due times, not the database's own `now()` (delays the SQL
//! adds, such as a retry's, stay on the real clock), so never set it in production.

use chrono::{DateTime, Duration, Utc};

/// The environment variable holding the offset.
pub const OFFSET_VAR: &str = "DIALFLEET_CLOCK_OFFSET_SECS";

/// The system clock, optionally shifted (tests only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clock {
    offset_secs: i64,
}

impl Clock {
    /// The system clock.
    pub const SYSTEM: Clock = Clock { offset_secs: 0 };

    /// The system clock shifted by `secs` seconds.
    pub fn offset_by(secs: i64) -> Self {
        Self { offset_secs: secs }
    }

    /// The offset, in seconds (0 for the system clock).
    pub fn offset_secs(self) -> i64 {
        self.offset_secs
    }

    /// The current instant as the roles see it.
    pub fn now(self) -> DateTime<Utc> {
        Utc::now() + Duration::seconds(self.offset_secs)
    }
}
