//! The token in `links.dashboard`: a browser cannot send the API key, so the monitor page is
//! opened with `?token=<expiry>.<signature>`, an HMAC-SHA256 under the server's
//! `MONITOR_TOKEN_SECRET` of the batch id and the expiry. It opens that one batch's page (and
//! its event stream) until it expires, 7 days after it was issued; it never authenticates an
//! API request (those take API keys only, see `auth`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// How long a dashboard link stays valid.
pub const VALIDITY: Duration = Duration::days(7);

/// Why a token does not open the page (each gets the same 401 page, with its own sentence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("this link has no access token")]
    Missing,
    #[error("this link's access token is not valid for this batch")]
    Invalid,
    #[error("this link has expired; fetch the batch again for a fresh one")]
    Expired,
}

/// Whether `secret` may sign and check tokens: not empty, and not the published development
/// default (anyone could forge a link with it).
pub fn usable(secret: &[u8]) -> bool {
    !secret.is_empty() && secret != crate::config::DEV_MONITOR_TOKEN_SECRET.as_bytes()
}

fn mac(secret: &[u8], batch: Uuid, expires: i64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    // A domain tag, so that no other HMAC under the same secret can pass as a monitor token.
    mac.update(format!("dialfleet-monitor.v1.{batch}.{expires}").as_bytes());
    mac
}

/// A token for `batch`, valid for [`VALIDITY`] from `now`.
pub fn issue(secret: &[u8], batch: Uuid, now: DateTime<Utc>) -> String {
    let expires = (now + VALIDITY).timestamp();
    let sig = mac(secret, batch, expires).finalize().into_bytes();
    format!("{expires}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Checks `token` for `batch` at `now`.
pub fn verify(
    secret: &[u8],
    batch: Uuid,
    token: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), TokenError> {
    let token = token.filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
    if !usable(secret) {
        return Err(TokenError::Invalid);
    }
    let (expires, sig) = token.split_once('.').ok_or(TokenError::Invalid)?;
    let expires: i64 = expires.parse().map_err(|_| TokenError::Invalid)?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| TokenError::Invalid)?;
    // Constant-time comparison; the expiry is checked only once the signature is known good,
    // so an expired-but-forged token is "invalid", not "expired".
    mac(secret, batch, expires)
        .verify_slice(&sig)
        .map_err(|_| TokenError::Invalid)?;
    if now.timestamp() >= expires {
        return Err(TokenError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_its_batch_for_seven_days_only() {
        let (secret, batch, now) = (b"s3cret".as_slice(), Uuid::now_v7(), Utc::now());
        let t = issue(secret, batch, now);
        assert_eq!(verify(secret, batch, Some(&t), now), Ok(()));
        let later = now + Duration::days(6) + Duration::hours(23);
        assert_eq!(verify(secret, batch, Some(&t), later), Ok(()));
        let expired = now + VALIDITY + Duration::seconds(1);
        assert_eq!(
            verify(secret, batch, Some(&t), expired),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify(secret, Uuid::now_v7(), Some(&t), now),
            Err(TokenError::Invalid),
            "scoped to its batch"
        );
        assert_eq!(
            verify(b"other", batch, Some(&t), now),
            Err(TokenError::Invalid)
        );
        assert_eq!(verify(secret, batch, None, now), Err(TokenError::Missing));
        assert_eq!(
            verify(secret, batch, Some(""), now),
            Err(TokenError::Missing)
        );
        for bad in ["x", "1.2", "abc.def", "99999999999.AAAA"] {
            assert_eq!(
                verify(secret, batch, Some(bad), now),
                Err(TokenError::Invalid)
            );
        }
        // Stretching the expiry breaks the signature.
        let (exp, sig) = t.split_once('.').unwrap();
        let stretched = format!("{}.{sig}", exp.parse::<i64>().unwrap() + 86_400);
        assert_eq!(
            verify(secret, batch, Some(&stretched), now),
            Err(TokenError::Invalid)
        );
    }
}
