//! The job-life duties of the scheduler besides releasing: settling cancelled jobs' contacts
//! and completing jobs whose contacts are all final (with their `batch.completed` webhook).

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde_json::json;
use shared::domain::timing::{api_time, api_time_opt};
use shared::domain::{ContactState, IngestState, JobState, Statistics};
use uuid::Uuid;

use crate::error::ReleaseError;

/// Moves the still-queued contacts of cancelled jobs to `cancelled`. A cancelled job is
/// revisited each tick until none of its contacts is queued, released or dialing (a call in
/// flight at the cancel may still schedule a retry), then marked settled and left alone.
pub async fn sweep_cancelled(db: &Pool, now: DateTime<Utc>) -> Result<u64, ReleaseError> {
    let client = db.get().await?;
    let cancelled = client
        .execute(
            "UPDATE contacts c SET state = $2, updated_at = $1
             FROM batches b
             WHERE b.state = $3 AND b.settled_at IS NULL
               AND c.batch_id = b.id AND c.state = $4",
            &[
                &now,
                &ContactState::Cancelled,
                &JobState::Cancelled,
                &ContactState::Queued,
            ],
        )
        .await?;
    client
        .execute(
            "UPDATE batches b SET settled_at = $1
             WHERE b.state = $2 AND b.settled_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.batch_id = b.id AND c.state = $3)
               AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.batch_id = b.id
                                 AND c.state IN ($4, $5))",
            &[
                &now,
                &JobState::Cancelled,
                &ContactState::Queued,
                &ContactState::Released,
                &ContactState::Dialing,
            ],
        )
        .await?;
    if cancelled > 0 {
        tracing::info!(cancelled, "queued contacts of cancelled jobs cancelled");
    }
    Ok(cancelled)
}

/// Moves contacts released more than `timeout` before `now` back to `queued` (see
/// `ReleaseSettings::release_timeout`).
pub async fn requeue_stale(
    db: &Pool,
    now: DateTime<Utc>,
    timeout: std::time::Duration,
) -> Result<u64, ReleaseError> {
    let Ok(timeout) = chrono::Duration::from_std(timeout) else {
        return Ok(0);
    };
    let client = db.get().await?;
    // The IN list repeats contacts_in_flight's predicate so the planner walks that small
    // partial index instead of the whole table (a one-off statement is planned with its
    // parameters' values, so typed states match the index's predicate).
    let n = client
        .execute(
            "UPDATE contacts SET state = $3, updated_at = $1
             WHERE state IN ($4, $5) AND state = $4 AND released_at < $2",
            &[
                &now,
                &(now - timeout),
                &ContactState::Queued,
                &ContactState::Released,
                &ContactState::Dialing,
            ],
        )
        .await?;
    if n > 0 {
        tracing::warn!(requeued = n, "released contacts never picked up; requeued");
    }
    Ok(n)
}

/// Completes every active, fully ingested job with no contact queued, released or dialing, and
/// queues its `onBatchComplete` webhook in the same transaction. Returns the completed jobs.
///
/// Safe with several schedulers: the guard on `active` is re-checked under the row lock,
/// so each job completes (and gets its webhook row) once; the delivery row is also unique on
/// `(event, subject_id, url)`.
pub async fn complete_finished(db: &Pool, now: DateTime<Utc>) -> Result<Vec<Uuid>, ReleaseError> {
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    let done = tx
        .query(
            "UPDATE batches b SET state = $2, completed_at = $1, updated_at = $1
             WHERE b.state = $3 AND b.ingest_state = $4
               AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.batch_id = b.id AND c.state = $5)
               AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.batch_id = b.id
                                 AND c.state IN ($6, $7))
             RETURNING b.id, b.workspace_id, b.agent_id, b.user_id,
                       b.webhooks->>'onBatchComplete' AS on_batch_complete, b.created_at, b.started_at",
            &[
                &now,
                &JobState::Completed,
                &JobState::Active,
                &IngestState::Ready,
                &ContactState::Queued,
                &ContactState::Released,
                &ContactState::Dialing,
            ],
        )
        .await?;
    let mut completed = Vec::with_capacity(done.len());
    for row in done {
        let batch_id: Uuid = row.get("id");
        completed.push(batch_id);
        tracing::info!(%batch_id, "job completed");
        let Some(url) = row.get::<_, Option<String>>("on_batch_complete") else {
            continue;
        };
        // Counted as check-status counts them (the batch counters and the one rule of
        // shared::domain::stats), so the webhook and the API agree.
        let counts = shared::db::counters::load_counts(&tx, &[batch_id])
            .await?
            .remove(&batch_id)
            .unwrap_or_default();
        let payload = json!({
            "event": "batch.completed",
            "batchId": batch_id,
            "agentId": row.get::<_, Uuid>("agent_id"),
            "userId": row.get::<_, Option<String>>("user_id"),
            "statistics": Statistics::of(&counts, true),
            "timestamps": {
                "createdAt": api_time(row.get("created_at")),
                "startedAt": api_time_opt(row.get("started_at")),
                "completedAt": api_time(now),
            },
        });
        tx.execute(
            "INSERT INTO webhook_deliveries
                 (id, workspace_id, batch_id, event, subject_id, url, payload, next_attempt_at)
             VALUES ($1, $2, $3, 'batch.completed', $3, $4, $5, $6)
             ON CONFLICT (event, subject_id, url) DO NOTHING",
            &[
                &Uuid::now_v7(),
                &row.get::<_, Uuid>("workspace_id"),
                &batch_id,
                &url,
                &payload,
                &now,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(completed)
}
