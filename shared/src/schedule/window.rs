//! Is a job's calling window open at an instant, and when does it next open or close?
//!
//! A job's window combines Vogent's weekly [`Schedule`] (slots of wall-clock time on days of
//! the week, in a timezone) with Dialgen's `scheduledStartTime` (nothing before it). Either may
//! be absent; with neither, the window is always open.
//!
//! DST rule (wall-clock): an instant is inside when its wall-clock time *in the schedule's
//! timezone* falls in a slot of that local day. So a slot edge inside a skipped hour (spring
//! forward) takes effect at the first instant after the gap (a 02:30 start opens at 03:00; a
//! slot lying wholly inside the gap does not open that day), and a slot in a repeated hour
//! (fall back) is open during both occurrences (a 01:30 end in New York closes at the first
//! 01:30, reopens at the second 01:00 and closes again at the second 01:30).
//!
//! How it is computed: [`Window::is_open`] applies the rule directly. [`Window::next_open`] and
//! [`Window::next_close`] walk local days: each slot of each day is a range of naive local
//! time, and its preimage in UTC is found piece by piece over the spans of constant UTC
//! offset (found by sampling the timezone and bisecting to the second where the offset
//! changes). The pieces are merged into UTC intervals, so the answer costs a few dozen
//! timezone look-ups instead of a minute-by-minute scan. The tests check it against that scan.

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

use crate::domain::{Schedule, Weekday};

/// How far ahead `next_open`/`next_close` look before answering "never". A weekly schedule
/// repeats every 7 days, so 8 days is enough to see every slot at least once (even a slot
/// that a DST change removed one week comes back the next).
pub const HORIZON_DAYS: i64 = 8;

/// How often the timezone's offset is sampled when looking for DST changes. Real timezones
/// never change offset twice within this span.
const OFFSET_SAMPLE_HOURS: i64 = 6;

/// A job's calling window.
#[derive(Debug, Clone, Default)]
pub struct Window {
    schedule: Option<Schedule>,
    not_before: Option<DateTime<Utc>>,
}

/// A half-open UTC interval `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// A stretch of time with one UTC offset.
#[derive(Debug, Clone, Copy)]
struct OffsetSpan {
    span: Span,
    /// Local minus UTC.
    offset: Duration,
}

impl Window {
    /// A window from an optional weekly schedule and an optional start time.
    pub fn new(schedule: Option<Schedule>, not_before: Option<DateTime<Utc>>) -> Self {
        let schedule = schedule.filter(|s| s.disable_schedule != Some(true));
        Self {
            schedule,
            not_before,
        }
    }

    /// Whether a call may start at `t`.
    pub fn is_open(&self, t: DateTime<Utc>) -> bool {
        if self.not_before.is_some_and(|start| t < start) {
            return false;
        }
        let Some(schedule) = &self.schedule else {
            return true;
        };
        let local = t.with_timezone(&schedule.timezone.0);
        let day = Weekday::from_chrono(local.weekday());
        let minute = (local.hour() * 60 + local.minute()) as u16;
        schedule
            .days
            .iter()
            .filter(|d| d.day_of_week == day)
            .flat_map(|d| &d.time_slots)
            .any(|slot| slot.start_time.minutes() <= minute && minute < slot.end_time.minutes())
    }

    /// The first instant at or after `t` when the window is open, or `None` if it does not open
    /// within [`HORIZON_DAYS`] (then it never opens).
    pub fn next_open(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let t = self.not_before.map_or(t, |start| t.max(start));
        if self.is_open(t) {
            return Some(t);
        }
        let schedule = self.schedule.as_ref()?;
        let horizon = t + Duration::days(HORIZON_DAYS);
        open_spans(schedule, t)
            .into_iter()
            .map(|s| s.start)
            .find(|start| *start > t)
            .filter(|start| *start <= horizon)
    }

    /// The first instant at or after `t` when the window is closed, or `None` if it stays open
    /// for all of the next [`HORIZON_DAYS`] (then it never closes).
    pub fn next_close(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.is_open(t) {
            return Some(t);
        }
        // Open at `t` implies `t` is past `not_before`, so only the schedule can close it.
        let schedule = self.schedule.as_ref()?;
        let horizon = t + Duration::days(HORIZON_DAYS);
        open_spans(schedule, t)
            .into_iter()
            .find(|s| s.start <= t && t < s.end)
            .map(|s| s.end)
            .filter(|end| *end <= horizon)
    }
}

