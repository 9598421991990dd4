//! The verdict for each row of a preflight, pure: what the ingest worker will reject (the same
//! functions, `shared::rows`, in the same order and with the same chunk boundaries) and, for a
//! row it will store, what the release will decide at the batch's start (the jurisdiction
//! engine, `shared::compliance::jurisdiction::engine::decide`, plus the workspace's frequency
//! cap). The lookups that need the database (the do-not-call list, calls already made to each
//! number) are handed in, per chunk, by [`super::lookup`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use shared::compliance::FrequencyCap;
use shared::compliance::enforce;
use shared::compliance::hours::{DeferReason, RecipientHours};
use shared::compliance::jurisdiction::{Pack, PostalCode, RuleMode, UsState};
use shared::domain::E164;
use shared::queue::messages::RawRow;
use shared::rows::check::{check_text, duplicate_of};
use shared::rows::normalize::{NumberCheck, Region, normalize};
use shared::rows::reject::{Reason, Rejection};
use shared::schedule::Window;

/// The workspace's policy, as the release reads it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// `jurisdictionRules`.
    pub mode: RuleMode,
    /// The recipient's calling hours (`None`: off).
    pub hours: Option<RecipientHours>,
    /// Numbers whose zone is unknown are called (only the job's window applies).
    pub allow_unknown_timezone: bool,
    /// The workspace's frequency cap.
    pub cap: Option<FrequencyCap>,
}

/// What a row's verdict is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The ingest worker will reject it: the reason code and its detail.
    Reject(Rejection),
    /// Stored, but a rule holds it at the batch's start.
    Hold {
        /// The `holdReason` it will carry.
        reason: &'static str,
        /// The rule's id, when a rule of the pack holds it.
        rule: Option<String>,
        /// When it may first be called (`None`: not within the engine's horizon).
        first_call_at: Option<DateTime<Utc>>,
    },
    /// Called as soon as the batch releases it.
    Call {
        /// The batch's start.
        first_call_at: DateTime<Utc>,
    },
}

/// One row's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowVerdict {
    /// The row as the user counts it (1-based), as the batch's rejected list numbers it.
    pub row: u32,
    /// E.164 when the number was read, else the number as given.
    pub phone_number: String,
    /// The verdict.
    pub verdict: Verdict,
}

/// A row after the checks that need nothing but the chunk (the ingest worker's `plan`).
#[derive(Debug)]
pub struct Screened {
    /// 0-based row index.
    pub row_index: u32,
    /// The number as given.
    pub raw: String,
    /// The number and where the contact may be, or why the row is rejected.
    pub result: Result<Contact, Rejection>,
}

/// A row the ingest worker would not reject by itself.
#[derive(Debug)]
pub struct Contact {
    /// The number.
    pub number: E164,
    /// Its zones: its own `timezone`, else those of its number (as the ingest worker stores).
    pub zones: Vec<Tz>,
    /// Its declared `state` and its postal code's state.
    pub declared: (Option<UsState>, Option<UsState>),
}

/// The rows of one chunk, checked as the ingest worker's `plan` checks them: text, number,
/// then duplicates inside the chunk (the first row wins, whatever the later verdicts). The
/// numbers are read on two threads (each row's reading is independent; libphonenumber's
/// parsing is most of a preflight's work), the duplicates then in row order.
pub fn screen(
    first_row: u32,
    rows: Vec<RawRow>,
    region: Region,
    check: NumberCheck,
) -> Vec<Screened> {
    let read = |rows: &[RawRow]| -> Vec<Result<Contact, Rejection>> {
        rows.iter()
            .map(|row| {
                check_text(row)
                    .and_then(|()| normalize(&row.phone_number, region, check))
                    .map(|number| Contact {
                        zones: zones_of(row, &number),
                        declared: declared(row),
                        number,
                    })
            })
            .collect()
    };
    let (front, back) = rows.split_at(rows.len() / 2);
    let read_rows = std::thread::scope(|scope| {
        let later = scope.spawn(|| read(back));
        let mut all = read(front);
        // A panic in the thread is a bug in the reading; reading again here surfaces it.
        all.extend(later.join().unwrap_or_else(|_| read(back)));
        all
    });
    let mut seen: HashMap<E164, u32> = HashMap::with_capacity(rows.len());
    (first_row..)
        .zip(rows.into_iter().zip(read_rows))
        .map(|(row_index, (row, result))| {
            let result = result.and_then(|c| match seen.get(&c.number) {
                Some(&earlier) => Err(duplicate_of(earlier as i32)),
                None => {
                    seen.insert(c.number.clone(), row_index);
                    Ok(c)
                }
            });
            Screened {
                row_index,
                raw: row.phone_number,
                result,
            }
        })
        .collect()
}

