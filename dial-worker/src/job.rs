//! The job a dial belongs to: its row read once into a `Job`, cached briefly per process
//! ([`JobCache`]), and the `Gate` it sets for a call that wants to start now.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::compliance::RecipientHours;
use shared::compliance::jurisdiction::RuleMode;
use shared::domain::{ContactState, JobState, MachineDetection};
use shared::schedule::{StoredSchedule, Window};
use tokio::time::Instant;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::StepError;

/// Whether the job lets a call start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    Go,
    /// Back to `queued` (paused, not started, or the window is closed).
    Requeue,
    /// `cancelled` (the job is cancelled or over).
    Cancel,
}

impl Gate {
    /// What a contact handed back becomes.
    pub(crate) fn contact_state(self) -> ContactState {
        if self == Gate::Cancel {
            ContactState::Cancelled
        } else {
            ContactState::Queued
        }
    }
}

/// A job as the dial path needs it, its limits checked once when read.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) state: JobState,
    pub(crate) workspace_id: Uuid,
    pub(crate) job_limit: u32,
    /// The job's own rate; `None`: the workspace's rate alone bounds it.
    pub(crate) job_cps: Option<u32>,
    pub(crate) workspace_limit: u32,
    pub(crate) workspace_cps: Option<u32>,
    pub(crate) window: Window,
    pub(crate) answer_url: String,
    pub(crate) callers: Vec<(Uuid, String)>,
    /// `callers.len()`, as the slot script counts it.
    pub(crate) caller_pool: u32,
    /// The workspace's recipient calling hours (`None` = off) and whether unknown zones pass.
    pub(crate) recipient_hours: Option<RecipientHours>,
    pub(crate) allow_unknown_timezone: bool,
    /// The workspace's frequency cap: at most `.0` attempts to a number in `.1` days.
    pub(crate) cap: Option<(i32, i32)>,
    /// The workspace's `jurisdictionRules`: which rules of the pack apply.
    pub(crate) mode: RuleMode,
    /// The job asks the carrier to detect answering machines (`machineDetection`), and how.
    pub(crate) machine_detection: Option<MachineDetection>,
    /// The workspace's pre-dial check, `None` when off (`crate::predial`).
    pub(crate) predial: Option<crate::predial::decide::Predial>,
}

impl Job {
    pub(crate) fn gate(&self, now: DateTime<Utc>) -> Gate {
        if self.state == JobState::Active && self.window.is_open(now) {
            return Gate::Go;
        }
        match self.state.contact_state_when_handed_back() {
            ContactState::Cancelled => Gate::Cancel,
            _ => Gate::Requeue,
        }
    }
}

/// A short-lived per-process cache of jobs: a busy job's row is read a few times a second
/// rather than once per call. Pause and cancel still act at once for new calls, because the
/// attempt insert itself re-checks `batches.state = 'active'`; only limits and schedules may be
/// up to [`JOB_CACHE_TTL`] old.
#[derive(Debug, Clone, Default)]
pub struct JobCache {
    inner: Arc<std::sync::Mutex<CachedJobs>>,
}

/// Job → when it was read, and the job.
type CachedJobs = std::collections::HashMap<Uuid, (Instant, Arc<Job>)>;

/// How long a cached job is used.
pub const JOB_CACHE_TTL: Duration = Duration::from_millis(250);

impl JobCache {
    /// The cached copy, if younger than [`JOB_CACHE_TTL`]. Shared, not copied: the dial path
    /// looks at the job several times per call.
    fn fresh(&self, batch_id: Uuid) -> Option<Arc<Job>> {
        self.lock()
            .get(&batch_id)
            .filter(|(at, _)| at.elapsed() < JOB_CACHE_TTL)
            .map(|(_, job)| job.clone())
    }

    pub(crate) async fn get(
        &self,
        client: &deadpool_postgres::Client,
        batch_id: Uuid,
    ) -> Result<Arc<Job>, StepError> {
        if let Some(job) = self.fresh(batch_id) {
            return Ok(job);
        }
        let job = Arc::new(
            load_job(client, batch_id)
                .await?
                .ok_or_else(|| StepError::Invalid("no such batch".into()))?,
        );
        let mut map = self.lock();
        if map.len() > 10_000 {
            map.retain(|_, (at, _)| at.elapsed() < JOB_CACHE_TTL);
        }
        map.insert(batch_id, (Instant::now(), job.clone()));
        Ok(job)
    }

    /// Like `get`, taking a connection only when the cached copy is too old.
    pub(crate) async fn current(
        &self,
        db: &shared::db::Pool,
        batch_id: Uuid,
    ) -> Result<Arc<Job>, StepError> {
        if let Some(job) = self.fresh(batch_id) {
            return Ok(job);
        }
        let client = db.get().await?;
        self.get(&client, batch_id).await
    }

