//! Recipient-local calling hours and their intersection with a job's window.
//!
//! A workspace's policy is one daily range of wall-clock time (`08:00–21:00` by default, every
//! day) read in the *recipient's* timezone; it applies on top of the job's own window
//! ([`Window`]): a call may start only when the job's window is open **and** the hours are
//! open in **every** zone of the recipient (a number whose region spans several zones).
//!
//! Each zone's hours are a [`Window`] too (a weekly schedule with the same slot on all seven
//! days), so the DST rule is the window engine's: wall-clock time, a slot edge inside a skipped
//! hour takes effect after the gap, a repeated hour is inside twice. The intersection is
//! computed by leap-frogging: from `t`, each window that is closed moves `t` to its own next
//! opening; when every window is open at the same `t`, that is the answer. Each leap lands on
//! the opening of some window, so it ends after a few leaps (or at the horizon: "not within
//! [`HORIZON_DAYS`]"). The tests compare it with a minute-by-minute scan.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use crate::domain::{DaySchedule, LocalTime, Schedule, TimeSlot, Timezone, Weekday};
use crate::schedule::Window;
use crate::schedule::window::HORIZON_DAYS;

/// The daily calling hours in the recipient's local time: `[start, end)`, `start < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecipientHours {
    /// First allowed minute of the local day.
    pub start: LocalTime,
    /// First minute no longer allowed (`24:00` allowed).
    pub end: LocalTime,
}

impl RecipientHours {
    /// The safe default: 08:00–21:00 (the TCPA's 8 am to 9 pm).
    pub const DEFAULT: RecipientHours = RecipientHours {
        start: LocalTime::from_minutes_const(8 * 60),
        end: LocalTime::from_minutes_const(21 * 60),
    };

    /// From the stored minutes (`workspaces.recipient_hours_start/_end`); `None` when either is
    /// missing (the policy is off) or they do not make a range.
    pub fn from_minutes(start: Option<i16>, end: Option<i16>) -> Option<Self> {
        let (start, end) = (u16::try_from(start?).ok()?, u16::try_from(end?).ok()?);
        let h = Self {
            start: LocalTime::from_hm(start / 60, start % 60)?,
            end: LocalTime::from_hm(end / 60, end % 60)?,
        };
        (h.start < h.end).then_some(h)
    }

    /// Minutes since local midnight, as stored.
    pub fn minutes(self) -> (i16, i16) {
        (self.start.minutes() as i16, self.end.minutes() as i16)
    }

    /// Parses a policy as the CLI and the settings API write it: `HH:MM-HH:MM`, or `off`
    /// (`Ok(None)`).
    pub fn parse_policy(s: &str) -> Result<Option<Self>, String> {
        s.parse::<Policy>().map(|p| p.0)
    }

    /// These hours as a window in one zone.
    pub fn window(self, zone: Tz) -> Window {
        let slot = TimeSlot {
            start_time: self.start,
            end_time: self.end,
        };
        let days = (0..7)
            .filter_map(|d| Weekday::new(d).ok())
            .map(|day_of_week| DaySchedule {
                day_of_week,
                time_slots: vec![slot],
            })
            .collect();
        Window::new(
            Some(Schedule {
                days,
                timezone: Timezone(zone),
                disable_schedule: None,
            }),
            None,
        )
    }
}

impl fmt::Display for RecipientHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// `HH:MM-HH:MM` or `off`.
struct Policy(Option<RecipientHours>);

impl FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(Policy(None));
        }
        let bad =
            || format!("{s:?} is not \"off\" or a range of local time such as \"08:00-21:00\"");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let start: LocalTime = a.trim().parse().map_err(|_| bad())?;
        let end: LocalTime = b.trim().parse().map_err(|_| bad())?;
        if start >= end {
            return Err(format!(
                "{s:?}: the start must be before the end (ranges do not wrap past midnight)"
            ));
        }
        Ok(Policy(Some(RecipientHours { start, end })))
    }
}

/// Whether a call may start at `t`: the job's window is open and, when the policy is on, the
/// hours are open in every one of `zones`. With the policy on, an empty `zones` (unknown) is
/// never allowed here; the caller decides whether the workspace lets unknown zones through.
pub fn allowed(
    job: &Window,
    hours: Option<RecipientHours>,
    zones: &[Tz],
    t: DateTime<Utc>,
) -> bool {
    if !job.is_open(t) {
        return false;
    }
    let Some(hours) = hours else {
        return true;
    };
    !zones.is_empty() && zones.iter().all(|z| hours.window(*z).is_open(t))
}

