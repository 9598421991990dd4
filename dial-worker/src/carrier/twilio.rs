//! The Twilio-compatible REST carrier (Twilio, SignalWire, Telnyx TeXML, the carrier-sim).
//!
//! `POST {base}/2010-04-01/Accounts/{AccountSid}/Calls.json` (form-encoded, HTTP Basic with the
//! account SID and auth token) creates a call; `GET …/Calls/{CallSid}.json` reads it back.

use std::time::Duration;

use serde::Deserialize;
use shared::queue::messages::CarrierCallStatus;

use super::{CallRequest, CallStatusReport, CarrierError};

/// Longest a carrier request may take before it is treated as a transport failure.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A Twilio-compatible account.
#[derive(Clone)]
pub struct TwilioCarrier {
    http: reqwest::Client,
    base_url: String,
    account_sid: String,
    auth_token: String,
}

impl std::fmt::Debug for TwilioCarrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioCarrier")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .finish()
    }
}

#[derive(Deserialize)]
struct CallResource {
    sid: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    answered_by: Option<String>,
    /// Twilio sends the duration as a string of seconds (or null while in progress).
    #[serde(default)]
    duration: Option<serde_json::Value>,
}

impl TwilioCarrier {
    /// A carrier at `base_url` (no trailing slash needed).
    pub fn new(base_url: &str, account_sid: &str, auth_token: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            // Many calls go to one host: keep enough idle connections for a busy worker.
            .pool_max_idle_per_host(256)
            .build()
            .unwrap_or_default();
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
        }
    }

    fn calls_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Calls",
            self.base_url, self.account_sid
        )
    }

    /// Creates the call.
    pub async fn place_call(&self, req: &CallRequest) -> Result<String, CarrierError> {
        let mut form: Vec<(&str, String)> = vec![
            ("To", req.to.clone()),
            ("From", req.from.clone()),
            ("Url", req.answer_url.clone()),
            ("StatusCallback", req.status_callback.clone()),
            ("StatusCallbackMethod", "POST".to_owned()),
            ("StatusCallbackEvent", "answered".to_owned()),
            ("StatusCallbackEvent", "completed".to_owned()),
            ("Timeout", req.timeout_secs.to_string()),
        ];
        if let Some(detection) = req.machine_detection {
            form.push(("MachineDetection", detection.as_str().to_owned()));
        }
        let response = self
            .http
            .post(format!("{}.json", self.calls_url()))
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .header("Idempotency-Key", req.attempt_id.to_string())
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    CarrierError::Unreachable(e.to_string())
                } else {
                    CarrierError::Transport(e.to_string())
                }
            })?;
        let status = response.status();
        if status.is_client_error() {
            let body = response.text().await.unwrap_or_default();
            return Err(CarrierError::Rejected {
                status: status.as_u16(),
                body: body.chars().take(500).collect(),
            });
        }
        if !status.is_success() {
            return Err(CarrierError::Transport(format!("HTTP {status}")));
        }
        let call: CallResource = response
            .json()
            .await
            .map_err(|e| CarrierError::Transport(e.to_string()))?;
        Ok(call.sid)
    }

    /// Reads the call back.
    pub async fn fetch_status(&self, call_sid: &str) -> Result<CallStatusReport, CarrierError> {
        let response = self
            .http
            .get(format!("{}/{}.json", self.calls_url(), call_sid))
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .send()
            .await
            .map_err(|e| CarrierError::Transport(e.to_string()))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(CarrierError::NotFound);
        }
        if !response.status().is_success() {
            return Err(CarrierError::Transport(format!(
                "HTTP {}",
                response.status()
            )));
        }
        let call: CallResource = response
            .json()
            .await
            .map_err(|e| CarrierError::Transport(e.to_string()))?;
        let status = call
            .status
            .as_deref()
            .and_then(parse_status)
            .ok_or_else(|| CarrierError::Transport("call has no known status".into()))?;
        Ok(CallStatusReport {
            status,
            answered_by: call.answered_by,
            duration_secs: call.duration.as_ref().and_then(|d| match d {
                serde_json::Value::String(s) => s.parse().ok(),
                serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
                _ => None,
            }),
        })
    }
}

