//! The strictest combination of a contact's candidate jurisdictions, at an instant (pure).
//!
//! A contact's candidates are the states its area code, declared `state` and postal code name,
//! and always the federal rules. In `strictest` mode every rule of every candidate applies:
//! - every `hours` rule, read in **every** candidate zone (or in the rule's own fixed zone);
//! - every `no_call_days` rule, its local dates read in every candidate zone;
//! - every `cap`: each must have room (the smallest is [`strictest_cap`]).
//!
//! A US number whose state none of the sources determines (a non-geographic area code and no
//! declared state or postal code) gets every state rule of the pack. In `federal` mode only the
//! federal rules apply (the user answers for state law). The job's own window and the
//! workspace's recipient hours ([`RecipientHours`]) apply on top, as today.
//!
//! Hours and whole weekdays are windows of the existing window engine ([`Window`]), so DST is
//! handled once, there: wall-clock time, a slot edge inside a skipped hour takes effect after
//! the gap. Holidays are local dates. The next allowed instant is found by leap-frogging, as
//! in [`crate::compliance::hours::next_allowed`]: each closed gate moves the candidate instant
//! to its own next opening until every gate is open at once; a cap first moves it to when the
//! oldest counted call leaves the rolling window. The tests compare it with a minute-by-minute
//! scan.
//!
//! Which rules apply is decided at the instant asked about (a rule whose `effective` date
//! falls later is not applied to the next-allowed search); every release and last look asks
//! again, so a rule is enforced from the first look after it takes effect.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::area_code::{AreaCodeState, state_for_number};
use super::pack::{Cap, NoCallDays, Pack, Rule, RuleKind};
use super::state::{Jurisdiction, UsState};
use crate::compliance::hours::RecipientHours;
use crate::schedule::Window;
use crate::schedule::window::HORIZON_DAYS;

/// Which rules a workspace applies (`jurisdictionRules`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuleMode {
    /// Every candidate's rules, the strictest combination (the default).
    #[default]
    Strictest,
    /// Federal rules only; the user is responsible for state law.
    Federal,
}

impl RuleMode {
    /// The setting's value.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleMode::Strictest => "strictest",
            RuleMode::Federal => "federal",
        }
    }

    /// Parses the setting's value.
    pub fn parse(s: &str) -> Result<RuleMode, String> {
        match s {
            "strictest" => Ok(RuleMode::Strictest),
            "federal" => Ok(RuleMode::Federal),
            _ => Err(format!("{s:?} is not \"strictest\" or \"federal\"")),
        }
    }
}

/// Why a contact is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HoldReason {
    /// A day on which a candidate state forbids calls (Sunday, a legal holiday).
    StateNoCallDay,
    /// Outside a candidate state's hours.
    StateHours,
    /// Outside the federal hours, the workspace's recipient hours or the job's window.
    RecipientHours,
    /// A candidate's rolling cap of calls to the number is reached.
    StateCallCap,
    /// The recipient's zone is unknown, so local hours cannot be read.
    UnknownTimezone,
}

impl HoldReason {
    /// The `holdReason` value.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::StateNoCallDay => "state_no_call_day",
            HoldReason::StateHours => "state_hours",
            HoldReason::RecipientHours => "recipient_hours",
            HoldReason::StateCallCap => "state_call_cap",
            HoldReason::UnknownTimezone => "unknown_timezone",
        }
    }
}

/// Where a contact may be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidates {
    /// The states named by its area code, declared state and postal code.
    pub states: BTreeSet<UsState>,
    /// A US number none of whose sources names a state: every state rule applies.
    pub state_unknown: bool,
    /// Its possible zones (from the number, or declared).
    pub zones: Vec<Tz>,
}

impl Candidates {
    /// The candidates of a contact: the area code's state (from the geocoding data), the
    /// declared state, the postal code's state, and the zones already found for it.
    pub fn for_contact(
        e164: &str,
        declared_state: Option<UsState>,
        postal_state: Option<UsState>,
        zones: Vec<Tz>,
    ) -> Candidates {
        let area = state_for_number(e164);
        let mut states: BTreeSet<UsState> =
            declared_state.into_iter().chain(postal_state).collect();
        if let AreaCodeState::State(s) = area {
            states.insert(s);
        }
        Candidates {
            state_unknown: states.is_empty() && area == AreaCodeState::Unknown,
            states,
            zones,
        }
    }
}

/// Everything a decision depends on.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    /// The rule pack.
    pub pack: &'a Pack,
    /// Where the contact may be.
    pub candidates: &'a Candidates,
    /// The workspace's `jurisdictionRules`.
    pub mode: RuleMode,
    /// The job's window (always open by default).
    pub job: &'a Window,
    /// The workspace's recipient hours, if on.
    pub workspace_hours: Option<RecipientHours>,
    /// When calls to this number were placed (any batch of the workspace), for the caps.
    pub calls: &'a [DateTime<Utc>],
}

