//! The monitor page's HTML, rendered on the server: the first paint is complete without
//! JavaScript, and every live part is a *fragment* with an element id. An update over the event
//! stream carries the same fragments (rendered once per change for every page open, see `hub`),
//! which the page's few lines of inline script put in place. Nothing is loaded from elsewhere:
//! styles, the chart (inline SVG) and the script are all in the page.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use shared::domain::CallOutcome;
use shared::domain::timing::call_duration_secs;

use super::snapshot::{Binds, Limit, SERIES, Snapshot};
use crate::batches::eta::eta;

/// One live part of the page.
#[derive(Debug, Clone, Serialize)]
pub struct Fragments {
    /// Element id → text.
    pub t: BTreeMap<&'static str, String>,
    /// Element id → inner HTML.
    pub h: BTreeMap<&'static str, String>,
    /// Element id → width in percent (the bars).
    pub w: BTreeMap<&'static str, f64>,
}

/// A snapshot and its rendering, shared by every page open on the batch.
#[derive(Debug)]
pub struct View {
    pub snapshot: Snapshot,
    pub fragments: Fragments,
    /// `fragments` as the event stream's `data:`.
    pub json: String,
}

impl View {
    /// Renders `snapshot`.
    pub fn of(snapshot: Snapshot) -> Self {
        let fragments = fragments(&snapshot);
        let json = serde_json::to_string(&fragments).unwrap_or_default();
        Self {
            snapshot,
            fragments,
            json,
        }
    }
}

const COLORS: [&str; SERIES.len()] = [
    "#2e7d32", "#81c784", "#f9a825", "#8e24aa", "#c62828", "#9e9e9e", "#1e88e5",
];

/// HTML-escapes text.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn time_opt(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "—".to_owned(), time)
}

/// `2h 05m`, `3m 10s`, `12s`.
pub fn span(d: Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
        s if s >= 3600 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

pub fn pct(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        0.0
    } else {
        ((part as f64 / whole as f64) * 1000.0)
            .round()
            .clamp(0.0, 1000.0)
            / 10.0
    }
}

/// `part / whole` in percent to one decimal, or "—" while there is no denominator: a ratio of
/// nothing is not 0 %.
fn ratio(part: i64, whole: i64) -> String {
    if whole <= 0 {
        "—".to_owned()
    } else {
        format!("{:.1}%", pct(part, whole))
    }
}

/// An effective limit in words: its value, then which setting binds (and the other's value).
pub fn limit_text(limit: Limit, unit: &str, batch_setting: &str) -> String {
    let Limit {
        value,
        binds,
        other,
    } = limit;
    match (binds, other) {
        (Binds::Batch, Some(ws)) => {
            format!("{value} {unit} · the batch's {batch_setting} (workspace: {ws})")
        }
        (Binds::Batch, None) => format!("{value} {unit} · the batch's {batch_setting}"),
        (Binds::Workspace, Some(own)) => {
            format!("{value} {unit} · the workspace's limit (batch asks {own})")
        }
        (Binds::Workspace, None) => format!("{value} {unit} · the workspace's limit"),
        (Binds::Both, _) => format!("{value} {unit} · batch and workspace alike"),
        (Binds::Ceiling, _) => format!("{value} {unit} · the workspace's ceiling"),
    }
}

/// Shows the last four digits only: the link can travel further than the API key.
fn masked(number: &str) -> String {
    let n = number.chars().count();
    if n <= 4 {
        return number.to_owned();
    }
    let tail: String = number.chars().skip(n - 4).collect();
    let head: String = number.chars().take(2.min(n - 4)).collect();
    format!("{head}•••{tail}")
}

fn in_local(t: DateTime<Utc>, tz: &str) -> String {
    match tz.parse::<chrono_tz::Tz>() {
        Ok(zone) if zone != chrono_tz::UTC => format!(
            "{} ({})",
            t.with_timezone(&zone).format("%a %Y-%m-%d %H:%M %Z"),
            time(t)
        ),
        _ => t.format("%a %Y-%m-%d %H:%M UTC").to_string(),
    }
}