/// The first instant at or after `t` at which [`allowed`] holds, or `None` if not within
/// [`HORIZON_DAYS`] of `t` (or never: unknown zones with the policy on).
pub fn next_allowed(
    job: &Window,
    hours: Option<RecipientHours>,
    zones: &[Tz],
    t: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut windows = vec![job.clone()];
    if let Some(hours) = hours {
        if zones.is_empty() {
            return None;
        }
        windows.extend(zones.iter().map(|z| hours.window(*z)));
    }
    let horizon = t + Duration::days(HORIZON_DAYS);
    let mut at = t;
    // Each pass either answers or moves `at` to a later opening of some window; a week holds
    // a handful of openings per window, so this bound is never reached in practice.
    for _ in 0..(64 * windows.len()) {
        if at > horizon {
            return None;
        }
        let mut latest = at;
        for w in &windows {
            latest = latest.max(w.next_open(at)?);
        }
        if latest == at {
            return Some(at);
        }
        at = latest;
    }
    None
}

/// Why a contact may not be called now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeferReason {
    /// Outside the recipient's calling hours (or the job's window) in one of its zones.
    RecipientHours,
    /// The number's zone cannot be determined and the workspace does not allow that.
    UnknownTimezone,
    /// The workspace's frequency cap for the number is reached.
    FrequencyCap,
    /// Outside a candidate state's calling hours (the rule pack).
    StateHours,
    /// A candidate state's no-call day: a Sunday or a legal holiday (the rule pack).
    StateNoCallDay,
    /// A candidate state's rolling cap of calls to one number is reached (the rule pack).
    StateCallCap,
}

impl DeferReason {
    /// The name stored in `contacts.hold_reason` and shown in the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RecipientHours => "recipient_hours",
            Self::UnknownTimezone => "unknown_timezone",
            Self::FrequencyCap => "frequency_cap",
            Self::StateHours => "state_hours",
            Self::StateNoCallDay => "state_no_call_day",
            Self::StateCallCap => "state_call_cap",
        }
    }
}

/// What the rules say about a contact at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Call it.
    Allowed,
    /// Not now; look again at `until` (the next allowed minute, or a re-check time when none
    /// is known).
    Defer {
        /// When to look again.
        until: DateTime<Utc>,
        /// Why.
        reason: DeferReason,
    },
}

/// How long a contact whose zone is unknown (or whose hours never open within the horizon)
/// waits before it is looked at again: a changed workspace policy takes effect within this.
pub const RECHECK_HELD: Duration = Duration::hours(1);

/// The rules for one contact at `t`: the job's window, the workspace's recipient hours in
/// the contact's zones, and whether unknown zones are allowed.
pub fn verdict(
    job: &Window,
    hours: Option<RecipientHours>,
    allow_unknown_timezone: bool,
    zones: &[Tz],
    t: DateTime<Utc>,
) -> Verdict {
    let hours = if zones.is_empty() && allow_unknown_timezone {
        None
    } else {
        hours
    };
    if allowed(job, hours, zones, t) {
        return Verdict::Allowed;
    }
    if hours.is_some() && zones.is_empty() {
        return Verdict::Defer {
            until: t + RECHECK_HELD,
            reason: DeferReason::UnknownTimezone,
        };
    }
    Verdict::Defer {
        until: next_allowed(job, hours, zones, t).unwrap_or(t + RECHECK_HELD),
        reason: DeferReason::RecipientHours,
    }
}

