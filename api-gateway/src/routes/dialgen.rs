//! The Dialgen Call Batch surface (seed 004 and docs/api.md#vendor-api-reference).

use axum::extract::{Path, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use shared::db::counters;
use shared::domain::timing::{api_time, api_time_opt, call_duration_secs};
use shared::domain::views::{dialgen_call_status, dialgen_contact_status};
use shared::domain::{ContactState, DialgenCallStatus, DialgenStatus, Surface};

use crate::auth::Workspace;
use crate::batches::body::DialgenContact;
use crate::batches::control::{self, Scope};
use crate::batches::csv::{self, is_multipart, multipart};
use crate::batches::model::{Batch, COLUMNS, VISIBLE};
use crate::batches::settings::{self, DialgenCreate};
use crate::batches::stats::{self, CheckStatus, outcome_column};
use crate::batches::stream;
use crate::batches::submit::idempotency_key;
use crate::batches::waiting::{self, Waiting};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Query, path_id};
use crate::pagination::{Cursor, PageRequest};
use crate::row_stream::{self, Framing, Param};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/batch", post(create))
        .route("/api/v1/batch/list", get(list))
        .route("/api/v1/batch/check-status", get(check_status))
        .route("/api/v1/batch/{id}/status", get(status_link))
        .route("/api/v1/batch/{id}/pause", post(pause))
        .route("/api/v1/batch/{id}/resume", post(resume))
        .route("/api/v1/batch/{id}/cancel", post(cancel))
        .route("/api/v1/status/batch", get(calls))
}

#[utoipa::path(post, path = "/api/v1/batch", tag = "dialgen", operation_id = "createBatch", request_body(content((DialgenCreate = "application/json"), (crate::openapi::schemas::DialgenUpload = "multipart/form-data")), description = "JSON, or a CSV upload: part `file` (the contacts) and part `batch` (the JSON settings)"), params(crate::openapi::schemas::IdempotencyKey), responses((status = 202, body = BatchCreated), (status = 409, description = "a replay racing its original: retry", body = ErrorBody), (status = 422, description = "validation failed, or idempotency_key_reused: the Idempotency-Key came with another body", body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    ws: Workspace,
    headers: HeaderMap,
    req_body: Request,
) -> Result<(StatusCode, Json<BatchCreated>), ApiError> {
    let req = stream::Request {
        state: state.clone(),
        ws: ws.clone(),
        surface: Surface::Dialgen,
        key: idempotency_key(&headers)?,
        region_field: "options.defaultRegion",
        rows_key: "contacts",
    };
    let allowed = state.config.webhook_allowed_networks.clone();
    let check: stream::CheckHeader = Box::new(move |header, ws, violations| {
        let header: DialgenCreate = settings::typed(header, violations)?;
        let batch = settings::check_dialgen(header, ws, Utc::now(), violations);
        settings::check_destinations(&batch.webhooks, "options.webhooks", &allowed, violations);
        Ok(batch)
    });
    let submitted = if is_multipart(&headers) {
        let multipart = multipart(req_body).await?;
        csv::receive_csv::<DialgenContact>(req, multipart, check).await?
    } else {
        stream::receive_json::<DialgenContact>(req, req_body.into_body(), check).await?
    };
    let id = submitted.batch.id;
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchCreated {
            success: true,
            batch_id: id,
            // A replay shows the batch as it is now, not as it was when first accepted.
            status: submitted.batch.dialgen_status(Utc::now()),
            message: "Batch accepted and is being processed. Monitor the status link for updates.",
            links: BatchLinks::of(&state, id),
        }),
    ))
}

/// The 202 of `POST /api/v1/batch` (seed 004).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BatchCreated {
    success: bool,
    batch_id: Uuid,
    /// `ingesting`; a replay (same `Idempotency-Key`, same body) shows the batch's current
    /// status.
    status: DialgenStatus,
    message: &'static str,
    links: BatchLinks,
}