/// The window's state and the ETA, in words.
fn schedule_and_eta(s: &Snapshot) -> (String, String) {
    let b = &s.batch;
    let window = b.window();
    let now = s.at;
    let open = window.is_open(now);
    // A final batch dials no more: its window's state would say nothing true about it.
    let window_text = if b.state.is_final() {
        "— (the batch has ended)".to_owned()
    } else if open {
        match window.next_close(now) {
            Some(close) => format!(
                "open — closes {} (in {})",
                in_local(close, &b.timezone),
                span(close - now)
            ),
            None => "open".to_owned(),
        }
    } else {
        match window.next_open(now) {
            Some(next) => format!(
                "closed — next opens {} (in {})",
                in_local(next, &b.timezone),
                span(next - now)
            ),
            None => "closed — the schedule does not open again".to_owned(),
        }
    };
    let remaining = s.statistics.pending;
    let eta_text = if let Some(hold) = s.hold_reason {
        format!(
            "held ({hold}): the workspace relies on the national do-not-call registry and has no copy from the last 31 days; nothing is called until a fresh copy is imported"
        )
    } else if b.state.is_final() {
        match b.completed_at {
            Some(t) => format!("ended {}", time(t)),
            None => "ended".to_owned(),
        }
    } else if remaining == 0 {
        "finishing".to_owned()
    } else {
        let measured = s.starts_60s as f64 / 60.0;
        let (rate, how) = if measured > 0.0 {
            (measured, "at the last minute's rate")
        } else {
            (
                f64::from(s.rate_limit().value.max(1)),
                "at the full effective rate, once calls flow",
            )
        };
        let prefix = match b.state {
            shared::domain::JobState::Paused => "paused; ",
            shared::domain::JobState::Created => "not started; ",
            _ => "",
        };
        // Contacts deferred by the recipient hours or a frequency cap wait for their minute,
        // whatever the rate.
        let held = s.held_until.filter(|h| *h > now);
        match eta(&window, now, remaining as f64 / rate) {
            Some(t) if held.is_some_and(|h| h > t) => {
                let h = held.unwrap_or(t);
                format!(
                    "{prefix}≈ {} (in {}): deferred contacts wait for their recipients' calling hours or a frequency cap",
                    time(h),
                    span(h - now)
                )
            }
            Some(t) => format!(
                "{prefix}≈ {} (in {}), {how}; first attempts only",
                time(t),
                span(t - now)
            ),
            None => format!(
                "{prefix}unknown (the window does not open within 8 days, or the end is years away)"
            ),
        }
    };
    (window_text, eta_text)
}

/// Every live fragment of the page.
pub fn fragments(s: &Snapshot) -> Fragments {
    let mut f = Fragments {
        t: BTreeMap::new(),
        h: BTreeMap::new(),
        w: BTreeMap::new(),
    };
    progress_fragments(s, &mut f);
    count_fragments(s, &mut f);
    capacity_fragments(s, &mut f);
    let (window_text, eta_text) = schedule_and_eta(s);
    f.t.insert("window", window_text);
    f.t.insert("eta", eta_text);
    f.t.insert("updated", time(s.at));
    f.h.insert("chart", chart_svg(s));
    f.h.insert("recent", recent_rows(s));
    f
}

/// The status pill's text: Dialgen's status at `at`, then Vogent's (`paused · PAUSED`).
pub fn status_text(b: &crate::batches::model::Batch, at: DateTime<Utc>) -> String {
    format!(
        "{} · {}",
        serde_json::to_value(b.dialgen_status(at))
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        b.vogent_status()
    )
}

/// The status, the times and the progress bar with its text.
fn progress_fragments(s: &Snapshot, f: &mut Fragments) {
    let b = &s.batch;
    let st = &s.statistics;
    let tl = &s.tally;
    let Fragments { t, w, .. } = f;
    t.insert("status", status_text(b, s.at));
    t.insert("started", time_opt(b.started_at));
    t.insert("completed-at", time_opt(b.completed_at));
    // The same ratios as `statistics`, "—" until they have a denominator.
    let decided = st.succeeded + st.voicemail + st.failed;
    t.insert(
        "progress-text",
        format!(
            "{} of {} contacts final ({}) · success rate {}",
            st.processed,
            st.total,
            ratio(st.processed, st.total),
            ratio(st.succeeded, decided)
        ),
    );
    w.insert("progress-done", pct(tl.completed + tl.voicemail, st.total));
    w.insert(
        "progress-failed",
        pct(tl.busy + tl.no_answer + tl.failed + tl.suppressed, st.total),
    );
    w.insert("progress-cancelled", pct(tl.cancelled, st.total));
}

