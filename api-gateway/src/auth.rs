//! API-key authentication: `Authorization: Bearer <key>` or `api_key: <key>` (both appear in the
//! seeds). Every handler that takes a [`Workspace`] is scoped to the key's workspace.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use uuid::Uuid;

use crate::admin::hash_key;
use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller's workspace and its settings that requests validate against.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The workspace's id: every query is filtered by it.
    pub id: Uuid,
    /// Its ceiling on calls in flight.
    pub max_concurrent_dials: i32,
    /// Ceiling for a batch's `maxCallsPerSecond`.
    pub cps_ceiling: i32,
    /// Ceiling for `retryStrategy.maxAttempts`.
    pub max_attempts_ceiling: i32,
    /// Retry defaults for jobs that name none.
    pub default_retry: shared::domain::RetryStrategy,
    /// Region for numbers written without a country code.
    pub default_region: String,
}

fn presented_key(parts: &Parts) -> Option<&str> {
    if let Some(value) = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let value = value.trim();
        if let Some(key) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        {
            return Some(key.trim());
        }
    }
    parts
        .headers
        .get("api_key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

impl FromRequestParts<AppState> for Workspace {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = presented_key(parts)
            .filter(|k| !k.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let client = state.db.get().await?;
        let row = client
            .query_opt(
                "SELECT w.id, w.max_concurrent_dials, w.cps_ceiling, w.max_attempts_ceiling, w.default_max_attempts, \
                        w.default_busy_delay_ms, w.default_no_answer_delay_ms, w.default_region \
                 FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id \
                 WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
                &[&hash_key(key)],
            )
            .await?
            .ok_or(ApiError::Unauthorized)?;
        let default_retry = crate::batches::model::retry_columns(&row, "default_")?;
        Ok(Workspace {
            id: row.try_get("id")?,
            max_concurrent_dials: row.try_get("max_concurrent_dials")?,
            cps_ceiling: row.try_get("cps_ceiling")?,
            max_attempts_ceiling: row.try_get("max_attempts_ceiling")?,
            default_retry,
            default_region: row.try_get("default_region")?,
        })
    }
}
