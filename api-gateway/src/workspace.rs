//! A workspace's settings, one typed shape for `GET /api/workspace`, `PATCH /api/workspace` and
//! the operator's `api-gateway workspace show|update`.
//!
//! Two kinds of setting live on a workspace:
//! - the **tenant's own** (retry defaults, default region, and the compliance policy: recipient
//!   calling hours, the unknown-timezone allowance, the frequency cap): an API key of the
//!   workspace changes them;
//! - the **operator's** (`maxConcurrentDials`, `maxCallsPerSecond`, the ceilings, and the API
//!   request rate `requestsPerSecond` / `requestBurst`): they stand for the carrier account and
//!   the operator's capacity, so only the operator changes them
//!   ([`OperatorUpdate`], the CLI). A `PATCH` that tries is answered 403 naming each field.
//!
//! The webhook secret is never shown through the API, only its prefix; rotating it returns the
//! new secret once, and for [`ROTATION_OVERLAP_HOURS`] the dial worker signs every delivery with
//! both the new and the replaced secret (`shared/migrations/V11__webhook_secret_rotation.sql`).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use shared::compliance::{FrequencyCap, RecipientHours};
use shared::domain::timing::{api_time, api_time_opt};

use crate::error::{ApiError, FieldError};
use crate::validate::Violations;
use crate::workspace_checks::{Checks, ChecksPatch};

/// How long the replaced webhook secret keeps signing deliveries after a rotation.
pub const ROTATION_OVERLAP_HOURS: i64 = 24;

/// How many characters of the secret identify it (`whsec_` and 4 more): enough to tell two
/// secrets apart, far too few to guess the rest.
pub const SECRET_PREFIX_LEN: usize = 10;

/// The longest retry delay a workspace may default to (the one a batch may ask for).
pub const MAX_RETRY_DELAY_MS: i64 = 30 * 24 * 3_600_000;

/// The columns [`Settings::from_row`] reads, by name (with `crate::workspace_checks::COLUMNS`).
const COLUMNS: &str = "id, name, created_at, max_concurrent_dials, max_calls_per_second, cps_ceiling, \
    max_attempts_ceiling, default_max_attempts, default_busy_delay_ms, default_no_answer_delay_ms, \
    default_region, webhook_secret, webhook_secret_rotated_at, \
    CASE WHEN previous_webhook_secret_until > now() THEN previous_webhook_secret_until END \
        AS previous_webhook_secret_until, \
    recipient_hours_start, recipient_hours_end, allow_unknown_timezone, \
    max_calls_per_number_count, max_calls_per_number_days, requests_per_second, request_burst, \
    jurisdiction_rules";

/// A workspace's settings as the API shows them.
///
/// The compliance policy (docs/compliance.md) is the tenant's own, so `PATCH` changes it:
/// `recipientCallingHours`, `allowUnknownTimezone` and `maxCallsPerNumber`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub id: Uuid,
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// Calls in flight across all the workspace's batches (operator's).
    pub max_concurrent_dials: i32,
    /// Call starts per second across all its batches, or none (operator's).
    pub max_calls_per_second: Option<i32>,
    /// What a batch may ask for (operator's).
    pub ceilings: Ceilings,
    /// API requests per second the workspace may send, sustained, across every gateway replica
    /// (operator's; default 50). Beyond it: 429 with `Retry-After`.
    pub requests_per_second: i32,
    /// API requests it may send at once after a quiet spell (operator's; default 100).
    pub request_burst: i32,
    /// For batches that name no retry strategy (every Vogent job); the tenant's.
    pub retry_defaults: RetryDefaults,
    /// Region for numbers written without a country code; the tenant's.
    pub default_region: String,
    /// Recipient-local calling hours, `HH:MM-HH:MM` in each recipient's own timezone, every
    /// day, or `off`; the tenant's. Default `08:00-21:00`.
    pub recipient_calling_hours: String,
    /// Whether numbers whose timezone cannot be determined are dialed (otherwise held,
    /// `unknown_timezone`); the tenant's. Default false.
    pub allow_unknown_timezone: bool,
    /// At most `count` call attempts to one number in any `days` days, across all the
    /// workspace's batches, or null (off, the default); the tenant's.
    pub max_calls_per_number: Option<FrequencyCap>,
    /// Which calling rules apply (docs/jurisdiction-rules.md): `strictest` (the default: the
    /// strictest combination of every candidate state's rules and the federal ones) or
    /// `federal` (the federal rules only: the user is then responsible for state law); the
    /// tenant's.
    #[schema(example = "strictest")]
    pub jurisdiction_rules: String,
    /// The release of the compliance rule pack in force (read-only), e.g. `2026.12.1`, with
    /// `+<operator version>` when the operator's `COMPLIANCE_RULES_FILE` adds rules.
    pub rules_version: String,
    /// The webhook secret, identified but not shown.
    pub webhook_secret: SecretInfo,
    /// The pre-dial check and the do-not-call registry's freshness (`crate::workspace_checks`).
    #[serde(flatten)]
    pub checks: Checks,
}

