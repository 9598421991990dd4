//! The Batch Dials page's HTML, rendered on the server like the batch page
//! ([`crate::monitor::render`]): complete without JavaScript, every live part a fragment with
//! an element id, and an update over the event stream carries the same fragments.
//!
//! Each batch's row ends with an empty `<td class="actions" data-batch="ID">`: the control
//! buttons' place. The page's script keeps that cell when it puts a new version of a row in
//! place (so whatever fills it survives updates) and fires `dials:rows` on `document` after
//! each update, for the code that fills new rows' cells.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Duration, DurationRound, Utc};

use shared::domain::JobState;

use super::snapshot::{BatchRow, Snapshot, WorkspaceFigures};
use crate::batches::eta::eta;
use crate::monitor::render::{Fragments, STYLE, esc, limit_text, pct, time};

/// A snapshot and its rendering, shared by every page open on the same page of the workspace.
#[derive(Debug)]
pub struct View {
    pub snapshot: Snapshot,
    pub fragments: Fragments,
    /// `fragments` as the event stream's `data:`.
    pub json: String,
    /// `fragments` without the time of reading: two views with the same key show the same page.
    same: String,
}

impl View {
    /// Renders `snapshot`; `secret` signs the links to each batch's page.
    pub fn of(snapshot: Snapshot, secret: &[u8]) -> Self {
        let mut fragments = fragments(&snapshot, secret);
        let updated = fragments.t.remove("updated");
        let same = serde_json::to_string(&fragments).unwrap_or_default();
        if let Some(u) = updated {
            fragments.t.insert("updated", u);
        }
        let json = serde_json::to_string(&fragments).unwrap_or_default();
        Self {
            snapshot,
            fragments,
            json,
            same,
        }
    }

    /// Whether the two would show the same page (the time of reading aside).
    pub fn same_view(&self, other: &View) -> bool {
        self.same == other.same
    }
}

/// The states the page filters by, in the order its links show them.
pub const FILTERS: [JobState; 6] = [
    JobState::Created,
    JobState::Active,
    JobState::Paused,
    JobState::Completed,
    JobState::Cancelled,
    JobState::Failed,
];

/// Every live fragment of the page.
pub fn fragments(s: &Snapshot, secret: &[u8]) -> Fragments {
    let mut f = Fragments {
        t: BTreeMap::new(),
        h: BTreeMap::new(),
        w: BTreeMap::new(),
    };
    workspace_fragments(&s.workspace, s.at, &mut f);
    f.h.insert("rows", rows(s, secret));
    f.t.insert(
        "next-before",
        match (s.more, s.rows.last()) {
            (true, Some(last)) => last.batch.id.to_string(),
            _ => String::new(),
        },
    );
    f.t.insert("updated", time(s.at));
    f
}

/// The registry's state in words: "required, newest copy as of D (fresh|stale)" or "not
/// required".
pub fn registry_text(ws: &WorkspaceFigures, today: chrono::NaiveDate) -> String {
    if !ws.dnc_registry_required {
        return "not required".to_owned();
    }
    match (ws.registry_as_of, ws.registry_fresh(today)) {
        (Some(d), Some(true)) => format!("required, newest copy as of {d} (fresh)"),
        (Some(d), _) => format!(
            "required, newest copy as of {d} (stale: older than {} days, releases wait)",
            super::snapshot::REGISTRY_FRESH_DAYS
        ),
        (None, _) => "required, no copy imported (stale: releases wait)".to_owned(),
    }
}

fn workspace_fragments(ws: &WorkspaceFigures, at: DateTime<Utc>, f: &mut Fragments) {
    let Fragments { t, w, .. } = f;
    t.insert("ws-in-flight", ws.in_flight.to_string());
    t.insert("ws-lines", format!("{} lines", ws.max_concurrent_dials));
    w.insert(
        "bar-ws-lines",
        pct(ws.in_flight, i64::from(ws.max_concurrent_dials)),
    );
    let cps = ws.starts_10s as f64 / 10.0;
    let rate = ws.rate();
    t.insert("ws-cps", format!("{cps:.1}"));
    t.insert(
        "ws-rate",
        match ws.max_calls_per_second {
            Some(n) => format!("{n} calls/s · the workspace's rate"),
            None => format!("{} calls/s · no rate set: the ceiling", rate.value),
        },
    );
    w.insert(
        "bar-ws-cps",
        (cps / f64::from(rate.value.max(1)) * 100.0).clamp(0.0, 100.0),
    );
    t.insert(
        "ws-rules",
        match ws.jurisdiction_rules.as_str() {
            "federal" => "federal (only the federal rules; state law is the user's)".to_owned(),
            "strictest" => "strictest (every candidate state's rules)".to_owned(),
            other => other.to_owned(),
        },
    );
    t.insert("ws-registry", registry_text(ws, at.date_naive()));
}