    /// Drops a job so the next read goes to the database.
    pub(crate) fn forget(&self, batch_id: Uuid) {
        self.lock().remove(&batch_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CachedJobs> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

const JOB_SQL: &str = "
    SELECT b.state, b.workspace_id, b.max_concurrent_dials AS job_limit,
           -- A job without a rate of its own follows its workspace's; in a workspace without
           -- one either, the workspace's ceiling bounds it (never no rate at all).
           COALESCE(b.max_calls_per_second,
                    CASE WHEN w.max_calls_per_second IS NULL THEN w.cps_ceiling END) AS job_cps,
           w.max_concurrent_dials AS workspace_limit, w.max_calls_per_second AS workspace_cps,
           b.schedule, b.timezone, b.scheduled_start_time, a.answer_url,
           w.recipient_hours_start, w.recipient_hours_end, w.allow_unknown_timezone,
           COALESCE(chosen.ids, pool.ids, '{}') AS caller_ids,
           COALESCE(chosen.numbers, pool.numbers, '{}') AS caller_numbers,
           w.max_calls_per_number_count, w.max_calls_per_number_days, b.machine_detection,
           w.jurisdiction_rules,
           w.predial_url, w.predial_timeout_ms, w.webhook_secret,
           CASE WHEN w.previous_webhook_secret_until > now() THEN w.previous_webhook_secret END
               AS previous_webhook_secret
    FROM batches b
    JOIN workspaces w ON w.id = b.workspace_id
    JOIN agents a ON a.id = b.agent_id
    -- The caller IDs: the job's own, in its order, those still there; without any, the
    -- workspace's, oldest first.
    LEFT JOIN LATERAL (
        SELECT array_agg(p.id ORDER BY u.ord) AS ids, array_agg(p.number ORDER BY u.ord) AS numbers
        FROM unnest(b.from_phone_number_ids) WITH ORDINALITY u(id, ord)
        JOIN phone_numbers p ON p.id = u.id AND p.deleted_at IS NULL) chosen ON true
    LEFT JOIN LATERAL (
        SELECT array_agg(p.id ORDER BY p.created_at, p.id) AS ids,
               array_agg(p.number ORDER BY p.created_at, p.id) AS numbers
        FROM phone_numbers p
        WHERE chosen.ids IS NULL AND p.workspace_id = b.workspace_id
          AND p.deleted_at IS NULL) pool ON true
    WHERE b.id = $1";

/// One row of [`JOB_SQL`], as stored.
struct JobRow {
    state: JobState,
    workspace_id: Uuid,
    job_limit: i32,
    job_cps: Option<i32>,
    workspace_limit: i32,
    workspace_cps: Option<i32>,
    schedule: Option<serde_json::Value>,
    timezone: String,
    scheduled_start_time: Option<DateTime<Utc>>,
    answer_url: String,
    recipient_hours_start: Option<i16>,
    recipient_hours_end: Option<i16>,
    allow_unknown_timezone: bool,
    caller_ids: Vec<Uuid>,
    caller_numbers: Vec<String>,
    max_calls_per_number_count: Option<i32>,
    max_calls_per_number_days: Option<i32>,
    machine_detection: Option<String>,
    jurisdiction_rules: Option<String>,
    predial_url: Option<String>,
    predial_timeout_ms: i32,
    webhook_secret: String,
    previous_webhook_secret: Option<String>,
}

impl JobRow {
    fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            state: r.try_get("state")?,
            workspace_id: r.try_get("workspace_id")?,
            job_limit: r.try_get("job_limit")?,
            job_cps: r.try_get("job_cps")?,
            workspace_limit: r.try_get("workspace_limit")?,
            workspace_cps: r.try_get("workspace_cps")?,
            schedule: r.try_get("schedule")?,
            timezone: r.try_get("timezone")?,
            scheduled_start_time: r.try_get("scheduled_start_time")?,
            answer_url: r.try_get("answer_url")?,
            recipient_hours_start: r.try_get("recipient_hours_start")?,
            recipient_hours_end: r.try_get("recipient_hours_end")?,
            allow_unknown_timezone: r.try_get("allow_unknown_timezone")?,
            caller_ids: r.try_get("caller_ids")?,
            caller_numbers: r.try_get("caller_numbers")?,
            max_calls_per_number_count: r.try_get("max_calls_per_number_count")?,
            max_calls_per_number_days: r.try_get("max_calls_per_number_days")?,
            machine_detection: r.try_get("machine_detection")?,
            jurisdiction_rules: r.try_get("jurisdiction_rules")?,
            predial_url: r.try_get("predial_url")?,
            predial_timeout_ms: r.try_get("predial_timeout_ms")?,
            webhook_secret: r.try_get("webhook_secret")?,
            previous_webhook_secret: r.try_get("previous_webhook_secret")?,
        })
    }