/// How the API writes recipient hours: `HH:MM-HH:MM`, or `off`.
fn hours_text(h: Option<RecipientHours>) -> String {
    h.map_or_else(|| "off".to_owned(), |h| h.to_string())
}

/// The ceilings a batch's settings are checked against.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ceilings {
    /// The largest `maxCallsPerSecond` a batch may ask for.
    pub max_calls_per_second: i32,
    /// The largest `retryStrategy.maxAttempts`.
    pub max_attempts: i32,
}

/// Retry defaults, in Dialgen's `retryStrategy` shape (delays in milliseconds).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RetryDefaults {
    pub max_attempts: i32,
    pub busy_delay: i64,
    pub no_answer_delay: i64,
}

/// The webhook secret, without the secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretInfo {
    /// Its first characters (`whsec_` and 4 more).
    pub prefix: String,
    /// When it was last rotated through the API, or null.
    pub rotated_at: Option<String>,
    /// While the replaced secret still signs deliveries (24 h after a rotation), until when.
    pub previous_valid_until: Option<String>,
}

impl Settings {
    fn from_row(row: &Row) -> Self {
        let secret: String = row.get("webhook_secret");
        Self {
            id: row.get("id"),
            name: row.get("name"),
            created_at: api_time(row.get("created_at")),
            max_concurrent_dials: row.get("max_concurrent_dials"),
            max_calls_per_second: row.get("max_calls_per_second"),
            ceilings: Ceilings {
                max_calls_per_second: row.get("cps_ceiling"),
                max_attempts: row.get("max_attempts_ceiling"),
            },
            requests_per_second: row.get("requests_per_second"),
            request_burst: row.get("request_burst"),
            retry_defaults: RetryDefaults {
                max_attempts: row.get("default_max_attempts"),
                busy_delay: row.get("default_busy_delay_ms"),
                no_answer_delay: row.get("default_no_answer_delay_ms"),
            },
            default_region: row.get("default_region"),
            recipient_calling_hours: hours_text(RecipientHours::from_minutes(
                row.get("recipient_hours_start"),
                row.get("recipient_hours_end"),
            )),
            allow_unknown_timezone: row.get("allow_unknown_timezone"),
            max_calls_per_number: FrequencyCap::from_columns(
                row.get("max_calls_per_number_count"),
                row.get("max_calls_per_number_days"),
            ),
            jurisdiction_rules: row.get(crate::jurisdiction::COLUMN),
            rules_version: crate::jurisdiction::version().to_owned(),
            webhook_secret: SecretInfo {
                prefix: secret_prefix(&secret),
                rotated_at: api_time_opt(row.get("webhook_secret_rotated_at")),
                previous_valid_until: api_time_opt(row.get("previous_webhook_secret_until")),
            },
            checks: Checks::from_row(row),
        }
    }

    /// One workspace's settings.
    pub async fn load(client: &impl GenericClient, id: Uuid) -> Result<Self, ApiError> {
        let sql = format!(
            "SELECT {COLUMNS}, {} FROM workspaces WHERE id = $1",
            crate::workspace_checks::COLUMNS
        );
        let row = client
            .query_opt(&sql, &[&id])
            .await?
            .ok_or(ApiError::NotFound("workspace"))?;
        Ok(Self::from_row(&row))
    }

