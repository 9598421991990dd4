//! Adding rows to a job that is not final (`POST /api/batch_dial_jobs/{id}/rows`,
//! `POST /api/v1/batch/{id}/contacts`).
//!
//! The rows are parsed and validated exactly as a create body's (`body::parse_reader`, the same
//! row shapes, the same 100,000 ceiling per request), then travel the ingest path a create's
//! rows travel, as more chunks of the same batch: the ingest workers normalise them, reject
//! duplicates against every row the job already holds (the earlier row wins, so the job's own
//! contacts always keep their numbers) and the do-not-call list, and count them. Row numbers
//! continue after the job's last row.
//!
//! The body is read as it arrives, as a create's is, but its chunks are *spooled* to a
//! temporary file rather than published at once: the job is already live, so a chunk published
//! before the body proved valid could be dialed, and a body that turns out invalid (a bad field
//! after the array, truncated JSON, a 100,001st row) must add nothing. The request holds a chunk
//! in memory at a time (counted in [`super::held`]), whatever its size; the file holds the rest
//! until they are published.
//!
//! The job's bookkeeping, in order:
//! 1. a first look, without a lock: the job must exist in the workspace (404), not be final
//!    (completed, cancelled, failed: 409) nor still ingesting (a create or another append in
//!    progress: 409, retry once it is done); its next chunk `seq` and row number are read;
//! 2. the body is read, validated and spooled, each chunk numbered after the job's own;
//! 3. once it is valid, under the job's row lock: the same checks again, and the job must still
//!    end where step 1 saw it (else another append landed meanwhile: 409, retry); it goes back
//!    to `ingesting` with `expected_chunks = 0` ("not announced yet"), so no ingest worker can
//!    finish it early, the scheduler cannot complete it (it completes only `ready` jobs) and no
//!    other append can start; `total_rows` grows by the rows sent;
//! 4. the chunks are published, each confirmed by the broker (invariant 1); `expected_chunks`
//!    is announced and `finish_if_complete` runs, as for a create; only then the 202.
//!
//! The job is `ingesting` only from step 3, once the body is whole: a slow upload holds no
//! lock and no state that the ingest timeout sweep (`ingest-worker/src/timeout.rs`, which fails
//! a job `ingesting` without progress) could take for a stall, and a client that goes away
//! mid-body leaves nothing to undo. If publishing fails after step 3, the job is put back to
//! `ready` with the rows that did arrive (its counters recomputed from them); chunks still in
//! flight are ignored by the workers (the job is no longer ingesting). That is a 503 to retry:
//! rows that arrived the first time are then rejected as duplicates, nothing is dialed twice.
//! The work runs in its own task, so a client that disconnects while the rows are published
//! still leaves the job `ready`.

use std::io::{Seek, Write};

use axum::body::Body;
use deadpool_postgres::GenericClient;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use uuid::Uuid;

use shared::domain::{IngestState, JobState};
use shared::queue::Stream;
use shared::queue::publisher::{ConfirmWindow, Outgoing};

use super::body::{self, Chunk, Packer, ParseError, RowShape, Stopped};
use super::held::Held;
use super::model::{Batch, COLUMNS, VISIBLE};
use super::stream::{self, BODY_FRAMES, ChannelReader, IN_FLIGHT, READ_BUF};
use crate::error::ApiError;
use crate::state::AppState;
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
        // Hidden batches are never found by a lookup; refused should one ever be.
        IngestState::Receiving | IngestState::Aborted => {
            Some("the job is not created yet; retry once it is".to_owned())
        }
    }
}

/// Reads `body` (`{"<R::KEY>": [...]}`) as it arrives and adds its rows to job `id` of
/// `workspace`.
pub async fn append<R: RowShape + Send + 'static>(
    state: &AppState,
    workspace: Uuid,
    id: Uuid,
    what: &'static str,
    body: Body,
) -> Result<Appended, ApiError> {
    let state = state.clone();
    let span = tracing::info_span!("append_rows", batch_id = %id, workspace_id = %workspace);
    // Its own task: a client that goes away mid-body must still leave the job `ready`.
    let task = tokio::spawn(tracing::Instrument::instrument(
        async move {
            let place = {
                let client = state.db.get().await?;
                look(&client, workspace, id, what, false).await?
            };
            let spooled = receive::<R>(&state, workspace, id, place, body).await?;
            reserve(&state, workspace, id, what, place, spooled.rows).await?;
            let outcome = publish(&state, workspace, id, place, spooled).await;
            if outcome.is_err() {
                restore(&state, id).await;
            }
            outcome
        },
        span,
    ));
    task.await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("the append task failed: {e}")))?
}

