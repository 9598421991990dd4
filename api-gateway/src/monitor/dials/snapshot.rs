//! What a Batch Dials page shows of a workspace at one instant: its figures and one page of its
//! batches, read in two statements of one read-only snapshot transaction.
//!
//! Cost per refresh — none of it grows with the workspace's past batches:
//! - the workspace's figures: its row, the newest registry copy (`dnc_registry_copies_newest`),
//!   calls in flight (the partial index of open attempts) and starts in the last 10 s
//!   (`dial_attempts_by_workspace`, migration V27);
//! - one page of [`PAGE_SIZE`] batches, newest first: a range of `batches_by_workspace`, or of
//!   `batches_by_workspace_state` (V27) when filtered by status, from the page's cursor on;
//! - for each batch on the page: its counters (`shared::db::counters`, V12: a few dozen rows),
//!   calls in flight and starts in the last 10 s / 60 s (ranges of `dial_attempts_by_batch`).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use shared::db::counters;
use shared::domain::{JobState, Statistics};

use crate::batches::model::{Batch, COLUMNS, VISIBLE};
use crate::error::ApiError;
use crate::monitor::snapshot::{Limit, Tally};

/// Batches per page.
pub const PAGE_SIZE: usize = 20;

/// How old the newest copy of the do-not-call registry may be before releases stop
/// (migration V22, `dnc_registry_required`).
pub const REGISTRY_FRESH_DAYS: i64 = 31;

/// Which page of which workspace: one feed each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub workspace: Uuid,
    /// Only batches in this state.
    pub state: Option<JobState>,
    /// Only batches older than this one (the previous page's last).
    pub before: Option<Uuid>,
}

/// The workspace's own figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceFigures {
    pub name: String,
    pub max_concurrent_dials: i32,
    pub max_calls_per_second: Option<i32>,
    pub cps_ceiling: i32,
    pub jurisdiction_rules: String,
    pub dnc_registry_required: bool,
    /// The newest registry copy's `as_of`.
    pub registry_as_of: Option<NaiveDate>,
    /// Attempts without an outcome, across its batches.
    pub in_flight: i64,
    /// Call starts in the last 10 s, across its batches.
    pub starts_10s: i64,
}

impl WorkspaceFigures {
    /// The workspace's rate: its own, else its ceiling (what a batch without a rate gets).
    pub fn rate(&self) -> Limit {
        Limit::rate(None, self.max_calls_per_second, self.cps_ceiling)
    }

    /// Whether the registry copy is fresh at `today` (`None`: no copy at all).
    pub fn registry_fresh(&self, today: NaiveDate) -> Option<bool> {
        self.registry_as_of
            .map(|d| (today - d).num_days() <= REGISTRY_FRESH_DAYS)
    }
}

/// One batch's row.
#[derive(Debug, Clone)]
pub struct BatchRow {
    pub batch: Batch,
    pub own_calls_per_second: Option<i32>,
    pub tally: Tally,
    pub statistics: Statistics,
    /// Queued contacts held by a compliance rule, by reason.
    pub held: BTreeMap<String, i64>,
    pub in_flight: i64,
    pub starts_10s: i64,
    pub starts_60s: i64,
}

impl BatchRow {
    /// The effective line limit: the smaller of the batch's and the workspace's.
    pub fn lines_limit(&self, ws: &WorkspaceFigures) -> Limit {
        Limit::smaller(
            self.batch.max_concurrent_dials,
            Some(ws.max_concurrent_dials),
        )
    }

    /// The effective rate, as the dial worker applies it.
    pub fn rate_limit(&self, ws: &WorkspaceFigures) -> Limit {
        Limit::rate(
            self.own_calls_per_second,
            ws.max_calls_per_second,
            ws.cps_ceiling,
        )
    }
}

/// Everything one page shows.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub key: PageKey,
    pub workspace: WorkspaceFigures,
    pub rows: Vec<BatchRow>,
    /// Whether older batches follow this page.
    pub more: bool,
    /// The database's clock when this was read.
    pub at: DateTime<Utc>,
}

/// The workspace's figures, `$1` its id.
pub const WORKSPACE_SQL: &str = "SELECT w.name, w.max_concurrent_dials, w.max_calls_per_second, w.cps_ceiling,
        w.jurisdiction_rules, w.dnc_registry_required,
        (SELECT as_of FROM dnc_registry_copies WHERE workspace_id = w.id ORDER BY as_of DESC LIMIT 1)
            AS registry_as_of,
        (SELECT count(*) FROM dial_attempts WHERE workspace_id = w.id AND outcome IS NULL) AS in_flight,
        (SELECT count(*) FROM dial_attempts
          WHERE workspace_id = w.id AND created_at > now() - interval '10 seconds') AS starts_10s,
        now() AS at
     FROM workspaces w WHERE w.id = $1";

