//! The key's own workspace: its settings (`GET`/`PATCH /api/workspace`) and the rotation of its
//! webhook secret (`POST /api/workspace/webhook_secret`). The rules are in [`crate::workspace`].

use axum::extract::{Request, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::auth::Workspace;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, Query};
use crate::monitor::dials::link::{self, DashboardLink, MintError};
use crate::state::AppState;
use crate::workspace::{self, RotatedSecret, Settings};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/workspace", get(fetch).patch(update))
        .route("/api/workspace/webhook_secret", post(rotate_secret))
        .route("/api/workspace/dashboard_link", post(dashboard_link))
}

/// `POST /api/workspace/dashboard_link`'s body, which may be empty.
#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DashboardLinkRequest {
    /// How long the link opens the page: 60 to 604800 seconds (7 days); 86400 (24 h) by default.
    #[schema(minimum = 60, maximum = 604800)]
    expires_in_seconds: Option<i64>,
}

/// Extension: a signed link to the workspace's Batch Dials page, for a browser (which cannot
/// send the API key). It opens that workspace's page only, read-only, until `expiresAt`. With
/// `?control=true`, a control link (60 to 3600 seconds, an hour by default) whose rows have
/// pause, resume and cancel buttons: treat it as the API key for an hour.
#[utoipa::path(post, path = "/api/workspace/dashboard_link", tag = "workspace", operation_id = "mintDashboardLink", params(crate::routes::dashboard_links::MintQuery), request_body(content = DashboardLinkRequest, description = "optional; an empty body takes the defaults"), responses((status = 200, body = DashboardLink), (status = 422, description = "expiresInSeconds out of range, or an unknown field", body = ErrorBody)))]
pub(crate) async fn dashboard_link(
    State(state): State<AppState>,
    ws: Workspace,
    Query(q): Query<crate::routes::dashboard_links::MintQuery>,
    req: Request,
) -> Result<Json<DashboardLink>, ApiError> {
    let bytes = crate::extract::read_body(req, &state).await?;
    let body: DashboardLinkRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        DashboardLinkRequest::default()
    } else {
        crate::extract::parse_json(&bytes)?
    };
    let mint = match q.control {
        Some(true) => link::mint_control,
        _ => link::mint,
    };
    mint(&state.config, ws.id, Utc::now(), body.expires_in_seconds)
        .map(Json)
        .map_err(|e| match e {
            MintError::Validity | MintError::ControlValidity => {
                ApiError::field("expiresInSeconds", e.to_string())
            }
            MintError::NoSecret => ApiError::Internal(anyhow::anyhow!(e)),
        })
}

#[utoipa::path(get, path = "/api/workspace", tag = "workspace", operation_id = "getWorkspace", responses((status = 200, body = Settings)))]
pub(crate) async fn fetch(
    State(state): State<AppState>,
    ws: Workspace,
) -> Result<Json<Settings>, ApiError> {
    let client = state.db.get().await?;
    Ok(Json(Settings::load(&client, ws.id).await?))
}

/// Changes the tenant's own settings; the operator's limits answer 403 naming each field.
#[utoipa::path(patch, path = "/api/workspace", tag = "workspace", operation_id = "updateWorkspace", request_body = workspace::TenantPatch, responses((status = 200, body = Settings), (status = 403, description = "a limit only the operator may change (maxConcurrentDials, maxCallsPerSecond, ceilings)", body = ErrorBody), (status = 422, description = "validation failed", body = ErrorBody)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    ws: Workspace,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Json<Settings>, ApiError> {
    // One transaction: a patch that changes the retry defaults and the compliance policy
    // lands whole or not at all, checked against the settings it read.
    let mut client = state.db.get().await?;
    let tx = client.transaction().await?;
    let current = Settings::load(&tx, ws.id).await?;
    let patch = workspace::parse_tenant_patch(body, &current)?;
    let settings =
        workspace::apply_tenant_patch(&tx, &current, patch, &state.config.webhook_allowed_networks)
            .await?;
    tx.commit().await?;
    Ok(Json(settings))
}

/// A new webhook secret, shown once; the replaced one keeps signing deliveries for 24 h.
#[utoipa::path(post, path = "/api/workspace/webhook_secret", tag = "workspace", operation_id = "rotateWebhookSecret", responses((status = 200, body = RotatedSecret)))]
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    ws: Workspace,
) -> Result<Json<RotatedSecret>, ApiError> {
    let client = state.db.get().await?;
    Ok(Json(
        workspace::rotate_webhook_secret(&client, ws.id).await?,
    ))
}
