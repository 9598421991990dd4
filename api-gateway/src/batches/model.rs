//! A batch as stored, and how each surface shows it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use shared::domain::status::{dialgen_status, vogent_status};
use shared::domain::timing::api_time;
use shared::domain::{
    DialgenStatus, IngestState, JobState, MachineDetection, RetryStrategy, Statistics, Surface,
    VogentStatus,
};
use shared::schedule::{StoredSchedule, Window};

use crate::error::ApiError;

/// The columns [`Batch::from_row`] reads, by name. Unqualified, so a query may alias the
/// table (`FROM batches b`); the effective rate comes from the `batch_calls_per_second`
/// function (migration V16), which names no table of the query. A query may select more
/// columns, under other names.
pub const COLUMNS: &str = "id, workspace_id, surface, name, agent_id, user_id, state, ingest_state, \
    max_concurrent_dials, \
    batch_calls_per_second(max_calls_per_second, workspace_id) AS max_calls_per_second, \
    priority, schedule, timezone, scheduled_start_time, \
    from_phone_number_ids, retry_max_attempts, retry_busy_delay_ms, retry_no_answer_delay_ms, webhooks, \
    tags, pending_settings, total_rows, accepted_rows, rejected_rows, error, error_code, created_at, \
    started_at, completed_at, machine_detection, retry_of";

/// The condition every lookup and list of batches adds: a batch whose body is still being
/// received, or whose body proved invalid after its chunks were published, does not exist for
/// the API (docs/ingest.md, "Streaming at the gateway").
pub const VISIBLE: &str = "ingest_state NOT IN ('receiving', 'aborted')";

/// The retry strategy stored as `{prefix}max_attempts`, `{prefix}busy_delay_ms` and
/// `{prefix}no_answer_delay_ms` (a batch's `retry_…`, a workspace's `default_…`), checked.
pub fn retry_columns(row: &Row, prefix: &str) -> Result<RetryStrategy, ApiError> {
    RetryStrategy::from_columns(
        row.try_get(format!("{prefix}max_attempts").as_str())?,
        row.try_get(format!("{prefix}busy_delay_ms").as_str())?,
        row.try_get(format!("{prefix}no_answer_delay_ms").as_str())?,
    )
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("{prefix}… columns: {e}")))
}

/// A batch (Vogent: job) as stored.
#[derive(Debug, Clone)]
pub struct Batch {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub surface: Surface,
    pub name: String,
    pub agent_id: Uuid,
    pub user_id: Option<String>,
    pub state: JobState,
    pub ingest_state: IngestState,
    pub max_concurrent_dials: i32,
    /// The rate the job's starts are bounded by: its own, else its workspace's (else, for a
    /// workspace without a rate, the workspace's ceiling), as the dial worker applies them.
    pub max_calls_per_second: i32,
    pub priority: i16,
    /// Unreadable ones keep the job closed, as in every role.
    pub schedule: StoredSchedule,
    pub timezone: String,
    pub scheduled_start_time: Option<DateTime<Utc>>,
    pub from_phone_number_ids: Vec<Uuid>,
    pub retry: RetryStrategy,
    pub webhooks: Value,
    pub tags: Vec<String>,
    pub pending_settings: Option<Value>,
    pub total_rows: i32,
    pub accepted_rows: i32,
    pub rejected_rows: i32,
    pub error: Option<String>,
    pub error_code: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Twilio's `MachineDetection` for the job's calls; `None` = off.
    pub machine_detection: Option<MachineDetection>,
    /// The batch this one re-calls contacts of (`POST …/retry`), if any.
    pub retry_of: Option<Uuid>,
}

impl Batch {
    /// Reads a row selected with [`COLUMNS`], by column name.
    pub fn from_row(row: &Row) -> Result<Self, ApiError> {
        let corrupt =
            |what: &str| ApiError::Internal(anyhow::anyhow!("batch row has an invalid {what}"));
        let retry = retry_columns(row, "retry_")?;
        let machine_detection = match row.try_get::<_, Option<&str>>("machine_detection")? {
            None => None,
            Some(m) => {
                Some(MachineDetection::parse(m).ok_or_else(|| corrupt("machine detection"))?)
            }
        };
        Ok(Self {
            id: row.try_get("id")?,
            workspace_id: row.try_get("workspace_id")?,
            surface: Surface::parse(row.try_get("surface")?).ok_or_else(|| corrupt("surface"))?,
            name: row.try_get("name")?,
            agent_id: row.try_get("agent_id")?,
            user_id: row.try_get("user_id")?,
            state: JobState::parse(row.try_get("state")?).ok_or_else(|| corrupt("state"))?,
            ingest_state: IngestState::parse(row.try_get("ingest_state")?)
                .ok_or_else(|| corrupt("ingest state"))?,
            max_concurrent_dials: row.try_get("max_concurrent_dials")?,
            max_calls_per_second: row.try_get("max_calls_per_second")?,
            priority: row.try_get("priority")?,
            schedule: StoredSchedule::load(row.try_get("schedule")?, row.try_get("timezone")?),
            timezone: row.try_get("timezone")?,
            scheduled_start_time: row.try_get("scheduled_start_time")?,
            from_phone_number_ids: row.try_get("from_phone_number_ids")?,
            retry,
            webhooks: row.try_get("webhooks")?,
            tags: row.try_get("tags")?,
            pending_settings: row.try_get("pending_settings")?,
            total_rows: row.try_get("total_rows")?,
            accepted_rows: row.try_get("accepted_rows")?,
            rejected_rows: row.try_get("rejected_rows")?,
            error: row.try_get("error")?,
            error_code: row.try_get("error_code")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            completed_at: row.try_get("completed_at")?,
            machine_detection,
            retry_of: row.try_get("retry_of")?,
        })
    }

