//! One release step: for every started job whose window is open, claim its due contacts,
//! publish their dial messages (publisher-confirmed), and only then commit the claim.
//!
//! # Several schedulers at once
//!
//! Each workspace is released in one transaction that first locks the workspace's row
//! (`FOR NO KEY UPDATE SKIP LOCKED`): while one scheduler releases a workspace, another skips
//! it this tick and works on other workspaces, so replicas share the work and the in-flight
//! counts a transaction reads cannot be raced by another scheduler. Within it, each job's row is
//! locked the same way and its state re-read, and contacts are claimed with
//! `FOR UPDATE SKIP LOCKED` and moved `queued → released` in the same statement. A contact is
//! released only by a committed transaction that saw it `queued`, so it is never released
//! twice; the claim commits only after the broker confirmed every message, so none is lost.
//!
//! # Pause and cancel
//!
//! The job's row lock makes pause and cancel atomic with release: the gateway's `UPDATE` of the
//! job waits for a release in progress (at most one publish, bounded by `publish_timeout`), and
//! once it commits no later transaction sees the job `active`. Messages already released for a
//! paused or cancelled job are handed back by the dial worker.
//!
//! If a publish fails the transaction rolls back; some messages of the failed batch may still
//! have reached the queue. The dial worker must therefore drop a `DialV1` whose contact is not
//! `released` with `attempts + 1 = attempt_no` (and `dial_attempts` is unique on
//! `(contact_id, attempt_no)`), so a stray message never dials.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use shared::compliance::RecipientHours;
use shared::compliance::jurisdiction::Pack;
use shared::domain::{ContactState, JobState};
use shared::queue::messages::DialV1;
use shared::queue::publisher::Outgoing;
use shared::queue::{Publisher, QueueError, Stream};
use shared::schedule::{StoredSchedule, Window};
use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;
use tracing::Instrument;
use uuid::Uuid;

use crate::compliance::{OpenZones, Policy, screen_head};
pub use crate::error::ReleaseError;
use crate::lifecycle;
use crate::plan::{self, JobDemand};

/// How much a tick may release.
#[derive(Debug, Clone)]
pub struct ReleaseSettings {
    /// A job may have at most `multiplier × maxConcurrentDials` contacts released or dialing
    /// (and a workspace `multiplier ×` its limit): enough that dial workers never wait for the
    /// scheduler, few enough that a pause strands little in the queue.
    pub in_flight_multiplier: u32,
    /// How long a publish may wait for the broker's confirms before the claim is rolled back.
    pub publish_timeout: Duration,
    /// A contact still `released` this long after its release (its message dead-lettered, or
    /// lost with a broker's disk) goes back to `queued` and is released again with the same
    /// attempt number, which the dial worker's unique `(contact_id, attempt_no)` makes safe.
    pub release_timeout: Duration,
    /// At most this many contacts per workspace per tick. Keeps each transaction (and so the
    /// time a pause may wait for the job's row lock) short when a big job starts; calls start
    /// at most at their CPS limit anyway, so this is far above what dialing consumes.
    pub max_per_workspace_tick: u32,
    /// The compliance rule pack the release decides with (loaded at start; see
    /// `shared::compliance::enforce::load_pack`).
    pub pack: &'static Pack,
}