/// The schedule's open intervals in UTC, merged and sorted, covering at least `t` through
/// `t + HORIZON_DAYS`.
fn open_spans(schedule: &Schedule, t: DateTime<Utc>) -> Vec<Span> {
    let tz = schedule.timezone.0;
    // Offsets are within ±1 day of UTC, so these margins cover every local day that can reach
    // into the horizon.
    let from = at_second((t - Duration::days(2)).timestamp() / 60 * 60);
    let to = at_second((t + Duration::days(HORIZON_DAYS + 2)).timestamp() / 60 * 60);
    let offsets = offset_spans(tz, from, to);
    let first_day = t.with_timezone(&tz).date_naive() - Duration::days(1);

    let mut pieces = Vec::new();
    for n in 0..=HORIZON_DAYS + 2 {
        let day = first_day + Duration::days(n);
        let weekday = Weekday::from_chrono(day.weekday());
        for slot in schedule
            .days
            .iter()
            .filter(|d| d.day_of_week == weekday)
            .flat_map(|d| &d.time_slots)
        {
            let (start, end) = (slot.start_time.minutes(), slot.end_time.minutes());
            if start >= end {
                continue;
            }
            let local_start = at_minute(day, start);
            let local_end = at_minute(day, end);
            for o in &offsets {
                // The instants of this offset span whose wall-clock time lies in the slot.
                let piece = Span {
                    start: o.span.start.max(as_utc(local_start - o.offset)),
                    end: o.span.end.min(as_utc(local_end - o.offset)),
                };
                if piece.start < piece.end {
                    pieces.push(piece);
                }
            }
        }
    }
    merge(pieces)
}

/// `minute` minutes after the local midnight that starts `day` (1440 is the next midnight).
fn at_minute(day: NaiveDate, minute: u16) -> NaiveDateTime {
    day.and_hms_opt(0, 0, 0).unwrap_or_default() + Duration::minutes(i64::from(minute))
}

fn as_utc(naive: NaiveDateTime) -> DateTime<Utc> {
    Utc.from_utc_datetime(&naive)
}

