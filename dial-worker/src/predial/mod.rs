//! The pre-dial check (issue #25, docs/compliance.md "Pre-dial check"): before a contact's
//! call, the worker POSTs the contact to the workspace's `predialUrl`, signed like the webhooks
//! (Standard Webhooks, the workspace's webhook secret: `crate::webhooks::signature`), and waits
//! at most `predialTimeoutMs`. What the answer decides is [`decide`]'s pure logic; here is the
//! I/O and what each decision does to the contact:
//!
//! - allow → the dial goes on to its slots, start token and last look;
//! - deny → the contact ends `failed`, outcome `suppressed`, with the reason in its
//!   `suppressed` event (`predial_denied`), nothing charged;
//! - unavailable → the contact goes back to `queued`, held (`predial_unavailable`) until
//!   `PREDIAL_RETRY_MS` later, with a `deferred` event naming the error. Never called unchecked.
//!
//! **No line is held while the check waits.** It runs before the slot script
//! (`crate::acquire`) and long before the start token (`crate::place`): a slow receiver delays
//! its own contact, never another contact's call, and never counts against
//! `maxConcurrentDials` or `maxCallsPerSecond`. Only a contact whose release has committed is
//! checked (the careful read, `crate::attempt::read_contact`, waits for it), so a check never
//! answers for a release that rolls back.
//!
//! The receiver is the tenant's choice, so the request goes through `shared::destination`'s
//! guard, as webhooks do: a literal private address outside `WEBHOOK_ALLOWED_NETWORKS` is
//! refused before sending, a name resolving to one is refused at connect time, redirects are not
//! followed. A refused destination is an unavailable check (the contact waits), not an allow.

pub mod decide;

use chrono::Utc;
use shared::db::rules::suppress_contacts_because;
use shared::destination::{blocked_in, parse_http_url};
use shared::domain::ContactState;
use shared::domain::timing::api_time;
use shared::queue::messages::DialV1;
use uuid::Uuid;

pub use decide::{Answer, CheckRequest, Decision, Predial, decide};

use crate::ctx::Ctx;
use crate::dial_result::DialResult;
use crate::error::StepError;
use crate::webhooks::signature;

/// The largest answer read; a longer one is a bad answer (the check only needs a small object).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The reason of the `suppressed` event a refusal writes.
pub const DENIED: &str = "predial_denied";

/// The hold reason (`contacts.hold_reason`) of a contact whose check got no usable answer.
pub const UNAVAILABLE: &str = "predial_unavailable";

/// The contact's columns the check sends.
struct Contact {
    phone_number: String,
    external_id: Option<String>,
    name: Option<String>,
    inputs: serde_json::Value,
}

/// Runs the check for `msg`'s contact (released, not yet attempted) and carries out a refusal
/// or a hold. `None`: allowed, the dial goes on; `Some`: the dial is over.
pub(crate) async fn check_before_dial(
    ctx: &Ctx,
    predial: &Predial,
    msg: &DialV1,
) -> Result<Option<DialResult>, StepError> {
    let contact = read_contact(ctx, msg.contact_id).await?;
    let request = CheckRequest {
        kind: decide::EVENT,
        workspace_id: msg.workspace_id,
        batch_id: msg.batch_id,
        contact_id: msg.contact_id,
        external_id: contact.external_id.as_deref(),
        attempt: msg.attempt_no,
        phone_number: &contact.phone_number,
        name: contact.name.as_deref(),
        inputs: &contact.inputs,
        timestamp: api_time(ctx.config.service.clock.now()),
    };
    let body = serde_json::to_vec(&request).map_err(|e| StepError::Invalid(e.to_string()))?;
    let msg_id = format!("predial_{}_{}", msg.contact_id, msg.attempt_no);
    let started = std::time::Instant::now();
    let decision = match post(ctx, predial, &msg_id, body).await {
        Ok((status, answer)) => decide(&Answer::Http {
            status,
            body: &answer,
        }),
        Err(answer) => decide(&answer),
    };
    tracing::debug!(contact_id = %msg.contact_id, ?decision, elapsed_ms = started.elapsed().as_millis() as u64, "pre-dial check");
    match decision {
        Decision::Allow => Ok(None),
        Decision::Deny { reason } => deny(ctx, msg.contact_id, &reason).await.map(Some),
        Decision::Unavailable { why } => hold(ctx, msg, &why).await.map(Some),
    }
}

