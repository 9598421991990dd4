//! What a monitor page shows of one batch at one instant, read in **one statement**.
//!
//! Cost per refresh, for a batch of N contacts and A attempts — none of it grows with N:
//! - contacts by state, last outcome and hold reason: the batch counters the database keeps
//!   (`shared::db::counters`, migration V12): the batch's few dozen counter rows and the deltas
//!   not folded yet (about a second of changes). It runs once per refresh interval per *batch*,
//!   whatever the number of pages open on it (see `hub`);
//! - calls in flight (batch and workspace): the partial index of open attempts, which holds only
//!   the calls in flight;
//! - starts in the last 10 s / 60 s and the 20 most recent calls: ranges of
//!   `dial_attempts_by_batch (batch_id, created_at, id)`;
//! - the per-minute chart: the batch's minute aggregate (`shared::db::counters::minutes_of`,
//!   migration V17), one row per minute and outcome, never its attempts. It is kept
//!   incrementally ([`Chart`]): a refresh reads again only the minutes that may still change
//!   (from the oldest call still in flight), so the first read costs the batch's minutes of
//!   life and a refresh a few rows.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use deadpool_postgres::GenericClient;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use shared::db::counters;
use shared::domain::{CallOutcome, ContactCounts, ContactState, Statistics};

use crate::batches::model::{Batch, COLUMNS, VISIBLE};
use crate::error::ApiError;

/// The chart's series: what each attempt ended as, or that it is still in flight.
pub const SERIES: [&str; 7] = [
    "completed",
    "voicemail",
    "busy",
    "no-answer",
    "failed",
    "other",
    "in progress",
];

/// The series of an attempt counted under `outcome` in the minute aggregate (`''` while the
/// call is in flight, V17).
fn series_of(outcome: &str) -> usize {
    if outcome.is_empty() {
        return 6;
    }
    match CallOutcome::parse(outcome) {
        Some(CallOutcome::Completed) => 0,
        Some(CallOutcome::Voicemail) => 1,
        Some(CallOutcome::Busy) => 2,
        Some(CallOutcome::NoAnswer) => 3,
        Some(CallOutcome::Failed) => 4,
        _ => 5,
    }
}

/// Attempts per minute (UTC minute start, in Unix seconds) and series, over the batch's life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chart {
    pub minutes: BTreeMap<i64, [i64; SERIES.len()]>,
}

impl Chart {
    /// Where the next refresh must read from: minutes before it hold only attempts that had
    /// ended at this refresh (an outcome never changes once written). A minute of margin
    /// covers an attempt whose row was committed late with an earlier `created_at`.
    fn next_since(oldest_open: Option<DateTime<Utc>>, read_at: DateTime<Utc>) -> DateTime<Utc> {
        let margin = read_at - Duration::minutes(1);
        let t = oldest_open.map_or(margin, |o| o.min(margin));
        t.duration_trunc(Duration::minutes(1)).unwrap_or(t)
    }

    fn replace_from(&mut self, since: DateTime<Utc>, rows: &[(i64, String, i64)]) {
        let _ = self.minutes.split_off(&since.timestamp());
        for (minute, outcome, n) in rows {
            self.minutes.entry(*minute).or_default()[series_of(outcome)] += n;
        }
    }
}

/// Contacts by what the page shows of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// The API's counts (Dialgen `statistics`), from the same rows.
    pub contacts: ContactCounts,
    pub queued: i64,
    /// Of `queued`: waiting for a retry (a busy or no-answer before).
    pub retry_waiting: i64,
    /// Of `queued`: deferred by a compliance rule (recipient hours, unknown timezone,
    /// frequency cap) until their next allowed minute.
    pub deferred: i64,
    /// Of `deferred`: by the recipient hours or the frequency cap (their minute is known).
    pub deferred_to_a_minute: i64,
    pub in_progress: i64,
    pub completed: i64,
    pub voicemail: i64,
    pub busy: i64,
    pub no_answer: i64,
    /// Failed calls, unknown outcomes included.
    pub failed: i64,
    /// Never dialed by the compliance rules (do-not-call list, frequency cap).
    pub suppressed: i64,
    pub cancelled: i64,
}

