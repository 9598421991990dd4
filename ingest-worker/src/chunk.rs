//! One chunk, one transaction: the `ingest_chunks` row that makes a redelivery harmless, the
//! accepted rows (COPY), the rejected rows, the batch's counters and, when it is the last chunk,
//! the end of ingestion — all committed together or not at all.
//!
//! Duplicates across chunks: chunks may commit in any order, yet the earliest row of a number
//! must win. When a chunk finds its number already stored by a *later* row of another chunk, and
//! that contact is still `queued` (never released for dialing), it takes the number over: the
//! later contact is deleted and recorded as the duplicate instead. If the contact has already been
//! released (a Vogent job may start while rows arrive), it stays, and the earlier row is the one
//! rejected. Two chunks racing for one number collide on the `(batch_id, phone_number)` unique
//! index; the loser's transaction is retried and then sees the winner's row.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::Pool;
use futures_util::pin_mut;
use shared::domain::{ContactState, IngestState};
use shared::queue::messages::IngestChunkV1;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{GenericClient, Transaction};
use uuid::Uuid;

use crate::normalize::{NumberCheck, Region};
use crate::plan::{self, Accepted, Plan, PlanError, Rejected};
use crate::reject::{Reason, Rejection};

/// How often a chunk's transaction is retried after colliding with another chunk's (a shared
/// number, a deadlock) before the message goes back to the queue. Collisions need duplicates
/// across chunks committing at the same moment: rare, but they can repeat when many chunks
/// share many numbers, so the retries back off with jitter.
const MAX_TRIES: u32 = 20;

/// What handling a chunk did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Its rows are stored.
    Committed(Committed),
    /// It had been committed before (a redelivery): nothing changed.
    AlreadyDone,
    /// The batch is no longer ingesting (it failed, for example timed out): nothing stored.
    BatchClosed {
        /// The batch's `ingest_state`.
        ingest_state: IngestState,
    },
}

/// The figures of a committed chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Committed {
    /// Rows of this chunk stored as contacts.
    pub accepted: u32,
    /// Rows of this chunk rejected (including duplicates of earlier rows).
    pub rejected: u32,
    /// Contacts of other chunks that this chunk's earlier rows displaced as duplicates.
    pub displaced: u32,
    /// Rows of this chunk rejected because the number is on the do-not-call list (counted in
    /// `rejected` too).
    pub do_not_call: u32,
    /// Whether this chunk completed the batch's ingestion.
    pub finished: bool,
}

/// Why a chunk was not handled.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The batch does not exist (deleted, or the message is foreign): can never succeed.
    #[error("batch {0} does not exist")]
    UnknownBatch(Uuid),
    /// The chunk names a workspace that does not own the batch: can never succeed.
    #[error("chunk names workspace {claimed} but batch {batch_id} belongs to another")]
    WorkspaceMismatch {
        /// The batch.
        batch_id: Uuid,
        /// The workspace the chunk named.
        claimed: Uuid,
    },
    /// The chunk's numbering is out of range: can never succeed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Its row indexes are already held by another chunk's rows (a producer bug).
    #[error("rows from {first_row} overlap rows stored by another chunk of batch {batch_id}")]
    Overlap {
        /// The batch.
        batch_id: Uuid,
        /// The chunk's first row.
        first_row: u32,
    },
    /// The database failed or refused; worth retrying.
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// No connection could be had; worth retrying.
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// Normalisation panicked (a bug); retrying will not help.
    #[error("normalisation task failed: {0}")]
    Task(String),
    /// Normalisation was cancelled (the runtime is shutting down); worth retrying.
    #[error("normalisation task cancelled")]
    Cancelled,
}

impl ChunkError {
    /// Whether the chunk can never succeed (dead-letter it) rather than failed this time.
    pub fn is_permanent(&self) -> bool {
        !matches!(
            self,
            ChunkError::Db(_) | ChunkError::Pool(_) | ChunkError::Cancelled
        )
    }
}

