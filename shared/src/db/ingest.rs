//! The one statement that ends ingestion, shared by the gateway (which learns how many chunks
//! to expect only after it has streamed the whole body) and the ingest workers (which commit the
//! chunks). Whichever of them acts last finds the counts equal and finishes the batch.

use tokio_postgres::GenericClient;
use uuid::Uuid;

/// Marks the batch `ready` if every expected chunk has committed; a Dialgen batch then starts
/// itself (`created` → `active`). Returns whether this call finished it. Safe to call any number
/// of times from any process: the `ingest_state = 'ingesting'` guard makes it happen once.
pub async fn finish_if_complete(
    client: &impl GenericClient,
    batch_id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let n = client
        .execute(
            "UPDATE batches b SET
                 ingest_state = 'ready',
                 state = CASE WHEN b.surface = 'dialgen' AND b.state = 'created' THEN 'active' ELSE b.state END,
                 started_at = CASE WHEN b.surface = 'dialgen' AND b.state = 'created' THEN now() ELSE b.started_at END,
                 updated_at = now()
             WHERE b.id = $1
               AND b.ingest_state = 'ingesting'
               AND b.expected_chunks > 0
               AND b.expected_chunks = (SELECT count(*) FROM ingest_chunks c WHERE c.batch_id = $1)",
            &[&batch_id],
        )
        .await?;
    Ok(n == 1)
}