impl Default for ReleaseSettings {
    fn default() -> Self {
        Self {
            in_flight_multiplier: 2,
            publish_timeout: Duration::from_secs(5),
            release_timeout: Duration::from_secs(15 * 60),
            max_per_workspace_tick: 500,
            pack: shared::compliance::enforce::shipped_pack(),
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseReport {
    /// Contacts moved `queued → released` and published.
    pub released: u64,
    /// Active jobs whose window was open.
    pub open_jobs: usize,
    /// Active jobs whose window was closed (or whose schedule could not be read).
    pub closed_jobs: usize,
    /// Workspaces left to another scheduler this tick (their row was locked).
    pub skipped_workspaces: usize,
    /// Queued contacts of cancelled jobs moved to `cancelled`.
    pub cancelled_contacts: u64,
    /// Contacts released longer than the release timeout, moved back to `queued`.
    pub requeued_stale: u64,
    /// Jobs that became `completed`.
    pub completed_jobs: Vec<Uuid>,
    /// Open jobs not released because their workspace relies on the do-not-call registry and
    /// has no copy fresh enough (`dnc_registry_stale`, `shared::compliance::registry`).
    pub registry_held_jobs: usize,
}

/// A stored count or limit as the unsigned number it stands for; a negative one (which the
/// columns' checks forbid) is an error naming `what`, never clamped to a plausible value.
fn unsigned<T: TryFrom<i64>>(value: impl Into<i64>, what: &str) -> Result<T, ReleaseError> {
    let value = value.into();
    T::try_from(value).map_err(|_| ReleaseError::Corrupt(format!("{what} is {value}")))
}

/// An active job as the release step sees it.
#[derive(Debug, Clone)]
struct OpenJob {
    id: Uuid,
    /// The job's own window (open now), for the next instant it and the recipient's hours are
    /// both open.
    window: Window,
    priority: i16,
    max_concurrent_dials: u32,
    /// The `traceparent` stored by the create request: the job's releases continue its trace.
    trace_context: Option<String>,
}

/// The open jobs of one workspace, highest priority first.
#[derive(Debug, Clone)]
struct WorkspaceJobs {
    id: Uuid,
    max_concurrent_dials: u32,
    /// The workspace's compliance policy.
    policy: Policy,
    jobs: Vec<OpenJob>,
}

/// One step of the scheduler at instant `now`: cancels the queued contacts of cancelled jobs,
/// requeues releases that never reached a dial worker, releases due contacts of open jobs, and
/// completes jobs whose contacts are all final.
#[tracing::instrument(skip_all, fields(%now))]
pub async fn release_once(
    db: &Pool,
    publisher: &Publisher,
    settings: &ReleaseSettings,
    now: DateTime<Utc>,
) -> Result<ReleaseReport, ReleaseError> {
    let mut report = ReleaseReport {
        cancelled_contacts: lifecycle::sweep_cancelled(db, now).await?,
        requeued_stale: lifecycle::requeue_stale(db, now, settings.release_timeout).await?,
        ..Default::default()
    };
    let released = release_open_jobs(db, publisher, settings, now, &mut report).await;
    // Completion needs only the database: it goes on while the broker is away.
    report.completed_jobs = lifecycle::complete_finished(db, now).await?;
    released?;
    Ok(report)
}

async fn release_open_jobs(
    db: &Pool,
    publisher: &Publisher,
    settings: &ReleaseSettings,
    now: DateTime<Utc>,
    report: &mut ReleaseReport,
) -> Result<(), ReleaseError> {
    for workspace in open_jobs(db, now, report).await? {
        match release_workspace(db, publisher, settings, &workspace, now).await? {
            Some(n) => report.released += n,
            None => report.skipped_workspaces += 1,
        }
    }
    Ok(())
}

/// Active jobs whose window is open at `now`, grouped by workspace (workspaces in the order of
/// their highest-priority job).
async fn open_jobs(
    db: &Pool,
    now: DateTime<Utc>,
    report: &mut ReleaseReport,
) -> Result<Vec<WorkspaceJobs>, ReleaseError> {
    let client = db.get().await?;
    let rows = client
        .query(
            "SELECT b.id, b.workspace_id, b.priority, b.schedule, b.scheduled_start_time,
                    b.max_concurrent_dials,
                    w.max_concurrent_dials AS workspace_max_concurrent_dials, b.trace_context, b.timezone,
                    w.recipient_hours_start, w.recipient_hours_end, w.allow_unknown_timezone,
                    w.max_calls_per_number_count, w.max_calls_per_number_days,
                    w.jurisdiction_rules,
                    w.dnc_registry_required,
                    (SELECT max(r.as_of) FROM dnc_registry_copies r
                     WHERE r.workspace_id = w.id) AS dnc_registry_as_of
             FROM batches b JOIN workspaces w ON w.id = b.workspace_id
             WHERE b.state = $1
             ORDER BY b.priority DESC, b.created_at, b.id",
            &[&JobState::Active],
        )
        .await?;
    let mut workspaces: Vec<WorkspaceJobs> = Vec::new();
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    let mut open_zones = OpenZones::new();
    for row in rows {
        let id: Uuid = row.try_get("id")?;
        let schedule = StoredSchedule::load(row.try_get("schedule")?, row.try_get("timezone")?);
        if let Some(error) = schedule.error() {
            tracing::warn!(batch_id = %id, %error, "unreadable schedule; job kept closed");
        }
        let window = schedule.window(row.try_get("scheduled_start_time")?);
        if !window.is_open(now) {
            report.closed_jobs += 1;
            continue;
        }
        report.open_jobs += 1;
        // A workspace that relies on the registry is not released without a fresh copy: the
        // safe harbour of 16 CFR 310.4(b)(3)(iv) and 47 CFR 64.1200(c)(2)(i)(D) needs one no
        // older than 31 days on the day of the call. Judged at this tick's `now`, so the release
        // after a fresh import goes on.
        if shared::compliance::registry::is_stale(
            row.try_get("dnc_registry_required")?,
            row.try_get("dnc_registry_as_of")?,
            now,
        ) {
            report.registry_held_jobs += 1;
            continue;
        }
        let workspace_id: Uuid = row.try_get("workspace_id")?;
        let slot = match index.get(&workspace_id) {
            Some(&slot) => slot,
            None => {
                workspaces.push(WorkspaceJobs {
                    id: workspace_id,
                    max_concurrent_dials: unsigned(
                        row.try_get::<_, i32>("workspace_max_concurrent_dials")?,
                        "a workspace's max_concurrent_dials",
                    )?,
                    policy: Policy::new(
                        RecipientHours::from_minutes(
                            row.try_get("recipient_hours_start")?,
                            row.try_get("recipient_hours_end")?,
                        ),
                        row.try_get("allow_unknown_timezone")?,
                        now,
                        &mut open_zones,
                    )
                    .with_cap(
                        row.try_get("max_calls_per_number_count")?,
                        row.try_get("max_calls_per_number_days")?,
                    )
                    .with_mode(row.try_get("jurisdiction_rules")?),
                    jobs: Vec::new(),
                });
                index.insert(workspace_id, workspaces.len() - 1);
                workspaces.len() - 1
            }
        };
        workspaces[slot].jobs.push(OpenJob {
            id,
            window,
            priority: row.try_get("priority")?,
            max_concurrent_dials: unsigned(
                row.try_get::<_, i32>("max_concurrent_dials")?,
                "a batch's max_concurrent_dials",
            )?,
            trace_context: row.try_get("trace_context")?,
        });
    }
    Ok(workspaces)
}

/// The contacts of job `$1` due at `$2` that the workspace's policy lets go now: queued (`$8`),
/// in open zones (`$4`, unknown ones when `$5`), under the frequency cap (`$6` in `$7` days),
/// and among those the screen judged allowed now (`$9`, [`screen_head`]).
/// The one predicate the due count and the claim share, so they cannot disagree.
macro_rules! due_contacts {
    () => {
        "FROM contacts
         WHERE batch_id = $1 AND state = $8 AND next_attempt_at <= $2
           AND ($4::text[] IS NULL
                OR (timezones <@ $4 AND (cardinality(timezones) > 0 OR $5)))
           AND frequency_cap_frees_at(workspace_id, phone_number, $2::timestamptz,
                                      $6::int, $7::int) IS NULL
           AND id = ANY ($9::uuid[])"
    };
}

/// How many of a job's contacts are due, up to `$3` ([`due_contacts!`]).
const DUE_COUNT_SQL: &str = concat!(
    "SELECT count(*) AS n FROM (SELECT 1 ",
    due_contacts!(),
    " LIMIT $3) due"
);

/// Claims up to `$3` due contacts of a job ([`due_contacts!`], and not on the do-not-call list),
/// in claim order, moving them to `released` (`$10`).
const CLAIM_SQL: &str = concat!(
    "WITH due AS (SELECT id ",
    due_contacts!(),
    "
           AND NOT EXISTS (SELECT 1 FROM dnc_numbers d
                           WHERE d.workspace_id = contacts.workspace_id
                             AND d.number = contacts.phone_number)
         ORDER BY next_attempt_at, row_index
         LIMIT $3
         FOR UPDATE SKIP LOCKED)
     UPDATE contacts c SET state = $10, released_at = $2, updated_at = $2, hold_reason = NULL
     FROM due WHERE c.id = due.id
     RETURNING c.id, c.attempts"
);

/// The two statements over [`due_contacts!`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// [`DUE_COUNT_SQL`].
    Count,
    /// [`CLAIM_SQL`].
    Claim,
}

/// Runs the `which` statement for `job_id` with at most `limit` contacts.
async fn query_due(
    tx: &Transaction<'_>,
    which: Due,
    job_id: Uuid,
    policy: &Policy,
    allowed: &[Uuid],
    limit: u32,
    now: DateTime<Utc>,
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let limit = i64::from(limit);
    let (open_zones, cap_count, cap_days) =
        (policy.open_zones(), policy.cap_count(), policy.cap_days());
    let params: [&(dyn ToSql + Sync); 10] = [
        &job_id,
        &now,
        &limit,
        &open_zones,
        &policy.allow_unknown_timezone,
        &cap_count,
        &cap_days,
        &ContactState::Queued,
        &allowed,
        &ContactState::Released,
    ];
    match which {
        Due::Count => tx.query(DUE_COUNT_SQL, &params[..9]).await,
        Due::Claim => tx.query(CLAIM_SQL, &params).await,
    }
}

/// Releases one workspace's due contacts in one transaction. `None` when another scheduler
/// holds the workspace.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace.id))]
async fn release_workspace(
    db: &Pool,
    publisher: &Publisher,
    settings: &ReleaseSettings,
    workspace: &WorkspaceJobs,
    now: DateTime<Utc>,
) -> Result<Option<u64>, ReleaseError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    if !lock_workspace(&tx, workspace.id).await? {
        return Ok(None);
    }
    let active = still_active(&tx, workspace).await?;
    let in_flight = in_flight(&tx, workspace.id).await?;
    let workspace_room = workspace_room(workspace, &in_flight, settings);
    let Screened {
        demands,
        screened,
        allowed,
    } = job_demands(
        &tx,
        workspace,
        &active,
        &in_flight,
        workspace_room,
        settings,
        now,
    )
    .await?;
    let grants = plan::allocate(&demands, workspace_room);
    let per_job = claim_all(&tx, workspace, &demands, &grants, &allowed, now).await?;
    if per_job.is_empty() {
        // The screen's suppressions and deferrals are kept even when nothing is released.
        if screened > 0 {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        return Ok(Some(0));
    }
    let released = per_job.iter().map(|(_, m)| m.len() as u64).sum::<u64>();
    let publish = tokio::time::timeout(
        settings.publish_timeout,
        publish_jobs(publisher, workspace, per_job),
    )
    .await;
    match publish {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tx.rollback().await?;
            return Err(e.into());
        }
        Err(_) => {
            tx.rollback().await?;
            return Err(ReleaseError::PublishTimeout(settings.publish_timeout));
        }
    }
    tx.commit().await?;
    shared::metrics::contacts_released(released);
    tracing::info!(released, "released");
    Ok(Some(released))
}