/// The answer at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'p> {
    /// Call now.
    Allowed,
    /// Not now.
    Held {
        /// Why.
        reason: HoldReason,
        /// The rule that holds it (`None` for the job's window or the workspace's hours).
        rule: Option<&'p Rule>,
        /// The next instant at which every rule allows the call, if within
        /// [`HORIZON_DAYS`]; `None` means look again later.
        next_allowed: Option<DateTime<Utc>>,
    },
}

/// The rules that apply to `c` at `t` under `mode`, in the pack's order.
pub fn applicable<'p>(
    pack: &'p Pack,
    c: &Candidates,
    mode: RuleMode,
    t: DateTime<Utc>,
) -> Vec<&'p Rule> {
    let dates = local_dates(&c.zones, t);
    pack.rules()
        .iter()
        .filter(|r| match r.jurisdiction {
            Jurisdiction::Federal => true,
            Jurisdiction::State(s) => {
                mode == RuleMode::Strictest && (c.state_unknown || c.states.contains(&s))
            }
        })
        // In force when it is in force in any of the zones (the strictest reading).
        .filter(|r| dates.iter().any(|d| r.in_force_on(*d)))
        .collect()
}

/// The smallest cap that applies: fewest calls, then the longest window.
pub fn strictest_cap<'p>(
    pack: &'p Pack,
    c: &Candidates,
    mode: RuleMode,
    t: DateTime<Utc>,
) -> Option<(&'p Rule, Cap)> {
    applicable(pack, c, mode, t)
        .into_iter()
        .filter_map(|r| match r.kind {
            RuleKind::Cap(cap) => Some((r, cap)),
            _ => None,
        })
        .min_by_key(|(r, cap)| (cap.max_calls, std::cmp::Reverse(cap.window), r.id.clone()))
}

fn local_dates(zones: &[Tz], t: DateTime<Utc>) -> Vec<NaiveDate> {
    if zones.is_empty() {
        return vec![t.date_naive()];
    }
    zones
        .iter()
        .map(|z| t.with_timezone(z).date_naive())
        .collect()
}

/// One condition a call needs, with what to say when it is not met.
enum Gate<'p> {
    /// Open while the window is open.
    Window {
        window: Window,
        reason: HoldReason,
        rule: Option<&'p Rule>,
    },
    /// Open while the local date in `zone` is not one of the holidays.
    Holidays {
        zone: Tz,
        days: &'p NoCallDays,
        rule: &'p Rule,
    },
}

/// How far a run of consecutive holidays may reach (a Saturday holiday observed on Friday,
/// then a Monday one): past this the gate gives up and the search says "look again".
const MAX_HOLIDAY_RUN: i64 = 10;

impl<'p> Gate<'p> {
    fn is_open(&self, t: DateTime<Utc>) -> bool {
        match self {
            Gate::Window { window, .. } => window.is_open(t),
            Gate::Holidays { zone, days, .. } => {
                !days.is_holiday(t.with_timezone(zone).date_naive())
            }
        }
    }

    fn next_open(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Gate::Window { window, .. } => window.next_open(t),
            Gate::Holidays { zone, days, .. } => {
                let mut d = t.with_timezone(zone).date_naive();
                if !days.is_holiday(d) {
                    return Some(t);
                }
                for _ in 0..MAX_HOLIDAY_RUN {
                    d = d.succ_opt()?;
                    if !days.is_holiday(d) {
                        return start_of_local_day(*zone, d);
                    }
                }
                None
            }
        }
    }

    fn reason(&self) -> (HoldReason, Option<&'p Rule>) {
        match self {
            Gate::Window { reason, rule, .. } => (*reason, *rule),
            Gate::Holidays { rule, .. } => (HoldReason::StateNoCallDay, Some(*rule)),
        }
    }
}

/// The first instant whose local date in `zone` is `d`. Midnight may not exist (a DST change
/// at midnight); real zones change on a quarter hour, so the first quarter hour that exists
/// is the change itself.
fn start_of_local_day(zone: Tz, d: NaiveDate) -> Option<DateTime<Utc>> {
    let midnight = d.and_hms_opt(0, 0, 0)?;
    (0..=16).find_map(
        |q| match zone.from_local_datetime(&(midnight + Duration::minutes(15 * q))) {
            LocalResult::Single(x) => Some(x.with_timezone(&Utc)),
            LocalResult::Ambiguous(a, _) => Some(a.with_timezone(&Utc)),
            LocalResult::None => None,
        },
    )
}

