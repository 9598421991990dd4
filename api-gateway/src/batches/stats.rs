//! Progress of a batch as Dialgen reports it: statistics, performance, recent calls.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use shared::db::counters;
use shared::domain::timing::{api_time, api_time_opt, call_duration_secs};
use shared::domain::views::dialgen_call_status;
use shared::domain::{
    CallOutcome, ContactCounts, ContactState, DialgenCallStatus, DialgenStatus, Statistics,
};
use utoipa::ToSchema;
use uuid::Uuid;

use super::model::Batch;
use crate::error::ApiError;

/// How many of a batch's contacts are in each state, and how many dials were placed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Contacts by final state (the one count every surface shows).
    pub contacts: ContactCounts,
    /// Dial attempts made.
    pub attempts: i64,
}

impl Counts {
    /// Contacts with a final result.
    pub fn processed(&self) -> i64 {
        self.contacts.processed()
    }

    /// Reads the counts of one batch, with its dial attempts.
    pub async fn load(client: &impl GenericClient, batch_id: Uuid) -> Result<Self, ApiError> {
        let contacts = Self::load_many(client, &[batch_id])
            .await?
            .remove(&batch_id)
            .unwrap_or_default();
        let attempts = attempts(client, batch_id).await?;
        Ok(Self { contacts, attempts })
    }

    /// Reads the contact counts of several batches in one query, from the batch counters the
    /// database keeps (`shared::db::counters`), not a scan of their contacts; a batch with no
    /// contacts yet is absent from the map.
    pub async fn load_many(
        client: &impl GenericClient,
        batch_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, ContactCounts>, ApiError> {
        counters::load_counts(client, batch_ids)
            .await
            .map_err(counter_error)
    }
}

/// The dial attempts a batch made (an index-only count: one entry per attempt, not per
/// contact; the one read of check-status that grows with the batch's calls).
async fn attempts(client: &impl GenericClient, batch_id: Uuid) -> Result<i64, ApiError> {
    Ok(client
        .query_one(
            "SELECT count(*) AS n FROM dial_attempts WHERE batch_id = $1",
            &[&batch_id],
        )
        .await?
        .get("n"))
}

/// A counter read that failed: the database's error as any other, a corrupt name as internal.
pub fn counter_error(e: counters::CounterError) -> ApiError {
    match e {
        counters::CounterError::Db(e) => e.into(),
        counters::CounterError::Pool(e) => e.into(),
        other => ApiError::Internal(other.into()),
    }
}

/// The latest minute a contact of the batch was deferred to by a rule that names one (the
/// recipient or a state's hours, a no-call day, a cap): no ETA is earlier. One step of a backward range of the due index; callers ask
/// only when the counters say such contacts wait (else it would walk the queue to no avail).
pub async fn held_until(
    client: &impl GenericClient,
    batch_id: Uuid,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    Ok(client
        .query_opt(
            "SELECT next_attempt_at FROM contacts
             WHERE batch_id = $1 AND state = $2
               AND hold_reason IN ('recipient_hours', 'frequency_cap', 'state_hours',
                                   'state_no_call_day', 'state_call_cap')
               AND isfinite(next_attempt_at)
             ORDER BY next_attempt_at DESC LIMIT 1",
            &[&batch_id, &ContactState::Queued],
        )
        .await?
        .map(|r| r.get("next_attempt_at")))
}

/// Dialgen's `statistics` of a batch (shared::domain::stats: cancelled contacts have their own
/// count and stay out of the success rate).
pub fn statistics(b: &Batch, c: &ContactCounts) -> Statistics {
    Statistics::of(c, b.state.is_final())
}

/// Dialgen's `timestamps` object.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timestamps {
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
}

/// The batch's timestamps.
pub fn timestamps(b: &Batch) -> Timestamps {
    Timestamps {
        created_at: api_time(b.created_at),
        started_at: api_time_opt(b.started_at),
        completed_at: api_time_opt(b.completed_at),
    }
}

/// The check-status shape (seed 004), also served at the seed's `links.status`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckStatus {
    pub batch_id: Uuid,
    pub status: DialgenStatus,
    pub priority: i16,
    pub statistics: Statistics,
    pub performance: Performance,
    pub timestamps: Timestamps,
    /// The latest calls first, 10 unless `limit` says otherwise.
    pub recent_calls: Vec<RecentCall>,
    #[schema(value_type = Object)]
    pub webhooks: Value,
    pub agent_id: Uuid,
    pub user_id: Option<String>,
    /// Extension: the rows submitted, accepted and rejected.
    pub rows: RowCounts,
    /// Extension: rejected rows counted by reason.
    #[schema(value_type = std::collections::BTreeMap<String, i64>)]
    pub rejected: serde_json::Map<String, Value>,
    /// Extension: why the batch failed to ingest, or null.
    pub error: Option<BatchError>,
    /// Extension: the batch whose contacts this one re-calls (`POST …/retry`), or null.
    pub retry_of: Option<Uuid>,
    /// Extension: what holds the whole batch now, or null: `dnc_registry_stale` while its
    /// workspace relies on the national do-not-call registry without a copy fresh enough
    /// (docs/compliance.md); nothing of it is released until one is imported.
    pub hold_reason: Option<&'static str>,
}