/// A Dialgen batch's links.
#[derive(Serialize, ToSchema)]
pub(crate) struct BatchLinks {
    /// The batch's status, in the check-status shape.
    #[schema(format = "uri")]
    status: String,
    /// The monitor page, with a token valid 7 days for this batch only.
    #[schema(format = "uri")]
    dashboard: String,
}

impl BatchLinks {
    /// The links of batch `id`.
    pub(crate) fn of(state: &AppState, id: Uuid) -> Self {
        let base = state.config.public_url.trim_end_matches('/');
        Self {
            status: format!("{base}/api/v1/batch/{id}/status"),
            dashboard: crate::monitor::dashboard_link(&state.config, id, Utc::now()),
        }
    }
}

/// `batchId` and `limit` of check-status.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct StatusQuery {
    /// The batch; required.
    #[param(required = true, value_type = Uuid)]
    batch_id: Option<String>,
    /// Recent calls: a count (10 by default), or `all` / `-1` for every call.
    #[param(pattern = "^([0-9]+|all|-1)$")]
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

#[utoipa::path(get, path = "/api/v1/batch/check-status", tag = "dialgen", operation_id = "checkBatchStatus", params(StatusQuery), responses((status = 200, body = CheckStatus), (status = 404, description = "not found in this workspace (or batchId is not a UUID)", body = ErrorBody), (status = 422, description = "batchId missing or a bad limit", body = ErrorBody)))]
pub(crate) async fn check_status(
    State(state): State<AppState>,
    ws: Workspace,
    Query(q): Query<StatusQuery>,
) -> Result<Json<CheckStatus>, ApiError> {
    let id = batch_id_param(q.batch_id.as_deref())?;
    let limit = recent_limit(q.limit.as_deref())?;
    let client = state.db.get().await?;
    let batch = Batch::load(&client, ws.id, id).await?;
    Ok(Json(
        stats::check_status(&client, &batch, limit, Utc::now()).await?,
    ))
}

/// `limit` of the status link.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LinkQuery {
    /// Recent calls: a count (10 by default), or `all` / `-1` for every call.
    #[param(pattern = "^([0-9]+|all|-1)$")]
    limit: Option<String>,
}

/// The seed's `links.status`, in the check-status shape.
#[utoipa::path(get, path = "/api/v1/batch/{id}/status", tag = "dialgen", operation_id = "getBatchStatus", params(("id" = String, Path), LinkQuery), responses((status = 200, body = CheckStatus), (status = 422, description = "a bad limit", body = ErrorBody)))]
pub(crate) async fn status_link(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
    Query(q): Query<LinkQuery>,
) -> Result<Json<CheckStatus>, ApiError> {
    let id = path_id(&id, "batch")?;
    let limit = recent_limit(q.limit.as_deref())?;
    let client = state.db.get().await?;
    let batch = Batch::load(&client, ws.id, id).await?;
    Ok(Json(
        stats::check_status(&client, &batch, limit, Utc::now()).await?,
    ))
}

/// The key's workspace, whose other batches answer "batch not found".
fn batch_scope(ws: &Workspace) -> Scope {
    Scope::Workspace {
        id: ws.id,
        what: "batch",
        surface: Surface::Dialgen,
    }
}

/// The batch after a control, in the check-status shape.
async fn controlled(state: &AppState, batch: &Batch) -> Result<Json<CheckStatus>, ApiError> {
    let client = state.db.get().await?;
    Ok(Json(
        stats::check_status(&client, batch, None, Utc::now()).await?,
    ))
}