/// Parses stored zone names (`contacts.timezones`); names that no longer parse are dropped.
pub fn parse_zones(names: &[String]) -> Vec<Tz> {
    names.iter().filter_map(|n| n.parse::<Tz>().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::window::tests::{arb_instant, arb_schedule, utc};
    use proptest::prelude::*;

    fn tz(s: &str) -> Tz {
        s.parse().unwrap()
    }

    /// The oracle: `t` itself, else the first whole minute after it that is allowed, scanning
    /// minute by minute to the horizon.
    fn scan(
        job: &Window,
        hours: Option<RecipientHours>,
        zones: &[Tz],
        t: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if allowed(job, hours, zones, t) {
            return Some(t);
        }
        let mut m =
            DateTime::from_timestamp(t.timestamp() / 60 * 60, 0).unwrap() + Duration::minutes(1);
        let end = t + Duration::days(HORIZON_DAYS);
        while m <= end {
            if allowed(job, hours, zones, m) {
                return Some(m);
            }
            m += Duration::minutes(1);
        }
        None
    }

    #[test]
    fn policy_parses() {
        assert_eq!(RecipientHours::parse_policy("off"), Ok(None));
        assert_eq!(
            RecipientHours::parse_policy("08:00-21:00"),
            Ok(Some(RecipientHours::DEFAULT))
        );
        assert!(RecipientHours::parse_policy("21:00-08:00").is_err());
        assert!(RecipientHours::parse_policy("8-21").is_err());
        assert_eq!(RecipientHours::DEFAULT.to_string(), "08:00-21:00");
        assert_eq!(
            RecipientHours::from_minutes(Some(480), Some(1260)),
            Some(RecipientHours::DEFAULT)
        );
        assert_eq!(RecipientHours::from_minutes(None, Some(1260)), None);
    }

    #[test]
    fn new_york_open_los_angeles_not() {
        // 2026-12-01 15:30Z: 10:30 EST, 07:30 PST.
        let t = utc("2026-12-01T15:30:00Z");
        let job = Window::default();
        let h = Some(RecipientHours::DEFAULT);
        assert!(allowed(&job, h, &[tz("America/New_York")], t));
        assert!(!allowed(&job, h, &[tz("America/Los_Angeles")], t));
        assert_eq!(
            next_allowed(&job, h, &[tz("America/Los_Angeles")], t),
            Some(utc("2026-12-01T16:00:00Z"))
        );
        // Both zones: allowed only when both are open (LA opens at 16:00Z, NY closes 02:00Z).
        let both = [tz("America/New_York"), tz("America/Los_Angeles")];
        assert_eq!(
            next_allowed(&job, h, &both, t),
            Some(utc("2026-12-01T16:00:00Z"))
        );
        assert_eq!(
            next_allowed(&job, h, &both, utc("2026-12-02T02:00:00Z")),
            Some(utc("2026-12-02T16:00:00Z"))
        );
        // Unknown zone: held, re-checked hourly, unless allowed.
        assert_eq!(
            verdict(&job, h, false, &[], t),
            Verdict::Defer {
                until: t + RECHECK_HELD,
                reason: DeferReason::UnknownTimezone
            }
        );
        assert_eq!(verdict(&job, h, true, &[], t), Verdict::Allowed);
        assert_eq!(verdict(&job, None, false, &[], t), Verdict::Allowed);
    }

    #[test]
    fn disjoint_zones_never_open() {
        // 08:00-09:00 in Tokyo and in New York never overlap.
        let h = RecipientHours::parse_policy("08:00-09:00").unwrap();
        let zones = [tz("Asia/Tokyo"), tz("America/New_York")];
        let t = utc("2026-12-01T00:00:00Z");
        assert_eq!(next_allowed(&Window::default(), h, &zones, t), None);
        assert!(matches!(
            verdict(&Window::default(), h, false, &zones, t),
            Verdict::Defer { reason: DeferReason::RecipientHours, until } if until == t + RECHECK_HELD
        ));
    }

    const ZONES: &[&str] = &[
        "America/New_York",
        "America/Los_Angeles",
        "America/Chicago",
        "America/Phoenix",
        "America/St_Johns",
        "Europe/London",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "America/Santiago",
        "Asia/Kolkata",
        "Pacific/Honolulu",
    ];

    fn arb_hours() -> impl Strategy<Value = Option<RecipientHours>> {
        let minute = prop_oneof![0u16..=1440, 0u16..=240, (0u16..=96).prop_map(|q| q * 15)];
        prop_oneof![
            1 => Just(None),
            2 => Just(Some(RecipientHours::DEFAULT)),
            4 => (minute.clone(), minute).prop_filter_map("empty range", |(a, b)| {
                RecipientHours::from_minutes(Some(a.min(b) as i16), Some(a.max(b) as i16)).map(Some)
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Recipient zones × job schedule × DST (the anchors sit on DST changes of 2024–2027)
        /// against the minute-by-minute oracle.
        #[test]
        fn intersection_agrees_with_minute_scan(
            schedule in prop::option::weighted(0.7, arb_schedule()),
            hours in arb_hours(),
            zones in prop::collection::vec(prop::sample::select(ZONES), 1..=3),
            t in arb_instant(),
        ) {
            let job = Window::new(schedule, None);
            let zones: Vec<Tz> = zones.iter().map(|z| tz(z)).collect();
            let got = next_allowed(&job, hours, &zones, t);
            prop_assert_eq!(got, scan(&job, hours, &zones, t));
            if let Some(at) = got {
                prop_assert!(allowed(&job, hours, &zones, at));
                prop_assert!(at >= t);
            }
        }
    }
}