/// Where the added chunks continue the job's numbering, and how many it already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    first_seq: u32,
    first_row: u32,
    stored_chunks: u32,
}

/// Steps 1 and 3's checks: the job of `workspace` that can take rows now, and where they go
/// (under its row lock when `lock`), or the refusal.
async fn look(
    client: &impl GenericClient,
    workspace: Uuid,
    id: Uuid,
    what: &'static str,
    lock: bool,
) -> Result<Place, ApiError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM batches WHERE id = $1 AND workspace_id = $2 AND {VISIBLE}{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let batch = client
        .query_opt(&sql, &[&id, &workspace])
        .await?
        .ok_or(ApiError::NotFound(what))?;
    let batch = Batch::from_row(&batch)?;
    if let Some(why) = refusal(batch.state, batch.ingest_state) {
        return Err(ApiError::Conflict(why));
    }
    // Both maxima are index lookups (the unique row index of contacts, the primary key of
    // rejected_rows); `total_rows` alone would do, but never reusing an index is what matters.
    let next = client
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
    Ok(Place {
        first_seq: stored_number(next.get::<_, i32>("first_seq"), "first_seq")?,
        first_row: stored_number(next.get::<_, i32>("first_row"), "first_row")?,
        stored_chunks: stored_number(next.get::<_, i64>("stored_chunks"), "stored_chunks")?,
    })
}

/// Step 3: takes the job for the `rows` numbered from `place` (see the module docs), or refuses.
async fn reserve(
    state: &AppState,
    workspace: Uuid,
    id: Uuid,
    what: &'static str,
    place: Place,
    rows: u32,
) -> Result<(), ApiError> {
    let mut client = state.db.get().await?;
    let txn = client.transaction().await?;
    if look(&txn, workspace, id, what, true).await? != place {
        return Err(ApiError::Conflict(
            "the job gained rows while this body arrived (another append); retry".into(),
        ));
    }
    let total = i64::from(place.first_row) + i64::from(rows);
    let total = i32::try_from(total).map_err(|e| ApiError::Internal(e.into()))?;
    txn.execute(
        "UPDATE batches SET ingest_state = $3, expected_chunks = 0, total_rows = $2,
             updated_at = now()
         WHERE id = $1",
        &[&id, &total, &IngestState::Ingesting],
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// A count read from the database as the unsigned number it is (never negative by the schema).
fn stored_number<T: TryInto<u32> + Copy + std::fmt::Display>(
    n: T,
    what: &str,
) -> Result<u32, ApiError> {
    n.try_into()
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("the job's {what} is out of range: {n}")))
}

/// Step 2: reads, validates and spools the body.
async fn receive<R: RowShape + Send + 'static>(
    state: &AppState,
    workspace: Uuid,
    id: Uuid,
    place: Place,
    body: Body,
) -> Result<Spooled, ApiError> {
    let (bytes_tx, bytes_rx) = mpsc::channel(BODY_FRAMES);
    let parser = tokio::task::spawn_blocking(move || spool::<R>(id, workspace, place, bytes_rx));
    let pumped = stream::pump(body, bytes_tx, state.config.max_body_bytes, None).await;
    let spooled = parser
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("the parser failed: {e}")))?;
    // The body's own reading (size, connection) answers first, as for a create.
    pumped?;
    spooled
}

/// Step 4, once the job is reserved: publishes the spooled chunks and announces them.
async fn publish(
    state: &AppState,
    workspace: Uuid,
    id: Uuid,
    place: Place,
    spooled: Spooled,
) -> Result<Appended, ApiError> {
    let Spooled { file, rows, chunks } = spooled;
    publish_spooled(state, id, file, chunks).await?;
    let client = state.db.get().await?;
    let expected =
        i32::try_from(place.stored_chunks + chunks).map_err(|e| ApiError::Internal(e.into()))?;
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
        first_row: i64::from(place.first_row) + 1,
    })
}

/// A valid body's chunks, waiting in a temporary file.
struct Spooled {
    file: std::fs::File,
    rows: u32,
    chunks: u32,
}