/// Extension: pauses the batch (`paused`). No new call starts once the answer is sent; calls
/// already connected finish. Pausing a paused batch changes nothing; a `pending` one is
/// readied paused. The same transition as Vogent's `POST /api/batch_dial_jobs/{id}/paused`.
#[utoipa::path(post, path = "/api/v1/batch/{id}/pause", tag = "dialgen", operation_id = "pauseBatch", params(("id" = String, Path, description = "the batch's id")), responses((status = 200, description = "the batch, paused", body = CheckStatus), (status = 404, description = "not found in this workspace (another workspace's batch, or an id that is not a UUID)", body = ErrorBody), (status = 409, description = "the batch is final (completed, cancelled, failed)", body = ErrorBody)))]
pub(crate) async fn pause(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<Json<CheckStatus>, ApiError> {
    let id = path_id(&id, "batch")?;
    let batch = control::pause_from_api(&state, batch_scope(&ws), id, true).await?;
    controlled(&state, &batch).await
}

/// Extension: resumes a paused batch (or starts a `pending` one): it dials again as its
/// schedule allows (`processing`, or `scheduled` while its window is closed). Resuming a
/// running batch changes nothing.
#[utoipa::path(post, path = "/api/v1/batch/{id}/resume", tag = "dialgen", operation_id = "resumeBatch", params(("id" = String, Path, description = "the batch's id")), responses((status = 200, description = "the batch, resumed", body = CheckStatus), (status = 404, description = "not found in this workspace (another workspace's batch, or an id that is not a UUID)", body = ErrorBody), (status = 409, description = "the batch is final (completed, cancelled, failed)", body = ErrorBody)))]
pub(crate) async fn resume(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<Json<CheckStatus>, ApiError> {
    let id = path_id(&id, "batch")?;
    let batch = control::pause_from_api(&state, batch_scope(&ws), id, false).await?;
    controlled(&state, &batch).await
}

/// Extension: cancels the batch (`cancelled`, final). No new call starts once the answer is
/// sent; calls already connected finish; contacts not called yet become cancelled (shortly
/// after the answer: the answer does not wait for them).
#[utoipa::path(post, path = "/api/v1/batch/{id}/cancel", tag = "dialgen", operation_id = "cancelBatch", params(("id" = String, Path, description = "the batch's id")), responses((status = 200, description = "the batch, cancelled", body = CheckStatus), (status = 404, description = "not found in this workspace (another workspace's batch, or an id that is not a UUID)", body = ErrorBody), (status = 409, description = "the batch is final (completed, cancelled, failed)", body = ErrorBody)))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<Json<CheckStatus>, ApiError> {
    let id = path_id(&id, "batch")?;
    let batch = control::cancel_from_api(&state, batch_scope(&ws), id).await?;
    controlled(&state, &batch).await
}

/// `limit`/`cursor` of the batch list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Page size; without `limit` and `cursor` every batch is answered.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `X-Next-Cursor` of the previous page.
    cursor: Option<String>,
    /// Extension: only batches with this status (as `status` shows it now); another value is
    /// a 400 naming it.
    #[param(value_type = Option<DialgenStatus>)]
    status: Option<String>,
}

/// The status a list is filtered by, checked.
fn status_filter(raw: Option<&str>) -> Result<Option<DialgenStatus>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    serde_json::from_value(Value::String(raw.to_owned()))
        .map(Some)
        .map_err(|_| {
            let message = format!(
                "status {:?} is not a batch status: use one of ingesting, scheduled, pending, processing, paused, completed, cancelled, failed",
                raw.chars().take(100).collect::<String>()
            );
            ApiError::BadRequest {
                details: vec![crate::error::FieldError::new("status", message.clone())],
                message,
            }
        })
}

/// The stored (state, ingest state) pairs, as `state:ingest_state`, whose batches may show
/// `status`: the database narrows the list to them with an index-friendly condition, and
/// [`list_item`]'s exact status (which for `scheduled` and `processing` depends on the window
/// at this instant) decides. From `dialgen_status` itself, so the two cannot disagree.
fn stored_pairs(status: DialgenStatus) -> Vec<String> {
    use shared::domain::status::dialgen_status;
    use shared::domain::{IngestState, JobState};
    let mut pairs = Vec::new();
    for job in JobState::ALL {
        for ingest in IngestState::ALL {
            if [true, false]
                .into_iter()
                .any(|open| dialgen_status(job, ingest, open) == status)
            {
                pairs.push(format!("{}:{}", job.as_str(), ingest.as_str()));
            }
        }
    }
    pairs
}

