//! Agents: what a connected call is handed to (a name and the answer URL the carrier fetches
//! when the callee picks up). Referenced by `callAgentId` (Vogent) and `agentId` (Dialgen).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use shared::domain::timing::api_time;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::owned::Owned;
use crate::auth::Workspace;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, Query, path_id};
use crate::pagination::{Page, page_body};
use crate::state::AppState;
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

/// `POST /api/agents`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateAgent {
    /// 1 to 200 characters (trimmed); required.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 200, pattern = "\\S")]
    name: Option<Text>,
    /// The http(s) URL the carrier fetches when the callee answers; required.
    #[schema(value_type = String, required = true, pattern = "^https?://[^/?#\\s]+")]
    answer_url: Option<Text>,
}

/// `limit` and `cursor` of the workspace-owned lists.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Page size, 50 by default.
    #[param(minimum = 1, maximum = 1000)]
    pub(crate) limit: Option<i64>,
    /// The previous page's `cursor`.
    pub(crate) cursor: Option<String>,
}

/// An agent.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Agent {
    id: Uuid,
    name: String,
    /// As given: http(s), a host, anything after (the server checks no more).
    #[schema(pattern = "^https?://")]
    answer_url: String,
    #[schema(format = DateTime)]
    created_at: String,
}

fn agent_json(row: &tokio_postgres::Row) -> Agent {
    Agent {
        id: row.get("id"),
        name: row.get("name"),
        answer_url: row.get("answer_url"),
        created_at: api_time(row.get("created_at")),
    }
}

#[utoipa::path(post, path = "/api/agents", tag = "agents", operation_id = "createAgent", request_body = CreateAgent, responses((status = 200, body = Agent), (status = 422, description = "validation failed", body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    ws: Workspace,
    JsonBody(body): JsonBody<CreateAgent>,
) -> Result<Json<Agent>, ApiError> {
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

#[utoipa::path(get, path = "/api/agents", tag = "agents", operation_id = "listAgents", params(ListQuery), responses((status = 200, body = Page<Agent>), (status = 422, description = "limit out of range", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    ws: Workspace,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<Agent>>, ApiError> {
    let client = state.db.get().await?;
    let (page, cursor) = RESOURCE
        .page(&client, ws.id, q.limit, q.cursor.as_deref())
        .await?;
    Ok(page_body(page.iter().map(agent_json), cursor))
}

#[utoipa::path(get, path = "/api/agents/{id}", tag = "agents", operation_id = "getAgent", params(("id" = String, Path, description = "id")), responses((status = 200, body = Agent)))]
pub(crate) async fn fetch(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<Json<Agent>, ApiError> {
    let id = path_id(&id, "agent")?;
    let client = state.db.get().await?;
    let row = client
        .query_opt("SELECT id, name, answer_url, created_at FROM agents WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL", &[&id, &ws.id])
        .await?
        .ok_or(ApiError::NotFound("agent"))?;
    Ok(Json(agent_json(&row)))
}

#[utoipa::path(delete, path = "/api/agents/{id}", tag = "agents", operation_id = "deleteAgent", params(("id" = String, Path, description = "id")), responses((status = 204, description = "deleted")))]
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