fn at_second(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

fn offset_at(tz: Tz, t: DateTime<Utc>) -> Duration {
    let secs = tz
        .offset_from_utc_datetime(&t.naive_utc())
        .fix()
        .local_minus_utc();
    Duration::seconds(i64::from(secs))
}

/// Splits `[from, to)` into spans of constant UTC offset.
fn offset_spans(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<OffsetSpan> {
    let step = Duration::hours(OFFSET_SAMPLE_HOURS);
    let mut spans = Vec::new();
    let mut span_start = from;
    let mut offset = offset_at(tz, from);
    let mut probe = from;
    while probe < to {
        let next = (probe + step).min(to);
        let next_offset = offset_at(tz, next);
        if next_offset != offset {
            // Bisect to the first whole second with the new offset (offsets change on whole
            // seconds, and `from` is a whole minute, so every probe is a whole second).
            let (mut lo, mut hi) = (probe.timestamp(), next.timestamp());
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset_at(tz, at_second(mid)) == offset {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let hi = at_second(hi);
            spans.push(OffsetSpan {
                span: Span {
                    start: span_start,
                    end: hi,
                },
                offset,
            });
            span_start = hi;
            offset = next_offset;
        }
        probe = next;
    }
    spans.push(OffsetSpan {
        span: Span {
            start: span_start,
            end: to,
        },
        offset,
    });
    spans
}

/// Sorts and joins overlapping or touching intervals.
fn merge(mut pieces: Vec<Span>) -> Vec<Span> {
    pieces.sort_by_key(|s| s.start);
    let mut merged: Vec<Span> = Vec::with_capacity(pieces.len());
    for piece in pieces {
        match merged.last_mut() {
            Some(last) if piece.start <= last.end => last.end = last.end.max(piece.end),
            _ => merged.push(piece),
        }
    }
    merged
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{DaySchedule, LocalTime, TimeSlot, Timezone};
    use proptest::prelude::*;

    /// The oracle: the first whole minute (or `t` itself) with the wanted state, scanning
    /// minute by minute up to the horizon. Obviously correct, far too slow for the scheduler.
    fn scan(w: &Window, t: DateTime<Utc>, want_open: bool) -> Option<DateTime<Utc>> {
        if w.is_open(t) == want_open {
            return Some(t);
        }
        let mut m = t
            .with_second(0)
            .and_then(|x| x.with_nanosecond(0))
            .unwrap_or(t)
            + Duration::minutes(1);
        let end = t + Duration::days(HORIZON_DAYS);
        while m <= end {
            if w.is_open(m) == want_open {
                return Some(m);
            }
            m += Duration::minutes(1);
        }
        None
    }

    fn oracle_next_open(w: &Window, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let t = w.not_before.map_or(t, |start| t.max(start));
        scan(w, t, true)
    }

    fn oracle_next_close(w: &Window, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        scan(w, t, false)
    }

    pub(crate) fn hm(s: &str) -> LocalTime {
        s.parse().unwrap()
    }

    pub(crate) fn schedule(tz: &str, days: &[(i64, &[(&str, &str)])]) -> Schedule {
        Schedule {
            days: days
                .iter()
                .map(|(d, slots)| DaySchedule {
                    day_of_week: Weekday::new(*d).unwrap(),
                    time_slots: slots
                        .iter()
                        .map(|(s, e)| TimeSlot {
                            start_time: hm(s),
                            end_time: hm(e),
                        })
                        .collect(),
                })
                .collect(),
            timezone: tz.parse().unwrap(),
            disable_schedule: None,
        }
    }

    pub(crate) fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn weekday_business_hours_in_new_york() {
        let weekdays: Vec<(i64, &[(&str, &str)])> = (1..=5)
            .map(|d| (d, &[("09:00", "12:00"), ("13:00", "17:00")][..]))
            .collect();
        let w = Window::new(Some(schedule("America/New_York", &weekdays)), None);
        // Friday 2025-06-06 16:59:30 EDT is open, closes at 17:00 EDT (21:00Z).
        let t = utc("2025-06-06T20:59:30Z");
        assert!(w.is_open(t));
        assert_eq!(w.next_close(t), Some(utc("2025-06-06T21:00:00Z")));
        // Next opening is Monday 09:00 EDT.
        assert_eq!(
            w.next_open(utc("2025-06-06T21:00:00Z")),
            Some(utc("2025-06-09T13:00:00Z"))
        );
        // The lunch gap.
        assert_eq!(
            w.next_open(utc("2025-06-09T16:00:00Z")),
            Some(utc("2025-06-09T17:00:00Z"))
        );
    }

    #[test]
    fn start_in_skipped_hour_opens_after_the_gap() {
        // Sunday 2025-03-09, New York springs forward 02:00 EST → 03:00 EDT (07:00Z).
        let w = Window::new(
            Some(schedule("America/New_York", &[(0, &[("02:30", "04:00")])])),
            None,
        );
        assert_eq!(
            w.next_open(utc("2025-03-09T05:00:00Z")),
            Some(utc("2025-03-09T07:00:00Z"))
        );
        assert_eq!(
            w.next_close(utc("2025-03-09T07:00:00Z")),
            Some(utc("2025-03-09T08:00:00Z"))
        );
        // A slot wholly inside the gap does not open that day; the next Sunday it does.
        let gap = Window::new(
            Some(schedule("America/New_York", &[(0, &[("02:10", "02:50")])])),
            None,
        );
        assert_eq!(
            gap.next_open(utc("2025-03-09T05:00:00Z")),
            Some(utc("2025-03-16T06:10:00Z"))
        );
    }

    #[test]
    fn slot_in_repeated_hour_is_open_twice() {
        // Sunday 2025-11-02, New York falls back 02:00 EDT → 01:00 EST (06:00Z); 01:00–01:59
        // happens at 05:00Z (EDT) and again at 06:00Z (EST).
        let w = Window::new(
            Some(schedule("America/New_York", &[(0, &[("00:00", "01:30")])])),
            None,
        );
        let first_close = utc("2025-11-02T05:30:00Z");
        assert_eq!(w.next_close(utc("2025-11-02T04:00:00Z")), Some(first_close));
        assert_eq!(w.next_open(first_close), Some(utc("2025-11-02T06:00:00Z")));
        assert_eq!(
            w.next_close(utc("2025-11-02T06:00:00Z")),
            Some(utc("2025-11-02T06:30:00Z"))
        );
    }

    #[test]
    fn lord_howe_half_hour_shift() {
        // Lord Howe moves 30 minutes: 2025-10-05 02:00 +10:30 → 02:30 +11:00 (15:30Z on the 4th).
        let w = Window::new(
            Some(schedule(
                "Australia/Lord_Howe",
                &[(0, &[("02:10", "03:00")])],
            )),
            None,
        );
        assert_eq!(
            w.next_open(utc("2025-10-04T14:00:00Z")),
            Some(utc("2025-10-04T15:30:00Z"))
        );
    }

    #[test]
    fn scheduled_start_and_disabled_schedule() {
        let start = utc("2030-01-01T10:00:30Z");
        let w = Window::new(None, Some(start));
        assert!(!w.is_open(utc("2030-01-01T10:00:00Z")));
        assert_eq!(w.next_open(utc("2029-01-01T00:00:00Z")), Some(start));
        assert_eq!(w.next_close(start), None);
        let mut s = schedule("UTC", &[]);
        assert_eq!(Window::new(Some(s.clone()), None).next_open(start), None);
        s.disable_schedule = Some(true);
        assert!(Window::new(Some(s), None).is_open(start));
    }

    #[test]
    fn all_day_every_day_never_closes() {
        let all: Vec<(i64, &[(&str, &str)])> =
            (0..=6).map(|d| (d, &[("00:00", "24:00")][..])).collect();
        let w = Window::new(Some(schedule("Europe/London", &all)), None);
        assert_eq!(w.next_close(utc("2025-03-30T00:59:00Z")), None);
    }

    const ZONES: &[&str] = &[
        "UTC",
        "America/New_York",
        "Europe/London",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "America/Santiago",
        "Pacific/Chatham",
        "America/Sao_Paulo",
        "Europe/Dublin",
        "America/St_Johns",
    ];

    /// Instants near DST changes (2024–2027) in the zones above, and ordinary days.
    const ANCHORS: &[&str] = &[
        "2024-03-10T07:00:00Z",
        "2024-11-03T06:00:00Z",
        "2025-03-09T07:00:00Z",
        "2025-11-02T06:00:00Z",
        "2025-03-30T01:00:00Z",
        "2025-10-26T01:00:00Z",
        "2025-04-05T15:00:00Z",
        "2025-10-04T15:30:00Z",
        "2026-04-05T03:00:00Z",
        "2026-09-06T04:00:00Z",
        "2026-09-26T14:00:00Z",
        "2027-03-14T07:00:00Z",
        "2024-07-15T12:00:00Z",
        "2027-01-20T00:00:00Z",
    ];

    fn slot() -> impl Strategy<Value = TimeSlot> {
        // Edges on any minute, biased towards the small hours where DST changes happen.
        let minute = prop_oneof![0u16..=1440, 0u16..=240, (0u16..=96).prop_map(|q| q * 15)];
        (minute.clone(), minute).prop_map(|(a, b)| TimeSlot {
            start_time: LocalTime::from_hm(a.min(b) / 60, a.min(b) % 60).unwrap(),
            end_time: LocalTime::from_hm(a.max(b) / 60, a.max(b) % 60).unwrap(),
        })
    }

    pub(crate) fn arb_schedule() -> impl Strategy<Value = Schedule> {
        let day =
            (0i64..=6, prop::collection::vec(slot(), 1..=3)).prop_map(|(d, slots)| DaySchedule {
                day_of_week: Weekday::new(d).unwrap(),
                time_slots: slots,
            });
        (
            prop::collection::vec(day, 0..=4),
            prop::sample::select(ZONES),
        )
            .prop_map(|(days, tz)| Schedule {
                days,
                timezone: tz.parse::<Timezone>().unwrap(),
                disable_schedule: None,
            })
    }

    pub(crate) fn arb_instant() -> impl Strategy<Value = DateTime<Utc>> {
        (
            prop::sample::select(ANCHORS),
            -9 * 24 * 60i64..=9 * 24 * 60,
            prop_oneof![Just(0i64), 0i64..60],
        )
            .prop_map(|(anchor, minutes, secs)| {
                utc(anchor) + Duration::minutes(minutes) + Duration::seconds(secs)
            })
    }

    /// `cargo test -p dialfleet-shared --lib bench_window -- --ignored --nocapture`
    #[test]
    #[ignore = "benchmark: prints figures"]
    fn bench_window() {
        let weekdays: Vec<(i64, &[(&str, &str)])> = (1..=5)
            .map(|d| (d, &[("09:00", "12:00"), ("13:00", "17:00")][..]))
            .collect();
        let w = Window::new(Some(schedule("America/New_York", &weekdays)), None);
        // Friday evening: the next opening is Monday, the scan's worst ordinary case.
        let t = utc("2025-03-07T22:30:00Z");
        let n = 2_000;
        let started = std::time::Instant::now();
        for i in 0..n {
            std::hint::black_box(w.next_open(t + Duration::seconds(i)));
        }
        let engine = started.elapsed() / n as u32;
        let started = std::time::Instant::now();
        for i in 0..20 {
            std::hint::black_box(oracle_next_open(&w, t + Duration::seconds(i)));
        }
        let oracle = started.elapsed() / 20;
        let started = std::time::Instant::now();
        for i in 0..n {
            std::hint::black_box(w.is_open(t + Duration::seconds(i)));
        }
        let is_open = started.elapsed() / n as u32;
        println!("next_open: slot walk {engine:?}, minute scan {oracle:?}; is_open {is_open:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn agrees_with_minute_scan(
            schedule in arb_schedule(),
            t in arb_instant(),
            start in prop::option::weighted(0.2, arb_instant()),
        ) {
            let w = Window::new(Some(schedule), start);
            prop_assert_eq!(w.next_open(t), oracle_next_open(&w, t));
            prop_assert_eq!(w.next_close(t), oracle_next_close(&w, t));
            if let Some(open) = w.next_open(t) {
                prop_assert!(w.is_open(open));
                prop_assert_eq!(w.next_close(open), oracle_next_close(&w, open));
            }
        }
    }
}
