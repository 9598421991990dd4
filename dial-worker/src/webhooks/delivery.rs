//! Posting due webhook deliveries.
//!
//! A delivery is claimed by pushing its `next_attempt_at` past the request timeout (`FOR UPDATE
//! SKIP LOCKED` on the due rows), so several workers share the work without holding a
//! transaction open across an HTTP request; a worker that dies mid-request leaves the row to be
//! picked up again when the claim runs out. Every attempt is recorded on the row.
//!
//! Receivers are tenants' choice, so requests go through `shared::destination`'s guard: a
//! URL the client cannot use, or one that reaches a private or reserved address outside
//! `WEBHOOK_ALLOWED_NETWORKS` (judged on the address connected to), fails at once and for good
//! (`invalid_url`, `blocked_destination` in `last_error`) instead of being retried for a day.
//!
//! A batch's `batch.completed` (and `batch.failed`) is claimed only once none of its
//! `call.completed` deliveries is pending (due, in flight or waiting for a retry), so a
//! receiver never hears that a batch is done before it has heard of each of its calls.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::db::Pool;
use shared::destination::{AllowedNetworks, parse_http_url};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::signature;
use crate::error::StepError;
use shared::metrics::WebhookFailure;

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// How long a receiver may take.
    pub timeout: Duration,
    /// The first retry's delay; doubling after each failure, capped at [`MAX_DELAY`].
    pub retry_base: Duration,
    /// How long after its creation a delivery is still retried.
    pub retry_for: Duration,
    /// How often due rows are looked for.
    pub poll: Duration,
    /// The private or reserved networks receivers may nevertheless be in
    /// (`WEBHOOK_ALLOWED_NETWORKS`).
    pub allowed_networks: Arc<AllowedNetworks>,
}

/// The longest wait between two tries.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);

/// The wait after the `attempts`-th failed try (1-based): `base · 2^(attempts-1)`, capped.
pub fn retry_delay(base: Duration, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(20);
    base.saturating_mul(factor).min(MAX_DELAY)
}

