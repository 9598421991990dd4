//! The webhook outbox: a delivery row is written in the same transaction as the event it
//! announces, so an event is never lost nor announced without having happened. The
//! `UNIQUE (event, subject_id, url)` constraint makes a repeated write harmless.

use tokio_postgres::{Client, Statement};
use uuid::Uuid;

/// The insert; prepare it (once per connection) *before* the transaction it joins, so that
/// pipelined with its `COMMIT` it is sent ahead of it. A statement given as text would first
/// cost a prepare round trip, by which time the `COMMIT` has left and the row would be
/// written on its own, outside the transaction.
pub const INSERT_SQL: &str =
    "INSERT INTO webhook_deliveries (id, workspace_id, batch_id, event, subject_id, url, payload)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (event, subject_id, url) DO NOTHING";

/// [`INSERT_SQL`] for many deliveries of one event, in one statement: the arrays are the ids,
/// workspaces, batches, subjects, URLs and payloads, `$4` the event.
pub const INSERT_GROUP_SQL: &str =
    "INSERT INTO webhook_deliveries (id, workspace_id, batch_id, event, subject_id, url, payload)
     SELECT u.id, u.workspace_id, u.batch_id, $4, u.subject_id, u.url, u.payload
     FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $5::uuid[], $6::text[], $7::jsonb[])
          AS u(id, workspace_id, batch_id, subject_id, url, payload)
     ON CONFLICT (event, subject_id, url) DO NOTHING";

/// One delivery to queue.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// Whose secret signs it.
    pub workspace_id: Uuid,
    /// The batch it belongs to, if any.
    pub batch_id: Option<Uuid>,
    /// `call.completed`, `batch.completed` or `batch.failed`.
    pub event: &'a str,
    /// What it is about (the contact or the batch): with `event` and `url`, its identity.
    pub subject_id: Uuid,
    /// Where it goes.
    pub url: &'a str,
    /// The body.
    pub payload: &'a serde_json::Value,
}

/// Queues one delivery (idempotent per event, subject and URL) with `insert`, the prepared
/// [`INSERT_SQL`]. Returns whether a row was added.
///
/// Takes the concrete client: its `execute` sends the request on the first poll, so a caller
/// can pipeline it ahead of a `COMMIT` (the boxed `GenericClient` future did not; a test
/// checks the row's transaction).
pub async fn enqueue(
    client: &Client,
    insert: &Statement,
    d: Delivery<'_>,
) -> Result<bool, tokio_postgres::Error> {
    let n = client
        .execute(
            insert,
            &[
                &Uuid::now_v7(),
                &d.workspace_id,
                &d.batch_id,
                &d.event,
                &d.subject_id,
                &d.url,
                d.payload,
            ],
        )
        .await?;
    Ok(n == 1)
}