/// One item of `/api/v1/batch/list`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BatchListItem {
    batch_id: Uuid,
    status: DialgenStatus,
    total: i64,
    processed: i64,
    succeeded: i64,
    failed: i64,
    /// Extension: answered by a machine.
    voicemail: i64,
    /// Extension: cancelled with the batch.
    cancelled: i64,
    percent_complete: f64,
    #[schema(format = DateTime)]
    created_at: String,
    agent_id: Uuid,
    priority: i16,
    /// Extension: the batch's name.
    name: String,
}

/// The columns of a batch list item: the batch, and its contacts counted by state as one
/// JSON object (one aggregate per batch, in the same statement, so the list can stream).
fn list_sql() -> String {
    format!(
        "SELECT {COLUMNS}, (SELECT jsonb_agg(jsonb_build_array(g.state, g.last_outcome, g.hold_reason, g.n))
             FROM ({groups}) g) AS counter_groups
         FROM batches
         WHERE workspace_id = $1 AND {VISIBLE} AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
           AND ($5::text[] IS NULL OR state || ':' || ingest_state = ANY($5))
         ORDER BY created_at DESC, id DESC LIMIT $4",
        groups = counters::groups_of("batches.id"),
    )
}

/// One item of `/api/v1/batch/list`, from a row of [`list_sql`].
fn list_item(
    row: &tokio_postgres::Row,
    now: chrono::DateTime<Utc>,
) -> Result<BatchListItem, ApiError> {
    let b = Batch::from_row(row)?;
    // The batch counters' groups, as `[state, last_outcome, hold_reason, n]` (the one count
    // every surface shows: shared::db::counters).
    // No groups at all aggregate to NULL. An element of another shape is an error, never
    // counted as zero.
    let groups: Vec<(String, String, String, i64)> = row
        .try_get::<_, Option<Value>>("counter_groups")?
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("unreadable batch counters: {e}")))?
        .unwrap_or_default();
    let mut parsed = Vec::with_capacity(groups.len());
    for (state, outcome, hold, n) in &groups {
        parsed.push(
            counters::Group::from_names(state, outcome, hold, *n).map_err(stats::counter_error)?,
        );
    }
    let counts = counters::counts(&parsed);
    let s = stats::statistics(&b, &counts);
    Ok(BatchListItem {
        batch_id: b.id,
        status: b.dialgen_status(now),
        total: s.total,
        processed: s.processed,
        succeeded: s.succeeded,
        failed: s.failed,
        voicemail: s.voicemail,
        cancelled: s.cancelled,
        percent_complete: s.percent_complete,
        created_at: api_time(b.created_at),
        agent_id: b.agent_id,
        priority: b.priority,
        name: b.name,
    })
}