async fn read_contact(ctx: &Ctx, contact_id: Uuid) -> Result<Contact, StepError> {
    let client = ctx.db.get().await?;
    // Prepared once per connection: a statement given as text costs a second round trip.
    let read = client
        .prepare_cached(
            "SELECT phone_number, external_id, name, inputs FROM contacts WHERE id = $1",
        )
        .await?;
    let row = client
        .query_opt(&read, &[&contact_id])
        .await?
        .ok_or_else(|| StepError::Invalid("no such contact".into()))?;
    Ok(Contact {
        phone_number: row.try_get("phone_number")?,
        external_id: row.try_get("external_id")?,
        name: row.try_get("name")?,
        inputs: row.try_get("inputs")?,
    })
}

/// Signs and posts the check; the status and body, or why there is none.
async fn post(
    ctx: &Ctx,
    predial: &Predial,
    msg_id: &str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), Answer<'static>> {
    let failed = |why: String| Answer::Failed(why);
    let Some(http) = ctx.predial_http.as_ref() else {
        return Err(failed("no guarded HTTP client could be built".into()));
    };
    let url =
        parse_http_url(&predial.url).map_err(|e| failed(format!("invalid_url: the URL {e}")))?;
    ctx.config
        .webhook_allowed_networks
        .check_url(&url)
        .map_err(|b| failed(b.to_string()))?;
    let keys = predial
        .secrets
        .iter()
        .map(|s| signature::secret_key(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(e.to_string()))?;
    let timestamp = Utc::now().timestamp();
    let sig = signature::sign_all(&keys, msg_id, timestamp, &body);
    let exchange = async {
        let mut response = http
            .post(url)
            .timeout(predial.timeout)
            .header("content-type", "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", sig)
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            answer.extend_from_slice(&chunk);
            if answer.len() > MAX_ANSWER_BYTES {
                // Not JSON once cut: a bad answer, the contact waits.
                answer.truncate(MAX_ANSWER_BYTES);
                break;
            }
        }
        Ok::<_, reqwest::Error>((status, answer))
    };
    // The request's own timeout covers connect, send and the body; this one is the bound the
    // workspace promised, whatever the client does.
    match tokio::time::timeout(predial.timeout, exchange).await {
        Err(_) => Err(Answer::TimedOut),
        Ok(Ok(answered)) => Ok(answered),
        Ok(Err(e)) if e.is_timeout() => Err(Answer::TimedOut),
        Ok(Err(e)) => Err(failed(match blocked_in(&e) {
            Some(blocked) => blocked.to_string(),
            None => crate::webhooks::delivery::error_chain(&e),
        })),
    }
}

/// A refusal: the released contact ends `suppressed`, the reason in its event.
async fn deny(ctx: &Ctx, contact_id: Uuid, reason: &str) -> Result<DialResult, StepError> {
    let client = ctx.db.get().await?;
    let detail = serde_json::json!({"reason": reason, "by": "predial"});
    let ended = suppress_contacts_because(
        &**client,
        &[contact_id],
        ContactState::Released,
        None,
        DENIED,
        &detail,
    )
    .await?;
    if ended.is_empty() {
        return Ok(DialResult::Stale);
    }
    tracing::info!(%contact_id, reason, "refused by the pre-dial check; contact suppressed");
    Ok(DialResult::Suppressed)
}

/// No usable answer: the released contact goes back to `queued`, due `PREDIAL_RETRY_MS` later,
/// held `predial_unavailable`, with a `deferred` event naming the error.
async fn hold(ctx: &Ctx, msg: &DialV1, why: &str) -> Result<DialResult, StepError> {
    let client = ctx.db.get().await?;
    let attempts = i32::try_from(msg.attempt_no.saturating_sub(1))
        .map_err(|_| StepError::Invalid("attempt number out of range".into()))?;
    let why: String = why.chars().take(500).collect();
    let held = client
        .execute(
            "WITH c AS (
                 UPDATE contacts SET state = $2, released_at = NULL, hold_reason = $4,
                     next_attempt_at = now() + make_interval(secs => $5), updated_at = now()
                 WHERE id = $1 AND state = $3 AND attempts = $6
                 RETURNING id, next_attempt_at)
             INSERT INTO contact_events (contact_id, at, kind, reason, detail)
             SELECT id, now(), 'deferred', $4,
                    jsonb_build_object('until', next_attempt_at, 'by', 'dial-worker', 'error', $7::text)
             FROM c",
            &[
                &msg.contact_id,
                &ContactState::Queued,
                &ContactState::Released,
                &UNAVAILABLE,
                &ctx.config.predial_retry.as_secs_f64(),
                &attempts,
                &why,
            ],
        )
        .await?;
    if held == 0 {
        return Ok(DialResult::Stale);
    }
    shared::metrics::dial_handed_back(shared::metrics::HandBack::Compliance);
    tracing::info!(contact_id = %msg.contact_id, error = why, "pre-dial check unavailable; contact held");
    Ok(DialResult::HandedBack(ContactState::Queued))
}