/// Locks the workspace's row for this transaction; `false` when another scheduler holds it.
async fn lock_workspace(tx: &Transaction<'_>, id: Uuid) -> Result<bool, ReleaseError> {
    let mine = tx
        .query_opt(
            "SELECT 1 FROM workspaces WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED",
            &[&id],
        )
        .await?;
    Ok(mine.is_some())
}

/// The workspace's jobs still active, re-read under lock: a job paused or cancelled since the
/// scan is left out, and one whose row the gateway is changing right now is skipped this tick.
async fn still_active(
    tx: &Transaction<'_>,
    workspace: &WorkspaceJobs,
) -> Result<Vec<Uuid>, ReleaseError> {
    let ids: Vec<Uuid> = workspace.jobs.iter().map(|j| j.id).collect();
    let rows = tx
        .query(
            "SELECT id FROM batches WHERE id = ANY($1) AND state = $2
             FOR NO KEY UPDATE SKIP LOCKED",
            &[&ids, &JobState::Active],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get("id")).collect())
}

/// The workspace's contacts released or dialing, by job.
async fn in_flight(
    tx: &Transaction<'_>,
    workspace_id: Uuid,
) -> Result<HashMap<Uuid, u64>, ReleaseError> {
    let mut in_flight = HashMap::new();
    // Written as the in-flight index's predicate so the planner matches it (a one-off
    // statement is planned with its parameters' values).
    let rows = tx
        .query(
            "SELECT batch_id, count(*) AS n FROM contacts
             WHERE workspace_id = $1 AND state IN ($2, $3)
             GROUP BY batch_id",
            &[
                &workspace_id,
                &ContactState::Released,
                &ContactState::Dialing,
            ],
        )
        .await?;
    for r in rows {
        let n = unsigned(r.try_get::<_, i64>("n")?, "an in-flight count")?;
        in_flight.insert(r.try_get("batch_id")?, n);
    }
    Ok(in_flight)
}