/// The ETA in words, to the minute (a page updates when it changes, not every second).
fn eta_text(r: &BatchRow, ws: &WorkspaceFigures, now: DateTime<Utc>) -> String {
    let b = &r.batch;
    if b.state.is_final() {
        return b
            .completed_at
            .map_or_else(|| "ended".to_owned(), |t| format!("ended {}", minute(t)));
    }
    if b.ingest_state == shared::domain::IngestState::Ingesting {
        return "rows still arriving".to_owned();
    }
    let remaining = r.statistics.pending;
    if remaining == 0 {
        return "finishing".to_owned();
    }
    let prefix = match b.state {
        JobState::Paused => "paused; ",
        JobState::Created => "not started; ",
        _ => "",
    };
    let measured = r.starts_60s as f64 / 60.0;
    let rate = if measured > 0.0 {
        measured
    } else {
        f64::from(r.rate_limit(ws).value.max(1))
    };
    match eta(&b.window(), now, remaining as f64 / rate) {
        Some(t) => format!("{prefix}≈ {}", minute(t)),
        None => format!("{prefix}unknown"),
    }
}

fn minute(t: DateTime<Utc>) -> String {
    let t = t.duration_trunc(Duration::minutes(1)).unwrap_or(t);
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A cell cut to one line, its whole text on hover.
fn clip(text: &str) -> String {
    let t = esc(text);
    format!(r#"<td><div class="clip" title="{t}">{t}</div></td>"#)
}

fn outcomes(r: &BatchRow) -> String {
    let tl = &r.tally;
    let parts: Vec<String> = [
        ("completed", tl.completed),
        ("voicemail", tl.voicemail),
        ("busy", tl.busy),
        ("no-answer", tl.no_answer),
        ("failed", tl.failed),
        ("suppressed", tl.suppressed),
        ("cancelled", tl.cancelled),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(name, n)| format!("{n} {name}"))
    .chain((tl.retry_waiting > 0).then(|| format!("{} waiting for a retry", tl.retry_waiting)))
    .collect();
    if parts.is_empty() {
        "—".to_owned()
    } else {
        parts.join(" · ")
    }
}

fn held(r: &BatchRow) -> String {
    if r.held.is_empty() {
        return "—".to_owned();
    }
    r.held
        .iter()
        .map(|(reason, n)| format!("{n} {}", reason.replace('_', " ")))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// A relative link to the batch's page, its token valid 7 days from the start of this hour
/// (so the link, and the view, change once an hour, not at every read).
fn batch_link(id: uuid::Uuid, secret: &[u8], at: DateTime<Utc>) -> String {
    let from = at.duration_trunc(Duration::hours(1)).unwrap_or(at);
    if !crate::monitor::token::usable(secret) {
        return format!("/batch/monitor/{id}");
    }
    format!(
        "/batch/monitor/{id}?token={}",
        crate::monitor::token::issue(secret, id, from)
    )
}

fn row(r: &BatchRow, s: &Snapshot, secret: &[u8]) -> String {
    let b = &r.batch;
    let ws = &s.workspace;
    let st = &r.statistics;
    let status = format!(
        "{} · {}",
        serde_json::to_value(b.dialgen_status(s.at))
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        b.vogent_status()
    );
    let lines = r.lines_limit(ws);
    let rate = r.rate_limit(ws);
    let lines_words = limit_text(lines, "lines", "maxConcurrentDials");
    let rate_words = limit_text(rate, "calls/s", "maxCallsPerSecond");
    let name = esc(&b.name);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<tr id="row-{id}" data-batch="{id}" data-state="{state}"><td><a class="clip" href="{href}" title="{name}">{name}</a></td><td>{api}</td>{status}<td><div class="bar"><span class="done" style="width:{done}%"></span><span class="fail" style="width:{fail}%"></span><span class="canc" style="width:{canc}%"></span></div><div class="clip small">{processed} of {total} final</div></td>{outcomes}<td title="{lines_words}"><span class="lines">{in_flight}</span> / {lines_value}</td><td title="{rate_words}"><span class="cps">{cps:.1}</span> / {rate_value}</td>{held}{eta}<td class="actions" data-batch="{id}"></td></tr>"#,
        id = b.id,
        state = b.state.as_str(),
        href = esc(&batch_link(b.id, secret, s.at)),
        api = match b.surface {
            shared::domain::Surface::Vogent => "Vogent",
            shared::domain::Surface::Dialgen => "Dialgen",
        },
        status = clip(&status),
        done = pct(r.tally.completed + r.tally.voicemail, st.total),
        fail = pct(
            r.tally.busy + r.tally.no_answer + r.tally.failed + r.tally.suppressed,
            st.total
        ),
        canc = pct(r.tally.cancelled, st.total),
        processed = st.processed,
        total = st.total,
        outcomes = clip(&outcomes(r)),
        lines_words = esc(&lines_words),
        in_flight = r.in_flight,
        lines_value = lines.value,
        rate_words = esc(&rate_words),
        cps = r.starts_10s as f64 / 10.0,
        rate_value = rate.value,
        held = clip(&held(r)),
        eta = clip(&eta_text(r, ws, s.at)),
    );
    out
}

fn rows(s: &Snapshot, secret: &[u8]) -> String {
    if s.rows.is_empty() {
        return r#"<tr class="empty"><td colspan="10" class="muted">no batches</td></tr>"#
            .to_owned();
    }
    s.rows.iter().map(|r| row(r, s, secret)).collect()
}

const DIALS_STYLE: &str = r#"
main{display:block}.figures{display:grid;gap:16px;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));margin-bottom:16px}
table.dials{table-layout:fixed}table.dials td,table.dials th{vertical-align:top}.small{font-size:12px;color:var(--muted)}
table.dials a.clip{display:block}.filters a{margin-right:10px}.filters a.on{font-weight:700;color:var(--fg);text-decoration:none}
.pager{margin-top:10px}td.actions{white-space:nowrap}
td.actions button{font:inherit;font-size:12px;padding:1px 6px;margin:0 2px 2px 0;border-radius:5px;border:1px solid #9ca3af;background:#f9fafb;cursor:pointer}
td.actions button.danger{background:#fee2e2;border-color:#c62828;color:#7f1d1d}td.actions button:disabled{opacity:.4;cursor:default}td.actions .result{display:block;white-space:normal}
"#;

/// Script: puts each update in place, row by row, keeping each row's actions cell.
const SCRIPT: &str = r#"(function(){
if(!window.EventSource)return;
var live=document.getElementById('live'),body=document.getElementById('rows'),older=document.getElementById('older');
function rows(html){var t=document.createElement('tbody');t.innerHTML=html;var keep={},r,i,old,a;
for(i=0;i<body.rows.length;i++){r=body.rows[i];a=r.querySelector('td.actions');if(r.dataset.batch&&a)keep[r.dataset.batch]=a;}
for(i=0;i<t.rows.length;i++){r=t.rows[i];old=r.dataset.batch&&keep[r.dataset.batch];a=r.querySelector('td.actions');if(old&&a)r.replaceChild(old,a);}
body.replaceChildren.apply(body,Array.prototype.slice.call(t.rows));}
function pager(before){if(!older)return;if(!before){older.hidden=true;return;}var u=new URL(location.href);u.searchParams.set('before',before);older.href=u.pathname+u.search;older.hidden=false;}
var u=new URL(location.href);u.pathname=u.pathname.replace(/\/$/,'')+'/events';
var es=new EventSource(u.pathname+u.search);
es.addEventListener('update',function(e){var d=JSON.parse(e.data),k,el;
for(k in d.t){el=document.getElementById(k);if(el)el.textContent=d.t[k];}
for(k in d.w){el=document.getElementById(k);if(el)el.style.width=d.w[k]+'%';}
if(d.h.rows!==undefined)rows(d.h.rows);pager(d.t['next-before']);
live.textContent='live';document.dispatchEvent(new CustomEvent('dials:rows'));});
es.onerror=function(){live.textContent='reconnecting…';};
})();"#;

