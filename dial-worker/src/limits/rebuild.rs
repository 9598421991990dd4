//! Rebuilding the semaphores from the database after Redis lost them.
//!
//! The database's open attempts are the calls in flight (an attempt is written before its call
//! and closed when the call ends), so the counts Redis lost can be put back from them at once,
//! instead of waiting for every holder's next renewal (a third of a lease, 10 s by default).
//! The one worker whose try found the generation mark missing does it
//! ([`super::scripts::ACQUIRE`] answers it "rebuild"; the others wait meanwhile): it reads the
//! open attempts, puts each back under the same rule as a renewal (never one whose slot was
//! released: its tombstone refuses it), asks every worker to renew its own leases now, and then
//! shortens the window to [`MARGIN`], the time those renewals need to land. Slots taken just
//! before the flush whose attempt is not written yet are in no table: their holders hold them
//! as pending (see [`super::HeldLeases::hold_pending`]) and put them back with that renewal.
//!
//! If the database cannot be read in time, nothing is shortened: the window runs its whole
//! length, as it did before, and the holders' renewals rebuild the counts.

use std::time::Duration;

use shared::db::Pool;
use uuid::Uuid;

use super::{Limits, micros, scripts};

/// How long after the rebuild the window stays shut: the holders' renewals, asked for over
/// pub/sub, land within it.
pub const MARGIN: Duration = Duration::from_millis(500);

/// The longest the database read may take; past it the whole window runs.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The pub/sub message (on the release channel) that asks every worker to renew now.
pub const RENEW_NOW: &str = "renew-now";

/// Where the counts are rebuilt from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The system of record.
    pub db: Pool,
    /// The silence after which an ambiguous attempt gives its slot back (the holders' rule,
    /// see [`super::HeldLeases::new`]): such an attempt is not counted again either.
    pub unplaced_after: Duration,
}

/// Rebuilds the counts from `source` and shortens the window; returns how many calls were put
/// back. On any failure the window runs its whole length.
pub async fn rebuild(limits: &Limits, source: &Source) -> anyhow::Result<usize> {
    let open = tokio::time::timeout(READ_TIMEOUT, open_attempts(source))
        .await
        .map_err(|_| anyhow::anyhow!("open attempts not read in time"))??;
    let mut conn = limits.leases.conn.clone();
    for chunk in open.chunks(super::RENEW_CHUNK) {
        let _: Vec<i64> = limits.renewals(chunk).query_async(&mut conn).await?;
    }
    let _: i64 = redis::cmd("PUBLISH")
        .arg(limits.channel())
        .arg(RENEW_NOW)
        .query_async(&mut conn)
        .await?;
    let _: i64 = redis::Script::new(scripts::REBUILT)
        .key(limits.generation())
        .key(limits.rebuild_end())
        .arg(micros(MARGIN.min(limits.rebuild_window())))
        .invoke_async(&mut conn)
        .await?;
    Ok(open.len())
}

/// Every attempt holding a slot by the holders' rule: outcome unknown, and not an ambiguous
/// one silent past `unplaced_after`. `(attempt, workspace, job)`.
async fn open_attempts(source: &Source) -> anyhow::Result<Vec<(Uuid, Uuid, Uuid)>> {
    let client = source.db.get().await?;
    let rows = client
        .query(
            "SELECT id, workspace_id, batch_id FROM dial_attempts
             WHERE outcome IS NULL
               AND NOT (carrier_call_sid IS NULL AND error IS NOT NULL
                        AND started_at < now() - make_interval(secs => $1))",
            &[&source.unplaced_after.as_secs_f64()],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}