/// How many more contacts the workspace may release this tick: its in-flight bound less what
/// is in flight, and never more than the tick's own bound.
fn workspace_room(
    workspace: &WorkspaceJobs,
    in_flight: &HashMap<Uuid, u64>,
    settings: &ReleaseSettings,
) -> u32 {
    let workspace_in_flight: u64 = in_flight.values().sum();
    let room = u64::from(plan::in_flight_bound(
        workspace.max_concurrent_dials,
        settings.in_flight_multiplier,
    ))
    .saturating_sub(workspace_in_flight);
    // Saturating is right here: more room than a u32 holds is still capped by the tick's
    // own bound just below, so u32::MAX and the true value release the same.
    u32::try_from(room)
        .unwrap_or(u32::MAX)
        .min(settings.max_per_workspace_tick)
}

/// A job's room: its in-flight bound less what it has in flight.
fn job_room(job: &OpenJob, in_flight: &HashMap<Uuid, u64>, settings: &ReleaseSettings) -> u32 {
    let bound = plan::in_flight_bound(job.max_concurrent_dials, settings.in_flight_multiplier);
    // Saturating is right here: the bound is a u32, so more in flight than a u32 holds
    // leaves no room, exactly as the true count would.
    let used = u32::try_from(in_flight.get(&job.id).copied().unwrap_or(0)).unwrap_or(u32::MAX);
    bound.saturating_sub(used)
}

