//! The preflight routes (issue #25, extensions of both surfaces): the verdict for every row of a
//! create body, before anything is created. See `batches::preflight` and docs/preflight.md.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use serde::Serialize;
use utoipa::ToSchema;

use shared::domain::Surface;

use crate::auth::Workspace;
use crate::batches::body::{DialgenContact, VogentRow};
use crate::batches::csv::{is_multipart, multipart};
use crate::batches::preflight::{self, Preflight, PreflightQuery};
use crate::batches::stream;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Query;
use crate::routes::{dialgen, vogent};
use crate::state::AppState;

/// Both preflight routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/batch/preflight", post(dialgen_preflight))
        .route("/api/batch_dial_jobs/preflight", post(vogent_preflight))
}

/// The answer of a preflight (an extension): `data` comes first in the document, the totals
/// after it (they are known only once every row is read).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PreflightAnswer {
    /// The rows not callable at the start (rejected, held), in row order; every row with
    /// `?rows=all`.
    data: Vec<PreflightRow>,
    /// Rows read, accepted (stored by the ingest worker) and rejected.
    rows: PreflightRows,
    /// Rows that would be called as soon as the batch starts.
    callable_now: u64,
    /// Held rows by `holdReason` (`state_hours`, `state_no_call_day`, `state_call_cap`,
    /// `recipient_hours`, `frequency_cap`, `unknown_timezone`).
    #[schema(value_type = std::collections::BTreeMap<String, u64>)]
    held: serde_json::Value,
    /// The earliest first call (ISO 8601 UTC, milliseconds); null when no row can be called
    /// within the rules' horizon.
    #[schema(format = "date-time")]
    first_call_at: Option<String>,
    /// A rough end of the first attempts: every accepted row at the batch's pace (its lines,
    /// each call assumed to take 60 s, within its `maxCallsPerSecond`) inside its window, and
    /// never before the last held row's first allowed minute. Retries are not foreseen.
    #[schema(format = "date-time")]
    estimated_completion: Option<String>,
    /// The instant the verdicts are for: now (or `?at=`), moved to the first minute the job's
    /// own window (schedule, `scheduledStartTime`) is open.
    #[schema(format = "date-time")]
    evaluated_at: String,
    /// The rule pack's release (with the operator's file, if any).
    rules_version: String,
}

/// `rows` of a preflight.
#[derive(Serialize, ToSchema)]
pub(crate) struct PreflightRows {
    submitted: u64,
    accepted: u64,
    rejected: u64,
}

/// One row's verdict.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PreflightRow {
    /// The row as the user counts it (1-based): the batch's rejected list uses the same number.
    row: u32,
    /// E.164 when the number was read, else as given.
    phone_number: String,
    /// `reject`, `hold` or `call`.
    verdict: String,
    /// A rejected row's reason (as in the rejected list) or a held row's `holdReason`.
    reason: Option<String>,
    /// A rejected row's detail (as in the rejected list).
    detail: Option<String>,
    /// The rule of the pack that holds it (e.g. `US-FL-hours`).
    rule: Option<String>,
    /// When it may first be called.
    #[schema(format = "date-time")]
    first_call_at: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/batch/preflight", tag = "dialgen", operation_id = "preflightBatch", request_body(content((crate::batches::settings::DialgenCreate = "application/json"), (crate::openapi::schemas::DialgenUpload = "multipart/form-data")), description = "the body of `POST /api/v1/batch`: JSON, or its CSV upload"), params(PreflightQuery), responses((status = 200, description = "the verdict of every row; nothing is created (an extension)", body = PreflightAnswer), (status = 422, description = "the body that create would refuse, or a bad `rows`", body = ErrorBody)))]
pub(crate) async fn dialgen_preflight(
    State(state): State<AppState>,
    ws: Workspace,
    Query(query): Query<PreflightQuery>,
    headers: HeaderMap,
    body: Request,
) -> Result<Response, ApiError> {
    let p = Preflight {
        check: dialgen::create_check(&state),
        req: request(
            state,
            ws,
            Surface::Dialgen,
            "options.defaultRegion",
            "contacts",
        ),
        query,
    };
    if is_multipart(&headers) {
        preflight::csv::<DialgenContact>(p, multipart(body).await?).await
    } else {
        preflight::json::<DialgenContact>(p, body.into_body()).await
    }
}

#[utoipa::path(post, path = "/api/batch_dial_jobs/preflight", tag = "vogent", operation_id = "preflightBatchDialJob", request_body(content((crate::batches::settings::VogentCreate = "application/json"), (crate::openapi::schemas::VogentUpload = "multipart/form-data")), description = "the body of `POST /api/batch_dial_jobs`: JSON, or its CSV upload"), params(PreflightQuery), responses((status = 200, description = "the verdict of every row; nothing is created (an extension)", body = PreflightAnswer), (status = 422, description = "the body that create would refuse, or a bad `rows`", body = ErrorBody)))]
pub(crate) async fn vogent_preflight(
    State(state): State<AppState>,
    ws: Workspace,
    Query(query): Query<PreflightQuery>,
    headers: HeaderMap,
    body: Request,
) -> Result<Response, ApiError> {
    let p = Preflight {
        check: vogent::create_check(&state),
        req: request(state, ws, Surface::Vogent, "defaultRegion", "rows"),
        query,
    };
    if is_multipart(&headers) {
        preflight::csv::<VogentRow>(p, multipart(body).await?).await
    } else {
        preflight::json::<VogentRow>(p, body.into_body()).await
    }
}

/// A create request without its key: a preflight consumes no `Idempotency-Key`.
fn request(
    state: AppState,
    ws: Workspace,
    surface: Surface,
    region_field: &'static str,
    rows_key: &'static str,
) -> stream::Request {
    stream::Request {
        state,
        ws,
        surface,
        key: None,
        region_field,
        rows_key,
    }
}
