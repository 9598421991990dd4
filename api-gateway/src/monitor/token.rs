//! The token in `links.dashboard`: a browser cannot send the API key, so the monitor page is
//! opened with `?token=<expiry>.<signature>`, an HMAC-SHA256 under the server's
//! `MONITOR_TOKEN_SECRET` of the batch id and the expiry. It opens that one batch's page (and
//! its event stream) until it expires, 7 days after it was issued; it never authenticates an
//! API request (those take API keys only, see `auth`).
//!
//! A **control** token (`?control=…`, minted on request with `?control=true`) is signed under a
//! different domain tag, so no read-only token can pass as one; it opens the page too and, with
//! the CSRF token derived from it ([`csrf`]) in a request header, the page's pause, resume and
//! cancel. It lives [`CONTROL_VALIDITY`], not 7 days: it is a credential to act.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// How long a dashboard link stays valid.
pub const VALIDITY: Duration = Duration::days(7);

/// How long a control link stays valid: an hour, because it can stop a campaign.
pub const CONTROL_VALIDITY: Duration = Duration::hours(1);

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// See the page and its event stream (`links.dashboard`, `?token=`).
    View,
    /// See the page and pause, resume or cancel the batch (`?control=`).
    Control,
    /// See a workspace's Batch Dials page and pause, resume or cancel any of its batches
    /// (`/workspace/{id}/dials?control=`); the token's subject is the workspace id.
    WorkspaceControl,
}

impl Grant {
    /// The domain tag each grant signs under, so one can never pass as the other.
    fn tag(self) -> &'static str {
        match self {
            Grant::View => "dialfleet-monitor.v1",
            Grant::Control => "dialfleet-monitor-control.v1",
            Grant::WorkspaceControl => "dialfleet-dials-control.v1",
        }
    }

    /// How long a token of this grant is valid.
    pub fn validity(self) -> Duration {
        match self {
            Grant::View => VALIDITY,
            Grant::Control | Grant::WorkspaceControl => CONTROL_VALIDITY,
        }
    }
}

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

fn keyed(secret: &[u8], message: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    mac
}

fn mac(secret: &[u8], tag: &str, subject: Uuid, expires: i64) -> Hmac<Sha256> {
    // A domain tag, so that no other HMAC under the same secret can pass as a monitor token.
    keyed(secret, &format!("{tag}.{subject}.{expires}"))
}

