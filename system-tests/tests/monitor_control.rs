//! The monitor page's control in a real browser (issue 27), across every role and judged by
//! the carrier simulator's record: a read-only link shows no buttons and its POSTs are refused;
//! a control link's buttons pause, resume and cancel (a cancel asks first), and no call starts
//! more than 1 s after a pause or a cancel. And the page's staleness, measured: change → DOM
//! over 50 changes (status, counts, pause, cancel, limits), printed as p50/p99/max.
//!
//! Screenshots of the running and the finished page go to `docs/` with `UPDATE_SCREENSHOTS=1`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use system_tests::stack::Stack;
use testkit::browser::Browser;
use testkit::http::SendJson;

/// How long a test waits for the page to show an answer. The goal is 1 s and the tests print
/// what they measure; this bound only catches a page that stopped following, so that a loaded
/// machine cannot fail it. Invariant 6 (no call starts more than 1 s after a pause or a cancel)
/// is asserted exactly, on the carrier's record.
const UI_BOUND: Duration = Duration::from_secs(5);

/// A Dialgen batch of `n` contacts whose calls are all answered (last digits 0–5).
async fn batch(stack: &Stack, n: usize, lines: i32) -> String {
    batch_from(stack, n, lines, 0).await
}

/// The same, its numbers from `+1201555{first}` on (so two batches' calls can be told apart).
async fn batch_from(stack: &Stack, n: usize, lines: i32, first: usize) -> String {
    let contacts: Vec<Value> = (0..n)
        .map(|i| json!({"phoneNumber": format!("+1201555{:04}", first + (i / 6) * 10 + i % 6), "name": format!("Contact {i}")}))
        .collect();
    let body = json!({"agentId": stack.agent, "userId": "u", "contacts": contacts,
                      "options": {"maxConcurrentDials": lines, "maxCallsPerSecond": 5}});
    let created: Value = stack.post("/api/v1/batch", body).send_json().await;
    created["batchId"]
        .as_str()
        .unwrap_or_else(|| panic!("no batch created: {created}"))
        .to_owned()
}

async fn mint(stack: &Stack, id: &str, control: bool) -> String {
    let v: Value = stack
        .post(
            &format!("/api/v1/batch/{id}/dashboard_link?control={control}"),
            json!(null),
        )
        .send_json()
        .await;
    v["url"].as_str().unwrap().to_owned()
}

async fn wait_text(browser: &Browser, id: &str, within: Duration, done: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let t = browser.text(id).await;
        if done(&t) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "#{id} still {t:?} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn live(browser: &Browser) {
    wait_text(browser, "live", Duration::from_secs(10), |t| t == "live").await;
}

/// Calls the simulator recorded as started after `t` (each call is recorded once it ends).
fn started_after(stack: &Stack, t: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    stack
        .calls()
        .iter()
        .map(|c| c.requested_at)
        .filter(|at| *at > t)
        .collect()
}

/// When the gateway answered the last action shown in the element `css` selects: the page
/// keeps the answer's `at` (server time, after the change committed) in `data-at`.
async fn answered_at(browser: &Browser, css: &str) -> DateTime<Utc> {
    let at = browser
        .eval(&format!(
            "return document.querySelector({css:?}).getAttribute('data-at');"
        ))
        .await;
    at.as_str()
        .unwrap_or_else(|| panic!("no answer time in {css}: {at}"))
        .parse()
        .unwrap()
}