/// The counts of contacts, by final result and by state and outcome.
fn count_fragments(s: &Snapshot, f: &mut Fragments) {
    let b = &s.batch;
    let st = &s.statistics;
    let tl = &s.tally;
    for (id, n) in [
        ("n-total", st.total),
        ("n-succeeded", st.succeeded),
        ("n-voicemail-all", st.voicemail),
        ("n-failed-all", st.failed),
        ("n-cancelled-all", st.cancelled),
        ("n-pending", st.pending),
        ("n-queued", tl.queued),
        ("n-retry", tl.retry_waiting),
        ("n-deferred", tl.deferred),
        // One definition of a call in flight, the capacity's: an attempt without an outcome.
        // Contacts handed to a dial worker that have no call yet wait for a line or a token.
        ("n-in-progress", s.in_flight),
        ("n-waiting", (tl.in_progress - s.in_flight).max(0)),
        ("n-completed", tl.completed),
        ("n-voicemail", tl.voicemail),
        ("n-busy", tl.busy),
        ("n-no-answer", tl.no_answer),
        ("n-failed", tl.failed),
        ("n-suppressed", tl.suppressed),
        ("n-cancelled", tl.cancelled),
        ("n-rejected", i64::from(b.rejected_rows)),
    ] {
        f.t.insert(id, n.to_string());
    }
}

/// Calls in flight and per second against the batch's and the workspace's limits.
fn capacity_fragments(s: &Snapshot, f: &mut Fragments) {
    let Fragments { t, w, .. } = f;
    t.insert("in-flight", s.in_flight.to_string());
    t.insert("ws-in-flight", s.workspace_in_flight.to_string());
    let lines = s.lines_limit();
    let rate = s.rate_limit();
    t.insert(
        "limit-lines",
        limit_text(lines, "lines", "maxConcurrentDials"),
    );
    t.insert(
        "limit-cps",
        limit_text(rate, "calls/s", "maxCallsPerSecond"),
    );
    t.insert(
        "ws-limit-lines",
        s.workspace_max_concurrent_dials.to_string(),
    );
    t.insert(
        "ws-limit-cps",
        s.workspace_max_calls_per_second.map_or_else(
            || format!("none (ceiling {})", s.workspace_cps_ceiling),
            |n| n.to_string(),
        ),
    );
    w.insert("bar-in-flight", pct(s.in_flight, i64::from(lines.value)));
    w.insert(
        "bar-ws-in-flight",
        pct(
            s.workspace_in_flight,
            i64::from(s.workspace_max_concurrent_dials),
        ),
    );
    let cps = s.calls_per_second();
    t.insert("cps", format!("{cps:.1}"));
    w.insert(
        "bar-cps",
        (cps / f64::from(rate.value.max(1)) * 100.0).clamp(0.0, 100.0),
    );
}

/// Bucket sizes in minutes, as a person reads them.
const BUCKET_MINUTES: [i64; 14] = [
    1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080,
];

/// The chart's axis: its first bucket's start (Unix seconds), minutes per bucket and buckets.
///
/// The axis runs from the first call's minute to now (to the end, for a final batch), at
/// least [`MIN_MINUTES`] long, so a campaign of a minute is one narrow bar, not a full-width
/// block; the bucket is the smallest of [`BUCKET_MINUTES`] that fits the whole life in
/// `MAX_BARS` bars: minutes for a campaign of an hour or two, then 5, 15, 60 minutes… as it
/// grows. Seconds are not possible: the chart reads the per-minute aggregate (migration V17),
/// never the attempts.
fn buckets(s: &Snapshot, first: i64, last: i64) -> (i64, i64, i64) {
    const MAX_BARS: i64 = 120;
    const MIN_MINUTES: i64 = 15;
    let end = if s.batch.state.is_final() {
        s.batch.completed_at.unwrap_or(s.at)
    } else {
        s.at
    };
    let end = (end.timestamp() - end.timestamp().rem_euclid(60)).max(last);
    let minutes = ((end - first) / 60 + 1).max(MIN_MINUTES);
    let per_bar = BUCKET_MINUTES
        .into_iter()
        .find(|n| (minutes + n - 1) / n <= MAX_BARS)
        .unwrap_or((minutes + MAX_BARS - 1) / MAX_BARS);
    let origin = first - first.rem_euclid(per_bar * 60);
    let bars = (first + (minutes - 1) * 60 - origin) / (per_bar * 60) + 1;
    (origin, per_bar, bars)
}

