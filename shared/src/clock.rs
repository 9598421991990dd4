//! The one clock every role's decisions read: [`now`].
//!
//! In production it is the system clock. For tests across real processes it can be shifted by
//! `DIALFLEET_CLOCK_OFFSET_SECS` (whole seconds, may be negative), read once, here: a test
//! starts the scheduler and the dial worker with the same offset to put them at a chosen
//! instant ("New York is inside hours, Los Angeles is not"). **Test-only**: the offset moves
//! the instants the roles compare with windows, calling hours and due times, not the
//! database's own `now()` (retry delays written by SQL stay on the real clock), so do not set
//! it in production.

use std::sync::OnceLock;

use chrono::{DateTime, Duration, Utc};

/// The environment variable holding the offset.
pub const OFFSET_VAR: &str = "DIALFLEET_CLOCK_OFFSET_SECS";

fn offset() -> Duration {
    static OFFSET: OnceLock<Duration> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var(OFFSET_VAR)
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map(Duration::seconds)
            .unwrap_or_else(Duration::zero)
    })
}

/// The current instant as the roles see it: the system clock plus the test offset, if any.
pub fn now() -> DateTime<Utc> {
    Utc::now() + offset()
}
