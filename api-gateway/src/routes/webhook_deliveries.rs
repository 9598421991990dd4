//! Webhook deliveries: every `call.completed`, `batch.completed` and `batch.failed` delivery the
//! dial workers made or are still trying, with its attempts, last answer and payload — so a
//! team can see why its endpoint missed an event and send it again. An extension: neither
//! vendor documents such an endpoint.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::domain::timing::{api_time, api_time_opt};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Workspace;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Query, path_id};
use crate::pagination::{Cursor, Page, PageRequest};
use crate::state::AppState;
use crate::validate::Violations;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/webhook_deliveries", get(list))
        .route("/api/webhook_deliveries/{id}", get(fetch))
        .route("/api/webhook_deliveries/{id}/retry", post(retry))
}

const WHAT: &str = "webhook delivery";

const COLUMNS: &str = "id, event, batch_id, subject_id, url, state, attempts, last_status_code,
    last_error, next_attempt_at, delivered_at, payload, created_at";

/// The states a delivery can be in (the filter accepts nothing else).
const STATES: [&str; 3] = ["pending", "delivered", "failed"];
/// The events deliveries are made for.
const EVENTS: [&str; 3] = ["call.completed", "batch.completed", "batch.failed"];

/// The filters of the delivery list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Page size, 50 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The previous page's `cursor`.
    cursor: Option<String>,
    /// Only this batch's deliveries.
    #[serde(rename = "batchId")]
    #[param(value_type = Option<Uuid>)]
    batch_id: Option<String>,
    /// pending, delivered or failed.
    #[param(pattern = "^(pending|delivered|failed)$")]
    state: Option<String>,
    /// call.completed, batch.completed or batch.failed.
    #[param(pattern = "^(call\\.completed|batch\\.completed|batch\\.failed)$")]
    event: Option<String>,
}

/// One webhook delivery and where it stands.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebhookDelivery {
    /// Also the `webhook-id` header of every send.
    id: Uuid,
    /// call.completed, batch.completed or batch.failed.
    event: String,
    batch_id: Option<Uuid>,
    /// The contact (call.completed) or batch the event is about.
    subject_id: Uuid,
    /// The endpoint, as the batch's webhooks name it.
    #[schema(pattern = "^https?://")]
    url: String,
    attempts: i32,
    last_status_code: Option<i32>,
    last_error: Option<String>,
    /// Set while pending.
    #[schema(format = DateTime)]
    next_attempt_at: Option<String>,
    /// pending, delivered or failed.
    state: String,
    #[schema(format = DateTime)]
    delivered_at: Option<String>,
    /// The body sent.
    #[schema(value_type = Object)]
    payload: Value,
    #[schema(format = DateTime)]
    created_at: String,
}

fn delivery_json(row: &tokio_postgres::Row) -> WebhookDelivery {
    let state: String = row.get("state");
    WebhookDelivery {
        id: row.get("id"),
        event: row.get("event"),
        batch_id: row.get("batch_id"),
        subject_id: row.get("subject_id"),
        url: row.get("url"),
        attempts: row.get("attempts"),
        last_status_code: row.get("last_status_code"),
        last_error: row.get("last_error"),
        // Only a pending delivery has a next attempt.
        next_attempt_at: (state == "pending").then(|| api_time(row.get("next_attempt_at"))),
        state,
        delivered_at: api_time_opt(row.get("delivered_at")),
        payload: row.get("payload"),
        created_at: api_time(row.get("created_at")),
    }
}

/// Checks an optional filter against the values it may take; an unknown value is named in
/// the 422, not answered with an empty page.
fn one_of<'a>(
    v: &mut Violations,
    field: &'static str,
    value: Option<&'a str>,
    allowed: &[&str],
) -> Option<&'a str> {
    match value {
        Some(x) if !allowed.contains(&x) => {
            v.add(field, format!("must be one of {}", allowed.join(", ")));
            None
        }
        other => other,
    }
}

