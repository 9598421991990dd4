//! Agents: what a connected call is handed to (a name and the answer URL the carrier fetches
//! when the callee picks up). Referenced by `callAgentId` (Vogent) and `agentId` (Dialgen).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::domain::timing::api_time;
use uuid::Uuid;

use super::owned::Owned;
use crate::app::AppState;
use crate::auth::Workspace;
use crate::error::ApiError;
use crate::extract::{JsonBody, Query, path_id};
use crate::pagination::page_body;
use crate::validate::{Text, Violations, is_http_url};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/agents", get(list).post(create))
        .route("/api/agents/{id}", get(fetch).delete(remove))
}

const RESOURCE: Owned = Owned {
    table: "agents",
    columns: "id, name, answer_url, created_at",
    what: "agent",
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateAgent {
    name: Option<Text>,
    answer_url: Option<Text>,
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

fn agent_json(row: &tokio_postgres::Row) -> Value {
    json!({
        "id": row.get::<_, Uuid>("id"),
        "name": row.get::<_, String>("name"),
        "answerUrl": row.get::<_, String>("answer_url"),
        "createdAt": api_time(row.get("created_at")),
    })
}

#[utoipa::path(post, path = "/api/agents", tag = "agents", request_body = crate::openapi::AgentIn, responses((status = 200, body = crate::openapi::Agent), (status = 400, description = "malformed JSON or a wrong type", body = crate::openapi::ErrorBody), (status = 422, description = "validation failed", body = crate::openapi::ErrorBody), (status = 401, description = "no valid API key", body = crate::openapi::ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    ws: Workspace,
    JsonBody(body): JsonBody<CreateAgent>,
) -> Result<Json<Value>, ApiError> {
    let mut v = Violations::default();
    let name = body.name.as_deref().map(str::trim).unwrap_or_default();
    if name.is_empty() || name.len() > 200 {
        v.add("name", "is required (1 to 200 characters)");
    }
    match body.answer_url.as_deref() {
        None => v.add("answerUrl", "is required"),
        Some(url) if !is_http_url(url) => v.add("answerUrl", "must be an http(s) URL"),
        Some(_) => {}
    }
    v.into_result(())?;
    let client = state.db.get().await?;
    let row = client
        .query_one(
            "INSERT INTO agents (id, workspace_id, name, answer_url) VALUES ($1, $2, $3, $4) RETURNING id, name, answer_url, created_at",
            &[&Uuid::now_v7(), &ws.id, &name, &body.answer_url.as_deref()],
        )
        .await?;
    Ok(Json(agent_json(&row)))
}

#[utoipa::path(get, path = "/api/agents", tag = "agents", params(("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)), responses((status = 200, body = crate::openapi::AgentPage), (status = 400, description = "malformed JSON or a wrong type", body = crate::openapi::ErrorBody), (status = 422, description = "validation failed", body = crate::openapi::ErrorBody), (status = 401, description = "no valid API key", body = crate::openapi::ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    ws: Workspace,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db.get().await?;
    let (page, cursor) = RESOURCE
        .page(&client, ws.id, q.limit, q.cursor.as_deref())
        .await?;
    Ok(page_body(page.iter().map(agent_json), cursor))
}

#[utoipa::path(get, path = "/api/agents/{id}", tag = "agents", params(("id" = String, Path, description = "id")), responses((status = 200, body = crate::openapi::Agent), (status = 404, description = "not found in this workspace", body = crate::openapi::ErrorBody), (status = 401, description = "no valid API key", body = crate::openapi::ErrorBody)))]
pub(crate) async fn fetch(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(&id, "agent")?;
    let client = state.db.get().await?;
    let row = client
        .query_opt("SELECT id, name, answer_url, created_at FROM agents WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL", &[&id, &ws.id])
        .await?
        .ok_or(ApiError::NotFound("agent"))?;
    Ok(Json(agent_json(&row)))
}

#[utoipa::path(delete, path = "/api/agents/{id}", tag = "agents", params(("id" = String, Path, description = "id")), responses((status = 204, description = "deleted"), (status = 404, description = "not found in this workspace", body = crate::openapi::ErrorBody), (status = 401, description = "no valid API key", body = crate::openapi::ErrorBody)))]
pub(crate) async fn remove(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id, "agent")?;
    let client = state.db.get().await?;
    RESOURCE.remove(&client, ws.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
