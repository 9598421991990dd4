//! The workspace's two fail-closed compliance checks (issue #25; docs/compliance.md): the
//! customer's **pre-dial check** (`predialUrl`, `predialTimeoutMs`) and the reliance on a copy
//! of the national **do-not-call registry** (`dncRegistryRequired`, with the freshness of the
//! newest copy shown as `dncRegistry`). Shown by `GET /api/workspace` (flattened into
//! [`crate::workspace::Settings`]), changed by `PATCH /api/workspace` and the operator's
//! `workspace update`; the dial worker (`dial-worker/src/predial`) and the scheduler's release
//! apply them.

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use shared::compliance::registry;
use shared::destination::AllowedNetworks;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

/// The longest `predialTimeoutMs` (the column's CHECK, migration V22).
pub const MAX_PREDIAL_TIMEOUT_MS: i64 = 10_000;

/// The columns [`Checks::from_row`] reads, for a `SELECT … FROM workspaces`.
pub const COLUMNS: &str = "predial_url, predial_timeout_ms, dnc_registry_required, \
    (SELECT max(r.as_of) FROM dnc_registry_copies r WHERE r.workspace_id = workspaces.id) \
        AS dnc_registry_as_of";

/// The checks as the API shows them.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Checks {
    /// Where the pre-dial check is posted before each call, or null (off, the default).
    pub predial_url: Option<String>,
    /// How long the check may take, 1 … 10,000 ms (default 2,000); a slower answer holds
    /// the contact (`predial_unavailable`).
    pub predial_timeout_ms: i32,
    /// The workspace relies on its copy of the national do-not-call registry: its batches are
    /// not released while the newest copy is older than 31 days (default false).
    pub dnc_registry_required: bool,
    /// The registry copies' freshness (read-only).
    pub dnc_registry: RegistryStatus,
}

/// The freshness of the workspace's newest registry copy.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryStatus {
    /// The `asOf` of the newest copy imported (`YYYY-MM-DD`), or null.
    #[schema(format = Date)]
    pub newest_as_of: Option<String>,
    /// The last UTC date calls are covered by it (`asOf` + 31 days), or null.
    #[schema(format = Date)]
    pub fresh_until: Option<String>,
    /// `dnc_registry_stale` while the workspace relies on the registry and has no fresh
    /// copy: nothing of it is released. Null otherwise.
    pub hold_reason: Option<&'static str>,
}

impl RegistryStatus {
    /// The status at `now` of a workspace whose newest copy is `newest`.
    pub fn at(required: bool, newest: Option<NaiveDate>, now: DateTime<Utc>) -> Self {
        Self {
            newest_as_of: newest.map(|d| d.to_string()),
            fresh_until: newest
                .and_then(registry::fresh_until)
                .map(|d| d.to_string()),
            hold_reason: registry::is_stale(required, newest, now).then_some(registry::HOLD_REASON),
        }
    }
}

impl Checks {
    /// Reads [`COLUMNS`].
    pub fn from_row(row: &Row) -> Self {
        let required: bool = row.get("dnc_registry_required");
        Self {
            predial_url: row.get("predial_url"),
            predial_timeout_ms: row.get("predial_timeout_ms"),
            dnc_registry_required: required,
            dnc_registry: RegistryStatus::at(required, row.get("dnc_registry_as_of"), Utc::now()),
        }
    }
}

/// What holds every batch of workspace `id` at `now`, batch-wide: `dnc_registry_stale` while
/// it relies on the registry without a fresh copy (the scheduler releases nothing of it), else
/// `None`. Shown as a batch's `holdReason` (check-status, the Vogent job, the monitor page).
pub async fn batch_hold(
    client: &impl GenericClient,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<&'static str>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT dnc_registry_required,
                    (SELECT max(r.as_of) FROM dnc_registry_copies r WHERE r.workspace_id = $1)
                        AS dnc_registry_as_of
             FROM workspaces WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(row.and_then(|r| {
        RegistryStatus::at(
            r.get("dnc_registry_required"),
            r.get("dnc_registry_as_of"),
            now,
        )
        .hold_reason
    }))
}

/// A change to the checks; `None` = unchanged, `predial_url: Some(None)` turns the check off.
#[derive(Debug, Default, Clone)]
pub struct ChecksPatch {
    pub predial_url: Option<Option<String>>,
    pub predial_timeout_ms: Option<i64>,
    pub dnc_registry_required: Option<bool>,
}

