//! Pausing, resuming and cancelling a batch by id alone, for the operator's CLI (`api-gateway
//! batch pause|resume|cancel`). The transitions are `JobState`'s, as for `/paused` and
//! `/cancel`; a pause applies the settings `PUT` kept while the job was active, and a cancel
//! commits the job's state first and alone (no new call starts after that commit), then moves
//! its queued contacts to `cancelled` in a statement of its own.

use deadpool_postgres::GenericClient;
use serde_json::Value;
use uuid::Uuid;

use shared::db::Pool;
use shared::domain::JobState;

use super::model::{Batch, COLUMNS};
use crate::error::ApiError;

async fn lock(client: &impl GenericClient, id: Uuid) -> Result<Batch, ApiError> {
    let sql = format!("SELECT {COLUMNS} FROM batches WHERE id = $1 FOR UPDATE");
    let row = client
        .query_opt(&sql, &[&id])
        .await?
        .ok_or(ApiError::NotFound("batch"))?;
    Batch::from_row(&row)
}

/// Loads any workspace's batch.
pub async fn load(client: &impl GenericClient, id: Uuid) -> Result<Batch, ApiError> {
    let sql = format!("SELECT {COLUMNS} FROM batches WHERE id = $1");
    let row = client
        .query_opt(&sql, &[&id])
        .await?
        .ok_or(ApiError::NotFound("batch"))?;
    Batch::from_row(&row)
}

/// Pauses (`true`) or resumes/starts (`false`) batch `id`.
pub async fn set_paused(db: &Pool, id: Uuid, paused: bool) -> Result<Batch, ApiError> {
    let mut client = db.get().await?;
    let txn = client.transaction().await?;
    let batch = lock(&txn, id).await?;
    let next = batch
        .state
        .set_paused(paused)
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    if next != batch.state {
        txn.execute(
            "UPDATE batches SET state = $2, started_at = COALESCE(started_at, CASE WHEN $2 = 'active' THEN now() END), updated_at = now() WHERE id = $1",
            &[&id, &next.as_str()],
        )
        .await?;
        if next == JobState::Paused
            && let Some(pending) = batch.pending_settings.as_ref().and_then(Value::as_object)
        {
            crate::routes::vogent::apply_settings(&txn, id, pending).await?;
        }
    }
    let batch = load(&txn, id).await?;
    txn.commit().await?;
    Ok(batch)
}

/// Cancels batch `id`; returns it and how many queued contacts were cancelled.
pub async fn cancel(db: &Pool, id: Uuid) -> Result<(Batch, u64), ApiError> {
    let mut client = db.get().await?;
    let txn = client.transaction().await?;
    let batch = lock(&txn, id).await?;
    let next = batch
        .state
        .cancel()
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    txn.execute(
        "UPDATE batches SET state = $2, completed_at = now(), updated_at = now() WHERE id = $1",
        &[&id, &next.as_str()],
    )
    .await?;
    txn.commit().await?;
    let n = client
        .execute(
            "UPDATE contacts SET state = 'cancelled', updated_at = now() WHERE batch_id = $1 AND state = 'queued'",
            &[&id],
        )
        .await?;
    Ok((load(&client, id).await?, n))
}