/// `<expires>.<signature>`: the HMAC under `secret` of `tag`, `subject` and `expires`.
pub(crate) fn sign(secret: &[u8], tag: &str, subject: Uuid, expires: i64) -> String {
    let sig = mac(secret, tag, subject, expires).finalize().into_bytes();
    format!("{expires}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Checks a token [`sign`] made with `tag` for `subject` at `now` (the workspace page words
/// the same three failures its own way).
pub(crate) fn check(
    secret: &[u8],
    tag: &str,
    subject: Uuid,
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
    mac(secret, tag, subject, expires)
        .verify_slice(&sig)
        .map_err(|_| TokenError::Invalid)?;
    if now.timestamp() >= expires {
        return Err(TokenError::Expired);
    }
    Ok(())
}

/// A token for `batch`, valid for [`VALIDITY`] from `now`.
pub fn issue(secret: &[u8], batch: Uuid, now: DateTime<Utc>) -> String {
    issue_grant(secret, Grant::View, batch, now).0
}

/// A token of `grant` for `batch`, valid for the grant's validity from `now`, and its expiry.
pub fn issue_grant(
    secret: &[u8],
    grant: Grant,
    batch: Uuid,
    now: DateTime<Utc>,
) -> (String, DateTime<Utc>) {
    issue_until(secret, grant, batch, now + grant.validity())
}

/// A token of `grant` for `subject` (a batch, or a workspace for [`Grant::WorkspaceControl`])
/// that expires at `expires` (whole seconds), and that expiry.
pub fn issue_until(
    secret: &[u8],
    grant: Grant,
    subject: Uuid,
    expires: DateTime<Utc>,
) -> (String, DateTime<Utc>) {
    let secs = expires.timestamp();
    let at = DateTime::from_timestamp(secs, 0).unwrap_or(expires);
    (sign(secret, grant.tag(), subject, secs), at)
}

/// Checks a read-only `token` for `batch` at `now`.
pub fn verify(
    secret: &[u8],
    batch: Uuid,
    token: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), TokenError> {
    verify_grant(secret, Grant::View, batch, token, now)
}

/// The CSRF token of a control token: an HMAC of it under its own domain tag. The page gets it
/// in its HTML and sends it in the `X-Dialfleet-Csrf` header of each action; a page of another
/// site can neither read it nor set that header on a request here (no CORS is answered), so a
/// forged form or `fetch` is refused even by a browser that holds the control link.
pub fn csrf(secret: &[u8], batch: Uuid, control: &str) -> String {
    let sig = keyed(
        secret,
        &format!("dialfleet-monitor-csrf.v1.{batch}.{control}"),
    )
    .finalize()
    .into_bytes();
    URL_SAFE_NO_PAD.encode(sig)
}

/// Whether `presented` is the CSRF token of `control` (compared in constant time).
pub fn csrf_ok(secret: &[u8], batch: Uuid, control: &str, presented: Option<&str>) -> bool {
    let Some(sig) = presented.and_then(|p| URL_SAFE_NO_PAD.decode(p).ok()) else {
        return false;
    };
    usable(secret)
        && keyed(
            secret,
            &format!("dialfleet-monitor-csrf.v1.{batch}.{control}"),
        )
        .verify_slice(&sig)
        .is_ok()
}

/// Checks `token` of `grant` for `batch` at `now`.
pub fn verify_grant(
    secret: &[u8],
    grant: Grant,
    batch: Uuid,
    token: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), TokenError> {
    check(secret, grant.tag(), batch, token, now)
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
        assert_eq!(
            verify_grant(secret, Grant::Control, batch, Some(&t), now),
            Err(TokenError::Invalid),
            "a read-only token is no control token"
        );
        // Stretching the expiry breaks the signature.
        let (exp, sig) = t.split_once('.').unwrap();
        let stretched = format!("{}.{sig}", exp.parse::<i64>().unwrap() + 86_400);
        assert_eq!(
            verify(secret, batch, Some(&stretched), now),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn a_control_token_acts_for_an_hour_and_its_csrf_token_is_bound_to_it() {
        let (secret, batch, now) = (b"s3cret".as_slice(), Uuid::now_v7(), Utc::now());
        let (c, expires) = issue_grant(secret, Grant::Control, batch, now);
        assert_eq!((expires - now).num_minutes(), 59, "{expires}");
        assert_eq!(
            verify_grant(secret, Grant::Control, batch, Some(&c), now),
            Ok(())
        );
        assert_eq!(
            verify(secret, batch, Some(&c), now),
            Err(TokenError::Invalid),
            "a control token is not a read-only one either"
        );
        assert_eq!(
            verify_grant(secret, Grant::WorkspaceControl, batch, Some(&c), now),
            Err(TokenError::Invalid),
            "nor a workspace's"
        );
        assert_eq!(
            verify_grant(
                secret,
                Grant::Control,
                batch,
                Some(&c),
                now + CONTROL_VALIDITY
            ),
            Err(TokenError::Expired)
        );
        let x = csrf(secret, batch, &c);
        assert!(csrf_ok(secret, batch, &c, Some(&x)));
        assert!(!csrf_ok(secret, batch, &c, None));
        assert!(!csrf_ok(secret, batch, &c, Some("")));
        assert!(!csrf_ok(secret, Uuid::now_v7(), &c, Some(&x)));
        let (other, _) = issue_grant(secret, Grant::Control, batch, now + Duration::seconds(1));
        assert!(
            !csrf_ok(secret, batch, &other, Some(&x)),
            "bound to its link"
        );
        assert!(!csrf_ok(b"other", batch, &c, Some(&x)));
    }
}
