//! Status callbacks: Twilio's form parameters, signed with `X-Twilio-Signature`, delivered in
//! order per call by a task of their own (so a slow receiver never delays the call itself), and
//! retried with exponential backoff when the receiver fails.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::calls::{Call, CallState, CallStatus};
use crate::subscription::{CallbackSpec, Event, Method};

/// How callbacks are delivered.
#[derive(Clone)]
pub struct Notifier {
    client: reqwest::Client,
    auth_token: String,
    retries: u32,
    backoff: Duration,
}

impl Notifier {
    /// A notifier signing with `auth_token`, retrying each callback up to `retries` times after
    /// the first try, waiting `backoff`, then twice that, and so on.
    pub fn new(
        auth_token: String,
        timeout: Duration,
        retries: u32,
        backoff: Duration,
    ) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent("TwilioProxy/1.1 (dialfleet carrier-sim)")
            .build()?;
        Ok(Self {
            client,
            auth_token,
            retries,
            backoff,
        })
    }

    /// Starts the delivery task for one call's callbacks.
    pub fn start(&self, tracker: &TaskTracker, call_sid: &str, spec: CallbackSpec) -> Outbox {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<(String, String)>>();
        let notifier = self.clone();
        let sid = call_sid.to_owned();
        let url = spec.url.clone();
        let method = spec.method;
        tracker.spawn(async move {
            while let Some(params) = rx.recv().await {
                notifier.deliver(&sid, &url, method, params).await;
            }
        });
        Outbox {
            spec,
            tx: Some(tx),
            sequence: 0,
        }
    }

    /// Requests the call's `Url` once, as Twilio does when a call is answered (a voice request,
    /// signed like a callback), so an agent behind it sees the call arrive. The answer is
    /// ignored: a simulated call runs no TwiML.
    pub fn answer(&self, tracker: &TaskTracker, url: &str, call: &Call, state: &CallState) {
        let params: Vec<(String, String)> = params(call, state, 0, Utc::now())
            .into_iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "CallbackSource" | "Timestamp" | "SequenceNumber"
                )
            })
            .collect();
        let request = self
            .client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "X-Twilio-Signature",
                shared::twilio::sign(&self.auth_token, url, &params),
            )
            .body(serde_urlencoded::to_string(&params).unwrap_or_default());
        let sid = call.sid.clone();
        tracker.spawn(async move {
            match request.send().await {
                Ok(resp) if resp.status().is_success() => {}
                Ok(resp) => {
                    tracing::warn!(call_sid = %sid, code = %resp.status(), "answer Url refused")
                }
                Err(e) => tracing::warn!(call_sid = %sid, error = %e, "answer Url unreachable"),
            }
        });
    }

    #[tracing::instrument(skip_all, fields(call_sid = %sid, status))]
    async fn deliver(&self, sid: &str, url: &str, method: Method, params: Vec<(String, String)>) {
        let status = params
            .iter()
            .find(|(k, _)| k == "CallStatus")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        tracing::Span::current().record("status", status.as_str());
        let sequence = params
            .iter()
            .find(|(k, _)| k == "SequenceNumber")
            .map(|(_, v)| v.as_str())
            .unwrap_or("0");
        // Stable across retries, so the receiver can drop a repeat (Twilio sends this header on
        // its webhooks for the same reason).
        let idempotency_token = format!("{sid}-{sequence}");
        let encoded = serde_urlencoded::to_string(&params).unwrap_or_default();
        let (target, signed_params): (String, &[(String, String)]) = match method {
            Method::Post => (url.to_owned(), &params),
            Method::Get => {
                let sep = if url.contains('?') { '&' } else { '?' };
                (format!("{url}{sep}{encoded}"), &[])
            }
        };
        let signature = shared::twilio::sign(&self.auth_token, &target, signed_params);
        let mut wait = self.backoff;
        for attempt in 0..=self.retries {
            let request = match method {
                Method::Post => self
                    .client
                    .post(&target)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(encoded.clone()),
                Method::Get => self.client.get(&target),
            }
            .header("X-Twilio-Signature", &signature)
            .header("I-Twilio-Idempotency-Token", &idempotency_token);
            let retryable = match request.send().await {
                Ok(resp) if resp.status().is_success() => return,
                Ok(resp) => {
                    let code = resp.status();
                    tracing::warn!(attempt, %code, "status callback refused");
                    code.is_server_error()
                        || code == reqwest::StatusCode::TOO_MANY_REQUESTS
                        || code == reqwest::StatusCode::REQUEST_TIMEOUT
                }
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "status callback failed");
                    true
                }
            };
            if !retryable || attempt == self.retries {
                break;
            }
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2);
        }
        tracing::error!("status callback given up");
    }
}

/// One call's queue of callbacks; dropping it lets the delivery task finish.
pub struct Outbox {
    spec: CallbackSpec,
    tx: Option<mpsc::UnboundedSender<Vec<(String, String)>>>,
    sequence: u32,
}

impl Outbox {
    /// Queues `event` if the call subscribed to it, with the call's current state.
    pub fn send(&mut self, event: Event, call: &Call, state: &CallState) {
        if !self.spec.events.wants(event) {
            return;
        }
        let params = params(call, state, self.sequence, Utc::now());
        self.sequence += 1;
        if let Some(tx) = &self.tx {
            // The receiver only goes away if its task was aborted; nothing left to deliver to.
            let _ = tx.send(params);
        }
    }

    /// Queues the final callback and closes the queue.
    pub fn finish(mut self, call: &Call, state: &CallState) {
        self.send(Event::Completed, call, state);
        self.tx = None;
    }
}

/// Twilio's status callback parameters for `call` in `state`.
pub fn params(
    call: &Call,
    state: &CallState,
    sequence: u32,
    now: DateTime<Utc>,
) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = [
        ("CallSid", call.sid.as_str()),
        ("AccountSid", call.account_sid.as_str()),
        ("From", call.from.as_str()),
        ("To", call.to.as_str()),
        ("Caller", call.from.as_str()),
        ("Called", call.to.as_str()),
        ("CallStatus", state.status.as_str()),
        ("Direction", "outbound-api"),
        ("ApiVersion", "2010-04-01"),
        ("CallbackSource", "call-progress-events"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    p.push(("Timestamp".into(), now.to_rfc2822()));
    p.push(("SequenceNumber".into(), sequence.to_string()));
    if let Some(by) = state.answered_by {
        p.push(("AnsweredBy".into(), by.to_owned()));
    }
    if state.status.is_final() {
        p.push(("CallDuration".into(), duration_secs(state).to_string()));
        p.push(("SipResponseCode".into(), sip_code(state.status).to_string()));
    }
    p
}

/// Whole seconds talked, rounded up (an answered call lasts at least 1 s); 0 if never answered.
pub fn duration_secs(state: &CallState) -> u64 {
    match (state.answered_at, state.ended_at) {
        (Some(a), Some(e)) => {
            let ms = (e - a).num_milliseconds().max(0) as u64;
            ms.div_ceil(1000).max(1)
        }
        _ => 0,
    }
}

fn sip_code(status: CallStatus) -> u16 {
    match status {
        CallStatus::Busy => 486,
        CallStatus::NoAnswer | CallStatus::Canceled => 487,
        CallStatus::Failed => 503,
        _ => 200,
    }
}