/// The workspace's deliveries, oldest first, optionally of one batch, state or event.
#[utoipa::path(get, path = "/api/webhook_deliveries", tag = "webhooks", operation_id = "listWebhookDeliveries", params(ListQuery), responses((status = 200, body = Page<WebhookDelivery>), (status = 422, description = "limit out of range or a bad filter", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    ws: Workspace,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<WebhookDelivery>>, ApiError> {
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let (after_at, after_id, fetch) = page.keyset();
    // Every bad filter is named at once.
    let mut v = Violations::default();
    let wanted_state = one_of(&mut v, "state", q.state.as_deref(), &STATES);
    let event = one_of(&mut v, "event", q.event.as_deref(), &EVENTS);
    // Another workspace's batch id simply matches nothing, as an unknown one does.
    let batch_id = q.batch_id.as_deref().and_then(|b| {
        Uuid::parse_str(b)
            .map_err(|_| v.add("batchId", "must be a UUID"))
            .ok()
    });
    v.into_result(())?;
    let client = state.db.get().await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM webhook_deliveries
         WHERE workspace_id = $1
           AND ($2::uuid IS NULL OR batch_id = $2)
           AND ($3::text IS NULL OR state = $3)
           AND ($4::text IS NULL OR event = $4)
           AND ($5::timestamptz IS NULL OR (created_at, id) > ($5, $6))
         ORDER BY created_at, id LIMIT $7"
    );
    let rows = client
        .query(
            &sql,
            &[
                &ws.id,
                &batch_id,
                &wanted_state,
                &event,
                &after_at,
                &after_id,
                &fetch,
            ],
        )
        .await?;
    let cursor_of = |r: &tokio_postgres::Row| Cursor {
        at: r.get("created_at"),
        id: r.get("id"),
    };
    Ok(page.respond(rows, cursor_of, delivery_json))
}

/// One delivery.
#[utoipa::path(get, path = "/api/webhook_deliveries/{id}", tag = "webhooks", operation_id = "getWebhookDelivery", params(("id" = String, Path, description = "id")), responses((status = 200, body = WebhookDelivery)))]
pub(crate) async fn fetch(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<Json<WebhookDelivery>, ApiError> {
    one(
        &state,
        &ws,
        &id,
        &format!("SELECT {COLUMNS} FROM webhook_deliveries WHERE id = $1 AND workspace_id = $2"),
    )
    .await
}

/// Sends a delivery again now, with the same `webhook-id` (receivers de-duplicate on it): a
/// failed one gets a fresh retry period counted from now; a delivered one is sent once more; a
/// pending one is brought forward.
#[utoipa::path(post, path = "/api/webhook_deliveries/{id}/retry", tag = "webhooks", operation_id = "retryWebhookDelivery", params(("id" = String, Path, description = "id")), responses((status = 200, body = WebhookDelivery)))]
pub(crate) async fn retry(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<Json<WebhookDelivery>, ApiError> {
    // The delivery loop gives up `WEBHOOK_RETRY_FOR_SECS` after `retry_from` and grows its
    // backoff with the tries since then, so a manual retry restarts both rather than failing
    // again after one try.
    let sql = format!(
        "UPDATE webhook_deliveries
         SET state = 'pending', next_attempt_at = now(), retry_from = now(),
             attempts_before_retry = attempts
         WHERE id = $1 AND workspace_id = $2
         RETURNING {COLUMNS}"
    );
    one(&state, &ws, &id, &sql).await
}

/// Runs `sql` (which takes the delivery id and the workspace id and returns [`COLUMNS`]) for
/// one delivery of this workspace: another workspace's id, or a malformed one, is a 404.
async fn one(
    state: &AppState,
    ws: &Workspace,
    id: &str,
    sql: &str,
) -> Result<Json<WebhookDelivery>, ApiError> {
    let id = path_id(id, WHAT)?;
    let client = state.db.get().await?;
    let row = client
        .query_opt(sql, &[&id, &ws.id])
        .await?
        .ok_or(ApiError::NotFound(WHAT))?;
    Ok(Json(delivery_json(&row)))
}
