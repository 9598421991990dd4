//! The figures of one scenario, from the carrier-sim's record (the witness), the database and
//! the API.

use std::collections::{HashMap, HashSet};

use carrier_sim::record::CallRecord;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What one scenario measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    pub scenario: String,
    pub contacts: usize,
    pub calls: usize,
    /// Contacts not final by the deadline.
    pub lost: i64,
    /// Distinct contacts seen `released` for more than 20 s (outside the fault) and the longest.
    pub stranded: usize,
    pub stranded_max_s: f64,
    /// Numbers called again after being answered on their first call.
    pub double_dialed: usize,
    pub max_overlap: usize,
    pub job_limit: u32,
    pub workspace_limit: u32,
    /// The largest excess over the limit, and for how long the limit was exceeded in total.
    pub overshoot: usize,
    pub overshoot_ms: i64,
    pub max_starts_per_s: usize,
    pub cps_limit: u32,
    /// Calls in the record whose attempt row the database does not have (a commit lost, as an
    /// asynchronous standby's promotion can lose it).
    pub missing_attempts: usize,
    /// The batch reached `completed`.
    pub completed: bool,
    /// The API's answered count (succeeded + voicemail) and attempt count agree with the record.
    pub counts_agree: bool,
    pub api_succeeded: i64,
    pub record_succeeded: usize,
    pub dead_letters: u32,
    /// Longest gap between call starts from the fault to the last call (s).
    pub max_gap_s: f64,
    /// From the end of the fault (restart, heal) to the next call start (s).
    pub recovery_s: Option<f64>,
    pub duration_s: f64,
    /// Anything else the scenario checks (idempotency, ingest figures, errors).
    pub notes: Vec<String>,
    /// The violations found; empty when it passed.
    pub violations: Vec<String>,
    /// Set when the scenario is known to fail until issue #17 lands.
    pub known: Option<String>,
    /// Violations of what #17 fixes, reported but not failing the run (`--tolerate-17`).
    pub tolerated: Vec<String>,
}

/// The records of one scenario's numbers.
pub fn calls_of(all: &[CallRecord], numbers: &HashSet<String>) -> Vec<CallRecord> {
    let mut calls: Vec<CallRecord> = all
        .iter()
        .filter(|c| numbers.contains(&c.to))
        .cloned()
        .collect();
    calls.sort_by_key(|c| c.requested_at);
    calls
}

/// Numbers called again after the first call was answered.
pub fn double_dialed(calls: &[CallRecord]) -> usize {
    let mut by_number: HashMap<&str, Vec<&CallRecord>> = HashMap::new();
    for c in calls {
        by_number.entry(c.to.as_str()).or_default().push(c);
    }
    by_number
        .values()
        .filter(|v| v.len() > 1 && v[0].answered_at.is_some())
        .count()
}

/// The largest excess over `limit` and the total time above it (ms).
pub fn overshoot(calls: &[CallRecord], limit: usize) -> (usize, i64) {
    let mut events: Vec<(DateTime<Utc>, i32)> = Vec::with_capacity(calls.len() * 2);
    for c in calls {
        events.push((c.requested_at, 1));
        events.push((c.ended_at.max(c.requested_at), -1));
    }
    events.sort();
    let (mut now, mut worst, mut above_ms) = (0i32, 0usize, 0i64);
    let mut since: Option<DateTime<Utc>> = None;
    for (t, d) in events {
        now += d;
        let over = usize::try_from(now).unwrap_or(0).saturating_sub(limit);
        worst = worst.max(over);
        match (over > 0, since) {
            (true, None) => since = Some(t),
            (false, Some(s)) => {
                above_ms += (t - s).num_milliseconds();
                since = None;
            }
            _ => {}
        }
    }
    (worst, above_ms)
}