/// Dialgen's `performance`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Performance {
    pub calls_per_second: f64,
    /// Seconds; null when nothing is pending or no rate is known yet.
    pub estimated_time_remaining: Option<f64>,
    /// Seconds since the start; null before it.
    pub elapsed_time: Option<f64>,
    /// Extension: contacts waiting on a compliance rule, by reason.
    pub deferred: Deferred,
}

/// Contacts deferred by each compliance rule (docs/compliance.md, docs/jurisdiction-rules.md).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deferred {
    pub recipient_hours: i64,
    pub unknown_timezone: i64,
    pub frequency_cap: i64,
    /// Outside a candidate state's hours (the rule pack).
    pub state_hours: i64,
    /// On a candidate state's no-call day (the rule pack).
    pub state_no_call_day: i64,
    /// A candidate state's per-number cap is reached (the rule pack).
    pub state_call_cap: i64,
}

/// One entry of `recentCalls`: one call, with its own outcome's status.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecentCall {
    pub id: Uuid,
    pub call_sid: Option<String>,
    pub status: DialgenCallStatus,
    pub outcome: Option<CallOutcome>,
    /// Whole seconds from answer to end; 0 if never answered; null until it ends.
    pub duration: Option<i64>,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub phone_number: String,
    pub contact_name: Option<String>,
}

/// A batch's row counts (extension).
#[derive(Debug, Serialize, ToSchema)]
pub struct RowCounts {
    pub submitted: i32,
    pub accepted: i32,
    /// Rejected at ingestion (do-not-call numbers included).
    pub rejected: i32,
}

impl RowCounts {
    /// The batch's counts.
    pub fn of(b: &Batch) -> Self {
        Self {
            submitted: b.total_rows,
            accepted: b.accepted_rows,
            rejected: b.rejected_rows,
        }
    }
}

/// Why a batch failed (extension).
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchError {
    pub code: Option<String>,
    pub message: String,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Reads an outcome column; a name outside the vocabulary is a corrupt row.
pub fn outcome_column(value: Option<&str>) -> Result<Option<CallOutcome>, ApiError> {
    value
        .map(|o| {
            CallOutcome::parse(o).ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!("an attempt has an invalid outcome {o:?}"))
            })
        })
        .transpose()
}

/// The check-status shape (also served at the seed's `links.status`), extended with the
/// rejected rows counted by reason and the row counts.
pub async fn check_status(
    client: &impl GenericClient,
    b: &Batch,
    recent: Option<i64>,
    now: DateTime<Utc>,
) -> Result<CheckStatus, ApiError> {
    let groups = counters::load(client, &[b.id])
        .await
        .map_err(counter_error)?
        .remove(&b.id)
        .unwrap_or_default();
    let contacts = counters::counts(&groups);
    let attempts = attempts(client, b.id).await?;
    let deferred = Deferred::of(&groups);
    // The latest allowed minute is one step of a backward index range, read only when some
    // contact waits for one.
    let held_until = if deferred.to_a_minute() > 0 {
        held_until(client, b.id).await?
    } else {
        None
    };
    let mut statistics = statistics(b, &contacts);
    statistics.held = Some(held(&groups));
    let performance = Performance::of(b, &contacts, attempts, deferred, held_until, now);
    let recent_calls = recent_calls(client, b.id, recent.unwrap_or(10)).await?;
    let rejected = rejected_by_reason(client, b.id).await?;
    let hold_reason = if b.state.is_final() {
        None
    } else {
        crate::workspace_checks::batch_hold(client, b.workspace_id, now).await?
    };
    Ok(CheckStatus {
        batch_id: b.id,
        status: b.dialgen_status(now),
        priority: b.priority,
        statistics,
        performance,
        timestamps: timestamps(b),
        recent_calls,
        webhooks: b.webhooks.clone(),
        agent_id: b.agent_id,
        user_id: b.user_id.clone(),
        rows: RowCounts::of(b),
        rejected,
        error: b.error.as_ref().map(|m| BatchError {
            code: b.error_code.clone(),
            message: m.clone(),
        }),
        retry_of: b.retry_of,
        hold_reason,
    })
}

