//! The `carrier-sim` binary as `deploy/local/up.sh` runs it: configured through `HEALTH_ADDR` and
//! `CARRIER_SIM_RECORD`, draining on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use carrier_sim::record;
use shared::domain::CallOutcome;

#[tokio::test]
async fn sigterm_lets_the_call_in_progress_finish_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let record_path = dir.path().join("calls.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_carrier-sim"))
        .env("HEALTH_ADDR", "127.0.0.1:0")
        .env("CARRIER_SIM_RECORD", &record_path)
        .env("CARRIER_SIM_RING_MS", "50")
        .env("CARRIER_SIM_TALK_MS", "700")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The bound address is in the "ready" log line.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("exited before ready").unwrap();
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(addr) = event["fields"]["addr"].as_str() {
            break addr.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});

    let http = reqwest::Client::new();
    let ready = http
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let resp = http
        .post(format!(
            "http://{addr}/2010-04-01/Accounts/ACsim/Calls.json"
        ))
        .basic_auth("ACsim", Some("sim-token"))
        .form(&[
            ("To", "+12015550100"),
            ("From", "+12015550199"),
            ("Url", "https://agent.example/answer"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    let records = record::read(&record_path);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, CallOutcome::Completed);
    let talked = records[0].ended_at - records[0].answered_at.unwrap();
    assert!(
        talked >= chrono::Duration::from_std(Duration::from_millis(700)).unwrap(),
        "the call ran to its natural end"
    );
}