/// The zones the ingest worker stores for a row (`contacts.timezones`).
fn zones_of(row: &RawRow, number: &E164) -> Vec<Tz> {
    match row.timezone.as_deref().and_then(|t| t.parse::<Tz>().ok()) {
        Some(tz) => vec![tz],
        None => shared::compliance::zones_for_number(number.as_str()),
    }
}

/// The row's declared `state` and its postal code's state, as the ingest worker stores them
/// (`declared_state`, `postal_state`); the gateway validated both.
fn declared(row: &RawRow) -> (Option<UsState>, Option<UsState>) {
    let state = row.state.as_deref().and_then(|s| s.parse::<UsState>().ok());
    let postal = row
        .postal_code
        .as_deref()
        .and_then(|p| p.parse::<PostalCode>().ok())
        .and_then(|p| p.state());
    (state, postal)
}

/// What the database knows about a number.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// On the workspace's do-not-call list.
    pub listed: bool,
    /// Over the workspace's frequency cap at the start: when it frees.
    pub cap_until: Option<DateTime<Utc>>,
    /// Calls placed to it recently (for the pack's caps), oldest first.
    pub calls: Vec<DateTime<Utc>>,
}

/// Everything the verdicts of one preflight depend on besides the rows.
pub struct Judge {
    /// The rule pack.
    pub pack: &'static Pack,
    /// The workspace's policy.
    pub policy: Policy,
    /// The job's window (schedule and `scheduledStartTime`).
    pub job: Window,
    /// The batch's start: the first instant, from now (or the asked instant), at which the
    /// job's own window is open.
    pub at: DateTime<Utc>,
    /// Numbers stored by earlier chunks (E.164 digits → row index): a later row with the same
    /// number is a duplicate of it. Bounded by the batch's 100,000 rows (≈ 2 MB).
    stored: HashMap<u64, u32>,
    /// Decisions already made for contacts with no recent calls, by where they may be.
    memo: HashMap<MemoKey, Verdict>,
}

impl Judge {
    /// A judge for one preflight.
    pub fn new(pack: &'static Pack, policy: Policy, job: Window, at: DateTime<Utc>) -> Self {
        Self {
            pack,
            policy,
            job,
            at,
            stored: HashMap::new(),
            memo: HashMap::new(),
        }
    }

    /// The verdicts of one chunk's screened rows, given what the database knows about their
    /// numbers (`known`, by E.164; a number absent is unknown to it). As the ingest worker: a
    /// listed number is rejected `do_not_call`, then a number an earlier chunk stored is a
    /// duplicate of that row.
    pub fn judge(
        &mut self,
        rows: Vec<Screened>,
        known: &HashMap<String, Known>,
    ) -> Vec<RowVerdict> {
        let nothing = Known::default();
        rows.into_iter()
            .map(|s| {
                let row = s.row_index + 1;
                match s.result {
                    Err(rejection) => RowVerdict {
                        row,
                        phone_number: s.raw,
                        verdict: Verdict::Reject(rejection),
                    },
                    Ok(contact) => {
                        let k = known.get(contact.number.as_str()).unwrap_or(&nothing);
                        let verdict = self.stored_verdict(s.row_index, &contact, k);
                        RowVerdict {
                            row,
                            phone_number: contact.number.as_str().to_owned(),
                            verdict,
                        }
                    }
                }
            })
            .collect()
    }

    fn stored_verdict(&mut self, row_index: u32, c: &Contact, k: &Known) -> Verdict {
        if k.listed {
            return Verdict::Reject(Rejection::new(
                Reason::DoNotCall,
                format!(
                    "{} is on the workspace's do-not-call list",
                    c.number.as_str()
                ),
            ));
        }
        let key = digits(&c.number);
        if let Some(&earlier) = self.stored.get(&key) {
            return Verdict::Reject(duplicate_of(earlier as i32));
        }
        self.stored.insert(key, row_index);
        self.release(c, k)
    }

