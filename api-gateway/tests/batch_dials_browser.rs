//! The Batch Dials page in a real browser (headless Chromium over WebDriver, as
//! `monitor_browser.rs`): batches of both APIs listed, their figures following calls, a new
//! batch and a pause within a second, the actions cell kept across updates, the status filter,
//! a long name cut with an ellipsis, and a forged link refused. Saves a screenshot (to
//! `docs/batch-dials.png`, shown in docs/monitor.md, with `UPDATE_SCREENSHOTS=1`).

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::browser::Browser;
use testkit::http::SendJson;
use uuid::Uuid;

use common::running::running_batch;
use common::spawn_app;

/// Polls `check` every 10 ms until it holds, at most `within`; returns how long it took.
async fn within<F, Fut>(within: Duration, what: &str, check: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

fn row_state(id: &str) -> String {
    format!("var r = document.getElementById('row-{id}'); return r ? r.dataset.state : null;")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_chromium_lists_both_apis_and_follows_them_live() {
    let app = spawn_app().await;
    // A Dialgen batch mid-campaign (two calls in flight), and a Vogent job created through its API.
    let run = running_batch(&app, 40).await;
    let agent = app.create_agent().await;
    let job = app.create_job(&agent, 3).await;
    let job_id = job["id"].as_str().unwrap().to_owned();
    let minted: Value = app
        .post("/api/workspace/dashboard_link")
        .json(&json!({"expiresInSeconds": 3600}))
        .send_json()
        .await;
    let url = minted["url"].as_str().unwrap();
    let link = app.url(&url[url.find("/workspace/").unwrap()..]);

    let browser = Browser::start().await;
    browser.goto(&link).await;
    let title = browser.eval("return document.title").await;
    assert!(
        title.as_str().unwrap().starts_with("Batch Dials"),
        "{title}"
    );
    within(Duration::from_secs(10), "the page goes live", || async {
        browser.text("live").await == "live"
    })
    .await;

    // Both APIs, newest first, each with its API of origin and a signed link to its page.
    let rows = browser
        .eval(
            "return Array.from(document.querySelectorAll('#rows tr')).map(function(r){ \
               return [r.dataset.batch, r.cells[1].textContent, \
                       r.querySelector('a').getAttribute('href').indexOf('token=') > 0]; });",
        )
        .await;
    let batch = run.batch_id.to_string();
    assert_eq!(
        rows,
        json!([[job_id, "Vogent", true], [batch, "Dialgen", true]]),
        "{rows}"
    );
    assert_eq!(browser.number("ws-in-flight").await, 2);
    // The row's link opens the batch's own monitor page.
    let href = browser
        .eval(&format!(
            "return document.querySelector('#row-{batch} a').getAttribute('href');"
        ))
        .await;
    let r = app
        .http
        .get(app.url(href.as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The actions cell is h-control's: whatever fills it survives the updates.
    browser
        .eval(&format!(
            "document.querySelector('#row-{batch} td.actions').innerHTML = '<b id=\"hook\">kept</b>'; \
             window.dialsRows = 0; document.addEventListener('dials:rows', function(){{ window.dialsRows++; }}); \
             return null;"
        ))
        .await;

    // A call ends: the workspace's lines and the row follow within a second.
    let took = {
        run.end_call(&app, 12, "completed").await;
        within(Duration::from_secs(1), "a call's end", || async {
            browser.number("ws-in-flight").await == 1
        })
        .await
    };
    println!("a call's end on the page after {took:?}");
    let lines = browser
        .eval(&format!(
            "return document.querySelector('#row-{batch} .lines').textContent;"
        ))
        .await;
    assert_eq!(lines, "1");

    // A new Dialgen batch appears, and a pause through the Dialgen API shows, each within 1 s.
    let sent = Instant::now();
    let created: Value = app
        .post("/api/v1/batch")
        .json(&json!({"agentId": agent, "userId": "u",
                      "contacts": [{"phoneNumber": "+12015550123"}]}))
        .send_json()
        .await;
    let new_id = created["batchId"].as_str().unwrap().to_owned();
    within(Duration::from_secs(1), "a new batch", || async {
        !browser.eval(&row_state(&new_id)).await.is_null()
    })
    .await;
    println!(
        "a new batch on the page {:?} after its create",
        sent.elapsed()
    );
    let sent = Instant::now();
    let r = app
        .post(&format!("/api/v1/batch/{batch}/pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    within(Duration::from_secs(1), "a pause", || async {
        browser.eval(&row_state(&batch)).await == "paused"
    })
    .await;
    println!("a pause on the page {:?} after the request", sent.elapsed());
    assert_eq!(
        browser.text("hook").await,
        "kept",
        "the actions cell survives"
    );
    assert!(
        browser
            .eval("return window.dialsRows")
            .await
            .as_i64()
            .unwrap()
            >= 2
    );

    browser.save_screenshot("batch-dials.png").await;

    // The filter: only the paused batch.
    browser
        .eval("document.getElementById('filter-paused').click(); return null;")
        .await;
    within(Duration::from_secs(5), "the paused filter", || async {
        browser
            .eval("return location.search.indexOf('status=paused') >= 0 && document.getElementById('live').textContent === 'live';")
            .await
            == true
    })
    .await;
    let listed = browser
        .eval("return Array.from(document.querySelectorAll('#rows tr')).map(function(r){ return r.dataset.batch; });")
        .await;
    assert_eq!(listed, json!([batch]));

    // A 5,000-character name is cut with an ellipsis, whole on hover, and the page does not
    // scroll sideways.
    let long: Uuid = {
        let client = app.env.db.get().await.unwrap();
        let ws = testkit::fixtures::WorkspaceIds {
            id: app.workspace_id,
            agent_id: agent.parse().unwrap(),
        };
        testkit::fixtures::Batch::new(ws)
            .name(&"N".repeat(5_000))
            .insert(&client)
            .await
    };
    browser.goto(&link).await;
    // The first paint is at most a second old (the feed was read just before the insert).
    let long_id = long.to_string();
    within(Duration::from_secs(2), "the long-named batch", || async {
        !browser.eval(&row_state(&long_id)).await.is_null()
    })
    .await;
    let layout = browser
        .eval(&format!(
            "var e = document.querySelector('#row-{long} a.clip'); var d = document.documentElement; \
             return [d.scrollWidth - d.clientWidth, e.scrollWidth > e.clientWidth, e.title.length, \
                     getComputedStyle(e).textOverflow];"
        ))
        .await;
    assert_eq!(layout, json!([0, true, 5000, "ellipsis"]), "{layout}");

    // A forged link gets the 403 page.
    let forged = link.replace("token=", "token=1");
    browser.goto(&forged).await;
    assert!(
        browser
            .eval("return document.title")
            .await
            .as_str()
            .unwrap()
            .starts_with("Access denied")
    );
    assert!(browser.text("denied").await.contains("not valid"));
    assert_eq!(app.http.get(&forged).send().await.unwrap().status(), 403);
}