    /// Loads one batch of `workspace`; another workspace's id is "not found".
    pub async fn load(
        client: &impl deadpool_postgres::GenericClient,
        workspace: Uuid,
        id: Uuid,
    ) -> Result<Self, ApiError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM batches WHERE id = $1 AND workspace_id = $2 AND {VISIBLE}"
        );
        let row = client
            .query_opt(&sql, &[&id, &workspace])
            .await?
            .ok_or(ApiError::NotFound("batch"))?;
        Self::from_row(&row)
    }

    /// The job's calling window.
    pub fn window(&self) -> Window {
        self.schedule.window(self.scheduled_start_time)
    }

    /// Vogent's status.
    pub fn vogent_status(&self) -> VogentStatus {
        vogent_status(self.state, self.ingest_state)
    }

    /// Dialgen's status at `now`.
    pub fn dialgen_status(&self, now: DateTime<Utc>) -> DialgenStatus {
        dialgen_status(self.state, self.ingest_state, self.window().is_open(now))
    }

    /// Vogent's job shape (seeds 000–003), with the extensions [`Job`] names.
    pub fn to_job(&self) -> Job {
        Job {
            id: self.id,
            max_concurrent_dials: self.max_concurrent_dials,
            name: self.name.clone(),
            status: self.vogent_status(),
            call_agent_id: self.agent_id,
            created_at: api_time(self.created_at),
            from_phone_number_ids: self.from_phone_number_ids.clone(),
            schedule: self.schedule.to_json(),
            user_id: self.user_id.clone(),
            pending: self.pending_settings.clone(),
            machine_detection: self.machine_detection,
            webhooks: self.webhooks.clone(),
            retry_of: self.retry_of,
            statistics: None,
            links: None,
            hold_reason: None,
        }
    }
}

/// A Vogent batch dial job (seeds 000–003).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: Uuid,
    pub max_concurrent_dials: i32,
    pub name: String,
    pub status: VogentStatus,
    pub call_agent_id: Uuid,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub from_phone_number_ids: Vec<Uuid>,
    /// `{days, timezone, disableSchedule}` as set, or null; a stored schedule that no longer
    /// reads is shown as stored.
    #[schema(value_type = Option<Object>)]
    pub schedule: Value,
    pub user_id: Option<String>,
    /// Settings changed by `PUT` while ACTIVE, applied at the next pause (seed 001), in the
    /// `PUT` body's spelling; null when none wait.
    #[schema(value_type = Option<Object>)]
    pub pending: Option<Value>,
    /// Extension: Twilio's `MachineDetection` for the job's calls; null = off.
    pub machine_detection: Option<MachineDetection>,
    /// Extension: Dialgen's webhooks object (`{}` when none).
    #[schema(value_type = Object)]
    pub webhooks: Value,
    /// Extension: the job whose contacts this one re-calls (`POST …/retry`), or null.
    pub retry_of: Option<Uuid>,
    /// `GET /api/batch_dial_jobs/{id}` only (extension): the job's progress, counted as
    /// Dialgen's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistics: Option<Statistics>,
    /// `GET /api/batch_dial_jobs/{id}`, the create and the retry only (extension): the live
    /// monitor page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub links: Option<JobLinks>,
    /// `GET /api/batch_dial_jobs/{id}` only (extension): what holds the whole job now
    /// (`dnc_registry_stale`); absent when nothing does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_reason: Option<&'static str>,
}

/// A job's links (extension).
#[derive(Debug, Serialize, ToSchema)]
pub struct JobLinks {
    /// The monitor page, with a token valid 7 days for this job only.
    #[schema(format = "uri")]
    pub dashboard: String,
}

impl JobLinks {
    /// The links of job `id`, minted now.
    pub fn of(config: &crate::config::Config, id: Uuid) -> Self {
        Self {
            dashboard: crate::monitor::link::dashboard_link(config, id, Utc::now()),
        }
    }
}