    /// Every workspace, oldest first (the operator's list).
    pub async fn list(client: &impl GenericClient) -> Result<Vec<Self>, ApiError> {
        let sql = format!(
            "SELECT {COLUMNS}, {} FROM workspaces ORDER BY created_at, id",
            crate::workspace_checks::COLUMNS
        );
        Ok(client
            .query(&sql, &[])
            .await?
            .iter()
            .map(Self::from_row)
            .collect())
    }
}

/// The first characters of a secret, safe to show.
pub fn secret_prefix(secret: &str) -> String {
    secret.chars().take(SECRET_PREFIX_LEN).collect()
}

/// A new Standard Webhooks secret: `whsec_` and 24 random bytes in base64.
pub fn new_webhook_secret() -> String {
    use base64::Engine;
    use rand::Rng;
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(rand::rng().random::<[u8; 24]>())
    )
}

/// The fields of `PATCH /api/workspace` that only the operator may change; a body naming one
/// with a value other than the current one is refused with 403 naming it.
pub const OPERATOR_FIELDS: [&str; 5] = [
    "maxConcurrentDials",
    "maxCallsPerSecond",
    "ceilings",
    "requestsPerSecond",
    "requestBurst",
];

/// The largest `--requests-per-second` (the column's bound, migration V20).
pub const MAX_REQUESTS_PER_SECOND: i32 = 100_000;
/// The largest `--request-burst` (the column's bound, migration V20).
pub const MAX_REQUEST_BURST: i32 = 1_000_000;

/// What a tenant may change with its API key. Every field is optional; absent ones stay.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantPatch {
    /// Any of the three; the others stay.
    pub retry_defaults: Option<RetryPatch>,
    /// Two capital letters (ISO 3166-1), e.g. `US`.
    pub default_region: Option<String>,
    /// `HH:MM-HH:MM` (start before end, in the recipient's local time) or `off`.
    pub recipient_calling_hours: Option<String>,
    /// Dial numbers whose timezone cannot be determined.
    pub allow_unknown_timezone: Option<bool>,
    /// `{"count": 7, "days": 7}`, or `null` to turn the cap off (absent: unchanged).
    #[serde(default, deserialize_with = "crate::validate::present")]
    #[schema(value_type = Option<CapPatch>)]
    pub max_calls_per_number: Option<Option<CapPatch>>,
    /// `strictest` or `federal` (the user then answers for state law).
    pub jurisdiction_rules: Option<String>,
    /// The pre-dial check's URL (http or https, a public address unless the operator allowed
    /// its network), or `null` to turn it off (absent: unchanged).
    #[serde(default, deserialize_with = "crate::validate::present")]
    #[schema(value_type = Option<String>)]
    pub predial_url: Option<Option<String>>,
    /// How long the pre-dial check may take, 1 … 10,000 ms.
    #[schema(minimum = 1, maximum = 10000)]
    pub predial_timeout_ms: Option<i64>,
    /// Rely on the national do-not-call registry: no release while the newest copy is older
    /// than 31 days.
    pub dnc_registry_required: Option<bool>,
}

impl TenantPatch {
    /// The pre-dial and registry settings it changes.
    fn checks(&self) -> ChecksPatch {
        ChecksPatch {
            predial_url: self.predial_url.clone(),
            predial_timeout_ms: self.predial_timeout_ms,
            dnc_registry_required: self.dnc_registry_required,
        }
    }
}

/// A new frequency cap, both numbers required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapPatch {
    #[schema(minimum = 1, maximum = 1000)]
    pub count: i64,
    #[schema(minimum = 1, maximum = 365)]
    pub days: i64,
}

/// A change to some of the retry defaults.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPatch {
    pub max_attempts: Option<i64>,
    pub busy_delay: Option<i64>,
    pub no_answer_delay: Option<i64>,
}

