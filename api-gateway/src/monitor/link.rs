//! `links.dashboard`: the signed URL of a batch's page. A leaf, so the batch model can name it
//! without depending on the page's handlers.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::token::{self, Grant};
use crate::config::Config;

/// `links.dashboard` of batch `id`: the page's URL with a token valid for 7 days from `now`.
pub fn dashboard_link(config: &Config, id: Uuid, now: DateTime<Utc>) -> String {
    minted(config, Grant::View, id, now).0
}

/// The page's URL for batch `id` with a token of `grant` (`?token=` for a read-only link,
/// `?control=` for a control link) valid from `now`, and when it expires; for
/// [`Grant::WorkspaceControl`], `id` is a workspace and the page its Batch Dials page.
pub fn minted(
    config: &Config,
    grant: Grant,
    id: Uuid,
    now: DateTime<Utc>,
) -> (String, DateTime<Utc>) {
    let base = config.public_url.trim_end_matches('/');
    let secret = config.monitor_token_secret.as_bytes();
    if !token::usable(secret) {
        // A config `monitor::secret::resolve` never saw: a link without a token (the page
        // answers 401) rather than one signed with a secret anyone can know.
        tracing::error!("no monitor secret resolved: the dashboard link carries no token");
        return (format!("{base}/batch/monitor/{id}"), now);
    }
    let (token, expires) = token::issue_grant(secret, grant, id, now);
    let url = match grant {
        Grant::View => format!("{base}/batch/monitor/{id}?token={token}"),
        Grant::Control => format!("{base}/batch/monitor/{id}?control={token}"),
        Grant::WorkspaceControl => format!("{base}/workspace/{id}/dials?control={token}"),
    };
    (url, expires)
}
