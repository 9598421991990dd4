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
}