/// Persists one chunk (the single step the consumer runs per message and tests drive).
/// Idempotent: a chunk already committed changes nothing and returns
/// [`ChunkOutcome::AlreadyDone`].
#[tracing::instrument(skip_all, fields(batch_id = %chunk.batch_id, seq = chunk.seq, rows = chunk.rows.len()))]
pub async fn handle_chunk(
    db: &Pool,
    check: NumberCheck,
    chunk: IngestChunkV1,
) -> Result<ChunkOutcome, ChunkError> {
    let seq = plan::seq(&chunk)?;
    let client = db.get().await?;
    let batch = match batch_taking(&**client, &chunk, seq).await? {
        Ok(batch) => batch,
        Err(outcome) => return Ok(outcome),
    };

    let key = ChunkKey {
        batch_id: chunk.batch_id,
        workspace_id: chunk.workspace_id,
        seq,
        first_row: chunk.first_row,
        // More rows than an `integer` holds overflows their indexes too: refused as plan()
        // would refuse it, never recorded as a smaller count.
        rows: i32::try_from(chunk.rows.len()).map_err(|_| PlanError::RowIndexOverflow {
            first: chunk.first_row,
            len: chunk.rows.len(),
        })?,
    };
    let region = Region::parse(&batch.default_region);
    let (first_row, rows) = (chunk.first_row, chunk.rows);
    // Parsing numbers is CPU work (regular expressions): keep it off the async threads.
    let plan = tokio::task::spawn_blocking(move || plan::plan(first_row, rows, region, check))
        .await
        .map_err(|e| {
            if e.is_cancelled() {
                ChunkError::Cancelled
            } else {
                ChunkError::Task(e.to_string())
            }
        })??;

    let mut client = client;
    let mut tries = 0;
    loop {
        tries += 1;
        let txn = client.transaction().await?;
        // The first attempt assumes no other chunk stored this chunk's numbers (duplicates
        // across chunks are rare): it skips the lookup and lets the unique index tell. A
        // collision rolls back and the retry resolves duplicates in full.
        let lookup = if tries == 1 {
            Lookup::Optimistic
        } else {
            Lookup::Full
        };
        match stage(&txn, &key, &plan, lookup).await {
            Ok(ChunkOutcome::Committed(done)) => {
                txn.commit().await?;
                tracing::info!(
                    accepted = done.accepted,
                    rejected = done.rejected,
                    displaced = done.displaced,
                    finished = done.finished,
                    "chunk committed"
                );
                record_metrics(&plan, done);
                return Ok(ChunkOutcome::Committed(done));
            }
            // Nothing to keep: dropping the transaction rolls it back.
            Ok(other) => return Ok(other),
            Err(ChunkError::Db(e)) if is_collision(&e) && tries < MAX_TRIES => {
                tracing::debug!(error = %e, tries, "chunk collided with another, retrying");
                drop(txn);
                let jitter = rand::random_range(0..10 * u64::from(tries));
                tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
            }
            Err(ChunkError::Db(e)) if is_row_overlap(&e) => {
                return Err(ChunkError::Overlap {
                    batch_id: key.batch_id,
                    first_row: key.first_row,
                });
            }
            Err(e) => return Err(e),
        }
    }
}

/// Counts a committed chunk's rows: rejections by reason from the plan, and the rows that lost
/// to (or displaced) another chunk's row as duplicates. A displaced contact had been counted as
/// ingested by its own chunk; counters only go up, so it is counted again as a duplicate.
fn record_metrics(plan: &Plan, done: Committed) {
    shared::metrics::contacts_ingested(u64::from(done.accepted));
    let mut by_reason: HashMap<shared::metrics::RejectReason, u64> = HashMap::new();
    for rejected in &plan.rejected {
        *by_reason
            .entry(rejected.rejection.reason.metric())
            .or_default() += 1;
    }
    if done.do_not_call > 0 {
        *by_reason
            .entry(shared::metrics::RejectReason::DoNotCall)
            .or_default() += u64::from(done.do_not_call);
    }
    let cross_chunk = u64::from(done.rejected)
        .saturating_sub(plan.rejected.len() as u64 + u64::from(done.do_not_call))
        + u64::from(done.displaced);
    if cross_chunk > 0 {
        *by_reason
            .entry(shared::metrics::RejectReason::Duplicate)
            .or_default() += cross_chunk;
    }
    for (reason, count) in by_reason {
        shared::metrics::contacts_rejected(reason, count);
    }
}

/// Where a chunk goes.
#[derive(Debug, Clone, Copy)]
pub struct ChunkKey {
    /// The batch.
    pub batch_id: Uuid,
    /// Its workspace.
    pub workspace_id: Uuid,
    /// The chunk's sequence number.
    pub seq: i32,
    /// The chunk's first row index.
    pub first_row: u32,
    /// Rows in the chunk.
    pub rows: i32,
}

