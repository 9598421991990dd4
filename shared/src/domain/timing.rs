//! The one rule for a call's duration and for the times every API surface shows
//! (docs/api.md#states-and-outcomes):
//!
//! - **duration**: whole seconds from answered to ended, rounded to the nearest second (half
//!   up); `0` for a call that ended without being answered; `None` (JSON `null`) while the call
//!   has not ended. Our own timestamps are the source, not the carrier's `CallDuration`, so the
//!   figure is the same wherever it is computed.
//! - **times**: RFC 3339 in UTC with exactly three fractional digits
//!   (`2026-12-01T21:34:29.123Z`), truncated to the millisecond.

use chrono::{DateTime, SecondsFormat, Utc};

/// A call's duration in whole seconds (see the module's rule).
pub fn call_duration_secs(
    answered_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
) -> Option<i64> {
    let ended = ended_at?;
    let Some(answered) = answered_at else {
        return Some(0);
    };
    let ms = (ended - answered).num_milliseconds().max(0);
    Some((ms + 500) / 1000)
}

/// A time as every surface shows it: RFC 3339, UTC, milliseconds.
pub fn api_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// [`api_time`] of an optional time.
pub fn api_time_opt(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(api_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn durations_round_to_whole_seconds() {
        let a = at("2026-12-01T10:00:00.300Z");
        assert_eq!(
            call_duration_secs(Some(a), Some(at("2026-12-01T10:00:02.302Z"))),
            Some(2)
        );
        assert_eq!(
            call_duration_secs(Some(a), Some(at("2026-12-01T10:00:02.800Z"))),
            Some(3)
        );
        assert_eq!(call_duration_secs(None, Some(a)), Some(0), "unanswered");
        assert_eq!(call_duration_secs(Some(a), None), None, "not ended");
        assert_eq!(
            call_duration_secs(Some(a), Some(at("2026-12-01T10:00:00.100Z"))),
            Some(0),
            "clock skew never makes a negative duration"
        );
    }

    #[test]
    fn times_have_millisecond_precision() {
        let t: DateTime<Utc> = "2026-12-01T21:34:29.123456789Z".parse().unwrap();
        assert_eq!(api_time(t), "2026-12-01T21:34:29.123Z");
        assert_eq!(
            api_time("2026-12-01T21:34:29Z".parse().unwrap()),
            "2026-12-01T21:34:29.000Z"
        );
    }
}
