//! API-key authentication: `Authorization: Bearer <key>` or `api_key: <key>` (both appear in the
//! seeds). Every handler that takes a [`Workspace`] is scoped to the key's workspace.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use uuid::Uuid;

use crate::admin::hash_key;
use crate::app::AppState;
use crate::error::ApiError;

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
        Ok(Workspace {
            id: row.get(0),
            max_concurrent_dials: row.get(1),
            cps_ceiling: row.get(2),
            max_attempts_ceiling: row.get(3),
            default_retry: shared::domain::RetryStrategy {
                max_attempts: row.get::<_, i32>(4) as u32,
                busy_delay: row.get::<_, i64>(5) as u64,
                no_answer_delay: row.get::<_, i64>(6) as u64,
                voicemail_delay: None,
            },
            default_region: row.get(7),
        })
    }
}
