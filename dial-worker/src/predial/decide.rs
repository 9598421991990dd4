//! The pre-dial check's pure part: the body posted to the customer's receiver, and what its
//! answer decides. Fail closed: only a 2xx whose body is a JSON object with `"allow": true` lets
//! the call go; `"allow": false` refuses the contact for good; anything else (a timeout, a
//! connection error, another status, a body that says neither) holds it for a later try.

use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

/// The longest refusal reason kept (in characters); a longer one is cut.
pub const MAX_REASON_CHARS: usize = 500;

/// The refusal reason recorded when the receiver gave none.
pub const NO_REASON: &str = "refused by the pre-dial check";

/// The event type of the posted body (and of its `webhook-id`'s prefix).
pub const EVENT: &str = "predial.check";

/// A workspace's pre-dial check, as the job's row carries it.
#[derive(Clone)]
pub struct Predial {
    /// `predialUrl`.
    pub url: String,
    /// `predialTimeoutMs`.
    pub timeout: Duration,
    /// The webhook secret, then the replaced one while it still signs.
    pub secrets: Vec<String>,
}

impl std::fmt::Debug for Predial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secrets stay out of logs.
        f.debug_struct("Predial")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What the dial worker asks the receiver about (the body of the POST).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckRequest<'a> {
    /// Always [`EVENT`].
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The workspace.
    pub workspace_id: Uuid,
    /// The batch (Vogent: job).
    pub batch_id: Uuid,
    /// The contact.
    pub contact_id: Uuid,
    /// The contact's id as the client gave it, if it did.
    pub external_id: Option<&'a str>,
    /// Which attempt this is, 1-based.
    pub attempt: u32,
    /// The number to be called, E.164.
    pub phone_number: &'a str,
    /// The contact's name, if given.
    pub name: Option<&'a str>,
    /// Dialgen `metadata` / Vogent `inputs`, as stored.
    pub inputs: &'a serde_json::Value,
    /// When the check was made (RFC 3339, UTC).
    pub timestamp: String,
}

/// How the receiver answered, as far as the wire got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<'a> {
    /// A status and a body.
    Http { status: u16, body: &'a [u8] },
    /// No answer within the workspace's `predialTimeoutMs`.
    TimedOut,
    /// No answer at all (refused, reset, DNS, a forbidden destination): the reason.
    Failed(String),
}

/// What the check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `{"allow": true}`: the call may go.
    Allow,
    /// `{"allow": false, "reason": …}`: the contact ends `suppressed` with this reason.
    Deny { reason: String },
    /// No usable answer: the contact is held (`predial_unavailable`) and checked again later;
    /// never called unchecked.
    Unavailable { why: String },
}

/// What an answer decides.
pub fn decide(answer: &Answer<'_>) -> Decision {
    let unavailable = |why: String| Decision::Unavailable { why };
    match answer {
        Answer::TimedOut => unavailable("timeout: no answer within predialTimeoutMs".into()),
        Answer::Failed(why) => unavailable(why.clone()),
        Answer::Http { status, .. } if !(200..300).contains(status) => {
            unavailable(format!("HTTP {status}"))
        }
        // Read leniently (extra fields are the receiver's own business): only `allow` decides,
        // and only as a JSON boolean in a JSON object.
        Answer::Http { body, .. } => match serde_json::from_slice::<serde_json::Value>(body) {
            Err(e) => unavailable(format!("bad answer: {e}")),
            Ok(serde_json::Value::Object(mut v)) => match v.remove("allow") {
                Some(serde_json::Value::Bool(true)) => Decision::Allow,
                Some(serde_json::Value::Bool(false)) => Decision::Deny {
                    reason: reason_text(v.remove("reason")),
                },
                other => unavailable(format!(
                    "bad answer: \"allow\" is {}, not a boolean",
                    other.map_or_else(|| "missing".to_owned(), |v| v.to_string())
                )),
            },
            Ok(_) => unavailable("bad answer: not a JSON object".into()),
        },
    }
}

/// The refusal's reason as recorded: the receiver's text (cut to [`MAX_REASON_CHARS`]), or
/// [`NO_REASON`].
fn reason_text(reason: Option<serde_json::Value>) -> String {
    let text = match reason {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s,
        Some(serde_json::Value::Null) | None => return NO_REASON.to_owned(),
        Some(serde_json::Value::String(_)) => return NO_REASON.to_owned(),
        Some(other) => other.to_string(),
    };
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn http(status: u16, body: &str) -> Decision {
        decide(&Answer::Http {
            status,
            body: body.as_bytes(),
        })
    }

    #[test]
    fn only_allow_true_in_a_2xx_lets_the_call_go() {
        assert_eq!(http(200, r#"{"allow": true}"#), Decision::Allow);
        assert_eq!(http(204, r#"{"allow": true, "extra": 1}"#), Decision::Allow);
        assert!(matches!(
            http(500, r#"{"allow": true}"#),
            Decision::Unavailable { .. }
        ));
        assert!(matches!(
            http(302, r#"{"allow": true}"#),
            Decision::Unavailable { .. }
        ));
        for body in [
            "",
            "ok",
            "true",
            r#"{"allow": "true"}"#,
            r#"{"allow": 1}"#,
            r#"{"allowed": true}"#,
            r#"{"allow": null}"#,
            r#"[{"allow": true}]"#,
        ] {
            assert!(
                matches!(http(200, body), Decision::Unavailable { .. }),
                "{body:?}"
            );
        }
    }

    #[test]
    fn allow_false_refuses_with_the_receivers_reason() {
        assert_eq!(
            http(200, r#"{"allow": false, "reason": "no consent on file"}"#),
            Decision::Deny {
                reason: "no consent on file".into()
            }
        );
        assert_eq!(
            http(200, r#"{"allow": false}"#),
            Decision::Deny {
                reason: NO_REASON.into()
            }
        );
        let long = "x".repeat(2 * MAX_REASON_CHARS);
        let Decision::Deny { reason } =
            http(200, &format!(r#"{{"allow": false, "reason": "{long}"}}"#))
        else {
            panic!("not a refusal");
        };
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS);
    }

    #[test]
    fn no_answer_holds() {
        assert!(matches!(
            decide(&Answer::TimedOut),
            Decision::Unavailable { .. }
        ));
        assert_eq!(
            decide(&Answer::Failed("connection refused".into())),
            Decision::Unavailable {
                why: "connection refused".into()
            }
        );
    }

    proptest! {
        /// Fail closed: whatever the status and body, the call goes only on a 2xx saying
        /// `"allow": true`.
        #[test]
        fn nothing_but_allow_true_allows(status in 100u16..600, body in ".{0,64}") {
            let allowed = http(status, &body) == Decision::Allow;
            let says_allow = (200..300).contains(&status)
                && serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("allow").cloned())
                    == Some(serde_json::Value::Bool(true));
            prop_assert_eq!(allowed, says_allow);
        }
    }
}
