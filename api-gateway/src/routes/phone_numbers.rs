//! Phone numbers: the caller IDs a workspace owns, in E.164. Referenced by
//! `fromPhoneNumberIds`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use shared::domain::timing::api_time;
use utoipa::ToSchema;
use uuid::Uuid;

use shared::domain::E164;

use super::agents::ListQuery;
use super::owned::Owned;
use crate::auth::Workspace;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, Query, path_id};
use crate::pagination::{Page, page_body};
use crate::state::AppState;
use crate::validate::{Text, Violations};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/phone_numbers", get(list).post(create))
        .route("/api/phone_numbers/{id}", delete(remove))
}

const RESOURCE: Owned = Owned {
    table: "phone_numbers",
    columns: "id, number, label, created_at",
    what: "phone number",
};

/// `POST /api/phone_numbers`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateNumber {
    /// E.164, e.g. +12015550100; required.
    #[schema(value_type = String, required = true, pattern = "^\\+[1-9][0-9]{7,14}$")]
    number: Option<String>,
    #[schema(max_length = 200)]
    label: Option<Text>,
}

/// A caller ID of the workspace.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PhoneNumber {
    id: Uuid,
    /// E.164
    number: String,
    label: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
}

fn number_json(row: &tokio_postgres::Row) -> PhoneNumber {
    PhoneNumber {
        id: row.get("id"),
        number: row.get("number"),
        label: row.get("label"),
        created_at: api_time(row.get("created_at")),
    }
}

#[utoipa::path(post, path = "/api/phone_numbers", tag = "phone numbers", operation_id = "createPhoneNumber", request_body = CreateNumber, responses((status = 200, body = PhoneNumber), (status = 409, description = "already one of the workspace's numbers", body = ErrorBody), (status = 422, description = "validation failed", body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    ws: Workspace,
    JsonBody(body): JsonBody<CreateNumber>,
) -> Result<Json<PhoneNumber>, ApiError> {
    let mut v = Violations::default();
    let number = match body.number.as_deref() {
        None => {
            v.add("number", "is required");
            None
        }
        Some(n) => E164::parse(n)
            .map_err(|e| v.add("number", e.to_string()))
            .ok(),
    };
    if body.label.as_deref().is_some_and(|l| l.len() > 200) {
        v.add("label", "must be at most 200 characters");
    }
    let number = v
        .into_result(number)?
        .ok_or(ApiError::field("number", "is required"))?;
    let client = state.db.get().await?;
    let row = client
        .query_opt(
            "INSERT INTO phone_numbers (id, workspace_id, number, label) VALUES ($1, $2, $3, $4)
             ON CONFLICT (workspace_id, number) WHERE deleted_at IS NULL DO NOTHING
             RETURNING id, number, label, created_at",
            &[
                &Uuid::now_v7(),
                &ws.id,
                &number.as_str(),
                &body.label.as_deref(),
            ],
        )
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "{number} is already one of this workspace's phone numbers"
            ))
        })?;
    Ok(Json(number_json(&row)))
}

#[utoipa::path(get, path = "/api/phone_numbers", tag = "phone numbers", operation_id = "listPhoneNumbers", params(ListQuery), responses((status = 200, body = Page<PhoneNumber>), (status = 422, description = "limit out of range", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    ws: Workspace,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<PhoneNumber>>, ApiError> {
    let client = state.db.get().await?;
    let (page, cursor) = RESOURCE
        .page(&client, ws.id, q.limit, q.cursor.as_deref())
        .await?;
    Ok(page_body(page.iter().map(number_json), cursor))
}

#[utoipa::path(delete, path = "/api/phone_numbers/{id}", tag = "phone numbers", operation_id = "deletePhoneNumber", params(("id" = String, Path, description = "id")), responses((status = 204, description = "deleted")))]
pub(crate) async fn remove(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id, "phone number")?;
    let client = state.db.get().await?;
    RESOURCE.remove(&client, ws.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