/// The page's statement and its parameters' order: `$1` the workspace, then the state (when
/// filtered), then the cursor (when paged). One text per shape, so each is planned for its
/// own index rather than generically.
pub fn page_sql(key: &PageKey) -> String {
    let mut n = 1;
    let mut next = || {
        n += 1;
        n
    };
    let state = key
        .state
        .map(|_| format!("AND state = ${}", next()))
        .unwrap_or_default();
    let cursor = key
        .before
        .map(|_| {
            let p = next();
            format!(
                "AND (created_at, id) < (SELECT created_at, id FROM batches WHERE id = ${p} AND workspace_id = $1)"
            )
        })
        .unwrap_or_default();
    format!(
        "SELECT x.*,
            (SELECT coalesce(jsonb_agg(jsonb_build_array(state, last_outcome, hold_reason, n)), '[]')
               FROM ({groups}) s) AS counter_groups,
            (SELECT count(*) FROM dial_attempts WHERE batch_id = x.id AND outcome IS NULL) AS in_flight,
            (SELECT count(*) FROM dial_attempts WHERE batch_id = x.id AND created_at > now() - interval '10 seconds')
                AS starts_10s,
            (SELECT count(*) FROM dial_attempts WHERE batch_id = x.id AND created_at > now() - interval '60 seconds')
                AS starts_60s
         FROM (SELECT {COLUMNS}, max_calls_per_second AS own_calls_per_second
               FROM batches WHERE workspace_id = $1 AND {VISIBLE} {state} {cursor}
               ORDER BY created_at DESC, id DESC LIMIT {limit}) x
         ORDER BY x.created_at DESC, x.id DESC",
        groups = counters::groups_of("x.id"),
        limit = PAGE_SIZE + 1,
    )
}

/// The page statement's parameters, in [`page_sql`]'s order.
pub fn page_params(key: &PageKey) -> Vec<Box<dyn ToSql + Sync + Send>> {
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(key.workspace)];
    if let Some(state) = key.state {
        params.push(Box::new(state.as_str().to_owned()));
    }
    if let Some(before) = key.before {
        params.push(Box::new(before));
    }
    params
}

fn batch_row(row: &tokio_postgres::Row) -> Result<BatchRow, ApiError> {
    let batch = Batch::from_row(row)?;
    let groups: Vec<(String, String, String, i64)> =
        serde_json::from_value(row.try_get::<_, Value>("counter_groups")?)
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("batch dials: unreadable counts")))?;
    let mut tally = Tally::default();
    let mut held = BTreeMap::new();
    for (state, outcome, hold, n) in &groups {
        let group = counters::Group::from_names(state, outcome, hold, *n)
            .map_err(|e| ApiError::Internal(e.into()))?;
        if group.state == shared::domain::ContactState::Queued
            && let Some(reason) = &group.hold_reason
        {
            *held.entry(reason.clone()).or_insert(0) += group.n;
        }
        tally.add(&group);
    }
    let statistics = Statistics::of(&tally.contacts, batch.state.is_final());
    Ok(BatchRow {
        own_calls_per_second: row.try_get("own_calls_per_second")?,
        in_flight: row.try_get("in_flight")?,
        starts_10s: row.try_get("starts_10s")?,
        starts_60s: row.try_get("starts_60s")?,
        tally,
        statistics,
        held,
        batch,
    })
}

/// Reads the page `key`; `Ok(None)`: no such workspace.
pub async fn read(
    client: &mut deadpool_postgres::Object,
    key: &PageKey,
) -> Result<Option<Snapshot>, ApiError> {
    // One snapshot: the workspace's figures and the page agree with each other.
    let tx = client
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await?;
    let Some(ws) = tx.query_opt(WORKSPACE_SQL, &[&key.workspace]).await? else {
        return Ok(None);
    };
    let params = page_params(key);
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let rows = tx.query(&page_sql(key), &refs).await?;
    tx.commit().await?;
    let mut batches = rows.iter().map(batch_row).collect::<Result<Vec<_>, _>>()?;
    let more = batches.len() > PAGE_SIZE;
    batches.truncate(PAGE_SIZE);
    Ok(Some(Snapshot {
        key: *key,
        workspace: workspace_figures(&ws)?,
        rows: batches,
        more,
        at: ws.try_get("at")?,
    }))
}

fn workspace_figures(row: &tokio_postgres::Row) -> Result<WorkspaceFigures, ApiError> {
    Ok(WorkspaceFigures {
        name: row.try_get("name")?,
        max_concurrent_dials: row.try_get("max_concurrent_dials")?,
        max_calls_per_second: row.try_get("max_calls_per_second")?,
        cps_ceiling: row.try_get("cps_ceiling")?,
        jurisdiction_rules: row.try_get("jurisdiction_rules")?,
        dnc_registry_required: row.try_get("dnc_registry_required")?,
        registry_as_of: row.try_get("registry_as_of")?,
        in_flight: row.try_get("in_flight")?,
        starts_10s: row.try_get("starts_10s")?,
    })
}