    /// The job, its limits and rates checked: the columns' CHECKs keep them at least 1, so a
    /// value outside `u32` is a corrupt row, never clamped into a plausible limit.
    fn into_job(self, batch_id: Uuid) -> Result<Job, StepError> {
        let subject = format!("batch {batch_id}");
        let count = |column: &str, v: i32| {
            u32::try_from(v).map_err(|_| StepError::corrupt(&subject, column, v))
        };
        let rate = |column: &str, v: Option<i32>| v.map(|v| count(column, v)).transpose();
        let callers: Vec<(Uuid, String)> = self
            .caller_ids
            .into_iter()
            .zip(self.caller_numbers)
            .collect();
        let caller_pool = u32::try_from(callers.len())
            .map_err(|_| StepError::corrupt(&subject, "caller ID pool size", callers.len()))?;
        Ok(Job {
            job_limit: count("max_concurrent_dials", self.job_limit)?,
            job_cps: rate("max_calls_per_second", self.job_cps)?,
            workspace_limit: count("workspace max_concurrent_dials", self.workspace_limit)?,
            workspace_cps: rate("workspace max_calls_per_second", self.workspace_cps)?,
            state: self.state,
            workspace_id: self.workspace_id,
            window: StoredSchedule::load(self.schedule, &self.timezone)
                .window(self.scheduled_start_time),
            answer_url: self.answer_url,
            callers,
            caller_pool,
            recipient_hours: RecipientHours::from_minutes(
                self.recipient_hours_start,
                self.recipient_hours_end,
            ),
            allow_unknown_timezone: self.allow_unknown_timezone,
            cap: self
                .max_calls_per_number_count
                .zip(self.max_calls_per_number_days),
            mode: shared::compliance::enforce::rule_mode(self.jurisdiction_rules.as_deref()),
            machine_detection: self
                .machine_detection
                .as_deref()
                .and_then(MachineDetection::parse),
            predial: self.predial_url.map(|url| crate::predial::decide::Predial {
                url,
                // The column's CHECK keeps it within 1 … 10,000.
                timeout: Duration::from_millis(u64::try_from(self.predial_timeout_ms).unwrap_or(1)),
                secrets: std::iter::once(self.webhook_secret)
                    .chain(self.previous_webhook_secret)
                    .collect(),
            }),
        })
    }
}

async fn load_job(
    client: &deadpool_postgres::Client,
    batch_id: Uuid,
) -> Result<Option<Job>, StepError> {
    let Some(r) = client.query_opt(JOB_SQL, &[&batch_id]).await? else {
        return Ok(None);
    };
    JobRow::from_row(&r)?.into_job(batch_id).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> JobRow {
        JobRow {
            state: JobState::Active,
            workspace_id: Uuid::from_u128(5),
            job_limit: 10,
            job_cps: Some(2),
            workspace_limit: 50,
            workspace_cps: None,
            schedule: None,
            timezone: "UTC".into(),
            scheduled_start_time: None,
            answer_url: "https://a.example/answer".into(),
            recipient_hours_start: None,
            recipient_hours_end: None,
            allow_unknown_timezone: true,
            caller_ids: vec![Uuid::from_u128(7), Uuid::from_u128(8)],
            caller_numbers: vec!["+14155550101".into(), "+14155550102".into()],
            max_calls_per_number_count: Some(3),
            max_calls_per_number_days: Some(7),
            machine_detection: Some("Enable".into()),
            jurisdiction_rules: Some("federal".into()),
            predial_url: None,
            predial_timeout_ms: 2000,
            webhook_secret: "whsec_AAAA".into(),
            previous_webhook_secret: None,
        }
    }

    #[test]
    fn a_job_is_read_as_stored() {
        let job = row().into_job(Uuid::nil()).unwrap();
        assert_eq!((job.job_limit, job.workspace_limit), (10, 50));
        assert_eq!((job.job_cps, job.workspace_cps), (Some(2), None));
        assert_eq!(job.caller_pool, 2);
        assert_eq!(job.mode, RuleMode::Federal);
        assert_eq!(job.callers[1], (Uuid::from_u128(8), "+14155550102".into()));
        assert_eq!(job.cap, Some((3, 7)));
        assert_eq!(job.machine_detection, Some(MachineDetection::Enable));
    }

    #[test]
    fn a_negative_limit_or_rate_is_corrupt_not_clamped() {
        let corrupt: [fn(&mut JobRow); 4] = [
            |r| r.job_limit = -1,
            |r| r.workspace_limit = -2,
            |r| r.job_cps = Some(-1),
            |r| r.workspace_cps = Some(-3),
        ];
        for spoil in corrupt {
            let mut r = row();
            spoil(&mut r);
            match r.into_job(Uuid::nil()) {
                Err(e @ StepError::Invalid(_)) => assert!(e.to_string().contains("out of range")),
                other => panic!("expected a corrupt row, got {other:?}"),
            }
        }
    }

    #[test]
    fn only_an_active_job_in_its_window_lets_a_call_start() {
        let now = Utc::now();
        for (state, gate) in [
            (JobState::Active, Gate::Go),
            (JobState::Paused, Gate::Requeue),
            (JobState::Created, Gate::Requeue),
            (JobState::Cancelled, Gate::Cancel),
            (JobState::Completed, Gate::Cancel),
            (JobState::Failed, Gate::Cancel),
        ] {
            let job = JobRow { state, ..row() }.into_job(Uuid::nil()).unwrap();
            assert_eq!(job.gate(now), gate, "{state}");
        }
    }
}