/// The gates of a query at `t`, in the order their reasons are reported.
fn gates<'p>(q: &Query<'p>, rules: &[&'p Rule]) -> Vec<Gate<'p>> {
    let zones = &q.candidates.zones;
    let mut out = Vec::new();
    for r in rules {
        match &r.kind {
            RuleKind::NoCallDays(days) => {
                for z in zones {
                    if let Some(window) = days.weekday_window(*z) {
                        out.push(Gate::Window {
                            window,
                            reason: HoldReason::StateNoCallDay,
                            rule: Some(*r),
                        });
                    }
                    if !days.holidays.is_empty() {
                        out.push(Gate::Holidays {
                            zone: *z,
                            days,
                            rule: r,
                        });
                    }
                }
            }
            RuleKind::Hours(h) => {
                let reason = if r.jurisdiction.is_federal() {
                    HoldReason::RecipientHours
                } else {
                    HoldReason::StateHours
                };
                let read_in: Vec<Tz> = match h.zone {
                    Some(z) => vec![z],
                    None => zones.clone(),
                };
                for z in read_in {
                    out.push(Gate::Window {
                        window: h.window(z),
                        reason,
                        rule: Some(*r),
                    });
                }
            }
            RuleKind::Cap(_) => {}
        }
    }
    if let Some(h) = q.workspace_hours {
        for z in zones {
            out.push(Gate::Window {
                window: h.window(*z),
                reason: HoldReason::RecipientHours,
                rule: None,
            });
        }
    }
    out.push(Gate::Window {
        window: q.job.clone(),
        reason: HoldReason::RecipientHours,
        rule: None,
    });
    // Report the most specific closed gate first: a state's no-call day, then its hours, then
    // the federal and workspace hours.
    out.sort_by_key(|g| g.reason().0);
    out
}

/// When each cap that applies has room again: `t` when it has room now, else when the oldest
/// counted call leaves the rolling window. The latest of them, with the cap that sets it.
fn cap_free<'p>(
    rules: &[&'p Rule],
    calls: &[DateTime<Utc>],
    t: DateTime<Utc>,
) -> (DateTime<Utc>, Option<&'p Rule>) {
    let mut free = (t, None);
    for r in rules {
        let RuleKind::Cap(cap) = r.kind else {
            continue;
        };
        let mut inside: Vec<DateTime<Utc>> = calls
            .iter()
            .copied()
            .filter(|c| *c <= t && t - *c < cap.window)
            .collect();
        let max = cap.max_calls as usize;
        if inside.len() < max {
            continue;
        }
        inside.sort();
        let at = inside[inside.len() - max] + cap.window;
        if at > free.0 {
            free = (at, Some(*r));
        }
    }
    free
}

/// The first instant at or after `from` at which every gate is open, if not later than
/// `horizon`.
fn leapfrog(
    gates: &[Gate<'_>],
    from: DateTime<Utc>,
    horizon: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut at = from;
    // Each pass answers or moves `at` to a later opening of some gate; a week holds a handful
    // of openings per gate, so the bound is never reached in practice.
    for _ in 0..(64 * gates.len().max(1)) {
        if at > horizon {
            return None;
        }
        let mut latest = at;
        for g in gates {
            latest = latest.max(g.next_open(at)?);
        }
        if latest == at {
            return Some(at);
        }
        at = latest;
    }
    None
}

/// What the rules say about a call at `t`.
pub fn decide<'p>(q: &Query<'p>, t: DateTime<Utc>) -> Decision<'p> {
    let rules = applicable(q.pack, q.candidates, q.mode, t);
    if q.candidates.zones.is_empty() {
        // Local hours cannot be read; the federal hours rule always applies.
        return Decision::Held {
            reason: HoldReason::UnknownTimezone,
            rule: None,
            next_allowed: None,
        };
    }
    let gates = gates(q, &rules);
    let (free, cap_rule) = cap_free(&rules, q.calls, t);
    let closed = gates.iter().find(|g| !g.is_open(t));
    if closed.is_none() && free <= t {
        return Decision::Allowed;
    }
    let horizon = t + Duration::days(HORIZON_DAYS);
    let next_allowed = leapfrog(&gates, free, horizon);
    let (reason, rule) = match closed {
        // A closed gate names the hold, unless the gates alone would open before the cap frees:
        // then the cap is what holds it.
        Some(g) if free <= t || leapfrog(&gates, t, horizon).is_none_or(|o| o >= free) => {
            g.reason()
        }
        _ => (HoldReason::StateCallCap, cap_rule),
    };
    Decision::Held {
        reason,
        rule,
        next_allowed,
    }
}