/// What the screens of one workspace's jobs found: each job's room and due count, how many
/// contacts they suppressed or deferred (written even when nothing is released, so the
/// transaction commits then too), and each job's contacts allowed now.
#[derive(Debug, Default)]
struct Screened {
    demands: Vec<JobDemand>,
    screened: u64,
    allowed: HashMap<Uuid, Vec<Uuid>>,
}

/// Each still-active job's room and due count, after screening the head of its queue.
async fn job_demands(
    tx: &Transaction<'_>,
    workspace: &WorkspaceJobs,
    active: &[Uuid],
    in_flight: &HashMap<Uuid, u64>,
    workspace_room: u32,
    settings: &ReleaseSettings,
    now: DateTime<Utc>,
) -> Result<Screened, ReleaseError> {
    let mut out = Screened::default();
    for job in workspace.jobs.iter().filter(|j| active.contains(&j.id)) {
        let room = job_room(job, in_flight, settings);
        let due = if room == 0 || workspace_room == 0 {
            0
        } else {
            let (screened, allowed) = screen_head(
                tx,
                job.id,
                &job.window,
                &workspace.policy,
                settings.pack,
                room,
                now,
            )
            .await?;
            out.screened += screened;
            let rows = query_due(
                tx,
                Due::Count,
                job.id,
                &workspace.policy,
                &allowed,
                room,
                now,
            )
            .await?;
            out.allowed.insert(job.id, allowed);
            let n: i64 = match rows.first() {
                Some(row) => row.try_get("n")?,
                None => 0,
            };
            // At most `room` (the LIMIT), so only a corrupt answer fails this.
            unsigned(n, "a due count")?
        };
        out.demands.push(JobDemand {
            id: job.id,
            priority: job.priority,
            room,
            due,
        });
    }
    Ok(out)
}