impl Tally {
    /// Counts one counter group.
    pub fn add(&mut self, g: &counters::Group) {
        let n = g.n;
        self.contacts.add(g.state, g.last_outcome, n);
        if g.last_outcome == Some(CallOutcome::Suppressed) {
            self.suppressed += n;
            return;
        }
        match g.state {
            ContactState::Queued => {
                self.queued += n;
                if g.last_outcome.is_some() {
                    self.retry_waiting += n;
                }
                if g.hold_reason.is_some() {
                    self.deferred += n;
                }
                if matches!(
                    g.hold_reason.as_deref(),
                    Some(
                        "recipient_hours"
                            | "frequency_cap"
                            | "state_hours"
                            | "state_no_call_day"
                            | "state_call_cap"
                    )
                ) {
                    self.deferred_to_a_minute += n;
                }
            }
            ContactState::Released | ContactState::Dialing => self.in_progress += n,
            ContactState::Cancelled => self.cancelled += n,
            ContactState::Completed => match g.last_outcome {
                Some(CallOutcome::Voicemail) => self.voicemail += n,
                _ => self.completed += n,
            },
            ContactState::Failed => match g.last_outcome {
                Some(CallOutcome::Busy) => self.busy += n,
                Some(CallOutcome::NoAnswer) => self.no_answer += n,
                Some(CallOutcome::Cancelled) => self.cancelled += n,
                _ => self.failed += n,
            },
        }
    }
}

/// One of the most recent calls.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecentCall {
    pub id: Uuid,
    pub to_number: String,
    pub contact_name: Option<String>,
    pub attempt_no: i32,
    pub outcome: Option<CallOutcome>,
    pub created_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// Everything one page shows.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub batch: Batch,
    pub agent_name: Option<String>,
    /// The batch's own rate (`batch.max_calls_per_second` is the one its starts follow when it
    /// has none); `None`: it follows the workspace's.
    pub own_calls_per_second: Option<i32>,
    pub workspace_max_concurrent_dials: i32,
    pub workspace_max_calls_per_second: Option<i32>,
    /// What bounds a batch without a rate in a workspace without one.
    pub workspace_cps_ceiling: i32,
    pub tally: Tally,
    pub statistics: Statistics,
    /// Attempts without an outcome: this batch's, and the workspace's across its batches.
    pub in_flight: i64,
    pub workspace_in_flight: i64,
    /// Call starts in the last 10 s and the last 60 s.
    pub starts_10s: i64,
    pub starts_60s: i64,
    pub chart: Chart,
    pub recent: Vec<RecentCall>,
    /// The latest minute a contact waits for (recipient hours, frequency cap): the ETA is not
    /// earlier.
    pub held_until: Option<DateTime<Utc>>,
    /// What holds the whole batch (`dnc_registry_stale`: its workspace relies on the
    /// do-not-call registry without a fresh copy), or `None`.
    pub hold_reason: Option<&'static str>,
    /// The database's clock when this was read.
    pub at: DateTime<Utc>,
}

impl Snapshot {
    /// Whether two snapshots would show the same page (the time of reading aside).
    pub fn same_view(&self, other: &Snapshot) -> bool {
        self.batch.state == other.batch.state
            && self.batch.ingest_state == other.batch.ingest_state
            && self.window_open() == other.window_open()
            && self.lines_limit() == other.lines_limit()
            && self.rate_limit() == other.rate_limit()
            && self.batch.rejected_rows == other.batch.rejected_rows
            && self.batch.completed_at == other.batch.completed_at
            && self.tally == other.tally
            && self.in_flight == other.in_flight
            && self.workspace_in_flight == other.workspace_in_flight
            && self.starts_10s == other.starts_10s
            && self.starts_60s == other.starts_60s
            && self.chart == other.chart
            && self.recent == other.recent
            && self.held_until == other.held_until
            && self.hold_reason == other.hold_reason
    }

    /// Whether nothing about the batch can change any more: it is final, every contact is final
    /// and no call is in flight.
    pub fn is_settled(&self) -> bool {
        self.batch.state.is_final() && self.statistics.pending == 0 && self.in_flight == 0
    }

    /// Calls per second over the last 10 s.
    pub fn calls_per_second(&self) -> f64 {
        self.starts_10s as f64 / 10.0
    }

    /// Whether the window is open now.
    pub fn window_open(&self) -> bool {
        self.batch.window().is_open(self.at)
    }

    /// The lines this batch may hold at most: the smaller of its `maxConcurrentDials` and its
    /// workspace's limit (which its other batches share), and which one binds.
    pub fn lines_limit(&self) -> Limit {
        Limit::smaller(
            self.batch.max_concurrent_dials,
            Some(self.workspace_max_concurrent_dials),
        )
    }

    /// The calls per second this batch may start at most, as the dial worker applies them: the
    /// smaller of its own rate and its workspace's, and which one binds; with neither, the
    /// workspace's ceiling.
    pub fn rate_limit(&self) -> Limit {
        Limit::rate(
            self.own_calls_per_second,
            self.workspace_max_calls_per_second,
            self.workspace_cps_ceiling,
        )
    }
}