/// How far the carrier's clock may be behind ours: a call created up to this long before the
/// attempt's row (by the carrier's `date_created`) still counts as possibly the attempt's.
/// Wide on purpose: a call wrongly counted as a candidate only makes the reconciler wait (the
/// attempt may end `unknown`), while a real call missed is taken back and dialed again.
const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(2);

#[derive(Deserialize)]
struct CallPage {
    #[serde(default)]
    calls: Vec<ListedCall>,
}

#[derive(Deserialize)]
struct ListedCall {
    sid: String,
    #[serde(default)]
    from: Option<String>,
    /// RFC 2822, as Twilio writes it.
    #[serde(default)]
    date_created: Option<String>,
    /// The carrier-sim's extension: the key the call was created with.
    #[serde(default)]
    idempotency_key: Option<String>,
}

impl TwilioCarrier {
    /// The calls to `lookup.to` (from `lookup.from`) created since the attempt: Twilio's list,
    /// `GET …/Calls.json?To=&From=` (newest first), filtered by `date_created` here. No
    /// `StartTime` filter: a call still queued at the carrier (over the account's rate, say)
    /// has no start time yet and would not be listed, and the reconciler would take back a call
    /// that is about to ring. Twilio ignores our `Idempotency-Key`, so the call's id
    /// cannot be asked for directly; a contact has one attempt in flight at a time, so the
    /// reconciler only has to set aside calls other attempts already own.
    pub async fn find_calls(
        &self,
        lookup: &super::CallLookup,
    ) -> Result<super::Found, CarrierError> {
        let since = lookup.since - CLOCK_SKEW;
        let mut query: Vec<(&str, String)> =
            vec![("To", lookup.to.clone()), ("PageSize", "100".to_owned())];
        if let Some(from) = &lookup.from {
            query.push(("From", from.clone()));
        }
        let response = self
            .http
            .get(format!("{}.json", self.calls_url()))
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .query(&query)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    CarrierError::Unreachable(e.to_string())
                } else {
                    CarrierError::Transport(e.to_string())
                }
            })?;
        if !response.status().is_success() {
            return Err(CarrierError::Transport(format!(
                "call list: HTTP {}",
                response.status()
            )));
        }
        let page: CallPage = response
            .json()
            .await
            .map_err(|e| CarrierError::Transport(e.to_string()))?;
        let key = lookup.attempt_id.to_string();
        if let Some(call) = page
            .calls
            .iter()
            .find(|c| c.idempotency_key.as_deref() == Some(key.as_str()))
        {
            return Ok(super::Found::Exact(call.sid.clone()));
        }
        Ok(super::Found::Candidates(
            page.calls
                .into_iter()
                // A call made under another key is another attempt's.
                .filter(|c| c.idempotency_key.is_none())
                .filter(|c| {
                    lookup
                        .from
                        .as_deref()
                        .is_none_or(|f| c.from.as_deref().is_none_or(|cf| cf == f))
                })
                .filter(|c| {
                    // Unreadable or missing: kept, so that a call is never overlooked.
                    c.date_created
                        .as_deref()
                        .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
                        .is_none_or(|d| d.with_timezone(&chrono::Utc) >= since)
                })
                .map(|c| c.sid)
                .collect(),
        ))
    }
}

/// Twilio's `CallStatus` value.
pub fn parse_status(s: &str) -> Option<CarrierCallStatus> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_twilio_status_names() {
        assert_eq!(parse_status("no-answer"), Some(CarrierCallStatus::NoAnswer));
        assert_eq!(
            parse_status("in-progress"),
            Some(CarrierCallStatus::InProgress)
        );
        assert_eq!(parse_status("canceled"), Some(CarrierCallStatus::Canceled));
        assert_eq!(parse_status("exploded"), None);
    }
}
