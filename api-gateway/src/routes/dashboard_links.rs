//! Extension: a batch's monitor link minted on request, read-only or (`?control=true`) a
//! control link that may pause, resume and cancel it from the page. The same for both APIs:
//! `POST /api/v1/batch/{id}/dashboard_link` and `POST /api/batch_dial_jobs/{id}/dashboard_link`.

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use shared::domain::timing::api_time;

use crate::auth::Workspace;
use crate::batches::model::VISIBLE;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Query, path_id};
use crate::monitor::link;
use crate::monitor::token::Grant;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/batch/{id}/dashboard_link", post(dialgen))
        .route("/api/batch_dial_jobs/{id}/dashboard_link", post(vogent))
}

/// Which link to mint.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct MintQuery {
    /// `true`: a control link (valid 1 hour) whose page has pause, resume and cancel buttons;
    /// otherwise the read-only link of `links.dashboard` (valid 7 days).
    pub(crate) control: Option<bool>,
}

/// A minted monitor link.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BatchDashboardLink {
    /// The page's URL, its token included.
    url: String,
    /// When the link stops opening the page (and, for a control link, acting).
    expires_at: String,
    /// Whether the link may pause, resume and cancel.
    control: bool,
}

/// Extension: mints the batch's monitor link; `?control=true` mints a control link, valid an
/// hour, whose page can pause, resume and cancel the batch. Treat a control link like an API
/// key for this one batch.
#[utoipa::path(post, path = "/api/v1/batch/{id}/dashboard_link", tag = "dialgen", operation_id = "mintBatchDashboardLink", params(("id" = String, Path, description = "the batch's id"), MintQuery), responses((status = 200, body = BatchDashboardLink), (status = 404, description = "not found in this workspace", body = ErrorBody)))]
pub(crate) async fn dialgen(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
    Query(q): Query<MintQuery>,
) -> Result<Json<BatchDashboardLink>, ApiError> {
    mint(&state, &ws, path_id(&id, "batch")?, "batch", q).await
}

/// Extension: as `POST /api/v1/batch/{id}/dashboard_link`, for a Vogent job.
#[utoipa::path(post, path = "/api/batch_dial_jobs/{id}/dashboard_link", tag = "vogent", operation_id = "mintBatchDialJobDashboardLink", params(("id" = String, Path, description = "id"), MintQuery), responses((status = 200, body = BatchDashboardLink), (status = 404, description = "not found in this workspace", body = ErrorBody)))]
pub(crate) async fn vogent(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
    Query(q): Query<MintQuery>,
) -> Result<Json<BatchDashboardLink>, ApiError> {
    let id = path_id(&id, "batch dial job")?;
    mint(&state, &ws, id, "batch dial job", q).await
}

async fn mint(
    state: &AppState,
    ws: &Workspace,
    id: Uuid,
    what: &'static str,
    q: MintQuery,
) -> Result<Json<BatchDashboardLink>, ApiError> {
    let client = state.db.get().await?;
    let sql = format!("SELECT 1 FROM batches WHERE id = $1 AND workspace_id = $2 AND {VISIBLE}");
    client
        .query_opt(&sql, &[&id, &ws.id])
        .await?
        .ok_or(ApiError::NotFound(what))?;
    let control = q.control.unwrap_or(false);
    let grant = if control { Grant::Control } else { Grant::View };
    let (url, expires) = link::minted(&state.config, grant, id, Utc::now());
    Ok(Json(BatchDashboardLink {
        url,
        expires_at: api_time(expires),
        control,
    }))
}
