//! The clock every role's decisions read: [`Clock::now`], or, where a node's own clock must not
//! decide (the scheduler's release), [`Clock::read_database`].
//!
//! In production it is the system clock. For tests across real processes it can be shifted by
//! `DIALFLEET_CLOCK_OFFSET_SECS` (whole seconds, may be negative), read in one place,
//! [`crate::config::ServiceConfig::from_env`]: a test starts the scheduler and the dial worker
//! with the same offset to put them at a chosen instant ("New York is inside its calling hours,
//! Los Angeles is not"). **Test-only**: the offset moves the instants the roles compare with
//! job windows, calling hours and due times, not the database's own `now()` (delays the SQL
//! adds, such as a retry's, stay on the real clock), so never set it in production.
//!
//! `DIALFLEET_LOCAL_CLOCK_SKEW_SECS` (**test-only** too) plays a node whose system clock is
//! wrong: it moves [`Clock::now`] but not the database's clock, so a test can show that a
//! decision read from [`Clock::read_database`] does not follow a skewed node.

use chrono::{DateTime, Duration, Utc};

/// The environment variable holding the offset.
pub const OFFSET_VAR: &str = "DIALFLEET_CLOCK_OFFSET_SECS";

/// The environment variable holding a simulated skew of the node's own clock (tests only).
pub const SKEW_VAR: &str = "DIALFLEET_LOCAL_CLOCK_SKEW_SECS";

/// The system clock, optionally shifted (tests only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clock {
    offset_secs: i64,
    skew_secs: i64,
}

/// One reading of the database's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseReading {
    /// The database's instant, shifted by the test offset: the instant to decide with.
    pub now: DateTime<Utc>,
    /// How far the node's own clock is ahead of the database's (negative when behind), read
    /// around the query so that its round trip does not count as skew.
    pub skew: Duration,
}

impl Clock {
    /// The system clock.
    pub const SYSTEM: Clock = Clock {
        offset_secs: 0,
        skew_secs: 0,
    };

    /// The system clock shifted by `secs` seconds.
    pub fn offset_by(secs: i64) -> Self {
        Self {
            offset_secs: secs,
            skew_secs: 0,
        }
    }

    /// This clock with the node's own clock skewed by `secs` seconds against the database's
    /// (tests only: plays a node whose system clock is wrong).
    pub fn with_local_skew(self, secs: i64) -> Self {
        Self {
            skew_secs: secs,
            ..self
        }
    }

    /// The offset, in seconds (0 for the system clock).
    pub fn offset_secs(self) -> i64 {
        self.offset_secs
    }

    /// The current instant as the roles see it, on the node's own clock.
    pub fn now(self) -> DateTime<Utc> {
        self.local() + Duration::seconds(self.offset_secs)
    }

    /// Reads the database's clock (`clock_timestamp()`, not the transaction's `now()`) once:
    /// the instant to decide with when several nodes must agree on it, shifted by the test
    /// offset like [`Clock::now`], and the node's own skew against it, for the caller to
    /// report.
    pub async fn read_database(
        self,
        client: &tokio_postgres::Client,
    ) -> Result<DatabaseReading, tokio_postgres::Error> {
        let before = self.local();
        let database: DateTime<Utc> = client
            .query_one("SELECT clock_timestamp()", &[])
            .await?
            .try_get(0)?;
        let after = self.local();
        let local = before + (after - before) / 2;
        Ok(DatabaseReading {
            now: database + Duration::seconds(self.offset_secs),
            skew: local - database,
        })
    }

    /// The node's own clock, skew included, offset not.
    fn local(self) -> DateTime<Utc> {
        Utc::now() + Duration::seconds(self.skew_secs)
    }
}
