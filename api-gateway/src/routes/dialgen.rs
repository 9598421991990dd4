//! The Dialgen Call Batch surface (seed 004 and API-REFERENCE.md).

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use shared::domain::timing::{api_time, api_time_opt, call_duration_secs};
use shared::domain::views::{dialgen_call_status, dialgen_contact_status};
use shared::domain::{ContactState, Surface};

use crate::app::AppState;
use crate::auth::Workspace;
use crate::batches::body::DialgenContact;
use crate::batches::csv::{self, is_multipart, multipart};
use crate::batches::model::{Batch, COLUMNS, VISIBLE};
use crate::batches::settings::{self, DialgenCreate};
use crate::batches::stats::{self, Counts, outcome_column};
use crate::batches::stream;
use crate::batches::submit::idempotency_key;
use crate::error::ApiError;
use crate::extract::{Query, path_id};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/batch", post(create))
        .route("/api/v1/batch/list", get(list))
        .route("/api/v1/batch/check-status", get(check_status))
        .route("/api/v1/batch/{id}/status", get(status_link))
        .route("/api/v1/status/batch", get(calls))
}

#[utoipa::path(post, path = "/api/v1/batch", tag = "dialgen", request_body = crate::openapi::DialgenCreateDoc, params(("Idempotency-Key" = Option<String>, Header)), responses((status = 202, body = crate::openapi::DialgenCreated), (status = 400, description = "malformed JSON or a wrong type", body = crate::openapi::ErrorBody), (status = 413, description = "too large", body = crate::openapi::ErrorBody), (status = 422, description = "validation failed, or idempotency_key_reused: the Idempotency-Key came with another body", body = crate::openapi::ErrorBody), (status = 503, description = "a dependency is unavailable", body = crate::openapi::ErrorBody), (status = 401, description = "no valid API key", body = crate::openapi::ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    ws: Workspace,
    headers: HeaderMap,
    req_body: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req = stream::Request {
        state: state.clone(),
        ws: ws.clone(),
        surface: Surface::Dialgen,
        key: idempotency_key(&headers)?,
        region_field: "options.defaultRegion",
        rows_key: "contacts",
    };
    let check: stream::CheckHeader = Box::new(|header, ws, violations| {
        let header: DialgenCreate = settings::typed(header)?;
        Ok(settings::check_dialgen(header, ws, Utc::now(), violations))
    });
    let submitted = if is_multipart(&headers) {
        let multipart = multipart(req_body).await?;
        csv::receive_csv::<DialgenContact>(req, multipart, check).await?
    } else {
        stream::receive_json::<DialgenContact>(req, req_body.into_body(), check).await?
    };
    let id = submitted.batch.id;
    let base = state.config.public_url.trim_end_matches('/');
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "success": true,
            "batchId": id,
            // A replay shows the batch as it is now, not as it was when first accepted.
            "status": submitted.batch.dialgen_status(Utc::now()),
            "message": "Batch accepted and is being processed. Monitor the status link for updates.",
            "links": {
                "status": format!("{base}/api/v1/batch/{id}/status"),
                "dashboard": crate::monitor::dashboard_link(&state.config, id, Utc::now()),
            },
        })),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatusQuery {
    batch_id: Option<String>,
    limit: Option<String>,
}

fn batch_id_param(raw: Option<&str>) -> Result<Uuid, ApiError> {
    let raw = raw.ok_or_else(|| ApiError::field("batchId", "is required"))?;
    path_id(raw, "batch")
}

/// `limit`: a count of recent calls, or `all` / `-1` for every call.
fn recent_limit(raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    match raw {
        None => Ok(None),
        Some("all") | Some("-1") => Ok(Some(-1)),
        Some(n) => match n.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(n)),
            _ => Err(ApiError::field(
                "limit",
                "must be a non-negative number, \"all\" or -1",
            )),
        },
    }
}

#[utoipa::path(get, path = "/api/v1/batch/check-status", tag = "dialgen", params(("batchId" = String, Query), ("limit" = Option<String>, Query, description = "recent calls: a number, all or -1")), responses((status = 200, body = crate::openapi::CheckStatus), (status = 400, description = "malformed JSON or a wrong type", body = crate::openapi::ErrorBody), (status = 404, description = "not found in this workspace", body = crate::openapi::ErrorBody), (status = 422, description = "validation failed", body = crate::openapi::ErrorBody), (status = 401, description = "no valid API key", body = crate::openapi::ErrorBody)))]
pub(crate) async fn check_status(
    State(state): State<AppState>,
    ws: Workspace,
    Query(q): Query<StatusQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = batch_id_param(q.batch_id.as_deref())?;
    let limit = recent_limit(q.limit.as_deref())?;
    let client = state.db.get().await?;
    let batch = Batch::load(&client, ws.id, id).await?;
    Ok(Json(
        stats::check_status(&client, &batch, limit, Utc::now()).await?,
    ))
}

#[derive(Deserialize)]
pub(crate) struct LinkQuery {
    limit: Option<String>,
}

