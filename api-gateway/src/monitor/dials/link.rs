//! Minting a workspace's Batch Dials link (`POST /api/workspace/dashboard_link` and
//! `api-gateway workspace dashboard-link ID`): the page's URL with a token of the chosen
//! validity. A leaf: the route and the CLI name it without the page's handlers.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::token;
use crate::config::Config;

/// A minted link.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DashboardLink {
    /// The workspace's Batch Dials page, its token in the query.
    pub url: String,
    /// When the link stops opening the page (RFC 3339).
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// Present, `true`, on a control link (`?control=true`): its page has pause, resume and
    /// cancel buttons on each row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<bool>,
}

/// Why a validity is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    #[error("must be between {} and {} seconds", token::MIN_VALIDITY.num_seconds(), token::MAX_VALIDITY.num_seconds())]
    Validity,
    #[error("must be between {} and {} seconds for a control link", token::MIN_VALIDITY.num_seconds(), crate::monitor::token::CONTROL_VALIDITY.num_seconds())]
    ControlValidity,
    /// The configuration has no usable secret (`monitor::secret::resolve` was not run).
    #[error("no monitor secret is configured")]
    NoSecret,
}

/// The link to workspace `id`'s page, valid `validity` from `now` (`None`: the default).
pub fn mint(
    config: &Config,
    id: Uuid,
    now: DateTime<Utc>,
    validity: Option<i64>,
) -> Result<DashboardLink, MintError> {
    let validity = match validity {
        None => token::DEFAULT_VALIDITY,
        Some(s)
            if (token::MIN_VALIDITY.num_seconds()..=token::MAX_VALIDITY.num_seconds())
                .contains(&s) =>
        {
            Duration::seconds(s)
        }
        Some(_) => return Err(MintError::Validity),
    };
    let expires = now.trunc_subsecs(0) + validity;
    let token = token::issue(config.monitor_token_secret.as_bytes(), id, expires)
        .ok_or(MintError::NoSecret)?;
    let base = config.public_url.trim_end_matches('/');
    Ok(DashboardLink {
        url: format!("{base}/workspace/{id}/dials?token={token}"),
        expires_at: shared::domain::timing::api_time(expires),
        control: None,
    })
}

/// A control link to workspace `id`'s page: its rows get pause, resume and cancel buttons.
/// Valid `validity` seconds from `now`, 60 to 3600 (an hour, the default): it acts on every
/// batch of the workspace.
pub fn mint_control(
    config: &Config,
    id: Uuid,
    now: DateTime<Utc>,
    validity: Option<i64>,
) -> Result<DashboardLink, MintError> {
    let max = crate::monitor::token::CONTROL_VALIDITY;
    let validity = match validity {
        None => max,
        Some(s) if (token::MIN_VALIDITY.num_seconds()..=max.num_seconds()).contains(&s) => {
            Duration::seconds(s)
        }
        Some(_) => return Err(MintError::ControlValidity),
    };
    let secret = config.monitor_token_secret.as_bytes();
    if !crate::monitor::token::usable(secret) {
        return Err(MintError::NoSecret);
    }
    let grant = crate::monitor::token::Grant::WorkspaceControl;
    let (token, expires) =
        crate::monitor::token::issue_until(secret, grant, id, now.trunc_subsecs(0) + validity);
    let base = config.public_url.trim_end_matches('/');
    Ok(DashboardLink {
        url: format!("{base}/workspace/{id}/dials?control={token}"),
        expires_at: shared::domain::timing::api_time(expires),
        control: Some(true),
    })
}
