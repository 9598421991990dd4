//! A campaign's lists outside the create body, on both surfaces: rejected rows by row, the
//! results export, re-calling by outcome and adding rows.
//!
//! | Dialgen | Vogent |
//! | --- | --- |
//! | `GET /api/v1/batch/{id}/rejected` | `GET /api/batch_dial_jobs/{id}/rejected` |
//! | `GET /api/v1/batch/{id}/results.csv` | `GET /api/batch_dial_jobs/{id}/results.csv` |
//! | `POST /api/v1/batch/{id}/retry` | `POST /api/batch_dial_jobs/{id}/retry` |
//! | `POST /api/v1/batch/{id}/contacts` | `POST /api/batch_dial_jobs/{id}/rows` |

use axum::extract::{Path, Request, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use shared::domain::{DialgenStatus, Surface};

use crate::auth::Workspace;
use crate::batches::body::{DialgenContact, VogentRow};
use crate::batches::model::{Batch, Job};
use crate::batches::retry::RetryBody;
use crate::batches::stats::RowCounts;
use crate::batches::{append, export, rejected, retry};
use crate::error::ApiError;
use crate::error::ErrorBody;
use crate::extract::{JsonBody, Query, path_id};
use crate::pagination::{Page, PageRequest, next_page_headers, page_body};
use crate::routes::dialgen::BatchLinks;
use crate::row_stream::{self, Framing, Param};
use crate::state::AppState;

/// The 404 nouns of each surface.
const BATCH: &str = "batch";
const JOB: &str = "batch dial job";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/batch/{id}/rejected", get(dialgen_rejected))
        .route("/api/batch_dial_jobs/{id}/rejected", get(vogent_rejected))
        .route("/api/v1/batch/{id}/results.csv", get(dialgen_results))
        .route("/api/batch_dial_jobs/{id}/results.csv", get(vogent_results))
        .route("/api/v1/batch/{id}/retry", post(dialgen_retry))
        .route("/api/batch_dial_jobs/{id}/retry", post(vogent_retry))
        .route("/api/v1/batch/{id}/contacts", post(dialgen_contacts))
        .route("/api/batch_dial_jobs/{id}/rows", post(vogent_rows))
}

/// Loads the key's batch `id`; another workspace's is "`what` not found".
async fn load(
    client: &deadpool_postgres::Object,
    ws: &Workspace,
    id: Uuid,
    what: &'static str,
) -> Result<Batch, ApiError> {
    Batch::load(client, ws.id, id).await.map_err(|e| match e {
        ApiError::NotFound(_) => ApiError::NotFound(what),
        other => other,
    })
}

/// `limit` and `cursor` of the rejected rows.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Page size, 50 by default (JSON); CSV answers every row unless `limit` or `cursor` is
    /// given.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The previous page's `cursor` (JSON) or `X-Next-Cursor` (CSV).
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/batch/{id}/rejected", tag = "dialgen", operation_id = "listBatchRejected", params(("id" = String, Path), PageQuery, ("Accept" = Option<String>, Header, description = "text/csv for CSV (every row, streamed, unless limit or cursor is given)")), responses((status = 200, description = "JSON, or with Accept: text/csv the CSV row,phoneNumber,reason,detail", content((Page<rejected::RejectedRow> = "application/json"), (String = "text/csv")), headers(("Link" = String, description = "CSV pages: the next page, rel=\"next\""), ("X-Next-Cursor" = String, description = "CSV pages: the next page's cursor"))), (status = 422, description = "limit out of range", body = ErrorBody)))]
pub(crate) async fn dialgen_rejected(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    rejected_rows(state, ws, path_id(&id, BATCH)?, BATCH, headers, uri, q).await
}

#[utoipa::path(get, path = "/api/batch_dial_jobs/{id}/rejected", tag = "vogent", operation_id = "listBatchDialJobRejected", params(("id" = String, Path), PageQuery, ("Accept" = Option<String>, Header, description = "text/csv for CSV (every row, streamed, unless limit or cursor is given)")), responses((status = 200, description = "JSON, or with Accept: text/csv the CSV row,phoneNumber,reason,detail", content((Page<rejected::RejectedRow> = "application/json"), (String = "text/csv")), headers(("Link" = String, description = "CSV pages: the next page, rel=\"next\""), ("X-Next-Cursor" = String, description = "CSV pages: the next page's cursor"))), (status = 422, description = "limit out of range", body = ErrorBody)))]
pub(crate) async fn vogent_rejected(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    rejected_rows(state, ws, path_id(&id, JOB)?, JOB, headers, uri, q).await
}

