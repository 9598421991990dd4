//! What a preflight reads from the database: the workspace's policy (once), and per chunk what
//! is known about its numbers (one statement for up to 2,000 numbers, as the ingest worker's
//! do-not-call probe and the scheduler's cap count read them).

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use shared::compliance::FrequencyCap;
use shared::compliance::hours::RecipientHours;
use shared::compliance::jurisdiction::pack::RuleKind;
use shared::compliance::jurisdiction::{Pack, RuleMode};

use super::verdict::{Known, Policy};
use crate::error::ApiError;

/// The workspace's policy, from the columns the scheduler reads (V10, V22).
pub async fn policy(client: &impl GenericClient, ws: Uuid) -> Result<Policy, ApiError> {
    let row = client
        .query_one(
            "SELECT recipient_hours_start, recipient_hours_end, allow_unknown_timezone,
                    max_calls_per_number_count, max_calls_per_number_days, jurisdiction_rules
             FROM workspaces WHERE id = $1",
            &[&ws],
        )
        .await?;
    let mode: String = row.try_get("jurisdiction_rules")?;
    Ok(Policy {
        // An unknown value reads as the safe side.
        mode: RuleMode::parse(&mode).unwrap_or_default(),
        hours: RecipientHours::from_minutes(
            row.try_get("recipient_hours_start")?,
            row.try_get("recipient_hours_end")?,
        ),
        allow_unknown_timezone: row.try_get("allow_unknown_timezone")?,
        cap: FrequencyCap::from_columns(
            row.try_get("max_calls_per_number_count")?,
            row.try_get("max_calls_per_number_days")?,
        ),
    })
}

/// The longest rolling window of the pack's caps: how far back calls count.
pub fn cap_lookback(pack: &Pack) -> Duration {
    pack.rules()
        .iter()
        .filter_map(|r| match &r.kind {
            RuleKind::Cap(c) => Some(c.window),
            _ => None,
        })
        .max()
        .unwrap_or_else(Duration::zero)
}

/// What is known about `numbers` at `at`: listed, over the workspace's cap (until when), and
/// the calls placed within `lookback`. Only numbers with something known are returned.
pub async fn known(
    client: &impl GenericClient,
    ws: Uuid,
    numbers: &[&str],
    at: DateTime<Utc>,
    cap: Option<FrequencyCap>,
    lookback: Duration,
) -> Result<HashMap<String, Known>, ApiError> {
    if numbers.is_empty() {
        return Ok(HashMap::new());
    }
    let since = at - lookback;
    let rows = client
        .query(
            "SELECT number, listed, cap_until, calls FROM (
                 SELECT n AS number,
                        EXISTS (SELECT 1 FROM dnc_numbers d
                                WHERE d.workspace_id = $1 AND d.number = n) AS listed,
                        frequency_cap_frees_at($1, n, $3::timestamptz, $4::int, $5::int)
                            AS cap_until,
                        ARRAY(SELECT a.created_at FROM dial_attempts a
                              WHERE a.workspace_id = $1 AND a.to_number = n
                                AND a.created_at > $6::timestamptz
                                AND a.created_at <= $3::timestamptz
                              ORDER BY a.created_at) AS calls
                 FROM unnest($2::text[]) AS n) k
             WHERE listed OR cap_until IS NOT NULL OR cardinality(calls) > 0",
            &[
                &ws,
                &numbers,
                &at,
                &cap.map(|c| c.count),
                &cap.map(|c| c.days),
                &since,
            ],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<_, String>("number")?,
                Known {
                    listed: r.try_get("listed")?,
                    cap_until: r.try_get("cap_until")?,
                    calls: r.try_get("calls")?,
                },
            ))
        })
        .collect()
}