/// Which setting an effective limit comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binds {
    Batch,
    Workspace,
    /// The batch's and the workspace's are equal.
    Both,
    /// Neither has one: the workspace's ceiling.
    Ceiling,
}

/// An effective limit: its value, the setting it comes from, and the other setting's value
/// when that one is larger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub value: i32,
    pub binds: Binds,
    pub other: Option<i32>,
}

impl Limit {
    /// The calls per second a batch may start at most, as the dial worker applies them: the
    /// smaller of its own rate and its workspace's; with neither, the workspace's ceiling.
    pub fn rate(own: Option<i32>, workspace: Option<i32>, ceiling: i32) -> Self {
        match own {
            Some(own) => Limit::smaller(own, workspace),
            None => match workspace {
                Some(ws) => Limit {
                    value: ws,
                    binds: Binds::Workspace,
                    other: None,
                },
                None => Limit {
                    value: ceiling,
                    binds: Binds::Ceiling,
                    other: None,
                },
            },
        }
    }

    /// The smaller of a batch's limit and its workspace's, and which binds.
    pub fn smaller(batch: i32, workspace: Option<i32>) -> Self {
        match workspace {
            None => Limit {
                value: batch,
                binds: Binds::Batch,
                other: None,
            },
            Some(ws) if ws < batch => Limit {
                value: ws,
                binds: Binds::Workspace,
                other: Some(batch),
            },
            Some(ws) if ws > batch => Limit {
                value: batch,
                binds: Binds::Batch,
                other: Some(ws),
            },
            Some(_) => Limit {
                value: batch,
                binds: Binds::Both,
                other: None,
            },
        }
    }
}

/// A contact's name for the page: its own (Dialgen's `name`), else one from its `inputs`
/// (Vogent rows carry no name of their own; their `inputs` often do), else NULL. `->>` on
/// inputs that are not an object (Dialgen `metadata` may be any JSON) is NULL, never an error.
const CONTACT_NAME: &str = "COALESCE(NULLIF(c.name, ''),
    NULLIF(c.inputs->>'name', ''), NULLIF(c.inputs->>'fullName', ''),
    NULLIF(c.inputs->>'full_name', ''), NULLIF(c.inputs->>'contactName', ''),
    NULLIF(c.inputs->>'customerName', ''), NULLIF(c.inputs->>'customer_name', ''),
    NULLIF(concat_ws(' ', NULLIF(c.inputs->>'firstName', ''), NULLIF(c.inputs->>'lastName', '')), ''),
    NULLIF(concat_ws(' ', NULLIF(c.inputs->>'first_name', ''), NULLIF(c.inputs->>'last_name', '')), ''),
    NULLIF(c.inputs->>'Name', ''))";