/// Whether a batch in this ingest state stores chunks: while the gateway still reads its body
/// (`receiving`, hidden) and after (`ingesting`). An `aborted`, `failed` or `ready` batch does not.
pub fn accepts_chunks(ingest_state: IngestState) -> bool {
    ACCEPTING.contains(&ingest_state)
}

/// The ingest states that store chunks ([`accepts_chunks`]).
const ACCEPTING: [IngestState; 2] = [IngestState::Receiving, IngestState::Ingesting];

struct BatchRow {
    workspace_id: Uuid,
    default_region: String,
    ingest_state: IngestState,
    chunk_done: bool,
}

/// The chunk's batch when it takes this chunk; otherwise what the chunk comes to (already
/// done, or dropped because its batch is closed).
async fn batch_taking(
    client: &impl GenericClient,
    chunk: &IngestChunkV1,
    seq: i32,
) -> Result<Result<BatchRow, ChunkOutcome>, ChunkError> {
    let Some(batch) = load_batch(client, chunk.batch_id, seq).await? else {
        // A create request answered 413 leaves no batch row, only this record: its chunks
        // published before the limit was passed are dropped like an aborted batch's.
        if shared::db::ingest::was_discarded(client, chunk.batch_id).await? {
            return Ok(Err(ChunkOutcome::BatchClosed {
                ingest_state: IngestState::Aborted,
            }));
        }
        return Err(ChunkError::UnknownBatch(chunk.batch_id));
    };
    if batch.workspace_id != chunk.workspace_id {
        return Err(ChunkError::WorkspaceMismatch {
            batch_id: chunk.batch_id,
            claimed: chunk.workspace_id,
        });
    }
    if batch.chunk_done {
        return Ok(Err(ChunkOutcome::AlreadyDone));
    }
    // A batch whose body is still arriving at the gateway (`receiving`) takes chunks like one
    // that is `ingesting`; an `aborted` one (its body proved invalid) drops them.
    if !accepts_chunks(batch.ingest_state) {
        return Ok(Err(ChunkOutcome::BatchClosed {
            ingest_state: batch.ingest_state,
        }));
    }
    Ok(Ok(batch))
}

async fn load_batch(
    client: &impl GenericClient,
    batch_id: Uuid,
    seq: i32,
) -> Result<Option<BatchRow>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT b.workspace_id, b.default_region, b.ingest_state,
                    EXISTS (SELECT 1 FROM ingest_chunks c WHERE c.batch_id = b.id AND c.seq = $2)
                        AS chunk_done
             FROM batches b WHERE b.id = $1",
            &[&batch_id, &seq],
        )
        .await?;
    row.map(|r| {
        Ok(BatchRow {
            workspace_id: r.try_get("workspace_id")?,
            default_region: r.try_get("default_region")?,
            ingest_state: r.try_get("ingest_state")?,
            chunk_done: r.try_get("chunk_done")?,
        })
    })
    .transpose()
}

/// Everything [`handle_chunk`] writes, inside the caller's transaction, without committing.
/// Public so tests can stop a worker between the work and the commit.
pub async fn stage_chunk(
    txn: &Transaction<'_>,
    key: &ChunkKey,
    plan: &Plan,
) -> Result<ChunkOutcome, ChunkError> {
    stage(txn, key, plan, Lookup::Full).await
}

/// How a chunk finds numbers other chunks of its batch stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// Looks each number up first (and resolves who keeps it).
    Full,
    /// Looks nothing up: a number already stored makes the COPY fail on the
    /// `(batch_id, phone_number)` unique index, and the chunk is retried with [`Lookup::Full`].
    /// Another chunk storing the number at the same moment makes the COPY wait for it, so a
    /// COPY that succeeds had no duplicate to resolve.
    Optimistic,
}

