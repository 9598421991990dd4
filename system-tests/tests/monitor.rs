//! The monitor page across every role: a Dialgen batch really dialed through the carrier
//! simulator, watched through its own `links.dashboard` event stream. Each call's end (the
//! simulator's record is the witness) shows on the stream within a second, and once the batch is
//! done the page's counters are the API's.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use shared::config::Env;
use testkit::TestEnv;
use testkit::http::SendJson;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_event_stream_follows_real_calls_within_a_second() {
    let env = TestEnv::new().await;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let dir = std::env::temp_dir().join(format!("dialfleet-monitor-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let record = dir.join("calls.jsonl");
    let sim_config = carrier_sim::config::Config::from_env(&Env::from_pairs([
        ("CARRIER_SIM_ADDR", "127.0.0.1:0"),
        ("CARRIER_SIM_RING_MS", "50"),
        ("CARRIER_SIM_TALK_MS", "400"),
        ("CARRIER_SIM_SEED", "7"),
        ("CARRIER_SIM_RECORD", record.to_str().unwrap()),
    ]))
    .unwrap();
    let (sim, _) = carrier_sim::spawn(sim_config, shutdown.clone())
        .await
        .unwrap();
    let port = testkit::process::free_addr().port();
    let gateway = format!("http://127.0.0.1:{port}");
    let with = |extra: &[(&str, String)]| {
        let mut pairs = env.env_vars();
        pairs.push(("HEALTH_ADDR".into(), "127.0.0.1:0".into()));
        pairs.push(("PUBLIC_URL".into(), gateway.clone()));
        pairs.push(("CARRIER_URL".into(), format!("http://{sim}")));
        pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        Env::from_pairs(pairs)
    };
    let gw = api_gateway::config::Config::from_env(&with(&[(
        "GATEWAY_ADDR",
        format!("127.0.0.1:{port}"),
    )]))
    .unwrap();
    api_gateway::spawn(gw, shutdown.clone()).await.unwrap();
    let ingest = ingest_worker::config::Config::from_env(&with(&[])).unwrap();
    tokio::spawn(ingest_worker::run(ingest, shutdown.clone()));
    let sched =
        scheduler::config::Config::from_env(&with(&[("SCHEDULER_TICK_MS", "100".into())])).unwrap();
    tokio::spawn(scheduler::run(sched, shutdown.clone()));
    let dial = dial_worker::config::Config::from_env(&with(&[])).unwrap();
    tokio::spawn(dial_worker::run(dial, shutdown.clone()));

    let created = api_gateway::admin::create_workspace_with(
        &env.db,
        "monitor",
        4,
        &api_gateway::admin::Compliance::off(),
    )
    .await
    .unwrap();
    // No workspace-wide rate (a new workspace's default is 1 call a second): these tests'
    // batches set the rates they are about.
    env.db
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE workspaces SET max_calls_per_second = NULL WHERE id = $1",
            &[&created.workspace_id],
        )
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("{gateway}{path}"))
            .bearer_auth(&created.api_key)
            .json(&body)
    };
    let agent: Value = post(
        "/api/agents",
        json!({"name": "bot", "answerUrl": "https://agent.example.com/answer"}),
    )
    .send_json()
    .await;
    post("/api/phone_numbers", json!({"number": "+12015550100"}))
        .send()
        .await
        .unwrap();
    // Last digits 0–5: every call is answered, so every call's end makes its contact final.
    let contacts: Vec<Value> = (0..24)
        .map(|i| json!({"phoneNumber": format!("+1201555{:04}", 2000 + (i / 6) * 10 + i % 6)}))
        .collect();
    let body = json!({"agentId": agent["id"], "userId": "u", "contacts": contacts,
                      "options": {"maxConcurrentDials": 4, "maxCallsPerSecond": 5}});
    let created_batch: Value = post("/api/v1/batch", body).send_json().await;
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
    let mut ends: Vec<DateTime<Utc>> = carrier_sim::record::read(&record)
        .iter()
        .map(|c| c.ended_at)
        .collect();
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
    let status: Value = http
        .get(format!("{gateway}/api/v1/batch/{id}/status"))
        .bearer_auth(&created.api_key)
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
    let _ = std::fs::remove_dir_all(&dir);
}
