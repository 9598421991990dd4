//! Pausing, resuming and cancelling a batch: the one implementation behind Vogent's `/paused`
//! and `/cancel` (scoped to the key's workspace) and the operator's CLI (`api-gateway batch
//! pause|resume|cancel`, any workspace). The transitions are `JobState`'s; a pause applies the settings `PUT` kept while the job was active, and a cancel
//! commits the job's state first and alone (no new call starts after that commit), then moves
//! its queued contacts to `cancelled` in a statement of its own.

use deadpool_postgres::GenericClient;
use serde_json::{Map, Value};
use uuid::Uuid;

use shared::db::Pool;
use shared::domain::{JobState, MachineDetection};

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
            "UPDATE batches SET state = $2, started_at = COALESCE(started_at, CASE WHEN $2 = 'active' THEN now() END), updated_at = now() WHERE id = $1",
            &[&id, &next.as_str()],
        )
        .await?;
        if next == JobState::Paused
            && let Some(pending) = batch.pending_settings.as_ref().and_then(Value::as_object)
        {
            apply_settings(&txn, id, pending).await?;
        }
    }
    let batch = scope.select(&txn, id, "").await?;
    txn.commit().await?;
    Ok(batch)
}

/// Writes a settings change (as `PUT` spells it) into the batch's columns.
pub(crate) async fn apply_settings(
    client: &impl GenericClient,
    id: Uuid,
    change: &Map<String, Value>,
) -> Result<(), ApiError> {
    let schedule = change.get("schedule");
    let timezone = schedule
        .and_then(|s| s.get("timezone"))
        .and_then(Value::as_str);
    let ids: Option<Vec<Uuid>> = change
        .get("fromPhoneNumberIds")
        .map(|v| serde_json::from_value(v.clone()))
        .transpose()
        .map_err(|e| ApiError::Internal(e.into()))?;
    // Stored (and kept in `pending`) by its one spelling; anything else is a corrupt row.
    let machine_detection = match change.get("machineDetection") {
        None | Some(Value::Null) => None,
        Some(m) => Some(
            m.as_str()
                .and_then(MachineDetection::parse)
                .ok_or_else(|| {
                    ApiError::Internal(anyhow::anyhow!("bad pending machineDetection {m}"))
                })?
                .as_str(),
        ),
    };
    client
        .execute(
            "UPDATE batches SET
                 name = COALESCE($2, name),
                 max_concurrent_dials = COALESCE($3, max_concurrent_dials),
                 schedule = COALESCE($4, schedule),
                 timezone = COALESCE($5, timezone),
                 from_phone_number_ids = COALESCE($6, from_phone_number_ids),
                 machine_detection = CASE WHEN $7 THEN $8 ELSE machine_detection END,
                 webhooks = COALESCE($9, webhooks),
                 max_calls_per_second = COALESCE($10, max_calls_per_second),
                 pending_settings = NULL,
                 updated_at = now()
             WHERE id = $1",
            &[
                &id,
                &change.get("name").and_then(Value::as_str),
                &change
                    .get("maxConcurrentDials")
                    .and_then(Value::as_i64)
                    .map(|n| n as i32),
                &schedule,
                &timezone,
                &ids,
                &change.contains_key("machineDetection"),
                &machine_detection,
                &change.get("webhooks"),
                &change
                    .get("maxCallsPerSecond")
                    .and_then(Value::as_i64)
                    .map(|n| n as i32),
            ],
        )
        .await?;
    Ok(())
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
            "UPDATE contacts SET state = 'cancelled', updated_at = now()
             WHERE batch_id = $1 AND state = 'queued'",
            &[&id],
        )
        .await?;
    Ok(n)
}
