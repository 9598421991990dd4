//! Carrier callbacks the broker could not take, kept in PostgreSQL until it can.
//!
//! The callback route publishes each status callback as a `CallEventV1`, confirmed; when the
//! broker is unavailable (down, restarting, unreachable, or slower than
//! [`PUBLISH_TIMEOUT`]) it stores the event in `carrier_callback_outbox` instead, and answers
//! 2xx only once it is stored — a carrier gives up on a callback after a few retries, and a
//! lost final callback would pin its call's slot until the reconciler noticed the silence.
//! [`relay`] re-publishes stored events, oldest first, and deletes them in the same
//! transaction once the broker confirmed them (`FOR UPDATE SKIP LOCKED`: several gateways
//! share the work; a crash between the confirm and the commit publishes again, which the
//! idempotent consumer absorbs).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use shared::queue::publisher::Outgoing;
use shared::queue::{Publisher, Stream};
use tokio_util::sync::CancellationToken;

/// How long a callback waits for the broker's confirm before it is stored instead.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the relay looks for stored callbacks while none is known to be waiting.
const POLL: Duration = Duration::from_millis(500);

/// Events re-published per transaction.
const BATCH: i64 = 200;

/// Stores an event that could not be published. `Ok` means it is durably kept (or was kept
/// already: a repeated callback).
pub async fn store(db: &Pool, message_id: &str, payload: &serde_json::Value) -> anyhow::Result<()> {
    let client = db.get().await?;
    client
        .execute(
            "INSERT INTO carrier_callback_outbox (message_id, payload) VALUES ($1, $2)
             ON CONFLICT (message_id) DO NOTHING",
            &[&message_id, payload],
        )
        .await?;
    Ok(())
}

/// Re-publishes stored events until `shutdown`: one pass every [`POLL`], each draining the
/// table in batches; after a failure it waits longer (backoff up to 5 s).
pub async fn relay(db: Pool, publisher: Arc<Publisher>, shutdown: CancellationToken) {
    let mut failures = 0u32;
    loop {
        let delay = if failures == 0 {
            POLL
        } else {
            shared::connect::backoff_delay(failures).min(Duration::from_secs(5))
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        loop {
            match relay_batch(&db, &publisher).await {
                Ok(0) => {
                    failures = 0;
                    break;
                }
                Ok(n) => {
                    failures = 0;
                    tracing::info!(events = n, "stored carrier callbacks re-published");
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 || failures.is_multiple_of(20) {
                        tracing::warn!(error = %e, "stored carrier callbacks not re-published yet");
                    }
                    break;
                }
            }
        }
    }
}

/// One batch: claimed, published (confirmed), deleted, in one transaction. Returns how many.
pub async fn relay_batch(db: &Pool, publisher: &Publisher) -> anyhow::Result<usize> {
    let mut client = db.get().await?;
    let txn = client.transaction().await?;
    let rows = txn
        .query(
            "SELECT id, message_id, payload FROM carrier_callback_outbox
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            &[&BATCH],
        )
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.get("id")).collect();
    let messages: Vec<Outgoing> = rows
        .iter()
        .map(|r| {
            let payload: serde_json::Value = r.get("payload");
            Outgoing {
                body: payload.to_string().into_bytes(),
                message_id: Some(r.get("message_id")),
                headers: Vec::new(),
            }
        })
        .collect();
    tokio::time::timeout(
        PUBLISH_TIMEOUT * 5,
        publisher.publish_all(Stream::CallEvents, messages),
    )
    .await
    .map_err(|_| anyhow::anyhow!("broker confirm timed out"))??;
    txn.execute(
        "DELETE FROM carrier_callback_outbox WHERE id = ANY($1)",
        &[&ids],
    )
    .await?;
    txn.commit().await?;
    Ok(ids.len())
}