/// Every batch of the workspace, newest first: streamed whole (as Dialgen documents it), or a
/// page when `limit` or `cursor` is given. A page stays an array; the next one is named by the
/// `Link: <…>; rel="next"` (RFC 8288) and `X-Next-Cursor` headers, absent on the last page.
///
/// `status` keeps the batches whose status is that one now. Filtered `scheduled` or
/// `processing` pages may hold fewer items than `limit` (a running batch's window decides,
/// after the read): follow the next-page link until it is absent.
#[utoipa::path(get, path = "/api/v1/batch/list", tag = "dialgen", operation_id = "listBatches", params(ListQuery), responses((status = 200, body = Vec<BatchListItem>, headers(("Link" = String, description = "the next page, rel=\"next\""), ("X-Next-Cursor" = String, description = "the next page's cursor"))), (status = 400, description = "status is not a batch status, or a cursor this API did not return", body = ErrorBody), (status = 422, description = "limit out of range", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    ws: Workspace,
    uri: axum::http::Uri,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let page = PageRequest::parse_optional(q.limit, q.cursor.as_deref())?;
    let wanted = status_filter(q.status.as_deref())?;
    let pairs = wanted.map(stored_pairs);
    let client = state.db.get().await?;
    let now = Utc::now();
    let keep = move |item: &BatchListItem| wanted.is_none_or(|w| item.status == w);
    let Some(page) = page else {
        let params: Vec<Param> = vec![
            Box::new(ws.id),
            Box::new(None::<chrono::DateTime<Utc>>),
            Box::new(Uuid::nil()),
            Box::new(None::<i64>),
            Box::new(pairs),
        ];
        // A row rendered as nothing is left out of the array (row_stream::body).
        let render: row_stream::Render = Box::new(move |row, out| {
            let item = list_item(row, now)?;
            if keep(&item) {
                row_stream::push_json(out, &item)?;
            }
            Ok(())
        });
        let body = row_stream::body(
            client,
            &list_sql(),
            params,
            Framing::json_array("", ""),
            render,
        )
        .await?;
        return Ok(([(CONTENT_TYPE, "application/json")], body).into_response());
    };
    let (after_at, after_id, fetch) = page.keyset();
    let rows = client
        .query(&list_sql(), &[&ws.id, &after_at, &after_id, &fetch, &pairs])
        .await?;
    let cursor_of = |r: &tokio_postgres::Row| Cursor {
        at: r.get("created_at"),
        id: r.get("id"),
    };
    let (rows, cursor) = page.split(rows, cursor_of);
    let mut items = Vec::with_capacity(rows.len());
    for r in &rows {
        let item = list_item(r, now)?;
        if keep(&item) {
            items.push(item);
        }
    }
    let mut headers = HeaderMap::new();
    crate::pagination::next_page_headers(
        &mut headers,
        &state.config.public_url,
        &uri,
        cursor.as_deref(),
    )?;
    Ok((headers, Json(items)).into_response())
}

/// `batchId`, `limit` and `cursor` of a batch's calls.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct CallsQuery {
    /// The batch; required.
    #[param(required = true, value_type = Uuid)]
    batch_id: Option<String>,
    /// Page size; without `limit` and `cursor` every call is answered.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// `/api/v1/status/batch`: every call of a batch.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BatchCalls {
    batch_id: Uuid,
    calls: Vec<BatchCall>,
    /// The next page's cursor (with `limit`/`cursor`); null on the last page, or when every
    /// call was answered.
    next_cursor: Option<String>,
}

/// One contact and its latest call.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BatchCall {
    /// The contact's id.
    call_id: Uuid,
    /// The contact's status (SCHEDULED also while waiting for a retry).
    status: DialgenCallStatus,
    #[schema(format = DateTime)]
    start_time: Option<String>,
    phone_number: String,
    /// The latest call's error, or the contact's unanswered outcome.
    error: Option<String>,
    /// The latest call's whole seconds from answer to end; 0 if never answered.
    duration: Option<i64>,
    /// Always null: calls are not recorded.
    #[schema(value_type = Option<String>)]
    recording_url: Option<()>,
    /// Extension: the latest call (a Vogent dial id).
    dial_id: Option<Uuid>,
    /// Extension: the latest call's own status, as `recentCalls` and the webhook show it.
    dial_status: Option<DialgenCallStatus>,
    /// Extension: the contact's declared US state (`state`), or null.
    state: Option<String>,
    /// Extension: the contact's US postal code (`postalCode`), or null.
    postal_code: Option<String>,
    /// Extension: the rule holding the contact now (`state_hours`, `state_no_call_day`,
    /// `state_call_cap`, `recipient_hours`, `frequency_cap`, `unknown_timezone`, …); null when
    /// none.
    hold_reason: Option<String>,
    /// Extension: when the contact may next be called (ISO 8601 UTC); null when it is not
    /// waiting for a time.
    #[schema(format = DateTime)]
    next_attempt_at: Option<String>,
}

/// A batch's contacts in row order, each with its latest attempt (`$2` the row index to
/// continue after, `$3` how many: NULL for all).
const CALLS_SQL: &str = concat!(
    "SELECT c.id AS contact_id, c.row_index, c.state, c.last_outcome, c.phone_number,
        c.declared_state, c.postal_code,
        a.started_at, a.answered_at, a.ended_at, a.error, a.id AS dial_id, a.outcome AS dial_outcome, ",
    waiting::columns!(),
    "
    FROM contacts c
    LEFT JOIN LATERAL (SELECT * FROM dial_attempts d WHERE d.contact_id = c.id ORDER BY d.attempt_no DESC LIMIT 1) a ON TRUE
    WHERE c.batch_id = $1 AND ($2::int IS NULL OR c.row_index > $2)
    ORDER BY c.row_index LIMIT $3"
);

