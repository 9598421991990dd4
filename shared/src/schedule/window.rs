//! Is a job's calling window open at an instant, and when does it next open or close?
//!
//! A job's window combines Vogent's weekly [`Schedule`] (slots of wall-clock time on days of
//! the week, in a timezone) with Dialgen's `scheduledStartTime` (nothing before it). Either may
//! be absent; with neither, the window is always open.
//!
//! DST rule (wall-clock): an instant is inside when its wall-clock time *in the schedule's
//! timezone* falls in a slot of that local day. So a slot edge inside a skipped hour (spring
//! forward) takes effect at the first instant after the gap (a 02:30 start opens at 03:00), and
//! a slot in a repeated hour (fall back) is open during both occurrences.
//!
//! NOTE: this first implementation scans minute by minute (simple and obviously correct); the
//! scheduler issue replaces it with a slot-walking one and keeps this scan as the test oracle.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

use crate::domain::{Schedule, Weekday};

/// How far ahead `next_open`/`next_close` look before answering "never".
const HORIZON_DAYS: i64 = 8;

/// A job's calling window.
#[derive(Debug, Clone, Default)]
pub struct Window {
    schedule: Option<Schedule>,
    not_before: Option<DateTime<Utc>>,
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

    /// The first instant at or after `t` when the window is open, or `None` if it never opens.
    pub fn next_open(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let t = self.not_before.map_or(t, |start| t.max(start));
        self.scan(t, true)
    }

    /// The first instant at or after `t` when the window is closed, or `None` if it never closes.
    pub fn next_close(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.scan(t, false)
    }

    fn scan(&self, t: DateTime<Utc>, want_open: bool) -> Option<DateTime<Utc>> {
        if self.is_open(t) == want_open {
            return Some(t);
        }
        let mut m = t
            .with_second(0)
            .and_then(|x| x.with_nanosecond(0))
            .unwrap_or(t)
            + Duration::minutes(1);
        let end = t + Duration::days(HORIZON_DAYS);
        while m <= end {
            if self.is_open(m) == want_open {
                return Some(m);
            }
            m += Duration::minutes(1);
        }
        None
    }
}
