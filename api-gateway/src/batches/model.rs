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

/// The columns [`Batch::from_row`] reads, in order.
pub const COLUMNS: &str = "id, workspace_id, surface, name, agent_id, user_id, state, ingest_state, \
    max_concurrent_dials, \
    COALESCE(max_calls_per_second, (SELECT COALESCE(w.max_calls_per_second, w.cps_ceiling) \
        FROM workspaces w WHERE w.id = batches.workspace_id)) AS max_calls_per_second, \
    priority, schedule, timezone, scheduled_start_time, \
    from_phone_number_ids, retry_max_attempts, retry_busy_delay_ms, retry_no_answer_delay_ms, webhooks, \
    tags, pending_settings, total_rows, accepted_rows, rejected_rows, error, error_code, created_at, \
    started_at, completed_at, machine_detection, retry_of";

/// The condition every lookup and list of batches adds: a batch whose body is still being
/// received, or whose body proved invalid after its chunks were published, does not exist for
/// the API (docs/ingest.md, "Streaming at the gateway").
pub const VISIBLE: &str = "ingest_state NOT IN ('receiving', 'aborted')";

/// How many columns [`COLUMNS`] names (a query may select more after them).
pub const COLUMN_COUNT: usize = 31;

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
    /// Reads a row selected with [`COLUMNS`].
    pub fn from_row(row: &Row) -> Result<Self, ApiError> {
        let corrupt =
            |what: &str| ApiError::Internal(anyhow::anyhow!("batch row has an invalid {what}"));
        let surface = Surface::parse(row.get(2)).ok_or_else(|| corrupt("surface"))?;
        let schedule: Option<Value> = row.get(11);
        Ok(Self {
            id: row.get(0),
            workspace_id: row.get(1),
            surface,
            name: row.get(3),
            agent_id: row.get(4),
            user_id: row.get(5),
            state: JobState::parse(row.get(6)).ok_or_else(|| corrupt("state"))?,
            ingest_state: IngestState::parse(row.get(7)).ok_or_else(|| corrupt("ingest state"))?,
            max_concurrent_dials: row.get(8),
            max_calls_per_second: row.get(9),
            priority: row.get(10),
            schedule: StoredSchedule::load(schedule, row.get(12)),
            timezone: row.get(12),
            scheduled_start_time: row.get(13),
            from_phone_number_ids: row.get(14),
            retry: RetryStrategy {
                max_attempts: row.get::<_, i32>(15) as u32,
                busy_delay: row.get::<_, i64>(16) as u64,
                no_answer_delay: row.get::<_, i64>(17) as u64,
                voicemail_delay: None,
            },
            webhooks: row.get(18),
            tags: row.get(19),
            pending_settings: row.get(20),
            total_rows: row.get(21),
            accepted_rows: row.get(22),
            rejected_rows: row.get(23),
            error: row.get(24),
            error_code: row.get(25),
            created_at: row.get(26),
            started_at: row.get(27),
            completed_at: row.get(28),
            machine_detection: match row.get::<_, Option<&str>>("machine_detection") {
                None => None,
                Some(m) => {
                    Some(MachineDetection::parse(m).ok_or_else(|| corrupt("machine detection"))?)
                }
            },
            retry_of: row.get("retry_of"),
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
    /// `GET /api/batch_dial_jobs/{id}` only (extension): the live monitor page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub links: Option<JobLinks>,
}

/// A job's links (extension).
#[derive(Debug, Serialize, ToSchema)]
pub struct JobLinks {
    /// The monitor page, with a token valid 7 days for this job only.
    #[schema(format = "uri")]
    pub dashboard: String,
}