/// Whether a call at `t` is allowed, by the definition alone (every gate open, every cap with
/// room). What the tests check [`decide`] against.
pub fn allowed_at(q: &Query<'_>, rules_at: DateTime<Utc>, t: DateTime<Utc>) -> bool {
    let rules = applicable(q.pack, q.candidates, q.mode, rules_at);
    !q.candidates.zones.is_empty()
        && gates(q, &rules).iter().all(|g| g.is_open(t))
        && cap_free(&rules, q.calls, t).0 <= t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::window::tests::{arb_instant, arb_schedule, utc};
    use proptest::prelude::*;

    fn tz(s: &str) -> Tz {
        s.parse().unwrap()
    }

    fn st(s: &str) -> UsState {
        s.parse().unwrap()
    }

    fn shipped() -> Pack {
        Pack::shipped().unwrap()
    }

    /// The shipped pack plus test-only rules that exercise what the shipped one does not:
    /// holidays on several kinds of date, a short cap. (Per-weekday hours are shipped:
    /// US-TX-hours.)
    fn test_pack() -> Pack {
        let extra = r#"
version = "test"

[[rule]]
id = "T-GA-days"
jurisdiction = "US-GA"
kind = "no_call_days"
citation = "test"
source_url = "https://example.test/"
weekdays = ["Sat"]
holidays = [
  { name = "Thanksgiving", month = 11, weekday = "Thu", nth = 4 },
  { name = "Memorial Day", month = 5, weekday = "Mon", nth = -1 },
  { name = "Independence Day", month = 7, day = 4, observed = "nearest_weekday" },
  { name = "New Year's Day", month = 1, day = 1, observed = "nearest_weekday" },
  { name = "DST Sunday", month = 3, weekday = "Sun", nth = 2 },
  { name = "Fall back", month = 11, weekday = "Sun", nth = 1 },
]

[[rule]]
id = "T-GA-cap"
jurisdiction = "US-GA"
kind = "cap"
citation = "test"
source_url = "https://example.test/"
max_calls = 2
window_hours = 1
"#;
        shipped().with_overrides(extra, "test.toml").unwrap()
    }

    fn query<'a>(
        pack: &'a Pack,
        c: &'a Candidates,
        job: &'a Window,
        calls: &'a [DateTime<Utc>],
    ) -> Query<'a> {
        Query {
            pack,
            candidates: c,
            mode: RuleMode::Strictest,
            job,
            workspace_hours: None,
            calls,
        }
    }

    fn held(d: &Decision<'_>) -> (HoldReason, Option<String>, Option<DateTime<Utc>>) {
        match d {
            Decision::Allowed => panic!("expected a hold, got Allowed"),
            Decision::Held {
                reason,
                rule,
                next_allowed,
            } => (*reason, rule.map(|r| r.id.clone()), *next_allowed),
        }
    }

    #[test]
    fn florida_at_half_past_eight_is_held_georgia_is_called() {
        let pack = shipped();
        let job = Window::default();
        // 2026-12-08T01:30Z is 20:30 EST on Monday 7 December.
        let t = utc("2026-12-08T01:30:00Z");
        let ny = vec![tz("America/New_York")];
        let fl = Candidates::for_contact("+13055550100", None, None, ny.clone());
        assert_eq!(fl.states, [st("FL")].into());
        let d = decide(&query(&pack, &fl, &job, &[]), t);
        let (reason, rule, next) = held(&d);
        assert_eq!(
            (reason, rule.as_deref()),
            (HoldReason::StateHours, Some("US-FL-hours"))
        );
        assert_eq!(next, Some(utc("2026-12-08T13:00:00Z")));
        let Decision::Held { rule: Some(r), .. } = d else {
            panic!()
        };
        assert_eq!(r.citation, "Fla. Stat. 501.616(6)(a)");

        let ga = Candidates::for_contact("+14045550100", None, None, ny.clone());
        assert_eq!(decide(&query(&pack, &ga, &job, &[]), t), Decision::Allowed);
        // Federal mode calls the Florida number.
        let federal = Query {
            mode: RuleMode::Federal,
            ..query(&pack, &fl, &job, &[])
        };
        assert_eq!(decide(&federal, t), Decision::Allowed);
        // A Georgia number declared (or with a postal code) in Florida gets Florida's hours.
        let declared = Candidates::for_contact("+14045550100", Some(st("FL")), None, ny.clone());
        assert_eq!(
            held(&decide(&query(&pack, &declared, &job, &[]), t)).0,
            HoldReason::StateHours
        );
        let postal = Candidates::for_contact("+14045550100", None, Some(st("FL")), ny);
        assert_eq!(
            held(&decide(&query(&pack, &postal, &job, &[]), t)).0,
            HoldReason::StateHours
        );
        // Before the amendment took effect Florida allowed 20:30.
        let before = utc("2021-06-30T00:30:00Z");
        assert_eq!(
            decide(&query(&pack, &fl, &job, &[]), before),
            Decision::Allowed
        );
        // After 21:00 the federal rule holds too; the state's rule is the one named.
        let late = utc("2026-12-08T02:30:00Z");
        assert_eq!(
            held(&decide(&query(&pack, &ga, &job, &[]), late)).0,
            HoldReason::RecipientHours
        );
    }

    #[test]
    fn texas_opens_at_nine_and_at_noon_on_sunday() {
        let pack = shipped();
        let job = Window::default();
        let chicago = vec![tz("America/Chicago")];
        let dallas = Candidates::for_contact("+12145550100", None, None, chicago.clone());
        assert_eq!(dallas.states, [st("TX")].into());
        // Saturday 2026-12-12 08:30 CST = 14:30Z: federal hours are open, Texas's are not.
        let (reason, rule, next) = held(&decide(
            &query(&pack, &dallas, &job, &[]),
            utc("2026-12-12T14:30:00Z"),
        ));
        assert_eq!(
            (reason, rule.as_deref()),
            (HoldReason::StateHours, Some("US-TX-hours"))
        );
        assert_eq!(next, Some(utc("2026-12-12T15:00:00Z")));
        // Sunday 2026-12-13 11:30 CST is held until noon; 12:30 is allowed.
        let (_, rule, next) = held(&decide(
            &query(&pack, &dallas, &job, &[]),
            utc("2026-12-13T17:30:00Z"),
        ));
        assert_eq!(rule.as_deref(), Some("US-TX-hours"));
        assert_eq!(next, Some(utc("2026-12-13T18:00:00Z")));
        assert_eq!(
            decide(
                &query(&pack, &dallas, &job, &[]),
                utc("2026-12-13T18:30:00Z")
            ),
            Decision::Allowed
        );
        // A Georgia number whose postal code is Texan gets Texas's hours; federal mode does not.
        let postal = Candidates::for_contact("+14045550100", None, Some(st("TX")), chicago);
        let sat = utc("2026-12-12T14:30:00Z");
        assert_eq!(
            held(&decide(&query(&pack, &postal, &job, &[]), sat)).0,
            HoldReason::StateHours
        );
        let federal = Query {
            mode: RuleMode::Federal,
            ..query(&pack, &postal, &job, &[])
        };
        assert_eq!(decide(&federal, sat), Decision::Allowed);
    }

    #[test]
    fn oklahoma_automated_calls_open_at_nine() {
        let pack = shipped();
        let job = Window::default();
        let okc = Candidates::for_contact("+14055550100", None, None, vec![tz("America/Chicago")]);
        assert_eq!(okc.states, [st("OK")].into());
        // Tuesday 2026-12-08 08:30 CST = 14:30Z.
        let (reason, rule, next) = held(&decide(
            &query(&pack, &okc, &job, &[]),
            utc("2026-12-08T14:30:00Z"),
        ));
        assert_eq!(
            (reason, rule.as_deref()),
            (HoldReason::StateHours, Some("US-OK-hours"))
        );
        assert_eq!(next, Some(utc("2026-12-08T15:00:00Z")));
        assert_eq!(
            decide(&query(&pack, &okc, &job, &[]), utc("2026-12-08T15:00:00Z")),
            Decision::Allowed
        );
    }

    #[test]
    fn florida_cap_three_calls_in_24_hours() {
        let pack = shipped();
        let job = Window::default();
        let c = Candidates::for_contact("+13055550100", None, None, vec![tz("America/New_York")]);
        // Tuesday 2026-12-08, 10:00 EST = 15:00Z; calls at 09:00, 09:10, 09:20 EST.
        let t = utc("2026-12-08T15:00:00Z");
        let calls = [
            utc("2026-12-08T14:00:00Z"),
            utc("2026-12-08T14:10:00Z"),
            utc("2026-12-08T14:20:00Z"),
        ];
        assert_eq!(
            decide(&query(&pack, &c, &job, &calls[..2]), t),
            Decision::Allowed
        );
        let (reason, rule, next) = held(&decide(&query(&pack, &c, &job, &calls), t));
        assert_eq!(
            (reason, rule.as_deref()),
            (HoldReason::StateCallCap, Some("US-FL-cap"))
        );
        assert_eq!(next, Some(utc("2026-12-09T14:00:00Z")));
        // Georgia has no cap.
        let ga = Candidates::for_contact("+14045550100", None, None, vec![tz("America/New_York")]);
        assert_eq!(
            decide(&query(&pack, &ga, &job, &calls), t),
            Decision::Allowed
        );
        let (r, cap) = strictest_cap(&pack, &c, RuleMode::Strictest, t).unwrap();
        assert_eq!((r.id.as_str(), cap.max_calls), ("US-FL-cap", 3));
        assert!(strictest_cap(&pack, &ga, RuleMode::Strictest, t).is_none());
        assert!(strictest_cap(&pack, &c, RuleMode::Federal, t).is_none());
        // At 20:30 EST with the cap reached: when the cap frees during the night, Florida's
        // hours are what holds the number; when it frees after 08:00, the cap is.
        let at = utc("2026-12-08T01:30:00Z");
        let night = [
            utc("2026-12-07T03:00:00Z"),
            utc("2026-12-07T03:10:00Z"),
            utc("2026-12-07T03:20:00Z"),
        ];
        let (reason, _, next) = held(&decide(&query(&pack, &c, &job, &night), at));
        assert_eq!(reason, HoldReason::StateHours);
        assert_eq!(next, Some(utc("2026-12-08T13:00:00Z")));
        let evening = [
            utc("2026-12-07T23:00:00Z"),
            utc("2026-12-07T23:10:00Z"),
            utc("2026-12-07T23:20:00Z"),
        ];
        let (reason, rule, next) = held(&decide(&query(&pack, &c, &job, &evening), at));
        assert_eq!(
            (reason, rule.as_deref()),
            (HoldReason::StateCallCap, Some("US-FL-cap"))
        );
        assert_eq!(next, Some(utc("2026-12-08T23:00:00Z")));
    }

    #[test]
    fn alabama_sundays_and_legal_holidays() {
        let pack = shipped();
        let job = Window::default();
        let al = Candidates::for_contact("+12055550100", None, None, vec![tz("America/Chicago")]);
        // Thanksgiving 2026-11-26, 10:00 CST = 16:00Z: held until Friday 08:00 CST.
        let (reason, rule, next) = held(&decide(
            &query(&pack, &al, &job, &[]),
            utc("2026-11-26T16:00:00Z"),
        ));
        assert_eq!(
            (reason, rule.as_deref()),
            (HoldReason::StateNoCallDay, Some("US-AL-no-call-days"))
        );
        assert_eq!(next, Some(utc("2026-11-27T14:00:00Z")));
        // Sunday 2026-12-06: held until Monday 08:00.
        let (reason, _, next) = held(&decide(
            &query(&pack, &al, &job, &[]),
            utc("2026-12-06T18:00:00Z"),
        ));
        assert_eq!(reason, HoldReason::StateNoCallDay);
        assert_eq!(next, Some(utc("2026-12-07T14:00:00Z")));
        // Memorial Day 2027-05-31 (Monday) after Sunday 30th: Tuesday 08:00 CDT.
        let (_, _, next) = held(&decide(
            &query(&pack, &al, &job, &[]),
            utc("2027-05-30T15:00:00Z"),
        ));
        assert_eq!(next, Some(utc("2027-06-01T13:00:00Z")));
        // Independence Day 2026 is a Saturday, observed Friday 3rd: Friday, Saturday and Sunday
        // held, Monday 6th open.
        let (_, _, next) = held(&decide(
            &query(&pack, &al, &job, &[]),
            utc("2026-07-03T15:00:00Z"),
        ));
        assert_eq!(next, Some(utc("2026-07-06T13:00:00Z")));
        // A Monday that is no holiday is open at 10:00.
        assert_eq!(
            decide(&query(&pack, &al, &job, &[]), utc("2026-12-07T16:00:00Z")),
            Decision::Allowed
        );
        // Mississippi: Sundays only.
        let ms = Candidates::for_contact("+16015550100", None, None, vec![tz("America/Chicago")]);
        assert_eq!(
            held(&decide(
                &query(&pack, &ms, &job, &[]),
                utc("2026-12-06T18:00:00Z")
            ))
            .0,
            HoldReason::StateNoCallDay
        );
        assert_eq!(
            decide(&query(&pack, &ms, &job, &[]), utc("2026-11-26T16:00:00Z")),
            Decision::Allowed
        );
    }

    #[test]
    fn mississippi_reads_central_standard_time_too() {
        let pack = shipped();
        let job = Window::default();
        let ms = Candidates::for_contact("+16015550100", None, None, vec![tz("America/Chicago")]);
        // Monday 2026-07-06 08:30 CDT = 13:30Z = 07:30 CST: held by the fixed-clock reading.
        let (reason, rule, next) = held(&decide(
            &query(&pack, &ms, &job, &[]),
            utc("2026-07-06T13:30:00Z"),
        ));
        assert_eq!(
            (reason, rule.as_deref()),
            (HoldReason::StateHours, Some("US-MS-hours-cst"))
        );
        assert_eq!(next, Some(utc("2026-07-06T14:00:00Z")));
        // 20:30 CDT: held by the local reading.
        let (_, rule, _) = held(&decide(
            &query(&pack, &ms, &job, &[]),
            utc("2026-07-07T01:30:00Z"),
        ));
        assert_eq!(rule.as_deref(), Some("US-MS-hours"));
    }

    #[test]
    fn unknown_state_gets_every_state_rule_and_unknown_zone_is_held() {
        let pack = shipped();
        let job = Window::default();
        let tollfree =
            Candidates::for_contact("+18005550100", None, None, vec![tz("America/New_York")]);
        assert!(tollfree.state_unknown);
        // Sunday noon: a no-call day somewhere in the pack.
        assert_eq!(
            held(&decide(
                &query(&pack, &tollfree, &job, &[]),
                utc("2026-12-06T17:00:00Z")
            ))
            .0,
            HoldReason::StateNoCallDay
        );
        // Monday 20:30: Florida's hours.
        assert_eq!(
            held(&decide(
                &query(&pack, &tollfree, &job, &[]),
                utc("2026-12-08T01:30:00Z")
            ))
            .0,
            HoldReason::StateHours
        );
        assert_eq!(
            strictest_cap(
                &pack,
                &tollfree,
                RuleMode::Strictest,
                utc("2026-12-08T01:30:00Z")
            )
            .map(|(r, _)| r.id.as_str()),
            Some("US-FL-cap")
        );
        // A declared state settles it.
        let declared = Candidates::for_contact(
            "+18005550100",
            Some(st("GA")),
            None,
            vec![tz("America/New_York")],
        );
        assert!(!declared.state_unknown);
        assert_eq!(
            decide(
                &query(&pack, &declared, &job, &[]),
                utc("2026-12-06T17:00:00Z")
            ),
            Decision::Allowed
        );
        // Toronto is not a US state: federal rules only.
        let toronto =
            Candidates::for_contact("+14165550100", None, None, vec![tz("America/Toronto")]);
        assert!(!toronto.state_unknown && toronto.states.is_empty());
        assert_eq!(
            decide(
                &query(&pack, &toronto, &job, &[]),
                utc("2026-12-06T17:00:00Z")
            ),
            Decision::Allowed
        );
        let nozone = Candidates::for_contact("+13055550100", None, None, vec![]);
        assert_eq!(
            held(&decide(
                &query(&pack, &nozone, &job, &[]),
                utc("2026-12-07T17:00:00Z")
            ))
            .0,
            HoldReason::UnknownTimezone
        );
    }

    #[test]
    fn setting_and_reason_names() {
        assert_eq!(RuleMode::parse("strictest"), Ok(RuleMode::Strictest));
        assert_eq!(RuleMode::parse("federal"), Ok(RuleMode::Federal));
        assert!(RuleMode::parse("lenient").is_err());
        assert_eq!(RuleMode::default().as_str(), "strictest");
        let names: Vec<&str> = [
            HoldReason::StateNoCallDay,
            HoldReason::StateHours,
            HoldReason::RecipientHours,
            HoldReason::StateCallCap,
            HoldReason::UnknownTimezone,
        ]
        .iter()
        .map(|r| r.as_str())
        .collect();
        assert_eq!(
            names,
            [
                "state_no_call_day",
                "state_hours",
                "recipient_hours",
                "state_call_cap",
                "unknown_timezone"
            ]
        );
    }

    #[test]
    fn midnight_that_does_not_exist() {
        // Santiago springs forward at 24:00 on the first Saturday of September: 2026-09-06
        // starts at 01:00 local.
        let z = tz("America/Santiago");
        let d = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        let s = start_of_local_day(z, d).unwrap();
        assert_eq!(s.with_timezone(&z).date_naive(), d);
        assert_eq!(
            (s - Duration::seconds(1)).with_timezone(&z).date_naive(),
            d.pred_opt().unwrap()
        );
    }

    /// `cargo nextest run -p dialfleet-shared --lib bench_decide --run-ignored only --no-capture`
    #[test]
    #[ignore = "benchmark: prints figures"]
    fn bench_decide() {
        let pack = shipped();
        let job = Window::default();
        let ny = vec![tz("America/New_York")];
        let fl = Candidates::for_contact("+13055550100", None, None, ny.clone());
        let unknown = Candidates::for_contact("+18005550100", None, None, ny);
        let calls = [utc("2026-12-07T14:00:00Z"), utc("2026-12-07T15:00:00Z")];
        let n = 2_000;
        for (name, c, t) in [
            ("Florida, allowed (10:00)", &fl, utc("2026-12-07T15:00:00Z")),
            ("Florida, held (20:30)", &fl, utc("2026-12-08T01:30:00Z")),
            (
                "unknown state, every rule, held (Sunday)",
                &unknown,
                utc("2026-12-06T17:00:00Z"),
            ),
        ] {
            let q = query(&pack, c, &job, &calls);
            let started = std::time::Instant::now();
            for i in 0..n {
                std::hint::black_box(decide(&q, t + Duration::seconds(i)));
            }
            println!("decide, {name}: {:?}", started.elapsed() / n as u32);
        }
        let started = std::time::Instant::now();
        for i in 0..n {
            std::hint::black_box(Candidates::for_contact(
                &format!("+1305555{:04}", i),
                None,
                None,
                vec![],
            ));
        }
        println!(
            "Candidates::for_contact: {:?}",
            started.elapsed() / n as u32
        );
    }

    /// The oracle: `t` itself, else the first whole minute after it at which every gate is open
    /// and every cap has room, scanning minute by minute to the horizon.
    fn scan(q: &Query<'_>, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if q.candidates.zones.is_empty() {
            return None;
        }
        let rules = applicable(q.pack, q.candidates, q.mode, t);
        let gs = gates(q, &rules);
        let ok = |m: DateTime<Utc>| {
            gs.iter().all(|g| g.is_open(m)) && cap_free(&rules, q.calls, m).0 <= m
        };
        if ok(t) {
            return Some(t);
        }
        let mut m =
            DateTime::from_timestamp(t.timestamp() / 60 * 60, 0).unwrap() + Duration::minutes(1);
        let end = t + Duration::days(HORIZON_DAYS);
        while m <= end {
            if ok(m) {
                return Some(m);
            }
            m += Duration::minutes(1);
        }
        None
    }

    const NUMBERS: &[&str] = &[
        "+13055550100", // FL
        "+12055550100", // AL
        "+16015550100", // MS
        "+12065550100", // WA
        "+14045550100", // GA (test rules)
        "+12145550100", // TX (per-weekday hours)
        "+18005550100", // toll-free: state unknown
        "+14165550100", // Toronto: not US
    ];
    const STATES: &[&str] = &["FL", "AL", "MS", "WA", "GA", "TX", "NY"];
    const ZONES: &[&str] = &[
        "America/New_York",
        "America/Chicago",
        "America/Denver",
        "America/Phoenix",
        "America/Los_Angeles",
        "America/Anchorage",
        "Pacific/Honolulu",
        "America/Santiago",
        "Australia/Lord_Howe",
    ];
    /// Holidays and Sundays of the test pack, in UTC at local midnight-ish.
    const HOLIDAY_ANCHORS: &[&str] = &[
        "2026-11-26T05:00:00Z",
        "2026-07-03T05:00:00Z",
        "2027-05-31T05:00:00Z",
        "2027-12-31T06:00:00Z",
        "2027-11-07T06:00:00Z",
        "2027-03-14T06:00:00Z",
        "2026-12-06T06:00:00Z",
    ];

    fn arb_t() -> impl Strategy<Value = DateTime<Utc>> {
        prop_oneof![
            arb_instant(),
            (prop::sample::select(HOLIDAY_ANCHORS), -36 * 60i64..=36 * 60)
                .prop_map(|(a, m)| utc(a) + Duration::minutes(m)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Candidates (area code × declared state × postal code × declared zones) × DST × weekdays
        /// × holidays × caps × the job's window, against the minute-by-minute oracle.
        #[test]
        fn engine_agrees_with_minute_scan(
            number in prop::sample::select(NUMBERS),
            declared in prop::option::weighted(0.3, prop::sample::select(STATES)),
            postal in prop::option::weighted(0.3, prop::sample::select(STATES)),
            zones in prop::collection::vec(prop::sample::select(ZONES), 0..=3),
            federal in prop::bool::weighted(0.15),
            workspace in prop::option::weighted(0.3, Just(RecipientHours::DEFAULT)),
            schedule in prop::option::weighted(0.3, arb_schedule()),
            call_ages in prop::collection::vec(0i64..=30 * 60, 0..=4),
            t in arb_t(),
        ) {
            let pack = test_pack();
            let mut zones: Vec<Tz> = zones.iter().map(|z| tz(z)).collect();
            zones.sort_by_key(|z| z.name());
            zones.dedup();
            let c = Candidates::for_contact(number, declared.map(st), postal.map(st), zones);
            let job = Window::new(schedule, None);
            // Calls on whole minutes, so the cap frees on a minute the oracle looks at.
            let minute = DateTime::from_timestamp(t.timestamp() / 60 * 60, 0).unwrap();
            let calls: Vec<DateTime<Utc>> = call_ages.iter().map(|a| minute - Duration::minutes(*a)).collect();
            let q = Query {
                pack: &pack,
                candidates: &c,
                mode: if federal { RuleMode::Federal } else { RuleMode::Strictest },
                job: &job,
                workspace_hours: workspace,
                calls: &calls,
            };
            let want = scan(&q, t);
            match decide(&q, t) {
                Decision::Allowed => {
                    prop_assert_eq!(want, Some(t));
                    prop_assert!(allowed_at(&q, t, t));
                }
                Decision::Held { reason, next_allowed, .. } => {
                    prop_assert!(!allowed_at(&q, t, t));
                    prop_assert_ne!(want, Some(t));
                    if reason != HoldReason::UnknownTimezone {
                        prop_assert_eq!(next_allowed, want);
                    }
                    if let Some(at) = next_allowed {
                        prop_assert!(allowed_at(&q, t, at));
                    }
                }
            }
        }
    }
}
