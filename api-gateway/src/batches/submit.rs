//! The batch row of a create request: hidden while its body is received, then either made
//! visible with its settings (every chunk confirmed first) or aborted. See [`super::stream`]
//! for the order of the steps.

use serde_json::Value;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use shared::domain::{IngestState, JobState, Surface};

pub use super::fingerprint::Fingerprint;
use super::model::{Batch, COLUMNS};
use super::settings::NewBatch;
use crate::auth::Workspace;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::Violations;

/// The result of a create request.
pub struct Submitted {
    /// The batch (the earlier one, as it is now, when the idempotency key was seen before).
    pub batch: Batch,
    /// False when an earlier request with the same `Idempotency-Key` created it.
    pub created: bool,
}

/// What an `Idempotency-Key` refers to already.
pub enum KeyState {
    /// Nothing: this request may create the batch.
    Free,
    /// A request with this key is still being received.
    InProgress,
    /// The batch it created, with the fingerprint of its body (NULL for old batches).
    Used(Box<Batch>, Option<Vec<u8>>),
}

/// Looks the key up in the workspace.
pub async fn key_state(
    client: &impl GenericClient,
    workspace: Uuid,
    key: &str,
) -> Result<KeyState, ApiError> {
    let sql = format!(
        "SELECT {COLUMNS}, idempotency_fingerprint, ingest_state AS hidden_state
         FROM batches WHERE workspace_id = $1 AND idempotency_key = $2"
    );
    let Some(row) = client.query_opt(&sql, &[&workspace, &key]).await? else {
        return Ok(KeyState::Free);
    };
    if row.try_get::<_, IngestState>("hidden_state")? == IngestState::Receiving {
        return Ok(KeyState::InProgress);
    }
    let fingerprint: Option<Vec<u8>> = row.get("idempotency_fingerprint");
    Ok(KeyState::Used(
        Box::new(Batch::from_row(&row)?),
        fingerprint,
    ))
}

/// Answers a request whose key was used before: the earlier batch as it is now if the body is
/// the same, a 422 otherwise, a 409 while the earlier request is still being received.
pub async fn replay(
    state: &AppState,
    ws: &Workspace,
    key: &str,
    fingerprint: &[u8],
) -> Result<Submitted, ApiError> {
    let client = state.db.get().await?;
    match key_state(&**client, ws.id, key).await? {
        KeyState::Used(batch, first) => {
            if first.is_some_and(|f| f != fingerprint) {
                return Err(ApiError::IdempotencyKeyReused);
            }
            Ok(Submitted {
                batch: *batch,
                created: false,
            })
        }
        // The earlier request is still streaming, or it failed and freed the key meanwhile.
        KeyState::InProgress | KeyState::Free => Err(ApiError::Conflict(
            "a request with this Idempotency-Key is still being received; retry once it has been answered".into(),
        )),
    }
}