/// JSON: one page (`{"data", "cursor"}`). CSV: every row streamed, or one page when `limit`
/// or `cursor` is given (the next one in `Link` and `X-Next-Cursor`).
async fn rejected_rows(
    state: AppState,
    ws: Workspace,
    id: Uuid,
    what: &'static str,
    headers: HeaderMap,
    uri: Uri,
    q: PageQuery,
) -> Result<Response, ApiError> {
    let csv = row_stream::wants_csv(&headers);
    let page = if csv {
        PageRequest::parse_optional(q.limit, q.cursor.as_deref())?
    } else {
        Some(PageRequest::parse(q.limit, q.cursor.as_deref())?)
    };
    let client = state.db.get().await?;
    load(&client, &ws, id, what).await?;
    let mut header = Vec::new();
    row_stream::push_csv(&mut header, rejected::CSV_HEADER)?;
    let Some(page) = page else {
        let params: Vec<Param> = vec![Box::new(id), Box::new(None::<i32>), Box::new(None::<i64>)];
        let body = row_stream::body(
            client,
            rejected::SQL,
            params,
            Framing::lines(header),
            Box::new(rejected::csv),
        )
        .await?;
        return Ok(([(CONTENT_TYPE, CSV)], body).into_response());
    };
    let rows = client
        .query(rejected::SQL, &[&id, &page.after_row(), &page.fetch()])
        .await?;
    let (rows, cursor) = page.split(rows, rejected::cursor_of);
    if !csv {
        return Ok(page_body(rows.iter().map(rejected::json), cursor).into_response());
    }
    let mut out = header;
    for r in &rows {
        rejected::csv(r, &mut out)?;
    }
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(CSV));
    next_page_headers(
        &mut headers,
        &state.config.public_url,
        &uri,
        cursor.as_deref(),
    )?;
    Ok((headers, out).into_response())
}

/// `Content-Type` of every CSV answer.
const CSV: &str = "text/csv; charset=utf-8";

#[utoipa::path(get, path = "/api/v1/batch/{id}/results.csv", tag = "dialgen", operation_id = "exportBatchResults", params(("id" = String, Path)), responses((status = 200, description = "one CSV line per contact in row order: row, contactId, id, phoneNumber, name, status, outcome, attempts, lastCallAt, durationSeconds, callerId, state, postalCode, metadata (JSON); streamed", content_type = "text/csv", body = String)))]
pub(crate) async fn dialgen_results(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    results(state, ws, path_id(&id, BATCH)?, BATCH).await
}

#[utoipa::path(get, path = "/api/batch_dial_jobs/{id}/results.csv", tag = "vogent", operation_id = "exportBatchDialJobResults", params(("id" = String, Path)), responses((status = 200, description = "one CSV line per contact in row order: row, contactId, id, phoneNumber, name, status, outcome, attempts, lastCallAt, durationSeconds, callerId, state, postalCode, inputs (JSON); streamed", content_type = "text/csv", body = String)))]
pub(crate) async fn vogent_results(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    results(state, ws, path_id(&id, JOB)?, JOB).await
}

/// The export, streamed from one statement (a snapshot of the campaign at that instant).
async fn results(
    state: AppState,
    ws: Workspace,
    id: Uuid,
    what: &'static str,
) -> Result<Response, ApiError> {
    let client = state.db.get().await?;
    let batch = load(&client, &ws, id, what).await?;
    let header = export::header(batch.surface)?;
    let params: Vec<Param> = vec![Box::new(id)];
    let body = row_stream::body(
        client,
        export::SQL,
        params,
        Framing::lines(header),
        Box::new(export::line),
    )
    .await?;
    let disposition = format!("attachment; filename=\"batch-{id}-results.csv\"");
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(CSV));
    headers.insert(
        CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).map_err(|e| ApiError::Internal(e.into()))?,
    );
    Ok((headers, body).into_response())
}

