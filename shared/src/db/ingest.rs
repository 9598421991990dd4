//! The one statement that ends ingestion, shared by the gateway (which learns how many chunks
//! to expect only after it has streamed the whole body) and the ingest workers (which commit the
//! chunks). Whichever of them acts last finds the counts equal and finishes the batch.

use tokio_postgres::GenericClient;

use crate::domain::{IngestState, JobState, Surface};
use uuid::Uuid;

/// Marks the batch `ready` if every expected chunk has committed; a Dialgen batch then starts
/// itself (`created` → `active`). Returns whether this call finished it. Safe to call any number
/// of times from any process: the guard on `ingesting` makes it happen once.
pub async fn finish_if_complete(
    client: &impl GenericClient,
    batch_id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let n = client
        .execute(
            "UPDATE batches b SET
                 ingest_state = $2,
                 state = CASE WHEN b.surface = $4 AND b.state = $5 THEN $6 ELSE b.state END,
                 started_at = CASE WHEN b.surface = $4 AND b.state = $5 THEN now() ELSE b.started_at END,
                 updated_at = now()
             WHERE b.id = $1
               AND b.ingest_state = $3
               AND b.expected_chunks > 0
               AND b.expected_chunks = (SELECT count(*) FROM ingest_chunks c WHERE c.batch_id = $1)",
            &[
                &batch_id,
                &IngestState::Ready,
                &IngestState::Ingesting,
                &Surface::Dialgen,
                &JobState::Created,
                &JobState::Active,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Discards a batch whose body is still being received (`ingest_state = 'receiving'`): marks it
/// `aborted` (a hidden tombstone whose late chunks the ingest workers drop), frees its
/// idempotency key, and deletes the contacts and rejected rows its chunks stored so far. Returns
/// whether it was still receiving. Run it inside a transaction: a chunk committing at the same
/// moment either finishes first (and its rows are deleted here) or waits on the batch row and
/// then finds it aborted (and rolls back).
pub async fn abort_receiving(
    client: &impl GenericClient,
    batch_id: Uuid,
    reason: &str,
) -> Result<bool, tokio_postgres::Error> {
    let n = client
        .execute(
            "UPDATE batches SET ingest_state = $3, state = $4, idempotency_key = NULL,
                 error = $2, error_code = 'aborted', updated_at = now()
             WHERE id = $1 AND ingest_state = $5",
            &[
                &batch_id,
                &reason,
                &IngestState::Aborted,
                &JobState::Failed,
                &IngestState::Receiving,
            ],
        )
        .await?;
    if n == 0 {
        return Ok(false);
    }
    client
        .execute("DELETE FROM contacts WHERE batch_id = $1", &[&batch_id])
        .await?;
    client
        .execute(
            "DELETE FROM rejected_rows WHERE batch_id = $1",
            &[&batch_id],
        )
        .await?;
    Ok(true)
}

/// Removes a batch whose body is still being received, leaving no row of it (a create request
/// answered 413 creates nothing, not even a hidden tombstone): its contacts, rejected rows and
/// counters are deleted with it, and its id is recorded in `discarded_uploads` (migration V19)
/// so that the ingest workers drop its chunks still queued rather than dead-letter them as a
/// stranger's. Records older than a week are removed meanwhile. Returns whether it was still
/// receiving. Run it inside a transaction, for the reason given at [`abort_receiving`].
pub async fn discard_receiving(
    client: &impl GenericClient,
    batch_id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let Some(row) = client
        .query_opt(
            "SELECT workspace_id FROM batches WHERE id = $1 AND ingest_state = 'receiving' FOR UPDATE",
            &[&batch_id],
        )
        .await?
    else {
        return Ok(false);
    };
    let workspace_id: Uuid = row.get("workspace_id");
    client
        .execute(
            "INSERT INTO discarded_uploads (batch_id, workspace_id) VALUES ($1, $2)
             ON CONFLICT (batch_id) DO NOTHING",
            &[&batch_id, &workspace_id],
        )
        .await?;
    for table in ["contacts", "rejected_rows", "batches"] {
        let column = if table == "batches" { "id" } else { "batch_id" };
        client
            .execute(
                &format!("DELETE FROM {table} WHERE {column} = $1"),
                &[&batch_id],
            )
            .await?;
    }
    // The counters' triggers recorded the contacts' coming and going: nothing of them is kept.
    for table in [
        "batch_counter_deltas",
        "batch_counters",
        "batch_minute_deltas",
        "batch_minutes",
    ] {
        client
            .execute(
                &format!("DELETE FROM {table} WHERE batch_id = $1"),
                &[&batch_id],
            )
            .await?;
    }
    client
        .execute(
            "DELETE FROM discarded_uploads WHERE discarded_at < now() - interval '7 days'",
            &[],
        )
        .await?;
    Ok(true)
}

/// Whether the gateway discarded `batch_id`'s upload (see [`discard_receiving`]).
pub async fn was_discarded(
    client: &impl GenericClient,
    batch_id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM discarded_uploads WHERE batch_id = $1",
            &[&batch_id],
        )
        .await?
        .is_some())
}
