//! Creating a batch: reference checks, the idempotency key, the batch row, and every chunk
//! published and confirmed before the client hears "accepted".

use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use shared::domain::Surface;
use shared::queue::Stream;
use shared::queue::publisher::Outgoing;

use super::body::Parsed;
use super::model::{Batch, COLUMN_COUNT, COLUMNS};
use super::settings::NewBatch;
use crate::app::AppState;
use crate::auth::Workspace;
use crate::error::ApiError;
use crate::validate::Violations;

/// An `Idempotency-Key` with the fingerprint of the request it came with.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// The key as sent (trimmed).
    pub key: String,
    /// SHA-256 over the surface and the body bytes: the same key with another body is refused.
    pub fingerprint: Vec<u8>,
}

impl Idempotency {
    /// Binds `key` to this request's surface and body.
    pub fn new(key: String, surface: Surface, body: &[u8]) -> Self {
        let mut hash = Sha256::new();
        hash.update(surface.as_str().as_bytes());
        hash.update([0]);
        hash.update(body);
        Self {
            key,
            fingerprint: hash.finalize().to_vec(),
        }
    }
}

/// The result of a create request.
pub struct Submitted {
    /// The batch (the earlier one, as it is now, when the idempotency key was seen before).
    pub batch: Batch,
    /// False when an earlier request with the same `Idempotency-Key` created it.
    pub created: bool,
}

/// Checks what the batch refers to, then creates it and publishes its rows.
#[tracing::instrument(name = "create_batch", skip_all, fields(batch_id = %batch_id, workspace_id = %ws.id, rows = parsed.rows))]
pub async fn submit(
    state: &AppState,
    ws: &Workspace,
    batch_id: Uuid,
    mut new: NewBatch,
    parsed: Parsed,
    idempotency: Option<Idempotency>,
    mut violations: Violations,
) -> Result<Submitted, ApiError> {
    let client = state.db.get().await?;

    if let Some(key) = &idempotency
        && let Some(batch) = by_idempotency_key(&client, ws.id, key).await?
    {
        return Ok(Submitted {
            batch,
            created: false,
        });
    }

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
        .map(|r| r.get(0))
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
    violations.into_result(())?;

    let inserted = client
        .query_opt(
            &format!(
                "INSERT INTO batches (id, workspace_id, surface, name, agent_id, user_id, state, ingest_state,
                     max_concurrent_dials, max_calls_per_second, priority, schedule, timezone, scheduled_start_time,
                     from_phone_number_ids, retry_max_attempts, retry_busy_delay_ms, retry_no_answer_delay_ms,
                     webhooks, tags, default_region, idempotency_key, total_rows, trace_context,
                     idempotency_fingerprint, machine_detection, retry_voicemail_delay_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, 'created', 'ingesting', $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                     $17, $18, $19, $20, $21, $22, $23, $24, $25)
                 ON CONFLICT (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                 RETURNING {COLUMNS}"
            ),
            &[
                &batch_id,
                &ws.id,
                &new.surface.as_str(),
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
                &new.default_region,
                &idempotency.as_ref().map(|i| i.key.as_str()),
                // What the client sent: the ingest workers count accepted and rejected rows
                // but never this (it was counted twice when they added to it too).
                &(parsed.rows as i32),
                // The scheduler's releases continue this trace (one batch, one trace).
                &shared::telemetry::propagation::current_traceparent(),
                &idempotency.as_ref().map(|i| i.fingerprint.as_slice()),
                &new.machine_detection.map(|m| m.as_str()),
                &new.retry.voicemail_delay.map(|ms| ms as i64),
            ],
        )
        .await?;
    let Some(row) = inserted else {
        // A concurrent request with the same key won the race: answer with its batch.
        let Some(key) = idempotency else {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "a batch insert without an idempotency key conflicted"
            )));
        };
        let batch = by_idempotency_key(&client, ws.id, &key)
            .await?
            .ok_or(ApiError::NotFound("batch"))?;
        return Ok(Submitted {
            batch,
            created: false,
        });
    };
    let batch = Batch::from_row(&row)?;
    drop(client);
    shared::metrics::batch_created(new.surface);

    let expected = parsed.chunks.len() as i32;
    let messages = parsed
        .chunks
        .into_iter()
        .enumerate()
        .map(|(seq, body)| Outgoing {
            body,
            message_id: Some(format!("{batch_id}:{seq}")),
            headers: Vec::new(),
        });
    if let Err(e) = state.publisher.publish_all(Stream::Ingest, messages).await {
        tracing::error!(batch_id = %batch_id, error = %e, "publishing rows failed; marking the batch failed");
        let client = state.db.get().await?;
        client
            .execute(
                "UPDATE batches SET state = 'failed', ingest_state = 'failed', error = $2, error_code = 'publish_failed', updated_at = now() WHERE id = $1",
                &[&batch_id, &format!("the rows could not be queued: {e}")],
            )
            .await?;
        return Err(ApiError::Unavailable(format!(
            "the rows could not be queued for ingestion ({e}); the batch {batch_id} was marked failed, please retry"
        )));
    }

    let client = state.db.get().await?;
    client
        .execute(
            "UPDATE batches SET expected_chunks = $2 WHERE id = $1",
            &[&batch_id, &expected],
        )
        .await?;
    shared::db::ingest::finish_if_complete(&**client, batch_id).await?;
    Ok(Submitted {
        batch,
        created: true,
    })
}

/// The batch an earlier request with this key created, as it is now; a 422 if that request
/// had another body.
async fn by_idempotency_key(
    client: &impl deadpool_postgres::GenericClient,
    workspace: Uuid,
    key: &Idempotency,
) -> Result<Option<Batch>, ApiError> {
    let sql = format!(
        "SELECT {COLUMNS}, idempotency_fingerprint FROM batches WHERE workspace_id = $1 AND idempotency_key = $2"
    );
    let Some(row) = client.query_opt(&sql, &[&workspace, &key.key]).await? else {
        return Ok(None);
    };
    let first: Option<&[u8]> = row.get(COLUMN_COUNT);
    if first.is_some_and(|f| f != key.fingerprint.as_slice()) {
        return Err(ApiError::IdempotencyKeyReused);
    }
    Batch::from_row(&row).map(Some)
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
