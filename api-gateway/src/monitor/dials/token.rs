//! The token of a workspace's Batch Dials link: `?token=<expiry>.<signature>`, an HMAC-SHA256
//! under the monitor secret of the workspace id and the expiry, with its own domain tag, so a
//! batch page's token never opens a workspace page (and the reverse). The expiry is chosen when
//! the link is minted ([`MAX_VALIDITY`] at most) and carried in the token, so the server keeps
//! no state about links.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::monitor::token::{TokenError as Rejection, check, sign, usable};

/// How long a link minted without `expiresInSeconds` stays valid. Shorter than a batch link's
/// 7 days: this page shows every campaign of the workspace.
pub const DEFAULT_VALIDITY: Duration = Duration::hours(24);
/// The shortest validity a mint may ask for.
pub const MIN_VALIDITY: Duration = Duration::seconds(60);
/// The longest validity a mint may ask for.
pub const MAX_VALIDITY: Duration = Duration::days(7);

/// Why a token does not open the page (each gets the same 403 page, with its own sentence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("this link has no access token")]
    Missing,
    #[error("this link's access token is not valid for this workspace")]
    Invalid,
    #[error("this link has expired; mint a new one (POST /api/workspace/dashboard_link)")]
    Expired,
}

/// The domain tag of a workspace page's token, so no batch page's token passes as one.
const TAG: &str = "dialfleet-dials.v1";

impl From<Rejection> for TokenError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::Missing => TokenError::Missing,
            Rejection::Invalid => TokenError::Invalid,
            Rejection::Expired => TokenError::Expired,
        }
    }
}

/// A token for `workspace` that expires at `expires` (whole seconds).
pub fn issue(secret: &[u8], workspace: Uuid, expires: DateTime<Utc>) -> Option<String> {
    usable(secret).then(|| sign(secret, TAG, workspace, expires.timestamp()))
}

/// Checks `token` for `workspace` at `now`.
pub fn verify(
    secret: &[u8],
    workspace: Uuid,
    token: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), TokenError> {
    check(secret, TAG, workspace, token, now).map_err(TokenError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_its_workspace_until_it_expires() {
        let (secret, ws, now) = (b"s3cret".as_slice(), Uuid::now_v7(), Utc::now());
        let t = issue(secret, ws, now + Duration::hours(1)).unwrap();
        assert_eq!(verify(secret, ws, Some(&t), now), Ok(()));
        assert_eq!(
            verify(secret, ws, Some(&t), now + Duration::hours(1)),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify(secret, Uuid::now_v7(), Some(&t), now),
            Err(TokenError::Invalid),
            "scoped to its workspace"
        );
        assert_eq!(
            verify(b"other", ws, Some(&t), now),
            Err(TokenError::Invalid)
        );
        assert_eq!(verify(secret, ws, None, now), Err(TokenError::Missing));
        // A batch page's token for the same id does not open the workspace page.
        let batch_token = crate::monitor::token::issue(secret, ws, now);
        assert_eq!(
            verify(secret, ws, Some(&batch_token), now),
            Err(TokenError::Invalid)
        );
        let (exp, sig) = t.split_once('.').unwrap();
        let stretched = format!("{}.{sig}", exp.parse::<i64>().unwrap() + 86_400);
        assert_eq!(
            verify(secret, ws, Some(&stretched), now),
            Err(TokenError::Invalid)
        );
        let dev = crate::config::DEV_MONITOR_TOKEN_SECRET.as_bytes();
        assert_eq!(issue(dev, ws, now + Duration::hours(1)), None);
    }
}