/// Clicks `action`'s button and waits for its answer on the page (printed: the goal is 1 s).
/// Returns when the gateway answered it, the time invariant 6 counts from.
async fn click(browser: &Browser, action: &str) -> DateTime<Utc> {
    let clicked = Utc::now();
    browser.click(&format!("#btn-{action}")).await;
    wait_text(browser, "control-result", UI_BOUND, |t| {
        t.starts_with(&format!("{action} done"))
    })
    .await;
    println!(
        "{action}: answered on the page {} ms after the click ({})",
        (Utc::now() - clicked).num_milliseconds(),
        browser.text("control-result").await
    );
    answered_at(browser, "#control-result").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_control_link_pauses_resumes_and_cancels_and_a_read_only_link_cannot() {
    let stack = Stack::builder("monitor-control")
        .workspace_limit(3)
        .talk_ms(400)
        .start()
        .await;
    let id = batch(&stack, 400, 3).await;
    let view = mint(&stack, &id, false).await;
    let control = mint(&stack, &id, true).await;
    let browser = Browser::start_keeping_dialogs().await;

    // The read-only link: no buttons, and a POST from its page (or anywhere) is refused.
    browser.goto(&view).await;
    live(&browser).await;
    let buttons = browser
        .eval("return document.querySelectorAll('#controls, button').length")
        .await;
    assert_eq!(buttons, 0, "a read-only page has no buttons");
    for action in ["pause", "resume", "cancel"] {
        let status = browser
            .eval_async(&format!(
                "var done = arguments[0]; fetch(location.pathname + '/control/{action}' + location.search, \
                 {{method: 'POST', headers: {{'X-Dialfleet-Csrf': 'x'}}}}).then(r => done(r.status), e => done(String(e)));"
            ))
            .await;
        assert_eq!(status, 403, "{action} from the read-only page");
        let (path, query) = view.split_once('?').unwrap();
        let r = stack
            .http
            .post(format!("{path}/control/{action}?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{action} with the read-only link");
    }

    // The control link: calls are flowing.
    browser.goto(&control).await;
    live(&browser).await;
    stack
        .wait_for("calls", Duration::from_secs(30), async || {
            stack.calls().len() >= 6
        })
        .await;
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        browser.save_screenshot("monitor-control.png").await;
    }

    // Pause: no call starts more than 1 s after the click.
    let paused = click(&browser, "pause").await;
    wait_text(&browser, "status", UI_BOUND, |t| t.starts_with("paused")).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let late = started_after(&stack, paused + chrono::Duration::seconds(1));
    assert!(late.is_empty(), "calls started after the pause: {late:?}");
    let status: Value = stack
        .get(&format!("/api/v1/batch/{id}/status"))
        .send_json()
        .await;
    assert_eq!(status["status"], "paused");

    // Resume: calls start again.
    let resumed = click(&browser, "resume").await;
    stack
        .wait_for(
            "calls after the resume",
            Duration::from_secs(10),
            async || !started_after(&stack, resumed).is_empty(),
        )
        .await;

    // Cancel asks first; dismissed, nothing changes.
    browser.click("#btn-cancel").await;
    let asked = browser
        .dialog()
        .await
        .expect("a cancel asks for confirmation");
    assert!(asked.contains("Cancel this batch"), "{asked}");
    browser.answer_dialog(false).await;
    let status: Value = stack
        .get(&format!("/api/v1/batch/{id}/status"))
        .send_json()
        .await;
    assert_eq!(
        status["status"], "processing",
        "a dismissed cancel cancels nothing"
    );

    // Confirmed: no call starts more than 1 s after it.
    let confirmed = Utc::now();
    browser.click("#btn-cancel").await;
    assert!(browser.dialog().await.is_some());
    browser.answer_dialog(true).await;
    wait_text(&browser, "control-result", UI_BOUND, |t| {
        t.starts_with("cancel done")
    })
    .await;
    println!(
        "cancel: answered on the page {} ms after the confirmation was opened",
        (Utc::now() - confirmed).num_milliseconds()
    );
    let cancelled = answered_at(&browser, "#control-result").await;
    wait_text(&browser, "status", UI_BOUND, |t| t.starts_with("cancelled")).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let late = started_after(&stack, cancelled + chrono::Duration::seconds(1));
    assert!(late.is_empty(), "calls started after the cancel: {late:?}");
    assert!(
        stack.calls().len() < 400,
        "the cancel left contacts uncalled"
    );
    // Every button is off on a final batch.
    let enabled = browser
        .eval("return Array.from(document.querySelectorAll('#controls button')).filter(b => !b.disabled).length")
        .await;
    assert_eq!(enabled, 0);
}

/// The page's watched figures as they change: `[id, text, Date.now()]` for each change of
/// `status`, `n-succeeded` or `limit-lines`, recorded by a MutationObserver as the event
/// stream's update lands in the DOM. Returns the browser's clock at install.
const OBSERVE: &str = "window.__log = []; var ids = ['status', 'n-succeeded', 'limit-lines'], last = {}; \
    ids.forEach(function (i) { last[i] = document.getElementById(i).textContent; }); \
    new MutationObserver(function () { var t = Date.now(); ids.forEach(function (i) { \
      var x = document.getElementById(i).textContent; if (x !== last[i]) { last[i] = x; window.__log.push([i, x, t]); } }); }) \
    .observe(document.body, {subtree: true, childList: true, characterData: true}); return Date.now();";

/// What the observer has seen: (element id, text, browser time).
async fn seen(browser: &Browser) -> Vec<(String, String, DateTime<Utc>)> {
    let log = browser.eval("return window.__log;").await;
    log.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e[0].as_str().unwrap().to_owned(),
                e[1].as_str().unwrap().to_owned(),
                DateTime::from_timestamp_millis(e[2].as_i64().unwrap()).unwrap(),
            )
        })
        .collect()
}