    /// What the release decides at the start, in the scheduler's order: the workspace's cap
    /// first, then the one decision path (`shared::compliance::enforce`).
    fn release(&mut self, c: &Contact, k: &Known) -> Verdict {
        let at = self.at;
        if let Some(until) = k.cap_until.filter(|until| *until > at) {
            // The number may go once the cap frees and every other rule allows it then.
            let then = match self.decide(c, &k.calls, until) {
                Verdict::Call { first_call_at } => Some(first_call_at),
                Verdict::Hold { first_call_at, .. } => first_call_at,
                Verdict::Reject(_) => None,
            };
            return Verdict::Hold {
                reason: DeferReason::FrequencyCap.as_str(),
                rule: None,
                first_call_at: then,
            };
        }
        if !k.calls.is_empty() {
            return self.decide(c, &k.calls, at);
        }
        // Without calls to count, the verdict depends only on where the contact may be.
        let key = memo_key(c);
        if let Some(v) = self.memo.get(&key) {
            return v.clone();
        }
        let v = self.decide(c, &[], at);
        self.memo.insert(key, v.clone());
        v
    }

    fn decide(&self, c: &Contact, calls: &[DateTime<Utc>], t: DateTime<Utc>) -> Verdict {
        let rules = enforce::Policy {
            pack: self.pack,
            mode: self.policy.mode,
            job: &self.job,
            hours: self.policy.hours,
            allow_unknown_timezone: self.policy.allow_unknown_timezone,
        };
        let contact = enforce::Contact {
            number: c.number.as_str(),
            zones: &c.zones,
            declared_state: c.declared.0,
            postal_state: c.declared.1,
        };
        match rules.judge(&contact, calls, t) {
            None => Verdict::Call { first_call_at: t },
            Some(hold) => Verdict::Hold {
                reason: hold.reason.as_str(),
                rule: hold.rule_id().map(str::to_owned),
                // An unknown zone is looked at again hourly, never called while it stays
                // unknown: no first call to show.
                first_call_at: (hold.reason != DeferReason::UnknownTimezone).then_some(hold.until),
            },
        }
    }
}

/// Where a contact may be: what its verdict depends on when no call is counted.
fn memo_key(c: &Contact) -> MemoKey {
    let area = c.number.as_str().get(..5).unwrap_or_default();
    (
        // The area code (a NANP number's state), the declared and postal states.
        area.to_owned(),
        c.declared,
        c.zones.iter().map(|z| z.name()).collect(),
    )
}

type MemoKey = (
    String,
    (Option<UsState>, Option<UsState>),
    Vec<&'static str>,
);