/// "1 minute", "5 minutes", "2 hours", "1 day".
fn bucket_words(minutes: i64) -> String {
    let (n, unit) = match minutes {
        m if m % 1440 == 0 => (m / 1440, "day"),
        m if m % 60 == 0 => (m / 60, "hour"),
        m => (m, "minute"),
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

fn chart_svg(s: &Snapshot) -> String {
    const W: f64 = 960.0;
    const H: f64 = 200.0;
    let minutes = &s.chart.minutes;
    let (Some((&first, _)), Some((&last, _))) =
        (minutes.first_key_value(), minutes.last_key_value())
    else {
        return format!(
            r##"<svg viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="no calls yet"><text x="{x}" y="{y}" text-anchor="middle" fill="#777">no calls yet</text></svg>"##,
            x = W / 2.0,
            y = H / 2.0
        );
    };
    let (origin, per_bar, bars) = buckets(s, first, last);
    let mut sums = vec![[0i64; SERIES.len()]; bars as usize];
    for (minute, counts) in minutes {
        let i = (((minute - origin) / 60) / per_bar).clamp(0, bars - 1) as usize;
        for (k, n) in counts.iter().enumerate() {
            sums[i][k] += n;
        }
    }
    let top = sums
        .iter()
        .map(|c| c.iter().sum::<i64>())
        .max()
        .unwrap_or(1)
        .max(1);
    let (left, bottom, plot_h) = (44.0, H - 22.0, H - 34.0);
    let bar_w = (W - left - 4.0) / bars as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="calls per {bucket} by outcome" font-size="11" font-family="sans-serif"><text x="{mid}" y="{ly}" text-anchor="middle" fill="#555" id="chart-bucket">each bar: {bucket}</text>"##,
        bucket = bucket_words(per_bar),
        mid = (W + 44.0) / 2.0,
        ly = H - 6.0
    );
    let _ = write!(
        svg,
        r##"<line x1="{left}" y1="{bottom}" x2="{W}" y2="{bottom}" stroke="#bbb"/><text x="{x}" y="16" text-anchor="end" fill="#555">{top}</text><text x="{x}" y="{bottom}" text-anchor="end" fill="#555">0</text>"##,
        x = left - 6.0
    );
    for (i, counts) in sums.iter().enumerate() {
        let mut y = bottom;
        let x = left + i as f64 * bar_w;
        for (k, n) in counts.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            let bh = *n as f64 / top as f64 * plot_h;
            y -= bh;
            let _ = write!(
                svg,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}" fill="{c}"><title>{n} {name}</title></rect>"##,
                bw = (bar_w - 1.0).max(0.5),
                c = COLORS[k],
                name = SERIES[k]
            );
        }
    }
    let label = |ts: i64| {
        DateTime::<Utc>::from_timestamp(ts, 0)
            .map(|t| t.format("%H:%M").to_string())
            .unwrap_or_default()
    };
    let end = origin + (bars * per_bar - 1) * 60;
    let _ = write!(
        svg,
        r##"<text x="{left}" y="{ly}" fill="#555">{a}</text><text x="{W}" y="{ly}" text-anchor="end" fill="#555">{b} UTC</text></svg>"##,
        ly = H - 6.0,
        a = label(origin),
        b = label(end)
    );
    svg
}