/// What a page request adds to the shared view: its own token, in the filter and pager links,
/// and on a control link the CSRF token its row buttons send.
pub struct Request<'a> {
    /// The token's parameter: `token` (read-only) or `control`.
    pub param: &'static str,
    pub token: &'a str,
    /// A control link's CSRF token (`monitor::token::csrf` of its control token).
    pub csrf: Option<String>,
}

/// The row buttons of a control link: the script fills each row's actions cell (new rows
/// too, after each update, see `dials:rows`) with pause, resume and cancel, which post to
/// `…/dials/control/{batch}/{action}` with the CSRF header, as the batch page's buttons do.
const CONTROL_SCRIPT: &str = r#"(function(){
var box=document.getElementById('dials-controls'),body=document.getElementById('rows');
if(!box||!body||!window.fetch)return;
var csrf=box.getAttribute('data-csrf'),base=location.pathname.replace(/\/$/,'')+'/control/';
function sync(c){var s=c.parentNode.getAttribute('data-state')||'',fin=/^(completed|cancelled|failed)$/.test(s),busy=c.getAttribute('data-busy')==='1';
c.querySelector('[data-action=pause]').disabled=busy||fin||s==='paused';
c.querySelector('[data-action=resume]').disabled=busy||fin||!(s==='paused'||s==='created');
c.querySelector('[data-action=cancel]').disabled=busy||fin;}
function fill(){var cells=body.querySelectorAll('td.actions'),i,c;for(i=0;i<cells.length;i++){c=cells[i];
if(!c.querySelector('button'))c.innerHTML='<button type="button" data-action="pause">Pause</button><button type="button" data-action="resume">Resume</button><button type="button" class="danger" data-action="cancel">Cancel…</button><span class="result small"></span>';
sync(c);}}
body.addEventListener('click',function(e){var b=e.target.closest('button[data-action]');if(!b)return;
var c=b.closest('td.actions'),r=c.parentNode,a=b.getAttribute('data-action'),id=c.getAttribute('data-batch'),out=c.querySelector('.result');
var name=(r.querySelector('a.clip')||{}).title||id;
if(a==='cancel'&&!window.confirm('Cancel batch "'+name+'"? No new call will start; calls already connected finish. This cannot be undone.'))return;
c.setAttribute('data-busy','1');sync(c);out.textContent=a+'…';var t0=Date.now();
fetch(base+id+'/'+a+location.search,{method:'POST',headers:{'X-Dialfleet-Csrf':csrf},credentials:'omit',cache:'no-store',referrerPolicy:'no-referrer'})
.then(function(x){return x.json().then(function(j){return {ok:x.ok,j:j};});})
.then(function(x){c.removeAttribute('data-busy');if(x.ok)out.setAttribute('data-at',x.j.at);out.textContent=x.ok?(x.j.action+' done: '+x.j.statusText+' ('+(Date.now()-t0)+' ms)'):('refused: '+((x.j.error&&x.j.error.message)||'error'));sync(c);})
.catch(function(err){c.removeAttribute('data-busy');out.textContent='failed: '+err;sync(c);});});
document.addEventListener('dials:rows',fill);fill();
})();"#;

