//! Pausing, resuming and cancelling a batch: the one implementation behind Vogent's `/paused`
//! and `/cancel` (scoped to the key's workspace) and the operator's CLI (`api-gateway batch
//! pause|resume|cancel`, any workspace). The transitions are `JobState`'s; a pause applies the settings `PUT` kept while the job was active, and a cancel
//! commits the job's state first and alone (no new call starts after that commit), then moves
//! its queued contacts to `cancelled` in a statement of its own.

use deadpool_postgres::GenericClient;
use serde_json::Value;
use uuid::Uuid;

use shared::db::Pool;
use shared::domain::{ContactState, JobState};

use super::model::{Batch, COLUMNS, VISIBLE};
use crate::error::ApiError;

/// Whose batch a control may touch.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    /// Only the API key's workspace; another workspace's id is "not found" as `what`.
    Workspace {
        /// The key's workspace.
        id: Uuid,
        /// The noun of the 404 ("batch dial job").
        what: &'static str,
    },
    /// Any workspace's (the operator).
    Any,
}

impl Scope {
    async fn select(
        self,
        client: &impl GenericClient,
        id: Uuid,
        suffix: &str,
    ) -> Result<Batch, ApiError> {
        let (row, what) = match self {
            Scope::Workspace { id: ws, what } => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM batches WHERE id = $1 AND workspace_id = $2 AND {VISIBLE}{suffix}"
                );
                (client.query_opt(&sql, &[&id, &ws]).await?, what)
            }
            Scope::Any => {
                let sql =
                    format!("SELECT {COLUMNS} FROM batches WHERE id = $1 AND {VISIBLE}{suffix}");
                (client.query_opt(&sql, &[&id]).await?, "batch")
            }
        };
        Batch::from_row(&row.ok_or(ApiError::NotFound(what))?)
    }
}

/// Loads any workspace's batch.
pub async fn load(client: &impl GenericClient, id: Uuid) -> Result<Batch, ApiError> {
    Scope::Any.select(client, id, "").await
}

/// Pauses (`true`) or resumes/starts (`false`) batch `id`.
pub async fn set_paused(
    db: &Pool,
    scope: Scope,
    id: Uuid,
    paused: bool,
) -> Result<Batch, ApiError> {
    let mut client = db.get().await?;
    let txn = client.transaction().await?;
    let batch = scope.select(&txn, id, " FOR UPDATE").await?;
    let next = batch
        .state
        .set_paused(paused)
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    if next != batch.state {
        txn.execute(
            "UPDATE batches SET state = $2, started_at = COALESCE(started_at, CASE WHEN $2 = $3 THEN now() END), updated_at = now() WHERE id = $1",
            &[&id, &next, &JobState::Active],
        )
        .await?;
        if next == JobState::Paused
            && let Some(pending) = batch.pending_settings.as_ref().and_then(Value::as_object)
        {
            crate::routes::vogent::apply_settings(&txn, id, pending).await?;
        }
    }
    let batch = scope.select(&txn, id, "").await?;
    txn.commit().await?;
    Ok(batch)
}

/// Cancels batch `id`: commits the job's state first and alone, so no new call starts after
/// that commit, and returns the cancelled batch. Its queued contacts follow with
/// [`cancel_queued`] (the scheduler's cancel sweep is the backstop).
pub async fn cancel(db: &Pool, scope: Scope, id: Uuid) -> Result<Batch, ApiError> {
    let mut client = db.get().await?;
    let txn = client.transaction().await?;
    let batch = scope.select(&txn, id, " FOR UPDATE").await?;
    let next = batch
        .state
        .cancel()
        .map_err(|e| ApiError::Conflict(e.to_string()))?;
    txn.execute(
        "UPDATE batches SET state = $2, completed_at = now(), updated_at = now() WHERE id = $1",
        &[&id, &next.as_str()],
    )
    .await?;
    let batch = scope.select(&txn, id, "").await?;
    txn.commit().await?;
    Ok(batch)
}

/// Moves a cancelled job's queued contacts to `cancelled` (after the job's own state committed).
pub async fn cancel_queued(db: &Pool, id: Uuid) -> Result<u64, ApiError> {
    let client = db.get().await?;
    let n = client
        .execute(
            "UPDATE contacts SET state = $2, updated_at = now()
             WHERE batch_id = $1 AND state = $3",
            &[&id, &ContactState::Cancelled, &ContactState::Queued],
        )
        .await?;
    Ok(n)
}