/// The seed's `links.status`, in the check-status shape.
#[utoipa::path(get, path = "/api/v1/batch/{id}/status", tag = "dialgen", params(("id" = String, Path), ("limit" = Option<String>, Query)), responses((status = 200, body = crate::openapi::CheckStatus), (status = 404, description = "not found in this workspace", body = crate::openapi::ErrorBody), (status = 422, description = "validation failed", body = crate::openapi::ErrorBody), (status = 401, description = "no valid API key", body = crate::openapi::ErrorBody)))]
pub(crate) async fn status_link(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
    Query(q): Query<LinkQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(&id, "batch")?;
    let limit = recent_limit(q.limit.as_deref())?;
    let client = state.db.get().await?;
    let batch = Batch::load(&client, ws.id, id).await?;
    Ok(Json(
        stats::check_status(&client, &batch, limit, Utc::now()).await?,
    ))
}

/// Every batch of the workspace, newest first.
#[utoipa::path(get, path = "/api/v1/batch/list", tag = "dialgen", responses((status = 200, body = Vec<crate::openapi::BatchListItem>), (status = 401, description = "no valid API key", body = crate::openapi::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    ws: Workspace,
) -> Result<Json<Value>, ApiError> {
    let client = state.db.get().await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM batches WHERE workspace_id = $1 AND {VISIBLE} ORDER BY created_at DESC, id DESC LIMIT 1000"
    );
    let now = Utc::now();
    let batches = client
        .query(&sql, &[&ws.id])
        .await?
        .iter()
        .map(Batch::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let ids: Vec<Uuid> = batches.iter().map(|b| b.id).collect();
    let mut counts = Counts::load_many(&client, &ids).await?;
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let counts = counts.remove(&b.id).unwrap_or_default();
        let s = stats::statistics(&b, &counts);
        out.push(json!({
            "batchId": b.id,
            "status": b.dialgen_status(now),
            "total": s.total,
            "processed": s.processed,
            "succeeded": s.succeeded,
            "failed": s.failed,
            "voicemail": s.voicemail,
            "cancelled": s.cancelled,
            "percentComplete": s.percent_complete,
            "createdAt": api_time(b.created_at),
            "agentId": b.agent_id,
            "priority": b.priority,
            "name": b.name,
        }));
    }
    Ok(Json(Value::Array(out)))
}

/// Every call of a batch with its status: one entry per contact, with its latest attempt.
///
/// `status` is the contact's (a contact waiting for its retry is `SCHEDULED`); `dialStatus` is
/// its latest call's own status, the one `recentCalls` and the webhook show for that call
/// (`MISSED` for a busy call). Both come from `shared::domain::views`.
#[utoipa::path(get, path = "/api/v1/status/batch", tag = "dialgen", params(("batchId" = String, Query)), responses((status = 200, body = crate::openapi::BatchCalls), (status = 404, description = "not found in this workspace", body = crate::openapi::ErrorBody), (status = 422, description = "validation failed", body = crate::openapi::ErrorBody), (status = 401, description = "no valid API key", body = crate::openapi::ErrorBody)))]
pub(crate) async fn calls(
    State(state): State<AppState>,
    ws: Workspace,
    Query(q): Query<StatusQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = batch_id_param(q.batch_id.as_deref())?;
    let client = state.db.get().await?;
    Batch::load(&client, ws.id, id).await?;
    let rows = client
        .query(
            "SELECT c.id, c.state, c.last_outcome, c.phone_number, a.started_at, a.answered_at, a.ended_at, a.error, a.id, a.outcome
             FROM contacts c
             LEFT JOIN LATERAL (SELECT * FROM dial_attempts d WHERE d.contact_id = c.id ORDER BY d.attempt_no DESC LIMIT 1) a ON TRUE
             WHERE c.batch_id = $1 ORDER BY c.row_index",
            &[&id],
        )
        .await?;
    let calls = rows
        .iter()
        .map(|r| {
            let state: &str = r.get(1);
            let state = ContactState::parse(state).ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!("a contact has an invalid state {state:?}"))
            })?;
            let last_outcome = outcome_column(r.get(2))?;
            let dial_id: Option<Uuid> = r.get(8);
            let dial_outcome = outcome_column(r.get(9))?;
            let error = r.get::<_, Option<String>>(7).or_else(|| {
                last_outcome
                    .filter(|o| !o.is_answered())
                    .map(|o| o.as_str().to_owned())
            });
            Ok(json!({
                "callId": r.get::<_, Uuid>(0),
                "status": dialgen_contact_status(state, last_outcome),
                "startTime": api_time_opt(r.get(4)),
                "phoneNumber": r.get::<_, String>(3),
                "error": error,
                "duration": call_duration_secs(r.get(5), r.get(6)),
                "recordingUrl": Value::Null,
                "dialId": dial_id,
                "dialStatus": dial_id.map(|_| dialgen_call_status(dial_outcome)),
            }))
        })
        .collect::<Result<Vec<Value>, ApiError>>()?;
    Ok(Json(json!({"batchId": id, "calls": calls})))
}
