//! From a queue message to a [`Disposition`]: decode, persist, and decide what the broker does
//! with the message. Poison (undecodable or impossible) chunks are dead-lettered with their
//! reason, and their batch, when it can be identified, is failed with that reason.

use chrono::Utc;
use deadpool_postgres::Pool;
use serde_json::Value;
use shared::queue::consumer::{Disposition, Incoming};
use shared::queue::messages::IngestChunkV1;
use uuid::Uuid;

use crate::chunk::{ChunkError, ChunkOutcome, handle_chunk};
use crate::fail::{code, fail_batch};
use crate::normalize::NumberCheck;

/// What the message handler needs; cheap to clone (one per message).
#[derive(Clone)]
pub struct Handler {
    /// The database.
    pub db: Pool,
    /// How strictly numbers are checked.
    pub check: NumberCheck,
}

impl Handler {
    /// Handles one message from the ingest queue.
    pub async fn on_message(&self, incoming: Incoming) -> Disposition {
        let chunk = match serde_json::from_slice::<IngestChunkV1>(&incoming.body) {
            Ok(chunk) => chunk,
            Err(e) => {
                let reason = format!("undecodable ingest chunk: {e}");
                let ids = recover_ids(&incoming.body);
                return self.poison(ids, reason).await;
            }
        };
        let ids = Some((chunk.batch_id, chunk.workspace_id));
        match handle_chunk(&self.db, self.check, chunk).await {
            Ok(ChunkOutcome::Committed(_) | ChunkOutcome::AlreadyDone) => Disposition::Ack,
            Ok(ChunkOutcome::BatchClosed { ingest_state }) => {
                tracing::info!(
                    %ingest_state,
                    "chunk for a batch no longer ingesting, dropped"
                );
                Disposition::Ack
            }
            Err(e @ (ChunkError::UnknownBatch(_) | ChunkError::WorkspaceMismatch { .. })) => {
                // Nothing of ours to mark: the batch is absent or not this workspace's.
                Disposition::DeadLetter(e.to_string())
            }
            Err(e) if e.is_permanent() => self.poison(ids, e.to_string()).await,
            Err(e) => {
                tracing::warn!(error = %e, "chunk failed, will be redelivered");
                Disposition::Retry
            }
        }
    }

    async fn poison(&self, ids: Option<(Uuid, Uuid)>, reason: String) -> Disposition {
        if let Some((batch_id, workspace_id)) = ids {
            let error = format!(
                "a chunk of this batch could not be stored ({reason}); its rows are missing"
            );
            let marked = match self.db.get().await {
                Ok(client) => fail_batch(
                    &**client,
                    batch_id,
                    Some(workspace_id),
                    code::POISON_CHUNK,
                    &error,
                    Utc::now(),
                )
                .await
                .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = marked {
                // Parking the message matters more; the ingest timeout fails the batch later.
                tracing::warn!(%batch_id, error = %e, "cannot mark the batch of a poison chunk");
            }
        }
        Disposition::DeadLetter(reason)
    }
}

/// The batch and workspace of a chunk that does not decode as a whole, if its envelope does.
pub fn recover_ids(body: &[u8]) -> Option<(Uuid, Uuid)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let id = |field: &str| value.get(field)?.as_str()?.parse::<Uuid>().ok();
    Some((id("batchId")?, id("workspaceId")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_recovered_from_a_broken_chunk() {
        let b = Uuid::now_v7();
        let w = Uuid::now_v7();
        let body = format!(r#"{{"batchId":"{b}","workspaceId":"{w}","seq":"x","rows":7}}"#);
        assert_eq!(recover_ids(body.as_bytes()), Some((b, w)));
        assert_eq!(recover_ids(b"not json"), None);
        assert_eq!(recover_ids(br#"{"batchId":"nope"}"#), None);
    }
}
