//! The preflight's answer, written as it is computed: `data` first (one chunk's entries at a
//! time), the totals last, when every row is counted. The document is one JSON object whatever
//! the order of its keys, so a client reads it as any other answer; only a client that reads it
//! as a stream sees the entries before the totals.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use shared::schedule::Window;

use super::verdict::{RowVerdict, Verdict};
use crate::batches::eta::eta;

/// How long one call is assumed to hold its line, for `estimatedCompletion`: ringing plus a
/// short conversation. The batch's real durations replace it once calls are made (check-status'
/// `estimatedTimeRemaining`).
pub const ASSUMED_CALL_SECS: f64 = 60.0;

/// One entry of `data`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry<'a> {
    row: u32,
    phone_number: &'a str,
    verdict: &'static str,
    reason: Option<&'a str>,
    /// What exactly was wrong with a rejected row (the rejected list's `detail`).
    detail: Option<&'a str>,
    rule: Option<&'a str>,
    first_call_at: Option<String>,
}

/// The totals so far, and the writer of the entries.
#[derive(Debug, Default)]
pub struct Report {
    /// `?rows=all`: every row is listed, not only those not callable now.
    pub all: bool,
    submitted: u64,
    rejected: u64,
    callable: u64,
    held: BTreeMap<&'static str, u64>,
    first_call_at: Option<DateTime<Utc>>,
    /// The latest minute a held row may first be called.
    last_hold_ends: Option<DateTime<Utc>>,
    entries: u64,
}

/// How fast the batch will call, for the estimate.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Lines: the job's `maxConcurrentDials`, within the workspace's.
    pub lines: i32,
    /// The job's `maxCallsPerSecond` (else the workspace's ceiling).
    pub calls_per_second: i32,
}