/// Splits a `PATCH` body into the operator's fields (refused unless unchanged) and the tenant's
/// patch. The read-only fields `GET` shows (`id`, `name`, `createdAt`, `webhookSecret`) are
/// accepted and ignored when unchanged, so a client may send back what it read.
pub fn parse_tenant_patch(
    mut body: Map<String, Value>,
    current: &Settings,
) -> Result<TenantPatch, ApiError> {
    let shown = serde_json::to_value(current).map_err(|e| ApiError::Internal(e.into()))?;
    let mut refused = Vec::new();
    for field in OPERATOR_FIELDS {
        if let Some(value) = body.remove(field)
            && value != shown[field]
        {
            refused.push(FieldError::new(
                field,
                "is set by the operator (api-gateway workspace update) and cannot be changed with an API key",
            ));
        }
    }
    if !refused.is_empty() {
        return Err(ApiError::ForbiddenFields(refused));
    }
    let mut changed_read_only = Violations::default();
    for field in [
        "id",
        "name",
        "createdAt",
        "webhookSecret",
        "rulesVersion",
        "dncRegistry",
    ] {
        if let Some(value) = body.remove(field)
            && value != shown[field]
        {
            changed_read_only.add(field, "is read-only");
        }
    }
    changed_read_only.into_result(())?;
    let mut unknown = Vec::new();
    let patch = crate::extract::typed_value(serde_json::Value::Object(body), &mut unknown);
    if !unknown.is_empty() {
        return Err(ApiError::Validation(unknown));
    }
    patch
}

/// Checks a tenant's patch against the workspace's ceilings and writes it.
pub async fn apply_tenant_patch(
    client: &impl GenericClient,
    current: &Settings,
    patch: TenantPatch,
    allowed: &shared::destination::AllowedNetworks,
) -> Result<Settings, ApiError> {
    let mut v = Violations::default();
    let checks = patch.checks();
    for (field, why) in checks.problems(allowed) {
        v.add(field, why);
    }
    let retry = patch.retry_defaults.unwrap_or_default();
    let max_attempts = retry.max_attempts.and_then(|n| {
        if n >= 1 && n <= i64::from(current.ceilings.max_attempts) {
            Some(n as i32)
        } else {
            v.add(
                "retryDefaults.maxAttempts",
                format!("must be between 1 and {}", current.ceilings.max_attempts),
            );
            None
        }
    });
    let mut delay = |value: Option<i64>, field: &str| {
        value.filter(|ms| {
            let ok = (0..=MAX_RETRY_DELAY_MS).contains(ms);
            if !ok {
                v.add(
                    field,
                    format!("must be between 0 and {MAX_RETRY_DELAY_MS} milliseconds (30 days)"),
                );
            }
            ok
        })
    };
    let busy = delay(retry.busy_delay, "retryDefaults.busyDelay");
    let no_answer = delay(retry.no_answer_delay, "retryDefaults.noAnswerDelay");
    if let Some(r) = patch.default_region.as_deref()
        && !is_region(r)
    {
        v.add("defaultRegion", region_message(r));
    }
    let hours = patch.recipient_calling_hours.as_deref().and_then(|h| {
        match RecipientHours::parse_policy(h) {
            Ok(policy) => Some(policy),
            Err(why) => {
                v.add("recipientCallingHours", why);
                None
            }
        }
    });
    let cap = patch.max_calls_per_number.and_then(|cap| match cap {
        None => Some(None),
        Some(c) => match FrequencyCap::new(c.count, c.days) {
            Ok(cap) => Some(Some(cap)),
            Err((what, why)) => {
                v.add(format!("maxCallsPerNumber.{what}"), why);
                None
            }
        },
    });
    let jurisdiction_rules = patch.jurisdiction_rules.as_deref().and_then(|m| {
        crate::jurisdiction::parse(m)
            .map_err(|why| v.add("jurisdictionRules", why))
            .ok()
    });
    v.into_result(())?;
    if let Some(mode) = jurisdiction_rules {
        crate::jurisdiction::write(client, current.id, mode).await?;
    }
    crate::workspace_checks::write(client, current.id, &checks).await?;
    write_compliance(
        client,
        current.id,
        &Compliance {
            hours,
            allow_unknown_timezone: patch.allow_unknown_timezone,
            cap,
        },
    )
    .await?;
    client
        .execute(
            "UPDATE workspaces SET
                 default_max_attempts = COALESCE($2, default_max_attempts),
                 default_busy_delay_ms = COALESCE($3, default_busy_delay_ms),
                 default_no_answer_delay_ms = COALESCE($4, default_no_answer_delay_ms),
                 default_region = COALESCE($5, default_region)
             WHERE id = $1",
            &[
                &current.id,
                &max_attempts,
                &busy,
                &no_answer,
                &patch.default_region,
            ],
        )
        .await?;
    Settings::load(client, current.id).await
}