async fn stage(
    txn: &Transaction<'_>,
    key: &ChunkKey,
    plan: &Plan,
    lookup: Lookup,
) -> Result<ChunkOutcome, ChunkError> {
    // The gate: a second delivery of this chunk finds the row (or waits for the transaction
    // that is inserting it, and proceeds only if that one rolls back).
    let claimed = txn
        .execute(
            "INSERT INTO ingest_chunks (batch_id, seq, rows, accepted, rejected)
             VALUES ($1, $2, $3, 0, 0) ON CONFLICT DO NOTHING",
            &[&key.batch_id, &key.seq, &key.rows],
        )
        .await?;
    if claimed == 0 {
        return Ok(ChunkOutcome::AlreadyDone);
    }

    let listed = do_not_call(txn, key.workspace_id, plan).await?;
    let resolved = resolve_across_chunks(txn, key.batch_id, plan, &listed, lookup).await?;
    copy_contacts(txn, key, &resolved.accepted).await?;
    let all_rejected: Vec<&Rejected> = plan
        .rejected
        .iter()
        .chain(&resolved.rejected)
        .chain(&resolved.displaced)
        .collect();
    insert_rejected(txn, key.batch_id, &all_rejected).await?;

    let accepted = resolved.accepted.len() as i32;
    let rejected = (plan.rejected.len() + resolved.rejected.len()) as i32;
    let displaced = resolved.displaced.len() as i32;
    txn.execute(
        "UPDATE ingest_chunks SET accepted = $3, rejected = $4 WHERE batch_id = $1 AND seq = $2",
        &[&key.batch_id, &key.seq, &accepted, &rejected],
    )
    .await?;
    // Locks the batch row until commit. This also orders the last chunks: a chunk that waits
    // here counts, in `finish_if_complete` below, the chunks committed while it waited.
    let open = txn
        .query_opt(
            // `total_rows` is the gateway's: it wrote the submitted count with the batch. The
            // chunks only sort those rows into accepted and rejected.
            "UPDATE batches SET
                 accepted_rows = accepted_rows + $2 - $4,
                 rejected_rows = rejected_rows + $3 + $4,
                 updated_at = now()
             WHERE id = $1 AND ingest_state = ANY ($5)
             RETURNING ingest_state",
            &[
                &key.batch_id,
                &accepted,
                &rejected,
                &displaced,
                &&ACCEPTING[..],
            ],
        )
        .await?;
    if open.is_none() {
        let state: IngestState = txn
            .query_one(
                "SELECT ingest_state FROM batches WHERE id = $1",
                &[&key.batch_id],
            )
            .await?
            .try_get("ingest_state")?;
        return Ok(ChunkOutcome::BatchClosed {
            ingest_state: state,
        });
    }
    let finished = shared::db::ingest::finish_if_complete(txn, key.batch_id).await?;
    Ok(ChunkOutcome::Committed(Committed {
        accepted: accepted as u32,
        rejected: rejected as u32,
        displaced: displaced as u32,
        do_not_call: resolved.do_not_call,
        finished,
    }))
}

/// The chunk's accepted numbers that are on the workspace's do-not-call list: one index probe
/// per number (`dnc_numbers` primary key), in one statement.
async fn do_not_call(
    txn: &Transaction<'_>,
    workspace_id: Uuid,
    plan: &Plan,
) -> Result<HashSet<String>, tokio_postgres::Error> {
    if plan.accepted.is_empty() {
        return Ok(HashSet::new());
    }
    let numbers: Vec<&str> = plan.accepted.iter().map(|a| a.number.as_str()).collect();
    let rows = txn
        .query(
            "SELECT number FROM dnc_numbers WHERE workspace_id = $1 AND number = ANY($2)",
            &[&workspace_id, &numbers],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.get("number")).collect())
}

/// This chunk's rows after comparing with what other chunks stored.
struct Resolved<'p> {
    /// Rows to COPY.
    accepted: Vec<&'p Accepted>,
    /// This chunk's rows that lost to an earlier row of another chunk.
    rejected: Vec<Rejected>,
    /// Other chunks' contacts this chunk displaced (already deleted).
    displaced: Vec<Rejected>,
    /// How many of `rejected` are on the do-not-call list.
    do_not_call: u32,
}