/// Makes a change at once (the request is sent at the returned time) and waits until the
/// page shows `id` with a text that `shows` accepts; returns change → DOM.
async fn measure(
    browser: &Browser,
    id: &str,
    shows: impl Fn(&str) -> bool,
    change: reqwest::RequestBuilder,
) -> chrono::Duration {
    let at = Utc::now();
    let r = change.send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some((_, _, t)) = seen(browser)
            .await
            .into_iter()
            .find(|(i, x, t)| i == id && *t >= at && shows(x))
        {
            return t - at;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "#{id} did not change within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn staleness_change_to_dom_over_50_changes() {
    let stack = Stack::builder("monitor-staleness")
        .workspace_limit(20)
        .talk_ms(300)
        .start()
        .await;
    let id = batch(&stack, 400, 2).await;
    let small = batch_from(&stack, 6, 2, 5000).await;
    let browser = Browser::start_keeping_dialogs().await;
    browser.goto(&mint(&stack, &id, false).await).await;
    live(&browser).await;
    let installed =
        DateTime::from_timestamp_millis(browser.eval(OBSERVE).await.as_i64().unwrap()).unwrap();
    let mut lags: Vec<(&str, i64)> = Vec::new();

    // Counts: the k-th call of this batch to end (the simulator's clock) → the page shows at
    // least k contacts succeeded. Twenty calls that end after the observer is installed.
    let mine = |c: &&carrier_sim::record::CallRecord| c.to[8..].parse::<usize>().unwrap() < 5000;
    stack
        .wait_for("20 calls ended", Duration::from_secs(60), async || {
            stack
                .calls()
                .iter()
                .filter(mine)
                .filter(|c| c.ended_at > installed)
                .count()
                > 21
        })
        .await;
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        browser.save_screenshot("monitor-running.png").await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut ends: Vec<DateTime<Utc>> = stack
        .calls()
        .iter()
        .filter(mine)
        .map(|c| c.ended_at)
        .collect();
    ends.sort();
    let log = seen(&browser).await;
    for (k, ended) in ends
        .iter()
        .enumerate()
        .filter(|(_, e)| **e > installed)
        .take(20)
    {
        let shown = log
            .iter()
            .find(|(i, x, _)| i == "n-succeeded" && x.parse::<usize>().unwrap() > k)
            .unwrap_or_else(|| panic!("call {k} never shown"))
            .2;
        lags.push(("count", (shown - *ended).num_milliseconds()));
    }

    // Status and limits: ten rounds of pause, a limit change while paused, resume.
    let dialgen = |action: &str| stack.post(&format!("/api/v1/batch/{id}/{action}"), json!(null));
    for round in 0..10 {
        let lag = measure(
            &browser,
            "status",
            |t| t.starts_with("paused"),
            dialgen("pause"),
        )
        .await;
        lags.push(("pause", lag.num_milliseconds()));
        let lines = 3 + round % 2;
        let put = stack
            .http
            .put(format!("{}/api/batch_dial_jobs/{id}", stack.gateway))
            .bearer_auth(&stack.key)
            .json(&json!({"maxConcurrentDials": lines}));
        let lag = measure(
            &browser,
            "limit-lines",
            |t| t.starts_with(&format!("{lines} lines")),
            put,
        )
        .await;
        lags.push(("limit", lag.num_milliseconds()));
        let lag = measure(
            &browser,
            "status",
            |t| t.starts_with("processing"),
            dialgen("resume"),
        )
        .await;
        lags.push(("resume", lag.num_milliseconds()));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let lag = measure(
        &browser,
        "status",
        |t| t.starts_with("cancelled"),
        dialgen("cancel"),
    )
    .await;
    lags.push(("cancel", lag.num_milliseconds()));

    let mut all: Vec<i64> = lags.iter().map(|(_, ms)| *ms).collect();
    all.sort();
    let n = all.len();
    assert!(n >= 50, "{n} changes");
    let p = |q: f64| all[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    for kind in ["count", "pause", "limit", "resume", "cancel"] {
        let mut k: Vec<i64> = lags
            .iter()
            .filter(|(w, _)| *w == kind)
            .map(|(_, ms)| *ms)
            .collect();
        k.sort();
        println!(
            "{kind}: {} changes, median {} ms, max {} ms",
            k.len(),
            k[k.len() / 2],
            k[k.len() - 1]
        );
    }
    println!(
        "change -> DOM over {n} changes: p50 {} ms, p99 {} ms, max {} ms",
        p(0.5),
        p(0.99),
        all[n - 1]
    );
    // Not a timing assertion: a sanity bound far above the goal (1 s at p99), so that a page
    // that stopped following at all fails.
    assert!(all[n - 1] < 5_000, "{lags:?}");

    // The small batch has finished: its page, as a finished batch shows.
    stack
        .wait_for(
            "the small batch to complete",
            Duration::from_secs(60),
            async || {
                let v: Value = stack
                    .get(&format!("/api/v1/batch/{small}/status"))
                    .send_json()
                    .await;
                v["status"] == "completed"
            },
        )
        .await;
    browser.goto(&mint(&stack, &small, true).await).await;
    live(&browser).await;
    let enabled = browser
        .eval("return Array.from(document.querySelectorAll('#controls button')).filter(b => !b.disabled).length")
        .await;
    assert_eq!(enabled, 0, "no action on a completed batch");
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        browser.save_screenshot("monitor-finished.png").await;
    }
}

/// The text of the first element `css` selects ("" when there is none).
async fn text_of(browser: &Browser, css: &str) -> String {
    browser
        .eval(&format!(
            "var e = document.querySelector({css:?}); return e ? e.textContent : '';"
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits (up to `within`) until the element `css` selects has a text `done` accepts.
async fn wait_css(browser: &Browser, css: &str, within: Duration, done: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let t = text_of(browser, css).await;
        if done(&t) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{css} still {t:?} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_batch_dials_rows_pause_resume_and_cancel_with_a_control_link() {
    let stack = Stack::builder("dials-control")
        .workspace_limit(3)
        .talk_ms(400)
        .start()
        .await;
    let id = batch(&stack, 400, 3).await;
    let mint_ws = async |control: bool| {
        let v: Value = stack
            .post(
                &format!("/api/workspace/dashboard_link?control={control}"),
                json!({}),
            )
            .send_json()
            .await;
        v["url"].as_str().unwrap().to_owned()
    };
    let browser = Browser::start_keeping_dialogs().await;

    // Read-only: the actions cells stay empty.
    browser.goto(&mint_ws(false).await).await;
    live(&browser).await;
    let buttons = browser
        .eval("return document.querySelectorAll('td.actions button').length")
        .await;
    assert_eq!(buttons, 0, "a read-only Batch Dials page has no buttons");

    browser.goto(&mint_ws(true).await).await;
    live(&browser).await;
    let row = format!("#row-{id} td.actions");
    stack
        .wait_for("calls", Duration::from_secs(30), async || {
            stack.calls().len() >= 6
        })
        .await;
    let act = async |action: &str| {
        let at = Utc::now();
        browser
            .click(&format!("{row} [data-action={action}]"))
            .await;
        at
    };
    let result = format!("{row} .result");

    act("pause").await;
    wait_css(&browser, &result, UI_BOUND, |t| t.starts_with("pause done")).await;
    let paused = answered_at(&browser, &result).await;
    println!("row pause: {}", text_of(&browser, &result).await);
    wait_css(&browser, &format!("#row-{id}"), UI_BOUND, |t| {
        t.contains("paused")
    })
    .await;
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        browser.save_screenshot("batch-dials-control.png").await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let late = started_after(&stack, paused + chrono::Duration::seconds(1));
    assert!(
        late.is_empty(),
        "calls started after the row's pause: {late:?}"
    );

    let resumed = act("resume").await;
    wait_css(&browser, &result, UI_BOUND, |t| {
        t.starts_with("resume done")
    })
    .await;
    stack
        .wait_for(
            "calls after the resume",
            Duration::from_secs(10),
            async || !started_after(&stack, resumed).is_empty(),
        )
        .await;

    act("cancel").await;
    let asked = browser
        .dialog()
        .await
        .expect("a cancel asks for confirmation");
    assert!(asked.contains("Cancel batch"), "{asked}");
    browser.answer_dialog(false).await;
    act("cancel").await;
    assert!(browser.dialog().await.is_some());
    browser.answer_dialog(true).await;
    wait_css(&browser, &result, UI_BOUND, |t| {
        t.starts_with("cancel done")
    })
    .await;
    let cancelled = answered_at(&browser, &result).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let late = started_after(&stack, cancelled + chrono::Duration::seconds(1));
    assert!(
        late.is_empty(),
        "calls started after the row's cancel: {late:?}"
    );
    let status: Value = stack
        .get(&format!("/api/v1/batch/{id}/status"))
        .send_json()
        .await;
    assert_eq!(status["status"], "cancelled");
    let enabled = browser
        .eval(&format!(
            "return Array.from(document.querySelectorAll('{row} button')).filter(b => !b.disabled).length"
        ))
        .await;
    assert_eq!(enabled, 0, "no action on a cancelled batch's row");
}
