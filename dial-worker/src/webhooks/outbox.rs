//! The webhook outbox: a delivery row is written in the same transaction as the event it
//! announces, so an event is never lost nor announced without having happened. The
//! `UNIQUE (event, subject_id, url)` constraint makes a repeated write harmless.

use tokio_postgres::GenericClient;
use uuid::Uuid;

/// Queues one delivery (idempotent per event, subject and URL). Returns whether a row was added.
pub async fn enqueue(
    client: &impl GenericClient,
    workspace_id: Uuid,
    batch_id: Option<Uuid>,
    event: &str,
    subject_id: Uuid,
    url: &str,
    payload: &serde_json::Value,
) -> Result<bool, tokio_postgres::Error> {
    let n = client
        .execute(
            "INSERT INTO webhook_deliveries (id, workspace_id, batch_id, event, subject_id, url, payload)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (event, subject_id, url) DO NOTHING",
            &[
                &Uuid::now_v7(),
                &workspace_id,
                &batch_id,
                &event,
                &subject_id,
                &url,
                payload,
            ],
        )
        .await?;
    Ok(n == 1)
}