/// An E.164 number as its digits (at most 15, so it fits).
fn digits(n: &E164) -> u64 {
    n.as_str()
        .bytes()
        .filter(u8::is_ascii_digit)
        .fold(0u64, |acc, b| {
            acc.wrapping_mul(10).wrapping_add(u64::from(b - b'0'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: &str) -> RawRow {
        RawRow {
            phone_number: n.to_owned(),
            ..Default::default()
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn judge_all(
        judge: &mut Judge,
        chunks: Vec<Vec<RawRow>>,
        known: &HashMap<String, Known>,
    ) -> Vec<RowVerdict> {
        let mut first = 0u32;
        let mut out = Vec::new();
        for rows in chunks {
            let n = rows.len() as u32;
            let s = screen(first, rows, Region::parse("US"), NumberCheck::Possible);
            out.extend(judge.judge(s, known));
            first += n;
        }
        out
    }

    fn reason(v: &RowVerdict) -> &str {
        match &v.verdict {
            Verdict::Reject(r) => r.reason.as_str(),
            Verdict::Hold { reason, .. } => reason,
            Verdict::Call { .. } => "call",
        }
    }

    #[test]
    fn duplicates_and_do_not_call_as_the_ingest_worker_decides() {
        let pack = enforce::shipped_pack();
        let policy = Policy {
            hours: Some(RecipientHours::DEFAULT),
            ..Default::default()
        };
        // Monday 2026-12-07 15:00Z: 10:00 in New York.
        let mut judge = Judge::new(pack, policy, Window::default(), utc("2026-12-07T15:00:00Z"));
        let mut known = HashMap::new();
        known.insert(
            "+12125550199".to_owned(),
            Known {
                listed: true,
                ..Default::default()
            },
        );
        let out = judge_all(
            &mut judge,
            vec![
                vec![
                    row("+12125550100"),
                    row("(212) 555-0199"),
                    row("+1 212 555 0199"),
                    row("nope"),
                    row(""),
                ],
                vec![
                    row("+12125550100"),
                    row("+12125550199"),
                    row("+12125550101"),
                ],
            ],
            &known,
        );
        let got: Vec<(u32, &str)> = out.iter().map(|v| (v.row, reason(v))).collect();
        assert_eq!(
            got,
            [
                (1, "call"),
                (2, "do_not_call"),
                // Inside one chunk the earlier row wins, even when it is listed.
                (3, "duplicate"),
                (4, "invalid_number"),
                (5, "missing_number"),
                // Across chunks: a stored row wins; a listed one was never stored.
                (6, "duplicate"),
                (7, "do_not_call"),
                (8, "call"),
            ]
        );
        match &out[5].verdict {
            Verdict::Reject(r) => assert_eq!(r.detail, "duplicate of row 1"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn holds_name_their_reason_rule_and_minute() {
        let pack = enforce::shipped_pack();
        let policy = Policy {
            hours: Some(RecipientHours::DEFAULT),
            ..Default::default()
        };
        // Monday 2026-12-07 20:30 in New York = 2026-12-08T01:30Z.
        let at = utc("2026-12-08T01:30:00Z");
        let mut judge = Judge::new(pack, policy, Window::default(), at);
        let mut known = HashMap::new();
        known.insert(
            "+14045550103".to_owned(),
            Known {
                cap_until: Some(utc("2026-12-08T15:00:00Z")),
                ..Default::default()
            },
        );
        let out = judge_all(
            &mut judge,
            vec![vec![
                row("+13055550100"), // Florida: 08:00–20:00
                row("+14045550100"), // Georgia: federal hours
                row("+12135550100"), // Los Angeles, 17:30
                row("+14045550103"), // Georgia, over the workspace's cap
            ]],
            &known,
        );
        assert_eq!(
            out[0].verdict,
            Verdict::Hold {
                reason: "state_hours",
                rule: Some("US-FL-hours".into()),
                first_call_at: Some(utc("2026-12-08T13:00:00Z")),
            }
        );
        assert_eq!(out[1].verdict, Verdict::Call { first_call_at: at });
        assert_eq!(out[2].verdict, Verdict::Call { first_call_at: at });
        assert_eq!(
            out[3].verdict,
            Verdict::Hold {
                reason: "frequency_cap",
                rule: None,
                first_call_at: Some(utc("2026-12-08T15:00:00Z")),
            }
        );
        // Federal: Florida at 20:30 is called.
        let federal = Policy {
            mode: RuleMode::Federal,
            ..policy
        };
        let mut judge = Judge::new(pack, federal, Window::default(), at);
        let out = judge_all(&mut judge, vec![vec![row("+13055550100")]], &HashMap::new());
        assert_eq!(out[0].verdict, Verdict::Call { first_call_at: at });
    }

    #[test]
    fn unknown_zone_is_held_unless_allowed() {
        let pack = enforce::shipped_pack();
        let at = utc("2026-12-07T15:00:00Z");
        let policy = Policy {
            hours: Some(RecipientHours::DEFAULT),
            ..Default::default()
        };
        // Inmarsat (+870) has no zone in libphonenumber's map.
        let number = "+870773111632";
        let mut judge = Judge::new(pack, policy, Window::default(), at);
        let out = judge_all(&mut judge, vec![vec![row(number)]], &HashMap::new());
        assert_eq!(reason(&out[0]), "unknown_timezone", "{out:?}");
        let allowed = Policy {
            allow_unknown_timezone: true,
            ..policy
        };
        let mut judge = Judge::new(pack, allowed, Window::default(), at);
        let out = judge_all(&mut judge, vec![vec![row(number)]], &HashMap::new());
        assert_eq!(reason(&out[0]), "call");
    }
}