impl Pace {
    /// Calls per second: the rate, unless the lines run out first (each call holds its line
    /// for [`ASSUMED_CALL_SECS`]).
    pub fn rate(self) -> f64 {
        let by_lines = f64::from(self.lines.max(1)) / ASSUMED_CALL_SECS;
        by_lines.min(f64::from(self.calls_per_second.max(1)))
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Report {
    /// A report listing every row (`all`) or only those not callable now.
    pub fn new(all: bool) -> Self {
        Self {
            all,
            ..Default::default()
        }
    }

    /// The document's opening.
    pub fn open(&self) -> Vec<u8> {
        br#"{"data":["#.to_vec()
    }

    /// Counts one chunk's verdicts and writes its entries.
    pub fn add(&mut self, verdicts: &[RowVerdict]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in verdicts {
            self.submitted += 1;
            let (verdict, reason, detail, rule, first) = match &v.verdict {
                Verdict::Reject(r) => {
                    self.rejected += 1;
                    (
                        "reject",
                        Some(r.reason.as_str()),
                        Some(r.detail.as_str()),
                        None,
                        None,
                    )
                }
                Verdict::Hold {
                    reason,
                    rule,
                    first_call_at,
                } => {
                    *self.held.entry(reason).or_default() += 1;
                    if let Some(t) = first_call_at {
                        self.last_hold_ends = self.last_hold_ends.max(Some(*t));
                    }
                    self.first(*first_call_at);
                    ("hold", Some(*reason), None, rule.as_deref(), *first_call_at)
                }
                Verdict::Call { first_call_at } => {
                    self.callable += 1;
                    self.first(Some(*first_call_at));
                    if !self.all {
                        continue;
                    }
                    ("call", None, None, None, Some(*first_call_at))
                }
            };
            if self.entries > 0 {
                out.push(b',');
            }
            self.entries += 1;
            let entry = Entry {
                row: v.row,
                phone_number: &v.phone_number,
                verdict,
                reason,
                detail,
                rule,
                first_call_at: first.map(ts),
            };
            // Serialising a struct of strings and numbers into a Vec cannot fail.
            if serde_json::to_writer(&mut out, &entry).is_err() {
                out.extend_from_slice(b"null");
            }
        }
        out
    }

    fn first(&mut self, t: Option<DateTime<Utc>>) {
        if let Some(t) = t {
            self.first_call_at = Some(self.first_call_at.map_or(t, |f| f.min(t)));
        }
    }

    /// The document's end: the totals. `evaluated_at` is the batch's start, the instant the
    /// verdicts are for; `job` its window, `pace` its rate.
    pub fn close(
        &self,
        evaluated_at: DateTime<Utc>,
        job: &Window,
        pace: Pace,
        rules: &str,
    ) -> Vec<u8> {
        let accepted = self.submitted - self.rejected;
        let completion = self.estimated_completion(job, pace, accepted);
        let tail = serde_json::json!({
            "rows": {"submitted": self.submitted, "accepted": accepted, "rejected": self.rejected},
            "callableNow": self.callable,
            "held": self.held,
            "firstCallAt": self.first_call_at.map(ts),
            "estimatedCompletion": completion.map(ts),
            "evaluatedAt": ts(evaluated_at),
            "rulesVersion": rules,
        });
        let mut out = b"]".to_vec();
        if let serde_json::Value::Object(map) = tail {
            for (k, v) in map {
                out.push(b',');
                out.extend_from_slice(serde_json::Value::String(k).to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(v.to_string().as_bytes());
            }
        }
        out.push(b'}');
        out
    }

    /// The first call, plus every accepted row's first attempt at the batch's pace spent
    /// inside the job's window; never before the last held row's first allowed minute.
    fn estimated_completion(
        &self,
        job: &Window,
        pace: Pace,
        accepted: u64,
    ) -> Option<DateTime<Utc>> {
        let start = self.first_call_at?;
        let seconds = accepted as f64 / pace.rate();
        let done = eta(job, start, seconds)?;
        Some(done.max(self.last_hold_ends.unwrap_or(done)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::rows::reject::{Reason, Rejection};

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn data_first_totals_last_one_valid_document() {
        let at = utc("2026-12-07T15:00:00Z");
        let mut r = Report::new(false);
        let mut doc = r.open();
        doc.extend(r.add(&[
            RowVerdict {
                row: 1,
                phone_number: "+12125550100".into(),
                verdict: Verdict::Call { first_call_at: at },
            },
            RowVerdict {
                row: 2,
                phone_number: "nope".into(),
                verdict: Verdict::Reject(Rejection::new(
                    Reason::InvalidNumber,
                    "not a phone number",
                )),
            },
        ]));
        doc.extend(r.add(&[RowVerdict {
            row: 3,
            phone_number: "+13055550100".into(),
            verdict: Verdict::Hold {
                reason: "state_hours",
                rule: Some("US-FL-hours".into()),
                first_call_at: Some(utc("2026-12-08T13:00:00Z")),
            },
        }]));
        let pace = Pace {
            lines: 10,
            calls_per_second: 5,
        };
        doc.extend(r.close(at, &Window::default(), pace, "2026.12.0"));
        let v: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(
            v["rows"],
            serde_json::json!({"submitted": 3, "accepted": 2, "rejected": 1})
        );
        assert_eq!(v["callableNow"], 1);
        assert_eq!(v["held"], serde_json::json!({"state_hours": 1}));
        assert_eq!(v["firstCallAt"], "2026-12-07T15:00:00.000Z");
        // 2 rows at 10 lines / 60 s = 12 s of work, but the held row waits until 13:00Z.
        assert_eq!(v["estimatedCompletion"], "2026-12-08T13:00:00.000Z");
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!(data[0]["row"], 2);
        assert_eq!(data[0]["reason"], "invalid_number");
        assert_eq!(data[1]["rule"], "US-FL-hours");
        assert_eq!(data[1]["firstCallAt"], "2026-12-08T13:00:00.000Z");
        assert!((pace.rate() - 10.0 / 60.0).abs() < 1e-9);
    }
}