impl<'p> Resolved<'p> {
    /// Rejects the rows of `plan` on the do-not-call list (`listed`); returns the others.
    fn screen_do_not_call(
        &mut self,
        plan: &'p Plan,
        listed: &HashSet<String>,
    ) -> Vec<&'p Accepted> {
        let mut candidates: Vec<&'p Accepted> = Vec::with_capacity(plan.accepted.len());
        for a in &plan.accepted {
            if listed.contains(a.number.as_str()) {
                self.do_not_call += 1;
                self.rejected.push(Rejected {
                    row_index: a.row_index,
                    raw_number: Some(a.row.phone_number.clone()),
                    rejection: Rejection::new(
                        Reason::DoNotCall,
                        format!(
                            "{} is on the workspace's do-not-call list",
                            a.number.as_str()
                        ),
                    ),
                });
            } else {
                candidates.push(a);
            }
        }
        candidates
    }

    /// Decides each of `candidates` against the contacts other chunks stored with the same
    /// number (`existing`: number → their row and whether it is still queued): the earlier row
    /// wins, and a later row still queued is displaced. Returns the rows to displace and, by
    /// number, the row that displaces each.
    fn against_existing(
        &mut self,
        candidates: Vec<&'p Accepted>,
        existing: &HashMap<String, (i32, bool)>,
    ) -> (Vec<i32>, HashMap<String, i32>) {
        let mut to_displace: Vec<i32> = Vec::new();
        let mut winner_of: HashMap<String, i32> = HashMap::new();
        for a in candidates {
            match existing.get(a.number.as_str()) {
                None => self.accepted.push(a),
                Some(&(their_row, queued)) if their_row > a.row_index && queued => {
                    to_displace.push(their_row);
                    winner_of.insert(a.number.as_str().to_owned(), a.row_index);
                    self.accepted.push(a);
                }
                Some(&(their_row, queued)) => {
                    let mut rejection = plan::duplicate_of(their_row);
                    if !queued && their_row > a.row_index {
                        rejection.detail.push_str(" (already released for dialing)");
                    }
                    self.rejected.push(Rejected {
                        row_index: a.row_index,
                        raw_number: Some(a.row.phone_number.clone()),
                        rejection,
                    });
                }
            }
        }
        (to_displace, winner_of)
    }
}

/// This chunk's rows against the do-not-call list (`listed`) and the contacts other chunks of
/// batch `batch_id` stored; displaces (deletes) the later queued duplicates it wins against.
async fn resolve_across_chunks<'p>(
    txn: &Transaction<'_>,
    batch_id: Uuid,
    plan: &'p Plan,
    listed: &HashSet<String>,
    lookup: Lookup,
) -> Result<Resolved<'p>, tokio_postgres::Error> {
    let mut out = Resolved {
        accepted: Vec::with_capacity(plan.accepted.len()),
        rejected: Vec::new(),
        displaced: Vec::new(),
        do_not_call: 0,
    };
    let candidates = out.screen_do_not_call(plan, listed);
    if candidates.is_empty() || lookup == Lookup::Optimistic {
        out.accepted.extend(candidates);
        return Ok(out);
    }
    let numbers: Vec<&str> = candidates.iter().map(|a| a.number.as_str()).collect();
    let existing = txn
        .query(
            "SELECT phone_number, row_index, state = $3 AS queued
             FROM contacts WHERE batch_id = $1 AND phone_number = ANY($2)",
            &[&batch_id, &numbers, &ContactState::Queued],
        )
        .await?;
    if existing.is_empty() {
        out.accepted.extend(candidates);
        return Ok(out);
    }
    let existing: HashMap<String, (i32, bool)> = existing
        .into_iter()
        .map(|r| {
            let number: String = r.get("phone_number");
            (number, (r.get("row_index"), r.get("queued")))
        })
        .collect();
    let (to_displace, winner_of) = out.against_existing(candidates, &existing);
    if !to_displace.is_empty() {
        // Only what this statement actually deletes is recorded: a contact another chunk
        // displaced (or released) meanwhile makes the COPY collide, and the retry sorts it out.
        let gone = txn
            .query(
                "DELETE FROM contacts
                 WHERE batch_id = $1 AND row_index = ANY($2) AND state = $3
                 RETURNING row_index, phone_number",
                &[&batch_id, &to_displace, &ContactState::Queued],
            )
            .await?;
        for r in gone {
            let number: String = r.get("phone_number");
            let winner = winner_of.get(&number).copied().unwrap_or_default();
            out.displaced.push(Rejected {
                row_index: r.get("row_index"),
                raw_number: Some(number),
                rejection: plan::duplicate_of(winner),
            });
        }
    }
    Ok(out)
}

const CONTACT_COLUMNS: [Type; 15] = [
    Type::UUID,
    Type::UUID,
    Type::UUID,
    Type::INT4,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
    Type::TEXT,
    Type::TEXT_ARRAY,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
];