/// The longest gap between consecutive starts at or after `from` (up to `until` when given: a
/// campaign still unfinished then), and the first start at or after `healed` (seconds after it).
pub fn gaps(
    calls: &[CallRecord],
    from: Option<DateTime<Utc>>,
    healed: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> (f64, Option<f64>) {
    let Some(from) = from else {
        return (0.0, None);
    };
    let mut starts: Vec<DateTime<Utc>> = calls.iter().map(|c| c.requested_at).collect();
    starts.sort();
    let mut prev = from;
    let mut max_gap = 0.0f64;
    for s in starts.iter().filter(|s| **s >= from) {
        max_gap = max_gap.max((*s - prev).num_milliseconds() as f64 / 1000.0);
        prev = *s;
    }
    if let Some(until) = until {
        max_gap = max_gap.max((until - prev).num_milliseconds() as f64 / 1000.0);
    }
    let recovery = healed.and_then(|h| {
        starts
            .iter()
            .find(|s| **s >= h)
            .map(|s| (*s - h).num_milliseconds() as f64 / 1000.0)
    });
    (max_gap, recovery)
}

/// Fills in the violations from the figures. With `tolerate_17`, what issue #17 fixes (lost,
/// stranded, not completed, counts, dead letters) is listed under `tolerated` instead: the
/// limits, double dials and idempotency are still enforced.
pub fn judge(f: &mut Figures, tolerate_17: bool) {
    let mut v: Vec<String> = Vec::new();
    if f.lost > 0 {
        v.push(format!("{} lost", f.lost));
    }
    if f.stranded > 0 {
        v.push(format!(
            "{} stranded (max {:.1} s)",
            f.stranded, f.stranded_max_s
        ));
    }
    if tolerate_17 {
        f.tolerated.append(&mut v);
    }
    if f.double_dialed > 0 {
        v.push(format!("{} double-dialed", f.double_dialed));
    }
    if f.overshoot > 0 {
        v.push(format!(
            "concurrency {} > {} for {} ms",
            f.max_overlap,
            f.job_limit.min(f.workspace_limit),
            f.overshoot_ms
        ));
    }
    if f.max_starts_per_s > f.cps_limit as usize {
        v.push(format!("rate {} > {}", f.max_starts_per_s, f.cps_limit));
    }
    let mut pending = Vec::new();
    if !f.completed {
        pending.push("batch not completed".into());
    }
    if !f.counts_agree {
        pending.push(format!(
            "API/record disagree (succeeded {} vs {})",
            f.api_succeeded, f.record_succeeded
        ));
    }
    if f.dead_letters > 0 {
        pending.push(format!("{} dead-lettered", f.dead_letters));
    }
    if tolerate_17 {
        f.tolerated.append(&mut pending);
    }
    f.violations.extend(v);
    f.violations.extend(pending);
}

/// The Markdown table.
pub fn table(all: &[Figures]) -> String {
    let mut out = String::from(
        "| scenario | contacts | calls | lost | stranded | double | overlap / limit | overshoot | max starts/s / cps | completed | counts agree | DLQ | max gap s | recovery s | result |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | --- |\n",
    );
    for f in all {
        let result = if f.violations.is_empty() && !f.tolerated.is_empty() {
            format!("pass (tolerated until #17: {})", f.tolerated.join("; "))
        } else if f.violations.is_empty() {
            "pass".to_owned()
        } else {
            let mut r = format!("FAIL: {}", f.violations.join("; "));
            if let Some(k) = &f.known {
                r.push_str(&format!(" (known: {k})"));
            }
            r
        };
        let result = if f.notes.is_empty() {
            result
        } else {
            format!("{result} — {}", f.notes.join("; "))
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {}{} | {} | {} / {} | {} | {} / {} | {} | {} | {} | {:.1} | {} | {} |\n",
            f.scenario,
            f.contacts,
            f.calls,
            f.lost,
            f.stranded,
            if f.stranded > 0 { format!(" ({:.0} s)", f.stranded_max_s) } else { String::new() },
            f.double_dialed,
            f.max_overlap,
            f.job_limit.min(f.workspace_limit),
            if f.overshoot > 0 { format!("+{} for {} ms", f.overshoot, f.overshoot_ms) } else { "0".into() },
            f.max_starts_per_s,
            f.cps_limit,
            if f.completed { "yes" } else { "no" },
            if f.counts_agree { "yes" } else { "no" },
            f.dead_letters,
            f.max_gap_s,
            f.recovery_s.map_or("–".into(), |r| format!("{r:.1}")),
            result.replace('|', "/"),
        ));
    }
    out
}