/// Inserts the hidden row chunks are ingested under (`ingest_state = 'receiving'`, placeholder
/// settings, the region the rows are read in). False when the idempotency key is taken.
pub async fn insert_hidden(
    client: &impl GenericClient,
    batch_id: Uuid,
    ws: &Workspace,
    surface: Surface,
    region: &str,
    key: Option<&str>,
) -> Result<bool, ApiError> {
    let n = client
        .execute(
            "INSERT INTO batches (id, workspace_id, surface, name, agent_id, state, ingest_state,
                 max_concurrent_dials, max_calls_per_second, retry_max_attempts, retry_busy_delay_ms,
                 retry_no_answer_delay_ms, default_region, idempotency_key)
             VALUES ($1, $2, $3, '', NULL, $6, $7, 1, 1, 1, 0, 0, $4, $5)
             ON CONFLICT (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING",
            &[
                &batch_id,
                &ws.id,
                &surface,
                &region,
                &key,
                &JobState::Created,
                &IngestState::Receiving,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// The references a batch makes: its agent and caller IDs must be the workspace's. A job naming
/// no caller IDs gets every number the workspace owns.
pub async fn check_references(
    client: &impl GenericClient,
    ws: &Workspace,
    new: &mut NewBatch,
    violations: &mut Violations,
) -> Result<(), ApiError> {
    let (agent_field, numbers_field) = match new.surface {
        Surface::Vogent => ("callAgentId", "fromPhoneNumberIds"),
        Surface::Dialgen => ("agentId", "options.fromPhoneNumberIds"),
    };
    if !new.agent_id.is_nil() {
        let found = client
            .query_opt(
                "SELECT 1 FROM agents WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL",
                &[&new.agent_id, &ws.id],
            )
            .await?;
        if found.is_none() {
            violations.add(
                agent_field,
                format!("no agent with id {} in this workspace", new.agent_id),
            );
        }
    }
    let owned: Vec<Uuid> = client
        .query("SELECT id FROM phone_numbers WHERE workspace_id = $1 AND deleted_at IS NULL ORDER BY created_at, id", &[&ws.id])
        .await?
        .iter()
        .map(|r| r.get("id"))
        .collect();
    if new.from_phone_number_ids.is_empty() {
        // A job that names no caller IDs uses every number the workspace owns (and, while it
        // owns none, the dial workers' DEFAULT_CALLER_ID).
        new.from_phone_number_ids = owned.clone();
    }
    for (i, id) in new.from_phone_number_ids.iter().enumerate() {
        if !owned.contains(id) {
            violations.add(
                format!("{numbers_field}[{i}]"),
                format!("no phone number with id {id} in this workspace"),
            );
        }
    }
    Ok(())
}

/// Writes the settings onto the hidden row and lets ingestion finish: the batch becomes
/// visible, `ingesting` (or `ready` at once if every chunk already committed). Call it only
/// after every chunk is confirmed. `None` if the row is no longer receiving (the ingest
/// workers' sweep aborted an upload that stalled).
pub async fn make_visible(
    client: &impl GenericClient,
    batch_id: Uuid,
    new: &NewBatch,
    rows: u32,
    chunks: u32,
    fingerprint: Option<&[u8]>,
) -> Result<Option<Batch>, ApiError> {
    let row = client
        .query_opt(
            &format!(
                "UPDATE batches SET name = $2, agent_id = $3, user_id = $4, ingest_state = 'ingesting',
                     max_concurrent_dials = $5, max_calls_per_second = $6, priority = $7, schedule = $8,
                     timezone = $9, scheduled_start_time = $10, from_phone_number_ids = $11,
                     retry_max_attempts = $12, retry_busy_delay_ms = $13, retry_no_answer_delay_ms = $14,
                     webhooks = $15, tags = $16, total_rows = $17, trace_context = $18,
                     idempotency_fingerprint = $19, machine_detection = $20,
                     retry_voicemail_delay_ms = $21, expected_chunks = $22, created_at = now(),
                     updated_at = now()
                 WHERE id = $1 AND ingest_state = 'receiving'
                 RETURNING {COLUMNS}"
            ),
            &[
                &batch_id,
                &new.name,
                &new.agent_id,
                &new.user_id,
                &new.max_concurrent_dials,
                &new.max_calls_per_second,
                &new.priority,
                &new.schedule.as_ref().map(|s| serde_json::to_value(s).unwrap_or(Value::Null)),
                &new.timezone.name(),
                &new.scheduled_start_time,
                &new.from_phone_number_ids,
                &(new.retry.max_attempts as i32),
                &(new.retry.busy_delay as i64),
                &(new.retry.no_answer_delay as i64),
                &new.webhooks,
                &new.tags,
                // What the client sent: the ingest workers count accepted and rejected rows
                // but never this (it was counted twice when they added to it too).
                &(rows as i32),
                // The scheduler's releases continue this trace (one batch, one trace).
                &shared::telemetry::propagation::current_traceparent(),
                &fingerprint,
                &new.machine_detection.map(|m| m.as_str()),
                &new.retry.voicemail_delay.map(|ms| ms as i64),
                &(chunks as i32),
            ],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let batch = Batch::from_row(&row)?;
    shared::metrics::batch_created(new.surface);
    shared::db::ingest::finish_if_complete(client, batch_id).await?;
    Ok(Some(batch))
}

/// Discards a hidden batch (see `shared::db::ingest::abort_receiving`). A failure here is
/// logged, not answered: the request already has its error, and the ingest workers' sweep
/// aborts a batch left receiving.
pub async fn abort(state: &AppState, batch_id: Uuid, reason: &str) {
    let result = async {
        let mut client = state.db.get().await?;
        let txn = client.transaction().await?;
        shared::db::ingest::abort_receiving(&*txn, batch_id, reason).await?;
        txn.commit().await?;
        Ok::<_, ApiError>(())
    }
    .await;
    match result {
        Ok(()) => tracing::info!(%batch_id, reason, "upload aborted; its chunks are discarded"),
        Err(e) => {
            tracing::error!(%batch_id, error = %e, "aborting an upload failed; the ingest sweep will")
        }
    }
}

/// Removes a hidden batch whose body was too large (413): nothing of it is left, see
/// `shared::db::ingest::discard_receiving`. A failure is logged, and the ingest workers' sweep
/// aborts the batch instead.
pub async fn discard(state: &AppState, batch_id: Uuid) {
    let result = async {
        let mut client = state.db.get().await?;
        let txn = client.transaction().await?;
        shared::db::ingest::discard_receiving(&*txn, batch_id).await?;
        txn.commit().await?;
        Ok::<_, ApiError>(())
    }
    .await;
    match result {
        Ok(()) => tracing::info!(%batch_id, "upload too large; its batch is discarded"),
        Err(e) => {
            tracing::error!(%batch_id, error = %e, "discarding an upload failed; the ingest sweep will abort it")
        }
    }
}

/// The `Idempotency-Key` header, if present and sensible.
pub fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Ok(s) if !s.trim().is_empty() && s.len() <= 255 => Ok(Some(s.trim().to_owned())),
            _ => Err(ApiError::field(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            )),
        },
    }
}
