//! When a batch should be done: its remaining work spent inside its calling window. Pure, so the
//! counts (`stats`) and the monitor page (`monitor::render`) share one estimate.

use chrono::{DateTime, Duration, Utc};

use shared::schedule::Window;

/// When the batch should be done, if calls go on at `rate` calls per second while its window
/// is open: `seconds_of_work` is spent only inside the window's open spans, walked from `now`.
/// `None`: the window does not open within its horizon, or the end is more than ten years away.
///
/// The walk is bounded: after the first week of spans, whole weeks of the same open time are
/// skipped at once (a DST change makes that an approximation of an hour at most, which an ETA
/// can carry), so months of work cost two weeks of spans, not months.
pub fn eta(window: &Window, now: DateTime<Utc>, seconds_of_work: f64) -> Option<DateTime<Utc>> {
    if !seconds_of_work.is_finite() || seconds_of_work < 0.0 {
        return None;
    }
    // Beyond ten years the figure means nothing; it also keeps the arithmetic in range.
    let mut left = Duration::milliseconds((seconds_of_work.min(3.2e8) * 1000.0) as i64);
    let mut t = now;
    let week_end = now + Duration::days(7);
    let mut open_in_first_week = Duration::zero();
    let mut skipped = false;
    // A weekly schedule has a few dozen spans a week; two weeks of them bound the walk.
    for _ in 0..1_000 {
        if !skipped && t >= week_end && open_in_first_week > Duration::zero() {
            skipped = true;
            let weeks = (left.num_seconds() / open_in_first_week.num_seconds().max(1)).max(0);
            if weeks > 520 {
                return None;
            }
            t += Duration::days(7 * weeks);
            left -= open_in_first_week * weeks as i32;
            continue;
        }
        let open = window.next_open(t)?;
        let Some(close) = window.next_close(open) else {
            return Some(open + left);
        };
        let span = close - open;
        if span >= left {
            return Some(open + left);
        }
        left -= span;
        if !skipped && open < week_end {
            open_in_first_week += span.min(week_end - open);
        }
        t = close;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::schedule::StoredSchedule;

    fn window(json: serde_json::Value) -> Window {
        StoredSchedule::load(Some(json), "UTC").window(None)
    }

    #[test]
    fn the_eta_spends_work_only_inside_the_window() {
        // Open 09:00–10:00 UTC on every day.
        let days: Vec<_> = (0..7)
            .map(|d| serde_json::json!({"dayOfWeek": d, "timeSlots": [{"startTime": "09:00", "endTime": "10:00"}]}))
            .collect();
        let w = window(serde_json::json!({"days": days, "timezone": "UTC"}));
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        // 30 minutes of work at 09:45: 15 today, 15 tomorrow from 09:00.
        assert_eq!(
            eta(&w, at("2026-03-02T09:45:00Z"), 1800.0),
            Some(at("2026-03-03T09:15:00Z"))
        );
        // Closed now: the work starts when the window opens.
        assert_eq!(
            eta(&w, at("2026-03-02T11:00:00Z"), 600.0),
            Some(at("2026-03-03T09:10:00Z"))
        );
        // Months of work at an hour a day: about 90 days later, found without walking them all.
        let far = eta(&w, at("2026-03-02T11:00:00Z"), 90.0 * 3600.0).unwrap();
        let days = (far - at("2026-03-02T11:00:00Z")).num_hours() as f64 / 24.0;
        assert!((88.0..=91.0).contains(&days), "{days} days");
        // No schedule: always open.
        let always = Window::new(None, None);
        assert_eq!(
            eta(&always, at("2026-03-02T11:00:00Z"), 60.0),
            Some(at("2026-03-02T11:01:00Z"))
        );
    }
}