/// Claims each job's grant and builds its dial messages: one list per job, so each job's
/// messages are published inside that job's own span, which continues the batch's trace.
async fn claim_all(
    tx: &Transaction<'_>,
    workspace: &WorkspaceJobs,
    demands: &[JobDemand],
    grants: &[u32],
    allowed: &HashMap<Uuid, Vec<Uuid>>,
    now: DateTime<Utc>,
) -> Result<Vec<(Uuid, Vec<Outgoing>)>, ReleaseError> {
    let mut per_job = Vec::new();
    for (demand, &grant) in demands.iter().zip(grants) {
        if grant == 0 {
            continue;
        }
        let allowed = allowed.get(&demand.id).map_or(&[][..], Vec::as_slice);
        let claimed = query_due(
            tx,
            Due::Claim,
            demand.id,
            &workspace.policy,
            allowed,
            grant,
            now,
        )
        .await?;
        tracing::debug!(batch_id = %demand.id, released = claimed.len(), "claimed");
        let messages = claimed
            .iter()
            .map(|row| dial_message(row, demand.id, workspace.id))
            .collect::<Result<Vec<_>, _>>()?;
        if !messages.is_empty() {
            per_job.push((demand.id, messages));
        }
    }
    Ok(per_job)
}

/// The dial message of a claimed contact: its next attempt.
fn dial_message(
    row: &tokio_postgres::Row,
    batch_id: Uuid,
    workspace_id: Uuid,
) -> Result<Outgoing, ReleaseError> {
    let contact_id: Uuid = row.try_get("id")?;
    let attempts: u32 = unsigned(row.try_get::<_, i32>("attempts")?, "a contact's attempts")?;
    // From an i32, so one more always fits.
    let attempt_no = attempts + 1;
    let message = DialV1 {
        batch_id,
        workspace_id,
        contact_id,
        attempt_no,
    };
    Ok(Outgoing::json(&message)?.with_id(format!("{contact_id}:{attempt_no}")))
}

/// Publishes each job's dial messages inside a `release_job` span whose parent is the context
/// the job's create request stored, so the dial attempts join the batch's trace.
async fn publish_jobs(
    publisher: &Publisher,
    workspace: &WorkspaceJobs,
    per_job: Vec<(Uuid, Vec<Outgoing>)>,
) -> Result<(), QueueError> {
    for (job_id, messages) in per_job {
        let span = tracing::info_span!(
            "release_job",
            batch_id = %job_id,
            workspace_id = %workspace.id,
            released = messages.len()
        );
        let stored = workspace
            .jobs
            .iter()
            .find(|j| j.id == job_id)
            .and_then(|j| j.trace_context.as_deref());
        if let Some(traceparent) = stored {
            shared::telemetry::propagation::continue_trace(&span, traceparent);
        }
        publisher
            .publish_all(Stream::Dial, messages)
            .instrument(span)
            .await?;
    }
    Ok(())
}