/// Where a row says it is: its declared `state`, its `postalCode` and the state that code
/// belongs to (libaddressinput's ZIP prefixes, `shared::compliance::jurisdiction::postal`).
/// The gateway validated both fields; a value that does not parse here (a message from an older
/// or foreign publisher) is stored as none rather than failing the chunk.
fn place_of(a: &Accepted) -> (Option<String>, Option<String>, Option<String>) {
    use shared::compliance::jurisdiction::{PostalCode, UsState};
    let declared = a
        .row
        .state
        .as_deref()
        .and_then(|s| s.parse::<UsState>().ok())
        .map(|s| s.code().to_owned());
    let postal = a
        .row
        .postal_code
        .as_deref()
        .and_then(|p| p.parse::<PostalCode>().ok());
    let postal_state = postal
        .as_ref()
        .and_then(PostalCode::state)
        .map(|s| s.code().to_owned());
    (
        declared,
        postal.map(|p| p.as_str().to_owned()),
        postal_state,
    )
}

/// The zones the calling-hours rule uses for a row: its own `timezone` (validated by the
/// gateway), else those of its number (libphonenumber's map); empty when unknown.
fn zones_of(a: &Accepted) -> Vec<&'static str> {
    match a
        .row
        .timezone
        .as_deref()
        .and_then(|t| t.parse::<chrono_tz::Tz>().ok())
    {
        Some(tz) => vec![tz.name()],
        None => shared::compliance::zones_for_number(a.number.as_str())
            .into_iter()
            .map(|t| t.name())
            .collect(),
    }
}

async fn copy_contacts(
    txn: &Transaction<'_>,
    key: &ChunkKey,
    rows: &[&Accepted],
) -> Result<(), tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let sink = txn
        .copy_in(
            "COPY contacts (id, batch_id, workspace_id, row_index, external_id, phone_number,
                            name, email, company, inputs, timezone, timezones,
                            declared_state, postal_code, postal_state) FROM STDIN BINARY",
        )
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &CONTACT_COLUMNS);
    pin_mut!(writer);
    for a in rows {
        let id = Uuid::now_v7();
        let zones = zones_of(a);
        let (declared_state, postal_code, postal_state) = place_of(a);
        let values: [&(dyn ToSql + Sync); 15] = [
            &id,
            &key.batch_id,
            &key.workspace_id,
            &a.row_index,
            &a.row.external_id,
            &a.number.as_str(),
            &a.row.name,
            &a.row.email,
            &a.row.company,
            &a.row.inputs,
            &a.row.timezone,
            &zones,
            &declared_state,
            &postal_code,
            &postal_state,
        ];
        writer.as_mut().write(&values).await?;
    }
    writer.finish().await?;
    Ok(())
}

async fn insert_rejected(
    txn: &Transaction<'_>,
    batch_id: Uuid,
    rows: &[&Rejected],
) -> Result<(), tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let indexes: Vec<i32> = rows.iter().map(|r| r.row_index).collect();
    let raws: Vec<Option<&str>> = rows.iter().map(|r| r.raw_number.as_deref()).collect();
    let reasons: Vec<&str> = rows.iter().map(|r| r.rejection.reason.as_str()).collect();
    let details: Vec<&str> = rows.iter().map(|r| r.rejection.detail.as_str()).collect();
    txn.execute(
        "INSERT INTO rejected_rows (batch_id, row_index, raw_number, reason, detail)
         SELECT $1, * FROM unnest($2::int[], $3::text[], $4::text[], $5::text[])
         ON CONFLICT DO NOTHING",
        &[&batch_id, &indexes, &raws, &reasons, &details],
    )
    .await?;
    Ok(())
}

/// Another chunk's transaction got in the way; a fresh transaction will see its result.
fn is_collision(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) => {
            (db.code() == &SqlState::UNIQUE_VIOLATION
                && db.constraint() == Some("contacts_batch_id_phone_number_key"))
                || db.code() == &SqlState::T_R_DEADLOCK_DETECTED
                || db.code() == &SqlState::T_R_SERIALIZATION_FAILURE
        }
        None => false,
    }
}

fn is_row_overlap(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        db.code() == &SqlState::UNIQUE_VIOLATION
            && db.constraint() == Some("contacts_batch_id_row_index_key")
    })
}