/// A change to the compliance policy; `None` = unchanged. `Some(None)` turns the hours or the
/// cap off.
#[derive(Debug, Default, Clone, Copy)]
pub struct Compliance {
    pub hours: Option<Option<RecipientHours>>,
    pub allow_unknown_timezone: Option<bool>,
    pub cap: Option<Option<FrequencyCap>>,
}

impl Compliance {
    fn is_empty(&self) -> bool {
        self.hours.is_none() && self.allow_unknown_timezone.is_none() && self.cap.is_none()
    }
}

/// Writes a checked compliance change. A contact already deferred keeps its allowed minute
/// (docs/compliance.md); the new policy applies to contacts as they come due.
async fn write_compliance(
    client: &impl GenericClient,
    id: Uuid,
    c: &Compliance,
) -> Result<(), tokio_postgres::Error> {
    if c.is_empty() {
        return Ok(());
    }
    let hours = c.hours.flatten().map(RecipientHours::minutes);
    let cap = c.cap.flatten();
    client
        .execute(
            "UPDATE workspaces SET
                 recipient_hours_start = CASE WHEN $2 THEN $3 ELSE recipient_hours_start END,
                 recipient_hours_end = CASE WHEN $2 THEN $4 ELSE recipient_hours_end END,
                 allow_unknown_timezone = COALESCE($5, allow_unknown_timezone),
                 max_calls_per_number_count = CASE WHEN $6 THEN $7 ELSE max_calls_per_number_count END,
                 max_calls_per_number_days = CASE WHEN $6 THEN $8 ELSE max_calls_per_number_days END
             WHERE id = $1",
            &[
                &id,
                &c.hours.is_some(),
                &hours.map(|h| h.0),
                &hours.map(|h| h.1),
                &c.allow_unknown_timezone,
                &c.cap.is_some(),
                &cap.map(|c| c.count),
                &cap.map(|c| c.days),
            ],
        )
        .await?;
    Ok(())
}

/// A region code as batches take it: two capital ASCII letters.
pub fn is_region(r: &str) -> bool {
    // Only a region the phone library has metadata for: numbers written without `+` are read
    // in it, and an unknown one would make every such number a rejected row.
    r.len() == 2
        && r.bytes().all(|b| b.is_ascii_uppercase())
        && phonenumber::metadata::DATABASE.by_id(r).is_some()
}

/// Why `r` is not a region [`is_region`] accepts.
pub fn region_message(r: &str) -> String {
    format!("{r:?} is not a region code the phone number library knows, such as \"US\" or \"GB\"")
}

/// A rotated secret, shown once.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotatedSecret {
    /// The new secret, in clear: this is the only time it is shown through the API.
    pub secret: String,
    /// Its prefix, as `GET /api/workspace` shows it.
    pub prefix: String,
    /// RFC 3339.
    pub rotated_at: String,
    /// Until when deliveries are also signed with the replaced secret.
    pub previous_valid_until: String,
}