/// The control bar and script of a control link's page; nothing on a read-only one.
fn controls(req: &Request) -> String {
    let Some(csrf) = &req.csrf else {
        return String::new();
    };
    format!(
        r#"<style>table.dials col:last-child{{width:19%!important}}</style><div class="controls" id="dials-controls" data-csrf="{}"><span class="muted">control link: each row can be paused, resumed and cancelled; anyone holding this link can act until it expires, do not share it</span></div>
"#,
        esc(csrf)
    )
}

fn query_link(req: &Request, state: Option<JobState>, before: Option<&str>) -> String {
    let mut q = format!("?{}={}", req.param, esc(req.token));
    if let Some(s) = state {
        let _ = write!(q, "&amp;status={}", s.as_str());
    }
    if let Some(b) = before {
        let _ = write!(q, "&amp;before={}", esc(b));
    }
    q
}

fn filters(s: &Snapshot, req: &Request) -> String {
    let current = s.key.state;
    let mut out = String::from(r#"<div class="filters">status: "#);
    let class = |on: bool| if on { r#" class="on""# } else { "" };
    let _ = write!(
        out,
        r#"<a href="{}"{}>all</a>"#,
        query_link(req, None, None),
        class(current.is_none())
    );
    for st in FILTERS {
        let _ = write!(
            out,
            r#"<a href="{}"{} id="filter-{name}">{name}</a>"#,
            query_link(req, Some(st), None),
            class(current == Some(st)),
            name = st.as_str()
        );
    }
    out.push_str("</div>");
    out
}

/// The whole page.
pub fn page(view: &View, req: &Request) -> String {
    let s = &view.snapshot;
    let f = &view.fragments;
    let t = |id: &str| esc(f.t.get(id).map(String::as_str).unwrap_or(""));
    let w = |id: &str| f.w.get(id).copied().unwrap_or(0.0);
    let next = f.t.get("next-before").cloned().unwrap_or_default();
    let older = if next.is_empty() {
        r#"<a id="older" hidden>older batches →</a>"#.to_owned()
    } else {
        format!(
            r#"<a id="older" href="{}">older batches →</a>"#,
            query_link(req, s.key.state, Some(&next))
        )
    };
    let newest = if s.key.before.is_some() {
        format!(
            r#"<a id="newest" href="{}">← newest</a> · "#,
            query_link(req, s.key.state, None)
        )
    } else {
        String::new()
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer"><title>Batch Dials · {ws_name} · dialfleet</title><style>{STYLE}{DIALS_STYLE}</style></head>
<body>
<header><h1><span class="clip" title="{ws_name}">Batch Dials · {ws_name}</span></h1>
<div class="meta">workspace <code>{ws_id}</code> · every batch of both APIs, newest first</div>
{controls}</header>
<main>
<div class="figures">
<section class="card"><h2>Lines</h2><div class="kv"><div><span>calls in flight (all batches)</span><b><span id="ws-in-flight">{in_flight}</span> / <span id="ws-lines">{lines}</span></b></div></div>
<div class="bar"><span class="use" id="bar-ws-lines" style="width:{bl}%"></span></div></section>
<section class="card"><h2>Rate</h2><div class="kv"><div><span>calls per second (last 10 s)</span><b><span id="ws-cps">{cps}</span> / <span id="ws-rate">{rate}</span></b></div></div>
<div class="bar"><span class="use" id="bar-ws-cps" style="width:{bc}%"></span></div></section>
<section class="card"><h2>Compliance policy</h2><div class="kv"><div><span>jurisdiction rules</span><b class="clip" id="ws-rules">{rules}</b></div><div><span>do-not-call registry</span><b class="clip" id="ws-registry" title="{registry}">{registry}</b></div></div></section>
</div>
<section class="card wide"><h2>Batches</h2>{filters}
<table class="dials"><colgroup><col style="width:16%"><col style="width:6%"><col style="width:12%"><col style="width:9%"><col style="width:15%"><col style="width:6%"><col style="width:6%"><col style="width:10%"><col style="width:12%"><col style="width:8%"></colgroup>
<thead><tr><th>name</th><th>API</th><th>status</th><th>progress</th><th>outcomes</th><th>lines</th><th>calls/s</th><th>held</th><th>ETA</th><th>actions</th></tr></thead>
<tbody id="rows">{rows}</tbody></table>
<div class="pager">{newest}{older}<span id="next-before" hidden>{next}</span></div></section>
</main>
<footer>updated <span id="updated">{updated}</span> · <span id="live">static</span> · figures are read at most every refresh interval and pushed to this page as they change</footer>
<script>{SCRIPT}</script>{control_script}
</body></html>"#,
        controls = controls(req),
        control_script = if req.csrf.is_some() {
            format!("<script>{CONTROL_SCRIPT}</script>")
        } else {
            String::new()
        },
        ws_name = esc(&s.workspace.name),
        ws_id = s.key.workspace,
        in_flight = t("ws-in-flight"),
        lines = t("ws-lines"),
        bl = w("bar-ws-lines"),
        cps = t("ws-cps"),
        rate = t("ws-rate"),
        bc = w("bar-ws-cps"),
        rules = t("ws-rules"),
        registry = t("ws-registry"),
        filters = filters(s, req),
        rows = f.h.get("rows").cloned().unwrap_or_default(),
        next = esc(&next),
        updated = t("updated"),
    )
}

/// The 403 page: a missing, forged or expired link.
pub fn denied(reason: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Access denied · dialfleet Batch Dials</title><style>{STYLE}</style></head>
<body><header><h1>Access denied</h1><div class="meta">dialfleet Batch Dials</div></header>
<main><section class="card wide"><h2>403 Forbidden</h2><p id="denied">{}.</p>
<p class="muted">Open this page through a link minted by <code>POST /api/workspace/dashboard_link</code> (with the workspace's API key) or <code>api-gateway workspace dashboard-link ID</code>: it opens that workspace's page only, until it expires.</p></section></main></body></html>"#,
        esc(reason)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn ws(required: bool, as_of: Option<NaiveDate>) -> WorkspaceFigures {
        WorkspaceFigures {
            name: "w".into(),
            max_concurrent_dials: 5,
            max_calls_per_second: None,
            cps_ceiling: 30,
            jurisdiction_rules: "strictest".into(),
            dnc_registry_required: required,
            registry_as_of: as_of,
            in_flight: 0,
            starts_10s: 0,
        }
    }

    #[test]
    fn the_registry_is_fresh_for_31_days_then_stale() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let today = d("2026-12-31");
        assert_eq!(registry_text(&ws(false, None), today), "not required");
        assert_eq!(
            registry_text(&ws(true, Some(d("2026-11-30"))), today),
            "required, newest copy as of 2026-11-30 (fresh)"
        );
        assert!(
            registry_text(&ws(true, Some(d("2026-11-29"))), today)
                .starts_with("required, newest copy as of 2026-11-29 (stale")
        );
        assert!(registry_text(&ws(true, None), today).contains("no copy imported (stale"));
    }
}