/// Reads a snapshot of batch `id`; `chart` is the previous refresh's chart (empty at first),
/// extended in place. `Ok(None)`: no such batch.
pub async fn read(
    client: &impl GenericClient,
    id: Uuid,
    chart: &mut Chart,
    since: &mut Option<DateTime<Utc>>,
) -> Result<Option<Snapshot>, ApiError> {
    let sql = format!(
        "SELECT x.*, w.max_concurrent_dials AS workspace_max_concurrent_dials,
            w.max_calls_per_second AS workspace_max_calls_per_second,
            w.cps_ceiling AS workspace_cps_ceiling,
            w.dnc_registry_required AS workspace_dnc_registry_required,
            (SELECT max(r.as_of) FROM dnc_registry_copies r WHERE r.workspace_id = x.workspace_id)
                AS workspace_dnc_registry_as_of,
            (SELECT name FROM agents WHERE id = x.agent_id) AS agent_name,
            (SELECT coalesce(jsonb_agg(jsonb_build_array(state, last_outcome, hold_reason, n)), '[]')
               FROM ({groups}) s) AS counter_groups,
            (SELECT count(*) FROM dial_attempts WHERE batch_id = x.id AND outcome IS NULL) AS in_flight,
            (SELECT count(*) FROM dial_attempts WHERE workspace_id = x.workspace_id AND outcome IS NULL)
                AS workspace_in_flight,
            (SELECT count(*) FROM dial_attempts WHERE batch_id = x.id AND created_at > now() - interval '10 seconds')
                AS starts_10s,
            (SELECT count(*) FROM dial_attempts WHERE batch_id = x.id AND created_at > now() - interval '60 seconds')
                AS starts_60s,
            (SELECT min(created_at) FROM dial_attempts WHERE batch_id = x.id AND outcome IS NULL) AS oldest_open,
            (SELECT coalesce(jsonb_agg(jsonb_build_array(m, o, n)), '[]')
               FROM ({minutes}) c) AS minutes,
            (SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY r.created_at DESC, r.id DESC), '[]')
               FROM (SELECT a.id, a.to_number, {contact_name} AS contact_name, a.attempt_no, a.outcome,
                            a.created_at, a.answered_at, a.ended_at
                     FROM dial_attempts a JOIN contacts c ON c.id = a.contact_id
                     WHERE a.batch_id = x.id ORDER BY a.created_at DESC, a.id DESC LIMIT 20) r) AS recent,
            now() AS at
         FROM (SELECT {COLUMNS}, max_calls_per_second AS own_calls_per_second
               FROM batches WHERE id = $1 AND {VISIBLE}) x
         JOIN workspaces w ON w.id = x.workspace_id",
        groups = counters::groups_of("x.id"),
        minutes = counters::minutes_of("x.id", "$2::timestamptz"),
        contact_name = CONTACT_NAME,
    );
    let Some(row) = client.query_opt(&sql, &[&id, &*since]).await? else {
        return Ok(None);
    };
    let batch = Batch::from_row(&row)?;
    let corrupt = |what: &str| ApiError::Internal(anyhow::anyhow!("monitor: unreadable {what}"));
    let mut tally = Tally::default();
    let groups: Vec<(String, String, String, i64)> =
        serde_json::from_value(row.try_get::<_, Value>("counter_groups")?)
            .map_err(|_| corrupt("counts"))?;
    for (state, outcome, hold, n) in &groups {
        let group = counters::Group::from_names(state, outcome, hold, *n)
            .map_err(|e| ApiError::Internal(e.into()))?;
        tally.add(&group);
    }
    let oldest_open: Option<DateTime<Utc>> = row.try_get("oldest_open")?;
    let minutes: Vec<(i64, String, i64)> =
        serde_json::from_value(row.try_get::<_, Value>("minutes")?)
            .map_err(|_| corrupt("chart"))?;
    chart.replace_from(since.unwrap_or(DateTime::<Utc>::MIN_UTC), &minutes);
    let recent: Vec<RecentCall> = serde_json::from_value(row.try_get::<_, Value>("recent")?)
        .map_err(|_| corrupt("recent calls"))?;
    let at: DateTime<Utc> = row.try_get("at")?;
    *since = Some(Chart::next_since(oldest_open, at));
    let statistics = Statistics::of(&tally.contacts, batch.state.is_final());
    let held_until = if tally.deferred_to_a_minute > 0 {
        crate::batches::stats::held_until(client, id).await?
    } else {
        None
    };
    let hold_reason = if batch.state.is_final() {
        None
    } else {
        crate::workspace_checks::RegistryStatus::at(
            row.try_get("workspace_dnc_registry_required")?,
            row.try_get("workspace_dnc_registry_as_of")?,
            at,
        )
        .hold_reason
    };
    Ok(Some(Snapshot {
        held_until,
        hold_reason,
        agent_name: row.try_get("agent_name")?,
        own_calls_per_second: row.try_get("own_calls_per_second")?,
        workspace_max_concurrent_dials: row.try_get("workspace_max_concurrent_dials")?,
        workspace_max_calls_per_second: row.try_get("workspace_max_calls_per_second")?,
        workspace_cps_ceiling: row.try_get("workspace_cps_ceiling")?,
        tally,
        statistics,
        in_flight: row.try_get("in_flight")?,
        workspace_in_flight: row.try_get("workspace_in_flight")?,
        starts_10s: row.try_get("starts_10s")?,
        starts_60s: row.try_get("starts_60s")?,
        chart: chart.clone(),
        recent,
        at,
        batch,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_rereads_only_minutes_that_may_change() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let read = at("2026-03-02T09:45:30Z");
        assert_eq!(Chart::next_since(None, read), at("2026-03-02T09:44:00Z"));
        assert_eq!(
            Chart::next_since(Some(at("2026-03-02T09:30:10Z")), read),
            at("2026-03-02T09:30:00Z")
        );
        let mut chart = Chart::default();
        let m = |s: &str| at(s).timestamp();
        chart.replace_from(
            DateTime::<Utc>::MIN_UTC,
            &[
                (m("2026-03-02T09:30:00Z"), "busy".into(), 2),
                (m("2026-03-02T09:31:00Z"), "".into(), 1),
            ],
        );
        chart.replace_from(
            at("2026-03-02T09:31:00Z"),
            &[(m("2026-03-02T09:31:00Z"), "completed".into(), 1)],
        );
        assert_eq!(chart.minutes[&m("2026-03-02T09:30:00Z")][2], 2);
        assert_eq!(
            chart.minutes[&m("2026-03-02T09:31:00Z")],
            [1, 0, 0, 0, 0, 0, 0]
        );
    }
}