/// Replaces the workspace's webhook secret; the replaced one keeps signing deliveries for
/// [`ROTATION_OVERLAP_HOURS`]. A second rotation within that window drops the first replaced
/// secret at once (only the secret just replaced keeps signing).
pub async fn rotate_webhook_secret(
    client: &impl GenericClient,
    workspace: Uuid,
) -> Result<RotatedSecret, ApiError> {
    let secret = new_webhook_secret();
    let row = client
        .query_opt(
            "UPDATE workspaces SET previous_webhook_secret = webhook_secret,
                 previous_webhook_secret_until = now() + make_interval(hours => $3),
                 webhook_secret = $2, webhook_secret_rotated_at = now()
             WHERE id = $1
             RETURNING webhook_secret_rotated_at, previous_webhook_secret_until",
            &[&workspace, &secret, &(ROTATION_OVERLAP_HOURS as i32)],
        )
        .await?
        .ok_or(ApiError::NotFound("workspace"))?;
    let (rotated_at, until): (DateTime<Utc>, DateTime<Utc>) = (
        row.get("webhook_secret_rotated_at"),
        row.get("previous_webhook_secret_until"),
    );
    Ok(RotatedSecret {
        prefix: secret_prefix(&secret),
        secret,
        rotated_at: api_time(rotated_at),
        previous_valid_until: api_time(until),
    })
}

/// The operator's change: any setting, the limits included (`api-gateway workspace update`).
#[derive(Debug, Default, Clone)]
pub struct OperatorUpdate {
    pub name: Option<String>,
    pub max_concurrent_dials: Option<i32>,
    /// `Some(None)` removes the workspace-wide rate limit.
    pub max_calls_per_second: Option<Option<i32>>,
    pub cps_ceiling: Option<i32>,
    pub max_attempts_ceiling: Option<i32>,
    pub default_max_attempts: Option<i32>,
    pub default_busy_delay_ms: Option<i64>,
    pub default_no_answer_delay_ms: Option<i64>,
    pub default_region: Option<String>,
    /// API requests per second (`--requests-per-second`).
    pub requests_per_second: Option<i32>,
    /// API requests at once (`--request-burst`).
    pub request_burst: Option<i32>,
    /// The tenant's compliance policy, which the operator may set too.
    pub compliance: Compliance,
    /// The pre-dial check and the registry reliance (checked by the caller:
    /// [`ChecksPatch::problems`]).
    pub checks: ChecksPatch,
    /// `--jurisdiction-rules strictest|federal`.
    pub jurisdiction_rules: Option<shared::compliance::jurisdiction::RuleMode>,
}

impl OperatorUpdate {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.max_concurrent_dials.is_none()
            && self.max_calls_per_second.is_none()
            && self.cps_ceiling.is_none()
            && self.max_attempts_ceiling.is_none()
            && self.default_max_attempts.is_none()
            && self.default_busy_delay_ms.is_none()
            && self.default_no_answer_delay_ms.is_none()
            && self.default_region.is_none()
            && self.requests_per_second.is_none()
            && self.request_burst.is_none()
            && self.compliance.is_empty()
            && self.checks.is_empty()
            && self.jurisdiction_rules.is_none()
    }
}

