//! Adding rows to a job that is not final (`POST /api/batch_dial_jobs/{id}/rows`,
//! `POST /api/v1/batch/{id}/contacts`).
//!
//! The rows are parsed and validated exactly as a create body's (`body::parse`, the same row
//! shapes, the same 100,000 ceiling per request), then travel the ingest path a create's rows
//! travel, as more chunks of the same batch: the ingest workers normalise them, reject
//! duplicates against every row the job already holds (the earlier row wins, so the job's own
//! contacts always keep their numbers) and the do-not-call list, and count them. Row numbers
//! continue after the job's last row.
//!
//! The job's bookkeeping, in order:
//! 1. under the job's row lock: the job must not be final (completed, cancelled, failed: 409)
//!    nor still ingesting (a create or another append in progress: 409, retry once it is
//!    done); it goes back to `ingesting` with `expected_chunks = 0` ("not announced yet"), so
//!    no ingest worker can finish it early and the scheduler cannot complete it meanwhile
//!    (it completes only `ready` jobs); its `total_rows` grows by the rows sent;
//! 2. the chunks are published, each confirmed by the broker (invariant 1);
//! 3. `expected_chunks` is announced and `finish_if_complete` runs, as for a create; only then
//!    the 202.
//!
//! If publishing fails the job is put back to `ready` with the rows that did arrive (its
//! counters recomputed from them), chunks still in flight are ignored by the workers (the job
//! is no longer ingesting), and the client gets a 503 to retry: rows that arrived the first
//! time are then rejected as duplicates, nothing is dialed twice.

use uuid::Uuid;

use shared::domain::{IngestState, JobState};
use shared::queue::Stream;
use shared::queue::messages::IngestChunkV1;
use shared::queue::publisher::Outgoing;

use super::body::{self, RowShape};
use super::model::{Batch, COLUMNS, VISIBLE};
use crate::app::AppState;
use crate::error::ApiError;
use crate::validate::Violations;

/// What an append did.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The job after the rows were queued.
    pub batch: Batch,
    /// Rows received (accepted or rejected once ingested).
    pub rows: u32,
    /// The user's number (1-based) of the first row added.
    pub first_row: i64,
}

/// Why a job cannot take rows now (409), or `None` when it can.
pub fn refusal(state: JobState, ingest: IngestState) -> Option<String> {
    if state.is_final() {
        return Some(format!(
            "a {} job cannot gain rows; create a new one",
            state.as_str()
        ));
    }
    match ingest {
        IngestState::Ready => None,
        IngestState::Ingesting => Some(
            "the job's rows are still being ingested (a create or another append); retry once it is done"
                .to_owned(),
        ),
        IngestState::Failed => Some("the job's ingestion failed; it cannot gain rows".to_owned()),
    }
}