#[utoipa::path(post, path = "/api/v1/batch/{id}/retry", tag = "dialgen", operation_id = "retryBatch", params(("id" = String, Path)), request_body = RetryBody, responses((status = 202, body = BatchRetried), (status = 409, description = "the batch is not completed or cancelled", body = ErrorBody), (status = 422, description = "unknown outcomes (outcomes[i]), none matching, or a bad name", body = ErrorBody)))]
pub(crate) async fn dialgen_retry(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RetryBody>,
) -> Result<(StatusCode, Json<BatchRetried>), ApiError> {
    let id = path_id(&id, BATCH)?;
    let batch = retry::create(&state.db, ws.id, id, BATCH, Surface::Dialgen, body.check()?).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchRetried {
            success: true,
            batch_id: batch.id,
            status: batch.dialgen_status(Utc::now()),
            message: "Retry batch accepted. Monitor the status link for updates.",
            retry_of: batch.retry_of,
            rows: RowCounts::of(&batch),
            links: BatchLinks::of(&state, batch.id),
        }),
    ))
}

/// The 202 of `POST /api/v1/batch/{id}/retry`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BatchRetried {
    success: bool,
    batch_id: Uuid,
    status: DialgenStatus,
    message: &'static str,
    /// The batch retried.
    retry_of: Option<Uuid>,
    /// Do-not-call numbers are not copied: they count as rejected.
    rows: RowCounts,
    links: BatchLinks,
}

/// The 202 of `POST /api/v1/batch/{id}/contacts`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContactsAppended {
    success: bool,
    batch_id: Uuid,
    status: DialgenStatus,
    /// Contacts received (each accepted or rejected once ingested).
    contacts: u32,
    /// The number of the first contact added (rows continue the batch's numbering).
    first_row: i64,
}

#[utoipa::path(post, path = "/api/batch_dial_jobs/{id}/retry", tag = "vogent", operation_id = "retryBatchDialJob", params(("id" = String, Path)), request_body = RetryBody, responses((status = 200, description = "the new job, in INIT (start it with /paused)", body = Job), (status = 409, description = "the job is not COMPLETE or CANCELLED", body = ErrorBody), (status = 422, description = "unknown outcomes (outcomes[i]), none matching, or a bad name", body = ErrorBody)))]
pub(crate) async fn vogent_retry(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RetryBody>,
) -> Result<Json<Job>, ApiError> {
    let id = path_id(&id, JOB)?;
    let batch = retry::create(&state.db, ws.id, id, JOB, Surface::Vogent, body.check()?).await?;
    Ok(Json(Job {
        links: Some(crate::batches::model::JobLinks::of(&state.config, batch.id)),
        ..batch.to_job()
    }))
}

#[utoipa::path(post, path = "/api/v1/batch/{id}/contacts", tag = "dialgen", operation_id = "appendBatchContacts", params(("id" = String, Path)), request_body = crate::openapi::schemas::AppendContacts, responses((status = 202, body = ContactsAppended), (status = 409, description = "the batch is final or still ingesting", body = ErrorBody), (status = 422, description = "validation failed", body = ErrorBody)))]
pub(crate) async fn dialgen_contacts(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
    req: Request,
) -> Result<(StatusCode, Json<ContactsAppended>), ApiError> {
    let id = path_id(&id, BATCH)?;
    let appended =
        append::append::<DialgenContact>(&state, ws.id, id, BATCH, req.into_body()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ContactsAppended {
            success: true,
            batch_id: id,
            status: appended.batch.dialgen_status(Utc::now()),
            contacts: appended.rows,
            first_row: appended.first_row,
        }),
    ))
}

#[utoipa::path(post, path = "/api/batch_dial_jobs/{id}/rows", tag = "vogent", operation_id = "appendBatchDialJobRows", params(("id" = String, Path)), request_body = crate::openapi::schemas::AppendRows, responses((status = 202, body = append::RowsAppended), (status = 409, description = "the job is final or still ingesting", body = ErrorBody), (status = 422, description = "validation failed", body = ErrorBody)))]
pub(crate) async fn vogent_rows(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
    req: Request,
) -> Result<(StatusCode, Json<append::RowsAppended>), ApiError> {
    let id = path_id(&id, JOB)?;
    let appended = append::append::<VogentRow>(&state, ws.id, id, JOB, req.into_body()).await?;
    let job = appended.batch.to_job();
    Ok((StatusCode::ACCEPTED, Json(append::answer(&appended, job))))
}

#[cfg(test)]
mod tests {
    #[test]
    fn surfaces_name_inputs_their_way() {
        let v = String::from_utf8(super::export::header(shared::domain::Surface::Vogent).unwrap())
            .unwrap();
        assert!(v.ends_with("callerId,state,postalCode,inputs\r\n"), "{v}");
        let d = String::from_utf8(super::export::header(shared::domain::Surface::Dialgen).unwrap())
            .unwrap();
        assert!(d.ends_with("callerId,state,postalCode,metadata\r\n"), "{d}");
    }
}
