//! The key's own workspace: its settings (`GET`/`PATCH /api/workspace`) and the rotation of its
//! webhook secret (`POST /api/workspace/webhook_secret`). The rules are in [`crate::workspace`].

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value};

use crate::auth::Workspace;
use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonBody;
use crate::state::AppState;
use crate::workspace::{self, RotatedSecret, Settings};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/workspace", get(fetch).patch(update))
        .route("/api/workspace/webhook_secret", post(rotate_secret))
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
