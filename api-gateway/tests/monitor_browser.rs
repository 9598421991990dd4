//! The monitor page in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which `scripts/test.sh` installs when missing) driven over WebDriver.
//!
//! On a running batch it checks that the page's counters are the API's, that the event stream
//! changes them within a second of a call ending, and that a bad token gets the 401 page; it
//! saves a screenshot (to `docs/monitor.png`, shown in docs/monitor.md, with
//! `UPDATE_SCREENSHOTS=1`).

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use testkit::browser::Browser;
use testkit::http::SendJson;

use common::running::running_batch;
use common::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_chromium_counts_as_the_api_and_follows_calls_live() {
    let app = spawn_app().await;
    let run = running_batch(&app, 400).await;
    // An hour of history for the chart: contacts 20..320, one call each, outcomes by the last
    // digit as the carrier-sim picks them.
    let now = Utc::now();
    for i in 20..320usize {
        let (state, outcome) = match i % 10 {
            0..=5 => ("completed", "completed"),
            6 => ("failed", "busy"),
            7 => ("failed", "no-answer"),
            8 => ("failed", "failed"),
            _ => ("completed", "voicemail"),
        };
        let at = now - chrono::Duration::seconds(((320 - i) * 11) as i64);
        run.set_contact(&app, i, state, Some(outcome)).await;
        run.insert_attempt(&app, i, at, Some(outcome)).await;
    }
    for i in 320..326 {
        run.start_call(&app, i).await;
    }
    // Two numbers listed after ingest: suppressed at release, never called.
    for i in 326..328 {
        run.set_contact(&app, i, "failed", Some("suppressed")).await;
    }
    let config = api_gateway::config::Config::from_env(&shared::config::Env::from_pairs([(
        "PUBLIC_URL",
        app.url(""),
    )]))
    .unwrap();
    let config = api_gateway::monitor::secret::resolve(&app.env.db, config)
        .await
        .unwrap();
    let link = api_gateway::monitor::dashboard_link(&config, run.batch_id, Utc::now());

    let browser = Browser::start().await;
    browser.goto(&link).await;
    assert!(
        browser
            .eval("return document.title")
            .await
            .as_str()
            .unwrap()
            .contains("Spring renewals")
    );
    // Connected to the event stream.
    let deadline = Instant::now() + Duration::from_secs(10);
    while browser.text("live").await != "live" {
        assert!(Instant::now() < deadline, "the page never went live");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // The counters are the API's.
    let api: Value = app
        .get(&format!(
            "/api/v1/batch/check-status?batchId={}",
            run.batch_id
        ))
        .send_json()
        .await;
    let st = &api["statistics"];
    let api_n = |k: &str| st[k].as_i64().unwrap();
    assert_eq!(browser.number("n-total").await, api_n("total"));
    assert_eq!(browser.number("n-succeeded").await, api_n("succeeded"));
    assert_eq!(browser.number("n-failed-all").await, api_n("failed"));
    assert_eq!(browser.number("n-cancelled-all").await, api_n("cancelled"));
    assert_eq!(browser.number("n-pending").await, api_n("pending"));
    assert_eq!(browser.number("n-completed").await, api_n("succeeded"));
    assert_eq!(browser.number("n-voicemail").await, api_n("voicemail"));
    assert_eq!(browser.number("n-voicemail-all").await, api_n("voicemail"));
    assert_eq!(browser.number("n-suppressed").await, 2);
    assert_eq!(
        browser.number("n-busy").await
            + browser.number("n-no-answer").await
            + browser.number("n-failed").await
            + browser.number("n-suppressed").await,
        api_n("failed")
    );
    assert_eq!(
        browser.number("n-rejected").await,
        api["rows"]["rejected"].as_i64().unwrap()
    );
    let dials: Value = app
        .get(&format!(
            "/api/batch_dial_jobs/{}/dials?status=in-progress&limit=100",
            run.batch_id
        ))
        .send_json()
        .await;
    let in_flight = dials["data"].as_array().map_or(0, Vec::len) as i64;
    assert_eq!(browser.number("in-flight").await, in_flight, "{dials}");
    let recent_rows = browser
        .eval("return document.querySelectorAll('#recent tr').length")
        .await;
    assert_eq!(recent_rows, 20);

    // A call ends: the page shows it within a second, through the event stream.
    let before = browser.number("n-completed").await;
    let ended = Instant::now();
    run.end_call(&app, 320, "completed").await;
    loop {
        if browser.number("n-completed").await == before + 1 {
            break;
        }
        assert!(
            ended.elapsed() < Duration::from_secs(1),
            "the page did not follow the call's end within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = ended.elapsed();
    assert_eq!(browser.number("in-flight").await, in_flight - 1);
    println!("page updated {took:?} after the call ended");

    browser.save_screenshot("monitor.png").await;

    // A pause and a resume through the Dialgen API reach the open page within a second (the
    // control route has the batch's feed read at once).
    for (action, status) in [("pause", "paused"), ("resume", "processing")] {
        let sent = Instant::now();
        let r = app
            .post(&format!("/api/v1/batch/{}/{action}", run.batch_id))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        while !browser.text("status").await.starts_with(status) {
            assert!(
                sent.elapsed() < Duration::from_secs(1),
                "the page did not show the {action} within 1 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!(
            "{action}: on the page {:?} after the request",
            sent.elapsed()
        );
    }

    // A bad token gets the 401 page (the browser cannot see the status; reqwest checks it).
    let bad = link.replace("token=", "token=1");
    browser.goto(&bad).await;
    assert!(
        browser
            .eval("return document.title")
            .await
            .as_str()
            .unwrap()
            .starts_with("Access denied")
    );
    assert!(browser.text("denied").await.contains("not valid"));
    let r = app.http.get(&bad).send().await.unwrap();
    assert_eq!(r.status(), 401);
    browser.goto(&link[..link.find('?').unwrap()]).await;
    assert!(browser.text("denied").await.contains("no access token"));

    // A 5,000-character name is cut with an ellipsis, whole on hover, and the page does not
    // scroll sideways.
    let name = "N".repeat(5_000);
    let long = {
        let client = app.env.db.get().await.unwrap();
        let agent: uuid::Uuid = app.create_agent().await.parse().unwrap();
        let ws = testkit::fixtures::WorkspaceIds {
            id: app.workspace_id,
            agent_id: agent,
        };
        testkit::fixtures::Batch::new(ws)
            .name(&name)
            .insert(&client)
            .await
    };
    browser
        .goto(&api_gateway::monitor::dashboard_link(
            &config,
            long,
            Utc::now(),
        ))
        .await;
    let layout = browser
        .eval(
            "var e = document.querySelector('h1 .clip'); var d = document.documentElement; \
             return [d.scrollWidth - d.clientWidth, e.scrollWidth > e.clientWidth, e.title.length, \
                     getComputedStyle(e).textOverflow];",
        )
        .await;
    assert_eq!(layout, json!([0, true, 5000, "ellipsis"]), "{layout}");
}
