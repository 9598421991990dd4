//! Failing a batch whose rows cannot all arrive (timed out, or a chunk was poison), and telling
//! the client through its `onBatchFailed` webhook.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use shared::domain::{IngestState, JobState};
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// Error codes stored in `batches.error_code` and sent as the webhook's `code`.
pub mod code {
    /// Not every chunk committed within `INGEST_TIMEOUT_SECS` of the last progress.
    pub const INGEST_TIMEOUT: &str = "ingest_timeout";
    /// A chunk of the batch could not be decoded or stored; it was dead-lettered.
    pub const POISON_CHUNK: &str = "poison_chunk";
}

/// Marks a still-ingesting batch failed (`ingest_state` and `state`) with `error`, and queues the
/// `batch.failed` webhook if the batch asked for one. Returns whether this call failed it (false
/// if it had already left `ingesting`, or if `workspace_id` is given and does not own it).
pub async fn fail_batch(
    client: &impl GenericClient,
    batch_id: Uuid,
    workspace_id: Option<Uuid>,
    error_code: &str,
    error: &str,
    now: DateTime<Utc>,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "UPDATE batches SET ingest_state = $5, state = $6,
                 error = $3, error_code = $4, updated_at = now()
             WHERE id = $1 AND ingest_state = $7
               AND ($2::uuid IS NULL OR workspace_id = $2)
             RETURNING workspace_id, agent_id, webhooks->>'onBatchFailed' AS on_batch_failed",
            &[
                &batch_id,
                &workspace_id,
                &error,
                &error_code,
                &IngestState::Failed,
                &JobState::Failed,
                &IngestState::Ingesting,
            ],
        )
        .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let workspace: Uuid = row.get("workspace_id");
    let agent: Uuid = row.get("agent_id");
    let url: Option<String> = row.get("on_batch_failed");
    tracing::warn!(%batch_id, error_code, error, "batch failed during ingestion");
    if let Some(url) = url.filter(|u| !u.trim().is_empty()) {
        let payload = json!({
            "event": "batch.failed",
            "batchId": batch_id,
            "agentId": agent,
            "error": error,
            "code": error_code,
            "timestamp": now.to_rfc3339_opts(SecondsFormat::Millis, true),
        });
        client
            .execute(
                "INSERT INTO webhook_deliveries
                     (id, workspace_id, batch_id, event, subject_id, url, payload)
                 VALUES ($1, $2, $3, 'batch.failed', $3, $4, $5)
                 ON CONFLICT (event, subject_id, url) DO NOTHING",
                &[&Uuid::now_v7(), &workspace, &batch_id, &url, &payload],
            )
            .await?;
    }
    Ok(true)
}