/// One entry of `/api/v1/status/batch`'s `calls`, from a row of [`CALLS_SQL`].
fn call_json(r: &tokio_postgres::Row) -> Result<BatchCall, ApiError> {
    let state: &str = r.get("state");
    let state = ContactState::parse(state).ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!("a contact has an invalid state {state:?}"))
    })?;
    let last_outcome = outcome_column(r.get("last_outcome"))?;
    let dial_id: Option<Uuid> = r.get("dial_id");
    let dial_outcome = outcome_column(r.get("dial_outcome"))?;
    let error = r.get::<_, Option<String>>("error").or_else(|| {
        last_outcome
            .filter(|o| !o.is_answered())
            .map(|o| o.as_str().to_owned())
    });
    let waiting = Waiting::of(r)?;
    Ok(BatchCall {
        call_id: r.get("contact_id"),
        status: dialgen_contact_status(state, last_outcome),
        start_time: api_time_opt(r.get("started_at")),
        phone_number: r.get("phone_number"),
        error,
        duration: call_duration_secs(r.get("answered_at"), r.get("ended_at")),
        recording_url: None,
        dial_id,
        dial_status: dial_id.map(|_| dialgen_call_status(dial_outcome)),
        state: r.get("declared_state"),
        postal_code: r.get("postal_code"),
        hold_reason: waiting.hold_reason,
        next_attempt_at: waiting.next_attempt_at,
    })
}

/// Every call of a batch with its status: one entry per contact, with its latest attempt, in
/// row order.
///
/// `status` is the contact's (a contact waiting for its retry is `SCHEDULED`); `dialStatus` is
/// its latest call's own status, the one `recentCalls` and the webhook show for that call
/// (`MISSED` for a busy call). Both come from `shared::domain::views`. Without `limit` and
/// `cursor` every call is answered, streamed from the database; with them, one page and its
/// `nextCursor` (null on the last page).
#[utoipa::path(get, path = "/api/v1/status/batch", tag = "dialgen", operation_id = "listBatchCalls", params(CallsQuery), responses((status = 200, body = BatchCalls), (status = 404, description = "not found in this workspace (or batchId is not a UUID)", body = ErrorBody), (status = 422, description = "batchId missing or limit out of range", body = ErrorBody)))]
pub(crate) async fn calls(
    State(state): State<AppState>,
    ws: Workspace,
    Query(q): Query<CallsQuery>,
) -> Result<Response, ApiError> {
    let id = batch_id_param(q.batch_id.as_deref())?;
    let page = PageRequest::parse_optional(q.limit, q.cursor.as_deref())?;
    let client = state.db.get().await?;
    Batch::load(&client, ws.id, id).await?;
    let Some(page) = page else {
        let params: Vec<Param> = vec![Box::new(id), Box::new(None::<i32>), Box::new(None::<i64>)];
        let render: row_stream::Render =
            Box::new(|row, out| row_stream::push_json(out, &call_json(row)?));
        let framing = Framing::json_array(
            &format!("{{\"batchId\":\"{id}\",\"calls\":"),
            ",\"nextCursor\":null}",
        );
        let body = row_stream::body(client, CALLS_SQL, params, framing, render).await?;
        return Ok(([(CONTENT_TYPE, "application/json")], body).into_response());
    };
    let rows = client
        .query(CALLS_SQL, &[&id, &page.after_row(), &page.fetch()])
        .await?;
    let (rows, cursor) = page.split(rows, |r| {
        Cursor::for_row(r.get("row_index"), r.get("contact_id"))
    });
    let calls = rows.iter().map(call_json).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(BatchCalls {
        batch_id: id,
        calls,
        next_cursor: cursor,
    })
    .into_response())
}
