//! What a preflight costs (issue #25): the preflight of a 100,000-contact JSON body against the
//! time to 202 of the same body on create, on one gateway against the test's own services.
//! Prints the figures and the ratio (target ≤ 2×). Run with:
//!
//! ```sh
//! cargo nextest run -p api-gateway --test preflight_bench --run-ignored only --no-capture
//! ```

mod common;

use std::time::{Duration, Instant};

use common::spawn_app;
use serde_json::json;

const CONTACTS: usize = 100_000;
const RUNS: usize = 3;

/// 100,000 distinct numbers over New York, Los Angeles, Florida and Georgia, one row in 500
/// unreadable, one in 1,000 a duplicate: every kind of verdict, at the real mix of work.
fn body(agent: &str) -> Vec<u8> {
    let areas = ["212", "213", "305", "404"];
    let contacts: Vec<serde_json::Value> = (0..CONTACTS)
        .map(|i| {
            let number = match i {
                _ if i % 500 == 7 => "n/a".to_owned(),
                _ if i % 1_000 == 9 => format!("+1{}{:07}", areas[(i - 1) % 4], i - 1),
                _ => format!("+1{}{:07}", areas[i % 4], i),
            };
            json!({"phoneNumber": number, "name": "Ada Lovelace", "metadata": {"plan": "gold"}})
        })
        .collect();
    serde_json::to_vec(&json!({"agentId": agent, "userId": "bench", "contacts": contacts})).unwrap()
}

/// This process's resident and peak resident memory (the gateway runs in it, with the test).
fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim().to_owned())
            .unwrap_or_default()
    };
    format!("RSS {}, peak {}", field("VmRSS:"), field("VmHWM:"))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints figures"]
async fn preflight_of_100k_rows_against_create() {
    let app = spawn_app().await;
    // The default policy: recipient hours on, state rules strictest.
    let r = app
        .request_as(&app.key, reqwest::Method::PATCH, "/api/workspace")
        .json(&json!({"recipientCallingHours": "08:00-21:00", "allowUnknownTimezone": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let body = body(&agent);
    println!(
        "body: {CONTACTS} contacts, {} bytes; before: {}",
        body.len(),
        memory()
    );

    let mut creates = Vec::new();
    let mut preflights = Vec::new();
    let mut first_bytes = Vec::new();
    for run in 0..RUNS {
        let started = Instant::now();
        let r = app
            .post("/api/v1/batch")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        creates.push(started.elapsed());

        let started = Instant::now();
        let mut r = app
            .post("/api/v1/batch/preflight")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut answer = Vec::new();
        let mut first = None;
        while let Some(chunk) = r.chunk().await.unwrap() {
            first.get_or_insert_with(|| started.elapsed());
            answer.extend_from_slice(&chunk);
        }
        preflights.push(started.elapsed());
        first_bytes.push(first.unwrap_or_default());
        let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        println!("run {run}: after the preflight: {}", memory());
        println!(
            "run {run}: create 202 in {}, preflight in {} (first byte {}), rows {}, held {}, {} entries, {} bytes",
            secs(creates[run]),
            secs(preflights[run]),
            secs(first_bytes[run]),
            v["rows"],
            v["held"],
            v["data"].as_array().map_or(0, Vec::len),
            answer.len()
        );
    }
    let create = median(creates);
    let preflight = median(preflights);
    println!(
        "median of {RUNS}: create 202 {}, preflight {} (first byte {}), ratio preflight / create {:.2} (target ≤ 2.0)",
        secs(create),
        secs(preflight),
        secs(median(first_bytes)),
        preflight.as_secs_f64() / create.as_secs_f64()
    );
}