impl ChecksPatch {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.predial_url.is_none()
            && self.predial_timeout_ms.is_none()
            && self.dnc_registry_required.is_none()
    }

    /// Every bad value, as (field, why): the URL is read as the fleet's client reads it and
    /// must not name a private or reserved address outside `WEBHOOK_ALLOWED_NETWORKS` (the
    /// webhooks' rule, `shared::destination`); the timeout is 1 … 10,000 ms.
    pub fn problems(&self, allowed: &AllowedNetworks) -> Vec<(&'static str, String)> {
        let mut found = Vec::new();
        if let Some(Some(url)) = &self.predial_url {
            match shared::destination::parse_http_url(url) {
                Err(e) => found.push(("predialUrl", e.to_string())),
                Ok(parsed) => {
                    if let Err(blocked) = allowed.check_url(&parsed) {
                        found.push((
                            "predialUrl",
                            format!(
                                "must not point to a private or reserved address ({}): the pre-dial check, like webhooks, only goes to public addresses and the operator's WEBHOOK_ALLOWED_NETWORKS",
                                blocked.ip
                            ),
                        ));
                    }
                }
            }
        }
        if let Some(ms) = self.predial_timeout_ms
            && !(1..=MAX_PREDIAL_TIMEOUT_MS).contains(&ms)
        {
            found.push((
                "predialTimeoutMs",
                format!("must be between 1 and {MAX_PREDIAL_TIMEOUT_MS} milliseconds"),
            ));
        }
        found
    }
}

/// Writes a checked change.
pub async fn write(
    client: &impl GenericClient,
    id: Uuid,
    patch: &ChecksPatch,
) -> Result<(), tokio_postgres::Error> {
    if patch.is_empty() {
        return Ok(());
    }
    // `problems` bounded it to 1 … 10,000.
    let timeout = patch.predial_timeout_ms.map(|ms| ms as i32);
    client
        .execute(
            "UPDATE workspaces SET
                 predial_url = CASE WHEN $2 THEN $3 ELSE predial_url END,
                 predial_timeout_ms = COALESCE($4, predial_timeout_ms),
                 dnc_registry_required = COALESCE($5, dnc_registry_required)
             WHERE id = $1",
            &[
                &id,
                &patch.predial_url.is_some(),
                &patch.predial_url.clone().flatten(),
                &timeout,
                &patch.dnc_registry_required,
            ],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_or_bad_url_and_an_out_of_range_timeout_are_named() {
        let none = AllowedNetworks::none();
        let patch = |url: &str, ms: i64| ChecksPatch {
            predial_url: Some(Some(url.to_owned())),
            predial_timeout_ms: Some(ms),
            dnc_registry_required: None,
        };
        assert!(
            patch("https://checks.example.com/predial", 2000)
                .problems(&none)
                .is_empty()
        );
        let found = patch("http://10.0.0.5/check", 0).problems(&none);
        assert_eq!(
            found.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
            ["predialUrl", "predialTimeoutMs"]
        );
        assert!(found[0].1.contains("private or reserved"));
        assert_eq!(patch("ftp://x.example", 10_001).problems(&none).len(), 2);
        let loopback: AllowedNetworks = "127.0.0.1/32".parse().unwrap();
        assert!(
            patch("http://127.0.0.1:9/c", 10_000)
                .problems(&loopback)
                .is_empty()
        );
    }

    #[test]
    fn the_hold_shows_while_the_registry_is_relied_on_and_stale() {
        let now = "2026-12-07T12:00:00Z".parse().unwrap();
        let day = |s: &str| s.parse::<NaiveDate>().ok();
        assert_eq!(
            RegistryStatus::at(true, None, now).hold_reason,
            Some("dnc_registry_stale")
        );
        assert_eq!(RegistryStatus::at(false, None, now).hold_reason, None);
        let fresh = RegistryStatus::at(true, day("2026-11-30"), now);
        assert_eq!(fresh.hold_reason, None);
        assert_eq!(fresh.fresh_until.as_deref(), Some("2026-12-31"));
        assert_eq!(
            RegistryStatus::at(true, day("2026-11-05"), now).hold_reason,
            Some("dnc_registry_stale")
        );
    }
}