/// Parses the body arriving on `frames` (on a blocking thread) and writes each full chunk to a
/// temporary file, each as its length (8 bytes, little-endian), its `seq` (4 bytes) and its
/// encoded `IngestChunkV1`.
fn spool<R: RowShape>(
    batch_id: Uuid,
    workspace_id: Uuid,
    place: Place,
    frames: mpsc::Receiver<Held<axum::body::Bytes>>,
) -> Result<Spooled, ApiError> {
    let _buffer = Held::new((), READ_BUF);
    let spool_error = |e: std::io::Error| {
        ApiError::Internal(anyhow::Error::new(e).context("spooling the added rows"))
    };
    let mut file = tempfile::tempfile().map_err(spool_error)?;
    let mut written = std::io::BufWriter::new(&mut file);
    let mut chunks = 0u32;
    let mut failure = None;
    let mut violations = Violations::default();
    let parsed = {
        let mut packer = Packer::new(batch_id, workspace_id, |chunk: Chunk| {
            let body = chunk.body.get();
            let framed = written
                .write_all(&(body.len() as u64).to_le_bytes())
                .and_then(|()| written.write_all(&chunk.seq.to_le_bytes()))
                .and_then(|()| written.write_all(body));
            match framed {
                Ok(()) => {
                    chunks += 1;
                    Ok(())
                }
                Err(e) => {
                    failure = Some(e);
                    Err(Stopped)
                }
            }
        })
        .continuing(place.first_seq, place.first_row);
        let reader = std::io::BufReader::with_capacity(READ_BUF, ChannelReader::new(frames));
        body::parse_reader::<R>(reader, &mut packer, &mut violations, &mut |_| ())
    };
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(ParseError::Api(e)) => return Err(e),
        Err(ParseError::Stopped) => {
            let e = failure.unwrap_or_else(|| std::io::Error::other("the spool stopped"));
            return Err(spool_error(e));
        }
    };
    for key in parsed.header.keys() {
        let mut message = format!("unknown field `{key}`: this route takes only `{}`", R::KEY);
        if crate::strict::did_you_mean(key, &[R::KEY]).is_some() {
            message.push_str(&format!(", did you mean `{}`?", R::KEY));
        }
        violations.extend([crate::error::FieldError::new(key.clone(), message)
            .problem(crate::error::Problem::UnknownField)]);
    }
    violations.into_result(())?;
    written.flush().map_err(spool_error)?;
    drop(written);
    file.rewind().map_err(spool_error)?;
    Ok(Spooled {
        file,
        rows: parsed.rows,
        chunks,
    })
}

/// Publishes the spooled chunks in order, up to [`IN_FLIGHT`] confirms outstanding, and waits
/// for every confirm. One chunk is read back into memory at a time.
async fn publish_spooled(
    state: &AppState,
    batch_id: Uuid,
    file: std::fs::File,
    chunks: u32,
) -> Result<(), ApiError> {
    let spool_error = |e: std::io::Error| {
        ApiError::Internal(anyhow::Error::new(e).context("reading the spooled rows back"))
    };
    let mut file = tokio::io::BufReader::new(tokio::fs::File::from_std(file));
    let mut in_flight = ConfirmWindow::new(IN_FLIGHT);
    for _ in 0..chunks {
        let len = file.read_u64_le().await.map_err(spool_error)?;
        let seq = file.read_u32_le().await.map_err(spool_error)?;
        let len = usize::try_from(len).map_err(|e| ApiError::Internal(e.into()))?;
        let mut body = vec![0; len];
        file.read_exact(&mut body).await.map_err(spool_error)?;
        let (body, token) = Held::new(body, len).split();
        let message = Outgoing {
            body,
            message_id: Some(format!("{batch_id}:{seq}")),
            headers: Vec::new(),
        };
        let pending = state
            .publisher
            .start(Stream::Ingest, message)
            .await
            .map_err(unavailable)?;
        in_flight.push(pending, token).await.map_err(unavailable)?;
    }
    in_flight.drain().await.map_err(unavailable)?;
    Ok(())
}

fn unavailable(e: shared::queue::QueueError) -> ApiError {
    tracing::error!(error = %e, "publishing added rows failed; the job keeps the rows that arrived");
    ApiError::Unavailable(format!(
        "the rows could not be queued for ingestion ({e}); the job keeps the rows that arrived, please retry"
    ))
}

/// Puts a job whose append failed back to `ready` with the rows that did arrive. Logged, not
/// returned: the request's own error is the answer.
async fn restore(state: &AppState, id: Uuid) {
    let restored = async {
        let client = state.db.get().await?;
        client
            .execute(
                "UPDATE batches SET ingest_state = $2,
                     expected_chunks = (SELECT count(*) FROM ingest_chunks WHERE batch_id = $1),
                     total_rows = accepted_rows + rejected_rows, updated_at = now()
                 WHERE id = $1 AND ingest_state = $3",
                &[&id, &IngestState::Ready, &IngestState::Ingesting],
            )
            .await?;
        Ok::<_, ApiError>(())
    }
    .await;
    if let Err(e) = restored {
        tracing::error!(batch_id = %id, error = %e, "a failed append could not put its job back to ready");
    }
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