fn recent_rows(s: &Snapshot) -> String {
    if s.recent.is_empty() {
        return r#"<tr><td colspan="6" class="muted">no calls yet</td></tr>"#.to_owned();
    }
    let mut out = String::new();
    for c in &s.recent {
        let outcome = c.outcome.map_or("in progress", CallOutcome::as_str);
        let class = outcome.replace(' ', "-");
        let duration = call_duration_secs(c.answered_at, c.ended_at)
            .map_or_else(|| "—".to_owned(), |d| format!("{d} s"));
        let name = esc(c.contact_name.as_deref().unwrap_or("—"));
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td class="clip" title="{name}">{name}</td><td>{}</td><td>{}</td><td><span class="o o-{}">{}</span></td><td>{}</td></tr>"#,
            c.created_at.format("%H:%M:%S"),
            esc(&masked(&c.to_number)),
            c.attempt_no,
            esc(&class),
            esc(outcome),
            duration
        );
    }
    out
}

pub const STYLE: &str = r#"
:root{--fg:#1d2430;--muted:#6b7280;--line:#e5e7eb;--card:#fff;--bg:#f5f6f8}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);background:var(--bg)}
header{padding:18px 24px;background:#111827;color:#f9fafb}header h1{margin:0;font-size:20px;display:flex;align-items:center;gap:8px;min-width:0}
.clip{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;min-width:0}header h1 .pill{flex:none;margin-left:0}
.meta .clip{display:inline-block;max-width:24em;vertical-align:bottom}
.controls{margin-top:10px;display:flex;flex-wrap:wrap;align-items:center;gap:8px;font-size:13px}.controls .muted{color:#9ca3af}
.controls button{font:inherit;padding:4px 12px;border-radius:6px;border:1px solid #9ca3af;background:#f9fafb;color:#111827;cursor:pointer}
.controls button.danger{background:#fee2e2;border-color:#c62828;color:#7f1d1d}.controls button:disabled{opacity:.45;cursor:default}
header .meta{color:#cbd5e1;font-size:13px;margin-top:4px}.pill{display:inline-block;padding:1px 10px;border-radius:99px;background:#2563eb;color:#fff;font-size:12px;margin-left:8px;vertical-align:2px}
main{padding:18px 24px;display:grid;gap:16px;grid-template-columns:repeat(auto-fit,minmax(300px,1fr))}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px;min-width:0}.wide{grid-column:1/-1}
h2{font-size:13px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);margin:0 0 10px}
.bar{height:12px;background:#e5e7eb;border-radius:6px;overflow:hidden;display:flex}.bar span{display:block;height:100%}
.done{background:#2e7d32}.fail{background:#c62828}.canc{background:#9e9e9e}.use{background:#2563eb}
table{border-collapse:collapse;width:100%}table.fixed{table-layout:fixed}td,th{padding:4px 6px;border-bottom:1px solid var(--line);text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums;font-weight:600}.muted{color:var(--muted)}
.kv div{display:flex;justify-content:space-between;gap:12px;padding:3px 0}.kv b{font-weight:600;text-align:right}
.o{padding:0 8px;border-radius:99px;font-size:12px;background:#eee}.o-completed{background:#c8e6c9}.o-voicemail{background:#dcedc8}
.o-busy{background:#fff3c4}.o-no-answer{background:#e1bee7}.o-failed,.o-unknown{background:#ffcdd2}.o-in-progress{background:#bbdefb}
.legend span{display:inline-block;margin-right:12px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px}
footer{padding:0 24px 18px;color:var(--muted);font-size:12px}
"#;

const SCRIPT: &str = r#"(function(){
if(!window.EventSource)return;
var live=document.getElementById('live');
var es=new EventSource(location.pathname.replace(/\/$/,'')+'/events'+location.search);
es.addEventListener('update',function(e){var d=JSON.parse(e.data),k,el;
for(k in d.t){el=document.getElementById(k);if(el)el.textContent=d.t[k];}
for(k in d.h){el=document.getElementById(k);if(el)el.innerHTML=d.h[k];}
for(k in d.w){el=document.getElementById(k);if(el)el.style.width=d.w[k]+'%';}
live.textContent='live';});
es.onerror=function(){live.textContent='reconnecting…';};
})();"#;

/// The buttons' few lines: a cancel is confirmed first; each action is one `fetch` with the
/// CSRF header (no cookie: `credentials:'omit'`), and its answer (or refusal) is shown at once,
/// before the event stream brings the figures. The buttons follow the status pill.
const CONTROL_SCRIPT: &str = r#"(function(){
var box=document.getElementById('controls'),st=document.getElementById('status'),out=document.getElementById('control-result');
if(!box||!window.fetch)return;
var csrf=box.getAttribute('data-csrf'),busy=false;
function btn(a){return document.getElementById('btn-'+a);}
function sync(){var s=(st.textContent||'').split(' ')[0],fin=/^(completed|cancelled|failed)$/.test(s);
btn('pause').disabled=busy||fin||s==='paused';btn('resume').disabled=busy||fin||!(s==='paused'||s==='pending');btn('cancel').disabled=busy||fin;}
new MutationObserver(sync).observe(st,{childList:true,characterData:true,subtree:true});sync();
function act(a){
if(a==='cancel'&&!window.confirm('Cancel this batch? No new call will start; calls already connected finish. This cannot be undone.'))return;
busy=true;sync();out.textContent=a+'…';var t0=Date.now();
fetch(location.pathname.replace(/\/$/,'')+'/control/'+a+location.search,{method:'POST',headers:{'X-Dialfleet-Csrf':csrf},credentials:'omit',cache:'no-store',referrerPolicy:'no-referrer'})
.then(function(r){return r.json().then(function(j){return {ok:r.ok,j:j};});})
.then(function(x){busy=false;if(x.ok){st.textContent=x.j.statusText;out.setAttribute('data-at',x.j.at);out.textContent=x.j.action+' done: '+x.j.statusText+' ('+(Date.now()-t0)+' ms)';}
else{out.textContent='refused: '+((x.j.error&&x.j.error.message)||'error');}sync();})
.catch(function(e){busy=false;out.textContent='failed: '+e;sync();});}
['pause','resume','cancel'].forEach(function(a){btn(a).addEventListener('click',function(){act(a);});});
})();"#;

/// The whole page of one batch, read-only.
pub fn page(view: &View) -> String {
    page_of(view, "")
}

/// The page of a control link: the same, with the pause, resume and cancel buttons and the
/// CSRF token their requests carry.
pub fn page_with_controls(view: &View, csrf: &str) -> String {
    let controls = format!(
        r#"<div class="controls" id="controls" data-csrf="{csrf}"><button type="button" id="btn-pause" data-action="pause">Pause</button><button type="button" id="btn-resume" data-action="resume">Resume</button><button type="button" class="danger" id="btn-cancel" data-action="cancel">Cancel batch…</button><span id="control-result" role="status" aria-live="polite"></span><span class="muted">control link: anyone holding it can act until it expires; do not share it</span></div>
<script>{CONTROL_SCRIPT}</script>
"#,
        csrf = esc(csrf)
    );
    page_of(view, &controls)
}

fn page_of(view: &View, controls: &str) -> String {
    let s = &view.snapshot;
    let p = Paint(&view.fragments);
    [
        head(s, &p, controls),
        progress_card(&p),
        counters_card(&p),
        capacity_card(&p),
        schedule_card(s, &p),
        tail(s, &p),
    ]
    .concat()
}

/// A view's fragments as the first paint writes them into the page.
struct Paint<'a>(&'a Fragments);

impl Paint<'_> {
    /// A text fragment, escaped.
    fn t(&self, id: &str) -> String {
        esc(self.0.t.get(id).map(String::as_str).unwrap_or(""))
    }

    /// An HTML fragment.
    fn h(&self, id: &str) -> String {
        self.0.h.get(id).cloned().unwrap_or_default()
    }

    /// A bar's width in percent.
    fn w(&self, id: &str) -> f64 {
        self.0.w.get(id).copied().unwrap_or(0.0)
    }

    /// A row of the counters table.
    fn counter(&self, label: &str, id: &str) -> String {
        format!(
            r#"<tr><td>{label}</td><td class="n" id="{id}">{}</td></tr>"#,
            self.t(id)
        )
    }
}

/// The document head and the batch's header, up to the opening of `<main>`.
fn head(s: &Snapshot, p: &Paint, controls: &str) -> String {
    let b = &s.batch;
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer"><title>{name} · dialfleet monitor</title><style>{STYLE}</style></head>
<body>
<header><h1><span class="clip" title="{name}">{name}</span><span class="pill" id="status">{status}</span></h1>
<div class="meta">batch <code>{id}</code> · {surface} · agent <span class="clip" title="{agent}">{agent}</span> · created {created} · started <span id="started">{started}</span> · completed <span id="completed-at">{completed_at}</span></div>
{controls}</header>
<main>
"#,
        name = esc(&b.name),
        status = p.t("status"),
        controls = controls,
        id = b.id,
        surface = b.surface.as_str(),
        agent = esc(s.agent_name.as_deref().unwrap_or("—")),
        created = time(b.created_at),
        started = p.t("started"),
        completed_at = p.t("completed-at"),
    )
}

/// The progress card: the bar and the final counts.
fn progress_card(p: &Paint) -> String {
    format!(
        r#"<section class="card wide"><h2>Progress</h2>
<div class="bar" aria-label="progress"><span class="done" id="progress-done" style="width:{pd}%"></span><span class="fail" id="progress-failed" style="width:{pf}%"></span><span class="canc" id="progress-cancelled" style="width:{pc}%"></span></div>
<p id="progress-text">{progress_text}</p>
<div class="kv"><div><span>contacts</span><b id="n-total">{total}</b></div><div><span>succeeded (a person answered)</span><b id="n-succeeded">{succeeded}</b></div><div><span>voicemail (a machine answered)</span><b id="n-voicemail-all">{voicemail_all}</b></div><div><span>failed</span><b id="n-failed-all">{failed_all}</b></div><div><span>cancelled</span><b id="n-cancelled-all">{cancelled_all}</b></div><div><span>not final yet</span><b id="n-pending">{pending}</b></div></div>
</section>
"#,
        pd = p.w("progress-done"),
        pf = p.w("progress-failed"),
        pc = p.w("progress-cancelled"),
        progress_text = p.t("progress-text"),
        total = p.t("n-total"),
        succeeded = p.t("n-succeeded"),
        voicemail_all = p.t("n-voicemail-all"),
        failed_all = p.t("n-failed-all"),
        cancelled_all = p.t("n-cancelled-all"),
        pending = p.t("n-pending"),
    )
}

/// The card of contacts by state and outcome.
fn counters_card(p: &Paint) -> String {
    format!(
        r#"<section class="card"><h2>Contacts by state and outcome</h2><table>
{queued}{retry}{deferred}{in_progress}{waiting}{completed}{voicemail}{busy}{no_answer}{failed}{suppressed}{cancelled}{rejected}
</table></section>
"#,
        queued = p.counter("queued", "n-queued"),
        retry = p.counter("&nbsp;&nbsp;of which waiting for a retry", "n-retry"),
        deferred = p.counter(
            "&nbsp;&nbsp;of which deferred by a compliance rule",
            "n-deferred"
        ),
        in_progress = p.counter("calls in flight", "n-in-progress"),
        waiting = p.counter("handed to a dialer, no call yet", "n-waiting"),
        completed = p.counter("completed", "n-completed"),
        voicemail = p.counter("voicemail", "n-voicemail"),
        busy = p.counter("busy", "n-busy"),
        no_answer = p.counter("no-answer", "n-no-answer"),
        failed = p.counter("failed", "n-failed"),
        suppressed = p.counter("suppressed", "n-suppressed"),
        cancelled = p.counter("cancelled", "n-cancelled"),
        rejected = p.counter("rejected at ingest", "n-rejected"),
    )
}

/// The capacity card: lines and calls per second, the batch's and the workspace's.
fn capacity_card(p: &Paint) -> String {
    format!(
        r#"<section class="card"><h2>Capacity</h2><div class="kv">
<div><span>calls in flight (this batch)</span><b><span id="in-flight">{in_flight}</span> / <span id="limit-lines">{limit_lines}</span></b></div>
<div class="bar"><span class="use" id="bar-in-flight" style="width:{bif}%"></span></div>
<div><span>calls in flight (workspace, all its batches)</span><b><span id="ws-in-flight">{ws_in_flight}</span> / <span id="ws-limit-lines">{ws_max}</span> lines · the workspace's limit</b></div>
<div class="bar"><span class="use" id="bar-ws-in-flight" style="width:{bwif}%"></span></div>
<div><span>calls per second (last 10 s)</span><b><span id="cps">{cps}</span> / <span id="limit-cps">{limit_cps}</span></b></div>
<div class="bar"><span class="use" id="bar-cps" style="width:{bcps}%"></span></div>
<div><span>workspace calls-per-second limit</span><b id="ws-limit-cps">{ws_cps}</b></div>
</div></section>
"#,
        in_flight = p.t("in-flight"),
        limit_lines = p.t("limit-lines"),
        bif = p.w("bar-in-flight"),
        ws_in_flight = p.t("ws-in-flight"),
        ws_max = p.t("ws-limit-lines"),
        bwif = p.w("bar-ws-in-flight"),
        cps = p.t("cps"),
        limit_cps = p.t("limit-cps"),
        bcps = p.w("bar-cps"),
        ws_cps = p.t("ws-limit-cps"),
    )
}

/// The schedule and ETA card.
fn schedule_card(s: &Snapshot, p: &Paint) -> String {
    let b = &s.batch;
    format!(
        r#"<section class="card"><h2>Schedule and ETA</h2><div class="kv">
<div><span>timezone</span><b>{tz}</b></div>
<div><span>window</span><b id="window">{window}</b></div>
<div><span>ETA</span><b id="eta">{eta}</b></div>
</div></section>
"#,
        tz = esc(&b.timezone),
        window = p.t("window"),
        eta = p.t("eta"),
    )
}

/// The chart, the recent calls, the footer and the script.
fn tail(s: &Snapshot, p: &Paint) -> String {
    let b = &s.batch;
    let legend: String = SERIES
        .iter()
        .zip(COLORS)
        .map(|(name, c)| format!(r#"<span><i style="background:{c}"></i>{name}</span>"#))
        .collect();
    format!(
        r#"<section class="card wide"><h2>Calls over time by outcome</h2><div id="chart">{chart}</div><div class="legend">{legend}</div></section>
<section class="card wide"><h2>20 most recent calls</h2><table class="fixed"><colgroup><col style="width:13%"><col style="width:29%"><col style="width:17%"><col style="width:10%"><col style="width:17%"><col style="width:14%"></colgroup><thead><tr><th>started (UTC)</th><th>contact</th><th>{number_column}</th><th>attempt</th><th>outcome</th><th>duration</th></tr></thead><tbody id="recent">{recent}</tbody></table></section>
</main>
<footer>updated <span id="updated">{updated}</span> · <span id="live">static</span> · figures are recomputed at most every refresh interval and pushed to this page as they change</footer>
<script>{SCRIPT}</script>
</body></html>"#,
        chart = p.h("chart"),
        number_column = match b.surface {
            shared::domain::Surface::Vogent => "toNumber",
            shared::domain::Surface::Dialgen => "phoneNumber",
        },
        recent = p.h("recent"),
        updated = p.t("updated"),
    )
}

/// The 401 page: a missing, wrong or expired token.
pub fn denied(reason: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Access denied · dialfleet monitor</title><style>{STYLE}</style></head>
<body><header><h1>Access denied</h1><div class="meta">dialfleet batch monitor</div></header>
<main><section class="card wide"><h2>401 Unauthorized</h2><p id="denied">{}.</p>
<p class="muted">Open the monitor through the batch's <code>links.dashboard</code>: the link carries a token valid for 7 days for that batch only. A fresh link comes with every <code>GET /api/batch_dial_jobs/{{id}}</code> and every Dialgen batch created.</p></section></main></body></html>"#,
        esc(reason)
    )
}

/// The page when the figures cannot be read now (the database is unavailable).
pub fn unavailable() -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5"><title>Unavailable · dialfleet monitor</title><style>{STYLE}</style></head>
<body><header><h1>Temporarily unavailable</h1><div class="meta">dialfleet batch monitor</div></header>
<main><section class="card wide"><p>The batch's figures cannot be read right now. This page tries again in 5 seconds.</p></section></main></body></html>"#
    )
}