impl Deferred {
    /// The queued contacts of a batch's counter `groups`, by the rule that holds them.
    fn of(groups: &[counters::Group]) -> Self {
        let held = |reason: &str| -> i64 {
            groups
                .iter()
                .filter(|g| {
                    g.state == ContactState::Queued && g.hold_reason.as_deref() == Some(reason)
                })
                .map(|g| g.n)
                .sum()
        };
        Self {
            recipient_hours: held("recipient_hours"),
            unknown_timezone: held("unknown_timezone"),
            frequency_cap: held("frequency_cap"),
            state_hours: held("state_hours"),
            state_no_call_day: held("state_no_call_day"),
            state_call_cap: held("state_call_cap"),
        }
    }

    /// The contacts held to a known minute (the ETA index's reasons).
    fn to_a_minute(&self) -> i64 {
        self.recipient_hours
            + self.frequency_cap
            + self.state_hours
            + self.state_no_call_day
            + self.state_call_cap
    }
}

/// `statistics.held`: the queued contacts a rule holds now, whatever the rule.
fn held(groups: &[counters::Group]) -> i64 {
    groups
        .iter()
        .filter(|g| g.state == ContactState::Queued && g.hold_reason.is_some())
        .map(|g| g.n)
        .sum()
}

impl Performance {
    /// Batch `b`'s rate so far and what is left of it at `now`: `attempts` calls made,
    /// `contacts` counted, `deferred` of them held until `held_until` at the latest.
    fn of(
        b: &Batch,
        contacts: &ContactCounts,
        attempts: i64,
        deferred: Deferred,
        held_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Self {
        let elapsed = b.started_at.map(|s| {
            (now.min(b.completed_at.unwrap_or(now)) - s)
                .num_milliseconds()
                .max(0) as f64
                / 1000.0
        });
        let cps = match elapsed {
            Some(secs) if secs > 0.0 => attempts as f64 / secs,
            _ => 0.0,
        };
        let pending = contacts.total - contacts.processed();
        // Contacts a compliance rule deferred (docs/compliance.md) wait at least until their
        // next allowed minute, whatever the rate: the ETA is never earlier than the last of
        // those.
        let wait_secs = held_until.map_or(0.0, |t| (t - now).num_seconds().max(0) as f64);
        // The calls left, at the rate so far, are spent only while the job's window is open
        // (the walk the monitor's ETA takes): a window that closes tonight pushes the end to
        // tomorrow. `None` when the window never opens again.
        let by_rate = if cps > 0.0 {
            super::eta::eta(&b.window(), now, pending as f64 / cps)
                .map(|end| (end - now).num_milliseconds().max(0) as f64 / 1000.0)
        } else {
            Some(0.0)
        };
        let eta = (pending > 0 && (cps > 0.0 || wait_secs > 0.0))
            .then(|| by_rate.map(|by_rate| by_rate.max(wait_secs).round()))
            .flatten();
        Self {
            calls_per_second: round2(cps),
            estimated_time_remaining: eta,
            elapsed_time: elapsed.map(|e| e.round()),
            deferred,
        }
    }
}

/// The `limit` latest calls of batch `batch_id` (all of them when `limit` is negative).
async fn recent_calls(
    client: &impl GenericClient,
    batch_id: Uuid,
    limit: i64,
) -> Result<Vec<RecentCall>, ApiError> {
    let recent_rows = client
        .query(
            "SELECT a.id, a.carrier_call_sid, a.outcome, a.answered_at, a.ended_at, a.created_at, a.to_number,
                    c.name AS contact_name
             FROM dial_attempts a JOIN contacts c ON c.id = a.contact_id
             WHERE a.batch_id = $1 ORDER BY a.created_at DESC, a.id DESC LIMIT $2",
            &[&batch_id, &(if limit < 0 { i64::MAX } else { limit })],
        )
        .await?;
    // Each entry is one call: its own outcome's status (a busy call is MISSED even while its
    // contact waits for a retry), the shared duration and time rule.
    recent_rows
        .iter()
        .map(|r| {
            let outcome = outcome_column(r.get("outcome"))?;
            Ok(RecentCall {
                id: r.get("id"),
                call_sid: r.get("carrier_call_sid"),
                status: dialgen_call_status(outcome),
                outcome,
                duration: call_duration_secs(r.get("answered_at"), r.get("ended_at")),
                created_at: api_time(r.get("created_at")),
                phone_number: r.get("to_number"),
                contact_name: r.get("contact_name"),
            })
        })
        .collect()
}

/// Batch `batch_id`'s rejected rows counted by reason.
async fn rejected_by_reason(
    client: &impl GenericClient,
    batch_id: Uuid,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let mut rejected = serde_json::Map::new();
    for r in client.query("SELECT reason, count(*) AS n FROM rejected_rows WHERE batch_id = $1 GROUP BY reason ORDER BY reason", &[&batch_id]).await? {
        rejected.insert(r.get::<_, String>("reason"), Value::from(r.get::<_, i64>("n")));
    }
    Ok(rejected)
}