/// Parses `bytes` (`{"<R::KEY>": [...]}`) and adds its rows to job `id` of `workspace`.
pub async fn append<R: RowShape>(
    state: &AppState,
    workspace: Uuid,
    id: Uuid,
    what: &'static str,
    bytes: &[u8],
) -> Result<Appended, ApiError> {
    let mut violations = Violations::default();
    let (parsed, chunks) = body::parse::<R>(bytes, id, workspace, &mut violations)?;
    for key in parsed.header.keys() {
        violations.add(
            key.clone(),
            format!("is not accepted here; this route takes only `{}`", R::KEY),
        );
    }
    violations.into_result(())?;
    let rows = parsed.rows;

    let mut client = state.db.get().await?;
    let txn = client.transaction().await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM batches WHERE id = $1 AND workspace_id = $2 AND {VISIBLE} FOR UPDATE"
    );
    let batch = txn
        .query_opt(&sql, &[&id, &workspace])
        .await?
        .ok_or(ApiError::NotFound(what))?;
    let batch = Batch::from_row(&batch)?;
    if let Some(why) = refusal(batch.state, batch.ingest_state) {
        return Err(ApiError::Conflict(why));
    }
    // Both maxima are index lookups (the unique row index of contacts, the primary key of
    // rejected_rows); `total_rows` alone would do, but never reusing an index is what matters.
    let next = txn
        .query_one(
            "SELECT GREATEST(b.total_rows,
                        (SELECT max(row_index) + 1 FROM contacts WHERE batch_id = $1),
                        (SELECT max(row_index) + 1 FROM rejected_rows WHERE batch_id = $1)) AS first_row,
                    (SELECT COALESCE(max(seq) + 1, 0) FROM ingest_chunks WHERE batch_id = $1) AS first_seq,
                    (SELECT count(*) FROM ingest_chunks WHERE batch_id = $1) AS stored_chunks
             FROM batches b WHERE b.id = $1",
            &[&id],
        )
        .await?;
    let first_row: i32 = next.get("first_row");
    let first_seq: i32 = next.get("first_seq");
    let stored_chunks: i64 = next.get("stored_chunks");
    let added = i32::try_from(rows).map_err(|e| ApiError::Internal(e.into()))?;
    txn.execute(
        "UPDATE batches SET ingest_state = 'ingesting', expected_chunks = 0,
             total_rows = $2::int + $3::int, updated_at = now()
         WHERE id = $1",
        &[&id, &first_row, &added],
    )
    .await?;
    txn.commit().await?;
    drop(client);

    let expected = stored_chunks + chunks.len() as i64;
    let offset = Offset {
        first_seq,
        first_row,
    };
    let published = publish_chunks(state, id, offset, chunks).await;
    let client = state.db.get().await?;
    if let Err(e) = published {
        tracing::error!(batch_id = %id, error = %e, "publishing added rows failed; the job keeps the rows that arrived");
        client
            .execute(
                "UPDATE batches SET ingest_state = 'ready',
                     expected_chunks = (SELECT count(*) FROM ingest_chunks WHERE batch_id = $1),
                     total_rows = accepted_rows + rejected_rows, updated_at = now()
                 WHERE id = $1 AND ingest_state = 'ingesting'",
                &[&id],
            )
            .await?;
        return Err(e);
    }
    let expected = i32::try_from(expected).map_err(|e| ApiError::Internal(e.into()))?;
    client
        .execute(
            "UPDATE batches SET expected_chunks = $2 WHERE id = $1",
            &[&id, &expected],
        )
        .await?;
    shared::db::ingest::finish_if_complete(&**client, id).await?;
    let batch = Batch::load(&client, workspace, id).await?;
    Ok(Appended {
        batch,
        rows,
        first_row: i64::from(first_row) + 1,
    })
}

/// Where the added chunks continue the job's numbering.
#[derive(Debug, Clone, Copy)]
struct Offset {
    first_seq: i32,
    first_row: i32,
}

/// Publishes chunks `body::parse` encoded from 0, renumbered after the job's own, each
/// confirmed. One chunk is decoded and re-encoded at a time.
async fn publish_chunks(
    state: &AppState,
    batch_id: Uuid,
    offset: Offset,
    chunks: Vec<body::Chunk>,
) -> Result<(), ApiError> {
    let mut messages = Vec::with_capacity(chunks.len());
    for packed in chunks {
        let mut chunk: IngestChunkV1 =
            serde_json::from_slice(packed.body.get()).map_err(|e| ApiError::Internal(e.into()))?;
        chunk.seq += offset.first_seq as u32;
        chunk.first_row += offset.first_row as u32;
        let seq = chunk.seq;
        messages.push(Outgoing {
            body: serde_json::to_vec(&chunk).map_err(|e| ApiError::Internal(e.into()))?,
            message_id: Some(format!("{batch_id}:{seq}")),
            headers: Vec::new(),
        });
    }
    state
        .publisher
        .publish_all(Stream::Ingest, messages)
        .await
        .map_err(|e| {
            ApiError::Unavailable(format!(
                "the rows could not be queued for ingestion ({e}); the job keeps the rows that arrived, please retry"
            ))
        })
}

/// The 202 of `POST /api/batch_dial_jobs/{id}/rows`: what was added, and the job.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RowsAppended {
    /// Rows received (each accepted or rejected once ingested).
    pub rows: u32,
    /// The number of the first row added (rows continue the job's numbering).
    pub first_row: i64,
    pub job: crate::batches::model::Job,
}

/// A 202 body for an append: the job (as `job`) and what was added.
pub fn answer(appended: &Appended, job: crate::batches::model::Job) -> RowsAppended {
    RowsAppended {
        rows: appended.rows,
        first_row: appended.first_row,
        job,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_settled_live_jobs_take_rows() {
        use IngestState::*;
        assert!(refusal(JobState::Active, Ready).is_none());
        assert!(refusal(JobState::Created, Ready).is_none());
        assert!(refusal(JobState::Paused, Ready).is_none());
        assert!(refusal(JobState::Active, Ingesting).is_some());
        for s in [JobState::Completed, JobState::Cancelled, JobState::Failed] {
            assert!(refusal(s, Ready).is_some());
        }
    }
}
