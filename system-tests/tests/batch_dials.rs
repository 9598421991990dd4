//! The Batch Dials page across every role, in headless Chromium: a Dialgen batch and a Vogent
//! job really dialed through the carrier simulator, watched on the workspace's page opened
//! through a link minted by `POST /api/workspace/dashboard_link`. The page follows them live
//! (its figures move while the calls happen), never shows more lines in use than the workspace
//! allows, and ends with each batch's outcome counts equal to the simulator's record.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use system_tests::stack::Stack;
use testkit::browser::Browser;
use testkit::http::SendJson;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_follows_both_apis_real_calls_live() {
    let stack = Stack::builder("dials")
        .workspace_limit(3)
        .numbers(&["+12015550100"])
        .talk_ms(400)
        .sim_seed(11)
        .start()
        .await;
    // Last digits 0–5 are answered, 6 busy, 8 failed: both batches end with known outcomes.
    let dialgen_numbers: Vec<String> = (0..10)
        .map(|i| format!("+1201555{:04}", 3000 + i))
        .collect();
    let vogent_numbers: Vec<String> = (0..6).map(|i| format!("+1201556{:04}", 4000 + i)).collect();
    let contacts: Vec<Value> = dialgen_numbers
        .iter()
        .map(|n| json!({"phoneNumber": n}))
        .collect();
    let batch: Value = stack
        .post(
            "/api/v1/batch",
            json!({"agentId": stack.agent, "userId": "u", "contacts": contacts,
                   "options": {"maxConcurrentDials": 2, "maxCallsPerSecond": 5,
                               "retryStrategy": {"maxAttempts": 1}}}),
        )
        .send_json()
        .await;
    let batch_id = batch["batchId"].as_str().unwrap().to_owned();
    let rows: Vec<Value> = vogent_numbers
        .iter()
        .map(|n| json!({"toNumber": n, "inputs": {"name": "Ada"}}))
        .collect();
    let job: Value = stack
        .post(
            "/api/batch_dial_jobs",
            json!({"name": "Vogent job", "callAgentId": stack.agent, "maxConcurrentDials": 2,
                   "schedule": {"days": [], "timezone": "UTC", "disableSchedule": true}, "rows": rows}),
        )
        .send_json()
        .await;
    let job_id = job["id"].as_str().unwrap().to_owned();
    let minted: Value = stack
        .post("/api/workspace/dashboard_link", json!({}))
        .send_json()
        .await;
    let link = minted["url"].as_str().unwrap().to_owned();
    assert!(link.starts_with(&format!(
        "{}/workspace/{}/dials?token=",
        stack.gateway, stack.workspace
    )));

    let browser = Browser::start().await;
    browser.goto(&link).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while browser.text("live").await != "live" {
        assert!(Instant::now() < deadline, "the page never went live");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The Vogent job starts only when asked.
    let started: Value = stack
        .post(
            &format!("/api/batch_dial_jobs/{job_id}/paused"),
            json!({"paused": false}),
        )
        .send_json()
        .await;
    assert_eq!(started["status"], "ACTIVE");

    // Watch until both rows are final, sampling what the page shows.
    let states = format!(
        "return ['{batch_id}', '{job_id}'].map(function(id){{ var r = document.getElementById('row-' + id); \
           return r ? [r.dataset.state, r.querySelector('.lines').textContent, r.cells[4].textContent, r.cells[7].textContent, r.cells[8].textContent] : null; }});"
    );
    let mut seen_in_flight = BTreeSet::new();
    let mut seen_outcomes = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let in_flight = browser.number("ws-in-flight").await;
        assert!(
            in_flight <= 3,
            "the page shows {in_flight} lines in use of the workspace's 3"
        );
        seen_in_flight.insert(in_flight);
        let rows = browser.eval(&states).await;
        seen_outcomes.insert(rows.to_string());
        let done = rows
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r[0].as_str().is_some_and(|s| s == "completed") && r[1] == "0");
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed both batches done: {rows}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen_in_flight.len() > 1,
        "lines in use moved: {seen_in_flight:?}"
    );
    assert!(
        seen_outcomes.len() > 4,
        "the rows changed live: {} versions",
        seen_outcomes.len()
    );

    // Each row's outcome counts are the simulator's record's, by the batch's numbers.
    let record = stack.calls();
    assert_eq!(record.len(), 16, "one call per contact: {record:?}");
    // The workspace's limit held at the carrier (the witness), whatever the page sampled: it
    // counts attempts without an outcome, and an outcome is written a moment after the
    // carrier's call ends and its line is free again.
    let overlap = record
        .iter()
        .map(|c| {
            record
                .iter()
                .filter(|o| o.requested_at <= c.requested_at && o.ended_at > c.requested_at)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(overlap <= 3, "{overlap} calls at once at the carrier");
    println!(
        "lines in use: at most {overlap} at the carrier, at most {} on the page",
        seen_in_flight.iter().max().unwrap_or(&0)
    );
    let counts = |numbers: &[String]| {
        let mut by: BTreeMap<String, i64> = BTreeMap::new();
        for c in record.iter().filter(|c| numbers.contains(&c.to)) {
            let outcome = serde_json::to_value(c.outcome).unwrap();
            *by.entry(outcome.as_str().unwrap().to_owned()).or_default() += 1;
        }
        by
    };
    for (id, numbers) in [(&batch_id, &dialgen_numbers), (&job_id, &vogent_numbers)] {
        let cell = browser
            .eval(&format!(
                "return document.getElementById('row-{id}').cells[4].textContent;"
            ))
            .await;
        let cell = cell.as_str().unwrap();
        let shown = |word: &str| -> i64 {
            cell.split(" · ")
                .find_map(|part| part.strip_suffix(&format!(" {word}")))
                .map_or(0, |n| n.parse().unwrap())
        };
        let at_carrier = counts(numbers);
        let carrier = |k: &str| at_carrier.get(k).copied().unwrap_or(0);
        // A machine's answer is a completed call for a batch without machine detection.
        assert_eq!(
            shown("completed") + shown("voicemail"),
            carrier("completed") + carrier("voicemail"),
            "{id}: {cell} vs {at_carrier:?}"
        );
        for outcome in ["busy", "no-answer", "failed"] {
            assert_eq!(
                shown(outcome),
                carrier(outcome),
                "{id}: {cell} vs {at_carrier:?}"
            );
        }
    }
    println!(
        "{} distinct row versions seen; lines in use seen: {seen_in_flight:?}",
        seen_outcomes.len()
    );
}