/// Applies an operator's change; every bad value is named with its command-line flag.
pub async fn apply_operator_update(
    client: &impl GenericClient,
    id: Uuid,
    u: &OperatorUpdate,
) -> anyhow::Result<Settings> {
    let current = Settings::load(client, id)
        .await
        .map_err(|_| anyhow::anyhow!("no workspace with id {id}"))?;
    let positive = |v: Option<i32>, flag: &str| -> anyhow::Result<()> {
        anyhow::ensure!(v.is_none_or(|n| n >= 1), "{flag} must be at least 1");
        Ok(())
    };
    positive(u.max_concurrent_dials, "--max-concurrent-dials")?;
    positive(u.max_calls_per_second.flatten(), "--max-calls-per-second")?;
    positive(u.cps_ceiling, "--cps-ceiling")?;
    positive(u.max_attempts_ceiling, "--max-attempts-ceiling")?;
    positive(u.default_max_attempts, "--default-max-attempts")?;
    for (v, flag, max) in [
        (
            u.requests_per_second,
            "--requests-per-second",
            MAX_REQUESTS_PER_SECOND,
        ),
        (u.request_burst, "--request-burst", MAX_REQUEST_BURST),
    ] {
        anyhow::ensure!(
            v.is_none_or(|n| (1..=max).contains(&n)),
            "{flag} must be between 1 and {max}"
        );
    }
    for (v, flag) in [
        (u.default_busy_delay_ms, "--default-busy-delay-ms"),
        (u.default_no_answer_delay_ms, "--default-no-answer-delay-ms"),
    ] {
        anyhow::ensure!(
            v.is_none_or(|ms| (0..=MAX_RETRY_DELAY_MS).contains(&ms)),
            "{flag} must be between 0 and {MAX_RETRY_DELAY_MS}"
        );
    }
    let ceiling = u
        .max_attempts_ceiling
        .unwrap_or(current.ceilings.max_attempts);
    let attempts = u
        .default_max_attempts
        .unwrap_or(current.retry_defaults.max_attempts);
    anyhow::ensure!(
        attempts <= ceiling,
        "the default max attempts ({attempts}) would exceed the max-attempts ceiling ({ceiling})"
    );
    if let Some(name) = &u.name {
        anyhow::ensure!(!name.trim().is_empty(), "--name must not be empty");
    }
    if let Some(r) = &u.default_region {
        anyhow::ensure!(is_region(r), "--default-region: {}", region_message(r));
    }
    write_compliance(client, id, &u.compliance).await?;
    if let Some(mode) = u.jurisdiction_rules {
        crate::jurisdiction::write(client, id, mode).await?;
    }
    crate::workspace_checks::write(client, id, &u.checks).await?;
    client
        .execute(
            "UPDATE workspaces SET
                 name = COALESCE($2, name),
                 max_concurrent_dials = COALESCE($3, max_concurrent_dials),
                 max_calls_per_second = CASE WHEN $4 THEN $5 ELSE max_calls_per_second END,
                 cps_ceiling = COALESCE($6, cps_ceiling),
                 max_attempts_ceiling = COALESCE($7, max_attempts_ceiling),
                 default_max_attempts = COALESCE($8, default_max_attempts),
                 default_busy_delay_ms = COALESCE($9, default_busy_delay_ms),
                 default_no_answer_delay_ms = COALESCE($10, default_no_answer_delay_ms),
                 default_region = COALESCE($11, default_region),
                 requests_per_second = COALESCE($12, requests_per_second),
                 request_burst = COALESCE($13, request_burst)
             WHERE id = $1",
            &[
                &id,
                &u.name.as_deref().map(str::trim),
                &u.max_concurrent_dials,
                &u.max_calls_per_second.is_some(),
                &u.max_calls_per_second.flatten(),
                &u.cps_ceiling,
                &u.max_attempts_ceiling,
                &u.default_max_attempts,
                &u.default_busy_delay_ms,
                &u.default_no_answer_delay_ms,
                &u.default_region,
                &u.requests_per_second,
                &u.request_burst,
            ],
        )
        .await?;
    Ok(Settings::load(client, id).await?)
}

/// The whole secret, for the operator (`api-gateway webhook-secret show`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorSecret {
    pub workspace_id: Uuid,
    pub secret: String,
    /// The replaced secret while it still signs, with its end.
    pub previous_secret: Option<String>,
    pub previous_valid_until: Option<String>,
}

/// The workspace's secret in clear.
pub async fn operator_secret(
    client: &impl GenericClient,
    id: Uuid,
) -> anyhow::Result<OperatorSecret> {
    let row = client
        .query_opt(
            "SELECT webhook_secret,
                    CASE WHEN previous_webhook_secret_until > now() THEN previous_webhook_secret END
                        AS previous_webhook_secret,
                    CASE WHEN previous_webhook_secret_until > now() THEN previous_webhook_secret_until END
                        AS previous_webhook_secret_until
             FROM workspaces WHERE id = $1",
            &[&id],
        )
        .await?
        .ok_or_else(|| anyhow::anyhow!("no workspace with id {id}"))?;
    Ok(OperatorSecret {
        workspace_id: id,
        secret: row.get("webhook_secret"),
        previous_secret: row.get("previous_webhook_secret"),
        previous_valid_until: api_time_opt(row.get("previous_webhook_secret_until")),
    })
}
