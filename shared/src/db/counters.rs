//! A batch's contacts counted by state, last outcome and hold reason, from aggregates kept by
//! the database (migration V12): statement-level triggers on `contacts` append each
//! statement's net change to `batch_counter_deltas`; [`fold`] moves them into
//! `batch_counters`; [`load`] adds the two. A read costs the batch's counter rows (a few
//! dozen) and the deltas not folded yet (about a second of changes), whatever the batch's size,
//! and it is exact: one statement reads both tables in one snapshot, and a fold moves its
//! deltas in one transaction.
//!
//! The same mechanism keeps the monitor's chart (migration V17): a batch's attempts counted by
//! the UTC minute they started and their outcome (`''` while in flight), in `batch_minutes`
//! and `batch_minute_deltas`, folded by the same [`fold`] and read with [`minutes_of`].

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool, Transaction};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{CallOutcome, ContactCounts, ContactState};

/// How many deltas one fold moves at most (a backlog is folded over several).
pub const FOLD_LIMIT: i64 = 100_000;

/// The advisory lock that lets one folder run at a time (two would only wait for each other).
const FOLD_LOCK: i64 = 0x6466_636f_756e_7473; // "dfcounts"

/// Contacts of one batch sharing a state, a last outcome and a hold reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Their state.
    pub state: ContactState,
    /// How their last attempt ended, if they had one.
    pub last_outcome: Option<CallOutcome>,
    /// Why a compliance rule holds them (`recipient_hours`, `unknown_timezone`,
    /// `frequency_cap`), if one does.
    pub hold_reason: Option<String>,
    /// How many.
    pub n: i64,
}

/// The counters hold a name outside the vocabulary (a corrupt row).
#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    /// The pool could not give a connection.
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A counter names an unknown state or outcome.
    #[error("batch counters hold an invalid {what} {value:?}")]
    Invalid {
        /// `state` or `outcome`.
        what: &'static str,
        /// The name read.
        value: String,
    },
}

