//! The sweep that fails batches whose chunks stopped arriving. Every worker runs it; `FOR UPDATE
//! SKIP LOCKED` lets several run at once without blocking each other or failing a batch twice,
//! and skips batches a chunk transaction is writing to right now (they are making progress).

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use shared::domain::IngestState;
use uuid::Uuid;

use crate::fail::{code, fail_batch};

/// Batches failed per sweep at most (the rest wait for the next sweep).
const SWEEP_LIMIT: i64 = 100;

/// Why a sweep did not run.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// No connection could be had.
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// Fails every batch still ingesting with no progress (creation or a chunk commit, which bump
/// `updated_at`) for `timeout` as of `now` (injected so tests need not wait). Returns the batches
/// it failed.
#[tracing::instrument(skip_all)]
pub async fn sweep_once(
    db: &Pool,
    now: DateTime<Utc>,
    timeout: Duration,
) -> Result<Vec<Uuid>, SweepError> {
    let cutoff = now - chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
    let mut client = db.get().await?;
    let txn = client.transaction().await?;
    // A body that stopped arriving (its gateway died mid-request) is discarded, never shown: the
    // client was never answered 202, so nothing of it may be dialed.
    let stalled = txn
        .query(
            "SELECT id FROM batches WHERE ingest_state = $3 AND updated_at < $1
             ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            &[&cutoff, &SWEEP_LIMIT, &IngestState::Receiving],
        )
        .await?;
    for row in stalled {
        let id: Uuid = row.get("id");
        let reason = format!(
            "the request body stopped arriving for {} s",
            timeout.as_secs()
        );
        if shared::db::ingest::abort_receiving(&*txn, id, &reason).await? {
            tracing::warn!(batch_id = %id, "abandoned upload aborted");
        }
    }
    let due = txn
        .query(
            "SELECT b.id, b.expected_chunks,
                    (SELECT count(*) FROM ingest_chunks c WHERE c.batch_id = b.id) AS committed
             FROM batches b
             WHERE b.ingest_state = $3 AND b.updated_at < $1
             ORDER BY b.updated_at
             LIMIT $2
             FOR UPDATE OF b SKIP LOCKED",
            &[&cutoff, &SWEEP_LIMIT, &IngestState::Ingesting],
        )
        .await?;
    let mut failed = Vec::with_capacity(due.len());
    for row in due {
        let id: Uuid = row.get("id");
        let expected: i32 = row.get("expected_chunks");
        let committed: i64 = row.get("committed");
        let of = if expected > 0 {
            format!("{committed} of {expected} chunks")
        } else {
            format!("{committed} chunks (the total was never announced)")
        };
        let error = format!(
            "ingestion timed out: {of} stored, none for {} s",
            timeout.as_secs()
        );
        if fail_batch(&*txn, id, None, code::INGEST_TIMEOUT, &error, now).await? {
            failed.push(id);
        }
    }
    txn.commit().await?;
    Ok(failed)
}
