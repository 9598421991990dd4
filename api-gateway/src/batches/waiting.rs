//! Why a contact waits and until when, as every per-contact view shows it (issue #25: holds
//! anyone can see): `holdReason` (the rule that holds it, null when none) and `nextAttemptAt`
//! (when it may next be called, ISO 8601 UTC, null when none), in `/api/v1/status/batch`, each
//! row of `/api/batch_dial_jobs/{id}/queue` and `results.csv`.
//!
//! Only a queued contact waits: a released, dialing or final one has neither (its stored hold is
//! cleared at release anyway). A first attempt never deferred is due from the start
//! (`-infinity`), so it shows no time.

use chrono::{DateTime, Utc};
use shared::domain::timing::api_time_opt;
use tokio_postgres::Row;

/// The two columns, for a query whose contacts table is `c` (a macro, so statements can
/// `concat!` it).
macro_rules! columns {
    () => {
        "CASE WHEN c.state = 'queued' THEN c.hold_reason END AS hold_reason,
         CASE WHEN c.state = 'queued' THEN NULLIF(c.next_attempt_at, '-infinity') END
             AS next_attempt_at"
    };
}
pub(crate) use columns;

/// A contact's hold as a row of a query with [`columns!`] gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Waiting {
    /// `holdReason`.
    pub hold_reason: Option<String>,
    /// `nextAttemptAt`, formatted.
    pub next_attempt_at: Option<String>,
}

impl Waiting {
    /// Reads [`columns!`] from `r`.
    pub fn of(r: &Row) -> Result<Self, tokio_postgres::Error> {
        let at: Option<DateTime<Utc>> = r.try_get("next_attempt_at")?;
        Ok(Self {
            hold_reason: r.try_get("hold_reason")?,
            next_attempt_at: api_time_opt(at),
        })
    }
}
