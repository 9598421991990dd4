//! The checks every witness of the limits applies to a record of calls (the carrier-sim's
//! record, the in-process simulator's, a benchmark's): how many calls were in flight at once,
//! and how many started within one second. Written once, so a test, a benchmark and the
//! chaos suite judge invariant 4 the same way.

use chrono::{DateTime, Duration, Utc};

/// The most calls in flight at once among `calls`, each `(start, end)`; a call with no end is
/// still in flight. At equal instants an end counts before a start, so a slot handed straight
/// from one call to the next is not an overlap.
pub fn max_overlap(
    calls: impl IntoIterator<Item = (DateTime<Utc>, Option<DateTime<Utc>>)>,
) -> usize {
    let mut edges: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for (start, end) in calls {
        edges.push((start, 1));
        // A call that ends before it starts (impossible from a carrier) counts as instant.
        edges.push((end.unwrap_or(DateTime::<Utc>::MAX_UTC).max(start), -1));
    }
    edges.sort_unstable();
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, delta) in edges {
        now += delta;
        peak = peak.max(now);
    }
    // `peak` starts at 0 and only rises, so it is never negative (`now` may dip below 0 for
    // an instant call, whose end sorts first): unsigned_abs is the value itself, nothing is
    // clamped, and a u32 fits a usize on every target.
    peak.unsigned_abs() as usize
}

/// The most calls started within any one-second window `[t, t + 1 s)`, sliding, not aligned
/// to clock seconds: the strict reading of "starts in any second".
pub fn max_starts_per_second(starts: impl IntoIterator<Item = DateTime<Utc>>) -> usize {
    let mut starts: Vec<DateTime<Utc>> = starts.into_iter().collect();
    starts.sort_unstable();
    let second = Duration::seconds(1);
    let (mut first, mut peak) = (0usize, 0usize);
    for last in 0..starts.len() {
        while starts[last] - starts[first] >= second {
            first += 1;
        }
        peak = peak.max(last - first + 1);
    }
    peak
}

/// The share of `limit` lines busy in the steady state: the time-weighted mean of the calls in
/// flight from the `limit`-th start (the lines have filled once) to the last start, divided by
/// `limit`. The ramp (lines filling up at the start rate) and the tail (no contact left to
/// start while the last calls end) are outside it; they are a property of the campaign's
/// length, not of how fast a freed line is used again. `None` if fewer than `limit` calls
/// started, or none after the `limit`-th.
pub fn steady_lines_busy(
    calls: impl IntoIterator<Item = (DateTime<Utc>, DateTime<Utc>)>,
    limit: usize,
) -> Option<f64> {
    let mut edges: Vec<(DateTime<Utc>, i64)> = Vec::new();
    let mut last_start: Option<DateTime<Utc>> = None;
    for (start, end) in calls {
        edges.push((start, 1));
        edges.push((end.max(start), -1));
        last_start = last_start.max(Some(start));
    }
    edges.sort_unstable();
    let last_start = last_start?;
    let (mut now, mut started, mut from, mut area, mut at) =
        (0i64, 0usize, None, 0f64, None::<DateTime<Utc>>);
    for (t, delta) in edges {
        if t > last_start {
            break;
        }
        if let (Some(_), Some(prev)) = (from, at) {
            area += now as f64 * (t - prev).num_microseconds().unwrap_or(0) as f64;
        }
        now += delta;
        at = Some(t);
        if delta > 0 {
            started += 1;
            if started == limit {
                from = Some(t);
            }
        }
    }
    let (from, at) = (from?, at?);
    if started < limit {
        return None;
    }
    area += now as f64 * (last_start - at).num_microseconds().unwrap_or(0) as f64;
    let span = (last_start - from).num_microseconds().unwrap_or(0) as f64;
    (span > 0.0).then(|| area / (span * limit as f64))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_800_000_000_000 + ms).unwrap()
    }

    #[test]
    fn back_to_back_calls_do_not_overlap() {
        let calls = [(at(0), Some(at(100))), (at(100), Some(at(200)))];
        assert_eq!(max_overlap(calls), 1);
        let open = [(at(0), None), (at(5_000), Some(at(6_000)))];
        assert_eq!(max_overlap(open), 2);
    }

    #[test]
    fn the_window_slides() {
        let starts = [at(0), at(600), at(1_100), at(1_500)];
        assert_eq!(max_starts_per_second(starts), 3);
        assert_eq!(max_starts_per_second([]), 0);
    }

    #[test]
    fn steady_lines_busy_leaves_out_the_ramp_and_the_tail() {
        // Two lines: both busy from 100 ms; one freed line is idle for 10 ms of every 100 ms
        // until the last start at 500 ms; then the tail.
        let calls = [
            (at(0), at(200)),
            (at(100), at(300)),
            (at(210), at(410)),
            (at(300), at(500)),
            (at(420), at(900)),
            (at(500), at(950)),
        ];
        let busy = steady_lines_busy(calls.map(|(s, e)| (s, e)), 2).unwrap();
        // From 100 to 500: 2 lines except 200–210 and 410–420 (one line each): 780 of 800.
        assert!((busy - 780.0 / 800.0).abs() < 1e-9, "{busy}");
        assert_eq!(steady_lines_busy([(at(0), at(10))], 2), None);
        // Lines never all busy at once still have a steady state once `limit` calls started.
        let apart = [(at(0), at(100)), (at(150), at(250)), (at(300), at(400))];
        let busy = steady_lines_busy(apart, 2).unwrap();
        assert!((busy - 100.0 / 300.0).abs() < 1e-9, "{busy}");
    }
}