/// The groups of each of `batch_ids`; a batch without contacts is absent.
pub async fn load(
    client: &impl GenericClient,
    batch_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Group>>, CounterError> {
    let rows = client
        .query(
            "SELECT batch_id, state, last_outcome, hold_reason, sum(n)::bigint AS n
             FROM (SELECT batch_id, state, last_outcome, hold_reason, n
                   FROM batch_counters WHERE batch_id = ANY($1)
                   UNION ALL
                   SELECT batch_id, state, last_outcome, hold_reason, n
                   FROM batch_counter_deltas WHERE batch_id = ANY($1)) t
             GROUP BY 1, 2, 3, 4
             HAVING sum(n) <> 0",
            &[&batch_ids],
        )
        .await?;
    let mut all: HashMap<Uuid, Vec<Group>> = HashMap::new();
    for row in rows {
        let group = Group::from_names(
            row.get("state"),
            row.get("last_outcome"),
            row.get("hold_reason"),
            row.get("n"),
        )?;
        all.entry(row.get("batch_id")).or_default().push(group);
    }
    Ok(all)
}

/// The statement [`load`] runs for one batch, as a subquery over `batch_expr` (an SQL
/// expression naming the batch id) with the columns `state, last_outcome, hold_reason, n`, for
/// a caller that reads the counts in a statement of its own (the monitor's snapshot).
pub fn groups_of(batch_expr: &str) -> String {
    format!(
        "SELECT state, last_outcome, hold_reason, sum(n)::bigint AS n
         FROM (SELECT state, last_outcome, hold_reason, n FROM batch_counters WHERE batch_id = {batch_expr}
               UNION ALL
               SELECT state, last_outcome, hold_reason, n FROM batch_counter_deltas WHERE batch_id = {batch_expr}) t
         GROUP BY 1, 2, 3
         HAVING sum(n) <> 0"
    )
}

/// The chart rows of one batch from the minute `since_expr` on (both SQL expressions; a NULL
/// `since_expr` reads the whole life), as a subquery with the columns `m` (the minute's start,
/// Unix seconds), `o` (the outcome, `''` in flight) and `n`. A read costs the batch's minutes ×
/// outcomes in that range plus a second of unfolded deltas, never its attempts.
pub fn minutes_of(batch_expr: &str, since_expr: &str) -> String {
    format!(
        "SELECT extract(epoch FROM minute)::bigint AS m, outcome AS o, sum(n)::bigint AS n
         FROM (SELECT minute, outcome, n FROM batch_minutes
               WHERE batch_id = {batch_expr} AND minute >= coalesce({since_expr}, '-infinity'::timestamptz)
               UNION ALL
               SELECT minute, outcome, n FROM batch_minute_deltas
               WHERE batch_id = {batch_expr} AND minute >= coalesce({since_expr}, '-infinity'::timestamptz)) t
         GROUP BY 1, 2
         HAVING sum(n) <> 0"
    )
}

impl Group {
    /// A group from the stored names ('' for no outcome, no hold reason).
    pub fn from_names(
        state: &str,
        outcome: &str,
        hold: &str,
        n: i64,
    ) -> Result<Self, CounterError> {
        Ok(Self {
            state: ContactState::parse(state).ok_or_else(|| CounterError::Invalid {
                what: "state",
                value: state.to_owned(),
            })?,
            last_outcome: match outcome {
                "" => None,
                o => Some(CallOutcome::parse(o).ok_or_else(|| CounterError::Invalid {
                    what: "outcome",
                    value: o.to_owned(),
                })?),
            },
            hold_reason: (!hold.is_empty()).then(|| hold.to_owned()),
            n,
        })
    }
}

/// The counts every surface shows, by the one rule of [`ContactCounts::add`].
pub fn counts(groups: &[Group]) -> ContactCounts {
    let mut c = ContactCounts::default();
    for g in groups {
        c.add(g.state, g.last_outcome, g.n);
    }
    c
}

/// [`load`] and [`counts`] for several batches.
pub async fn load_counts(
    client: &impl GenericClient,
    batch_ids: &[Uuid],
) -> Result<HashMap<Uuid, ContactCounts>, CounterError> {
    Ok(load(client, batch_ids)
        .await?
        .into_iter()
        .map(|(id, groups)| (id, counts(&groups)))
        .collect())
}

/// Moves up to [`FOLD_LIMIT`] contact deltas and as many minute deltas into their aggregates,
/// in one transaction; returns the larger of the two moves (0 when another folder holds the
/// lock), so a caller folds again while either has a backlog. Safe from any number of
/// processes.
pub async fn fold(pool: &Pool) -> Result<u64, CounterError> {
    let mut client = pool.get().await?;
    let txn = client.transaction().await?;
    let locked: bool = txn
        .query_one(
            "SELECT pg_try_advisory_xact_lock($1) AS locked",
            &[&FOLD_LOCK],
        )
        .await?
        .try_get("locked")?;
    if !locked {
        return Ok(0);
    }
    let moved = fold_into(&txn, &CONTACTS).await?;
    let minutes_moved = fold_into(&txn, &MINUTES).await?;
    txn.commit().await?;
    Ok(moved.max(minutes_moved) as u64)
}

/// One aggregate kept by appended deltas: its tables and the columns of its key (the batch id
/// first). Both aggregates fold by the one statement of [`fold_into`].
struct Aggregate {
    deltas: &'static str,
    totals: &'static str,
    key: &'static str,
}

/// The contacts by state, last outcome and hold reason (V12).
const CONTACTS: Aggregate = Aggregate {
    deltas: "batch_counter_deltas",
    totals: "batch_counters",
    key: "batch_id, state, last_outcome, hold_reason",
};

/// The chart's attempts by start minute and outcome (V17).
const MINUTES: Aggregate = Aggregate {
    deltas: "batch_minute_deltas",
    totals: "batch_minutes",
    key: "batch_id, minute, outcome",
};

/// Moves up to [`FOLD_LIMIT`] of `a`'s deltas into its totals within `txn`; returns how many.
async fn fold_into(txn: &Transaction<'_>, a: &Aggregate) -> Result<i64, CounterError> {
    let Aggregate {
        deltas,
        totals,
        key,
    } = a;
    let row = txn
        .query_one(
            &format!(
                "WITH d AS (
                     DELETE FROM {deltas}
                     WHERE id IN (SELECT id FROM {deltas} ORDER BY id LIMIT $1)
                     RETURNING {key}, n),
                 s AS (
                     SELECT {key}, sum(n)::bigint AS n, count(*) AS moved
                     FROM d GROUP BY {key}),
                 up AS (
                     INSERT INTO {totals} AS c ({key}, n)
                     SELECT {key}, n FROM s
                     ON CONFLICT ({key})
                     DO UPDATE SET n = c.n + excluded.n
                     RETURNING batch_id, n)
                 SELECT (SELECT coalesce(sum(moved), 0)::bigint FROM s) AS moved,
                        (SELECT coalesce(array_agg(DISTINCT batch_id), '{{}}') FROM up WHERE n = 0) AS emptied"
            ),
            &[&FOLD_LIMIT],
        )
        .await?;
    let emptied: Vec<Uuid> = row.get("emptied");
    if !emptied.is_empty() {
        // Keys that went back to zero (every contact moved on, every call of a minute ended)
        // are dropped, so a batch keeps only the rows that count something.
        txn.execute(
            &format!("DELETE FROM {totals} WHERE batch_id = ANY($1) AND n = 0"),
            &[&emptied],
        )
        .await?;
    }
    Ok(row.get("moved"))
}

/// Folds every `period` until `shutdown`; a backlog is folded at once, in [`FOLD_LIMIT`] steps.
/// A failure is logged and retried at the next period (the reads stay exact meanwhile; they
/// only read more deltas).
pub async fn fold_every(pool: Pool, period: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        loop {
            match fold(&pool).await {
                Ok(n) if n as i64 >= FOLD_LIMIT => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "folding the batch counters failed; retried");
                    break;
                }
            }
        }
    }
}