/// Delivers until `shutdown`.
pub async fn run(db: Pool, settings: DeliverySettings, shutdown: CancellationToken) {
    let builder = reqwest::Client::builder().timeout(settings.timeout);
    let http = match shared::destination::guarded_client(builder, settings.allowed_networks.clone())
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            // Never fall back to an unguarded client: no deliveries is better than deliveries
            // into the operator's network.
            tracing::error!(error = %e, "cannot build the webhook client; no deliveries");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let tasks = tokio_util::task::TaskTracker::new();
    while !shutdown.is_cancelled() {
        let free = permits.available_permits();
        let claimed = if free > 0 {
            claim(&db, free, settings.timeout).await
        } else {
            Ok(Vec::new())
        };
        match claimed {
            Ok(rows) => {
                let full = !rows.is_empty() && rows.len() == free;
                for row in rows {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    let (db, http, settings) = (db.clone(), http.clone(), settings.clone());
                    tasks.spawn(async move {
                        if let Err(e) = send(&db, &http, &settings, row).await {
                            tracing::warn!(error = %e, "cannot record a webhook attempt");
                        }
                        drop(permit);
                    });
                }
                if full {
                    // More may be due right now.
                    tokio::task::yield_now().await;
                    continue;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot claim webhook deliveries"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(settings.poll) => {}
        }
    }
    tasks.close();
    let _ = tokio::time::timeout(settings.timeout, tasks.wait()).await;
}

/// A claimed delivery.
#[derive(Debug)]
pub struct Claimed {
    id: Uuid,
    url: String,
    payload: serde_json::Value,
    attempts: i32,
    /// `attempts` when the current retry period began.
    attempts_before_retry: i32,
    /// When the current retry period began (creation or the last manual retry).
    retry_from: DateTime<Utc>,
    secret: String,
    /// The secret the last rotation replaced, while it still signs (24 h after the rotation).
    previous_secret: Option<String>,
    /// The `next_attempt_at` this claim set: still there when the send ends unless someone
    /// (a manual retry) rescheduled the delivery meanwhile.
    claimed_until: DateTime<Utc>,
}

async fn claim(db: &Pool, limit: usize, timeout: Duration) -> Result<Vec<Claimed>, StepError> {
    let client = db.get().await?;
    let hold = (timeout.as_secs_f64() + 30.0).to_string();
    let rows = client
        .query(
            "UPDATE webhook_deliveries d
                SET next_attempt_at = now() + make_interval(secs => $2::text::float8)
             FROM workspaces w
             WHERE w.id = d.workspace_id AND d.id IN (
                 SELECT id FROM webhook_deliveries b
                 WHERE state = 'pending' AND next_attempt_at <= now()
                   AND (event = 'call.completed' OR batch_id IS NULL OR NOT EXISTS (
                        SELECT 1 FROM webhook_deliveries c
                        WHERE c.batch_id = b.batch_id AND c.state = 'pending'
                          AND c.event = 'call.completed'))
                 ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING d.id, d.url, d.payload, d.attempts, d.retry_from,
                       w.webhook_secret AS secret, d.attempts_before_retry,
                       d.next_attempt_at AS claimed_until,
                       CASE WHEN w.previous_webhook_secret_until > now()
                            THEN w.previous_webhook_secret END AS previous_secret",
            &[&(limit as i64), &hold],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            Ok(Claimed {
                id: r.try_get("id")?,
                url: r.try_get("url")?,
                payload: r.try_get("payload")?,
                attempts: r.try_get("attempts")?,
                attempts_before_retry: r.try_get("attempts_before_retry")?,
                retry_from: r.try_get("retry_from")?,
                secret: r.try_get("secret")?,
                previous_secret: r.try_get("previous_secret")?,
                claimed_until: r.try_get("claimed_until")?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()?)
}

/// What one post came to: the receiver's status code, or the code (if any) and error; and
/// whether the failure is permanent (a destination that waiting cannot make usable).
type Posted = (Result<u16, (Option<u16>, String)>, bool);

/// Checks the destination, then signs and posts one delivery.
async fn post(http: &reqwest::Client, settings: &DeliverySettings, row: &Claimed) -> Posted {
    let body = serde_json::to_vec(&row.payload).unwrap_or_default();
    let timestamp = Utc::now().timestamp();
    let msg_id = row.id.to_string();
    let started = std::time::Instant::now();
    // A URL that cannot be used or reaches a forbidden address will not get better by waiting.
    let refused = match parse_http_url(&row.url) {
        Err(e) => Some(format!("invalid_url: the URL {e}")),
        Ok(url) => settings
            .allowed_networks
            .check_url(&url)
            .err()
            .map(|b| b.to_string()),
    };
    let mut permanent = refused.is_some();
    let result = match (refused, signature::secret_key(&row.secret)) {
        (Some(error), _) => {
            shared::metrics::webhook_attempt(Err(WebhookFailure::Blocked), started.elapsed());
            Err((None, error))
        }
        (None, Err(e)) => Err((None, e.to_string())),
        (None, Ok(key)) => {
            let mut keys = vec![key];
            // The replaced secret signs too during the rotation window; an unreadable one (never
            // written by the gateway) only costs its own signature, not the delivery.
            match row.previous_secret.as_deref().map(signature::secret_key) {
                Some(Ok(old)) => keys.push(old),
                Some(Err(e)) => tracing::warn!(error = %e, "previous webhook secret ignored"),
                None => {}
            }
            let sig = signature::sign_all(&keys, &msg_id, timestamp, &body);
            let response = http
                .post(&row.url)
                .header("content-type", "application/json")
                .header("webhook-id", &msg_id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", sig)
                .body(body)
                .send()
                .await;
            let (result, attempt) = match response {
                Ok(r) if r.status().is_success() => (Ok(r.status().as_u16()), Ok(())),
                Ok(r) => (
                    Err((Some(r.status().as_u16()), format!("HTTP {}", r.status()))),
                    Err(if r.status().is_client_error() {
                        WebhookFailure::Http4xx
                    } else {
                        WebhookFailure::Http5xx
                    }),
                ),
                Err(e) => match shared::destination::blocked_in(&e) {
                    // Every address the name resolved to is forbidden.
                    Some(blocked) => {
                        permanent = true;
                        (
                            Err((None, blocked.to_string())),
                            Err(WebhookFailure::Blocked),
                        )
                    }
                    None => (
                        Err((None, error_chain(&e))),
                        Err(if e.is_timeout() {
                            WebhookFailure::Timeout
                        } else {
                            WebhookFailure::Connect
                        }),
                    ),
                },
            };
            shared::metrics::webhook_attempt(attempt, started.elapsed());
            result
        }
    };
    (result, permanent)
}

/// One try of one delivery, recorded on its row.
#[tracing::instrument(skip_all, fields(delivery_id = %row.id, attempt = row.attempts + 1))]
async fn send(
    db: &Pool,
    http: &reqwest::Client,
    settings: &DeliverySettings,
    row: Claimed,
) -> Result<(), StepError> {
    let (result, permanent) = post(http, settings, &row).await;
    let attempts = row.attempts + 1;
    let client = db.get().await?;
    match result {
        Ok(code) => {
            client
                .execute(
                    "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1,
                         last_status_code = $2, last_error = NULL, delivered_at = now()
                     WHERE id = $1",
                    &[&row.id, &i32::from(code)],
                )
                .await?;
        }
        Err((code, error)) => {
            // At least 1: attempts only grow, and a manual retry sets `attempts_before_retry` to
            // `attempts`. A corrupt count below that is taken as the period's first failure on
            // purpose: the give-up below is timed from `retry_from`, not counted, so retries
            // stay bounded anyway, whereas an error here would leave the row claimed and the
            // webhook sent again after every claim, without end.
            let in_period = u32::try_from(attempts - row.attempts_before_retry).unwrap_or(1);
            let delay = retry_delay(settings.retry_base, in_period);
            let next = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
            let give_up = permanent
                || next
                    > row.retry_from
                        + chrono::Duration::from_std(settings.retry_for).unwrap_or_default();
            tracing::info!(%error, give_up, "webhook delivery failed");
            client
                .execute(
                    // Only if still ours: a manual retry that rescheduled the delivery during
                    // this send must not be undone by this send's failure.
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status_code = $2,
                         last_error = $3, next_attempt_at = $4,
                         state = CASE WHEN $5 THEN 'failed' ELSE 'pending' END
                     WHERE id = $1 AND next_attempt_at = $6",
                    &[
                        &row.id,
                        &code.map(i32::from),
                        &error.chars().take(500).collect::<String>(),
                        &next,
                        &give_up,
                        &row.claimed_until,
                    ],
                )
                .await?;
        }
    }
    Ok(())
}

/// `e` and its causes, `: `-separated: reqwest's own message ("error sending request") says
/// nothing a receiver's owner can act on.
pub(crate) fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn delays_double_then_cap(base_ms in 1u64..10_000, attempts in 1u32..40) {
            let base = Duration::from_millis(base_ms);
            let d = retry_delay(base, attempts);
            prop_assert!(d <= MAX_DELAY);
            prop_assert!(d >= base.min(MAX_DELAY));
            if attempts > 1 {
                prop_assert!(d >= retry_delay(base, attempts - 1));
            }
        }
    }
}
