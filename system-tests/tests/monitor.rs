//! The monitor page across every role: a Dialgen batch really dialed through the carrier
//! simulator, watched through its own `links.dashboard` event stream. Each call's end (the
//! simulator's record is the witness) shows on the stream within a second, and once the batch is
//! done the page's counters are the API's.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use system_tests::stack::Stack;
use testkit::http::SendJson;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_event_stream_follows_real_calls_within_a_second() {
    let stack = Stack::builder("monitor")
        .workspace_limit(4)
        .numbers(&["+12015550100"])
        .talk_ms(400)
        .sim_seed(7)
        .start()
        .await;
    let (gateway, http) = (&stack.gateway, &stack.http);
    // Last digits 0–5: every call is answered, so every call's end makes its contact final.
    let contacts: Vec<Value> = (0..24)
        .map(|i| json!({"phoneNumber": format!("+1201555{:04}", 2000 + (i / 6) * 10 + i % 6)}))
        .collect();
    let body = json!({"agentId": stack.agent, "userId": "u", "contacts": contacts,
                      "options": {"maxConcurrentDials": 4, "maxCallsPerSecond": 5}});
    let created_batch: Value = stack.post("/api/v1/batch", body).send_json().await;
    let id = created_batch["batchId"].as_str().unwrap().to_owned();
    let dashboard = created_batch["links"]["dashboard"].as_str().unwrap();
    assert!(dashboard.starts_with(&format!("{gateway}/batch/monitor/{id}?token=")));

    // Every update as it arrives: (arrival, contacts succeeded, status).
    let mut stream = http
        .get(dashboard.replace('?', "/events?"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut updates: Vec<(DateTime<Utc>, i64, String)> = Vec::new();
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while updates.last().is_none_or(|u| !u.2.starts_with("completed")) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the batch never completed"
        );
        let chunk = tokio::time::timeout(Duration::from_secs(30), stream.chunk())
            .await
            .expect("updates keep coming")
            .unwrap()
            .expect("the stream stays open");
        let arrived = Utc::now();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                let v: Value = serde_json::from_str(data).unwrap();
                updates.push((
                    arrived,
                    v["t"]["n-succeeded"].as_str().unwrap().parse().unwrap(),
                    v["t"]["status"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }

    // The k-th call to end (by the simulator's clock) shows as k succeeded contacts within 1 s.
    let mut ends: Vec<DateTime<Utc>> = stack.calls().iter().map(|c| c.ended_at).collect();
    ends.sort();
    assert_eq!(ends.len(), 24, "one call per contact");
    let mut worst = chrono::Duration::zero();
    for (k, ended) in ends.iter().enumerate() {
        let shown = updates
            .iter()
            .find(|(_, n, _)| *n > k as i64)
            .unwrap_or_else(|| panic!("call {k} never shown"))
            .0;
        worst = worst.max(shown - *ended);
    }
    println!(
        "{} updates; the slowest call end reached the page after {} ms",
        updates.len(),
        worst.num_milliseconds()
    );
    assert!(
        worst < chrono::Duration::seconds(1),
        "a call's end took {} ms to reach the page",
        worst.num_milliseconds()
    );

    // Done: the page's figures are the API's.
    let page = http
        .get(dashboard)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let status: Value = stack
        .get(&format!("/api/v1/batch/{id}/status"))
        .send_json()
        .await;
    assert_eq!(status["statistics"]["succeeded"], 24);
    for (el, field) in [
        ("n-total", "total"),
        ("n-succeeded", "succeeded"),
        ("n-failed-all", "failed"),
        ("n-pending", "pending"),
    ] {
        let at = page.find(&format!("id=\"{el}\">")).unwrap() + el.len() + 6;
        let shown = &page[at..at + page[at..].find('<').unwrap()];
        assert_eq!(shown, status["statistics"][field].to_string(), "{el}");
    }
}
