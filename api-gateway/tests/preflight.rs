//! The preflight (issue #25) through HTTP: both surfaces, JSON and CSV, `?rows=all`, the 422s a
//! create would give, and that it creates nothing (no batch row, no contact, no queued chunk, the
//! `Idempotency-Key` still free). The agreement test preflights a body of several chunks, then
//! creates it and lets a real ingest worker store it: every rejected row has the row number and
//! reason the preflight gave it.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TestApp, error_fields, spawn_app};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use shared::config::Env;
use testkit::http::SendJson;
use tokio_util::sync::CancellationToken;

/// Monday 2026-12-07, 20:30 in New York, 17:30 in Los Angeles.
const AT: &str = "2026-12-08T01:30:00Z";

/// The recipient's hours on, unknown zones held, state rules strictest (the defaults).
async fn compliant_app() -> TestApp {
    let app = spawn_app().await;
    let r = app
        .request_as(&app.key, reqwest::Method::PATCH, "/api/workspace")
        .json(&json!({"recipientCallingHours": "08:00-21:00", "allowUnknownTimezone": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = app
        .post("/api/dnc")
        .json(&json!({"numbers": ["+12125550199"]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    app
}

/// One row of each verdict.
fn contacts() -> Vec<Value> {
    [
        "+12125550100",   // 1 New York, 20:30: call
        "nope",           // 2 invalid_number
        "(212) 555-0100", // 3 duplicate of row 1
        "+12125550199",   // 4 do_not_call
        "+13055550100",   // 5 Florida at 20:30: state_hours
        "+870773111632",  // 6 no zone: unknown_timezone
        "+12135550100",   // 7 Los Angeles, 17:30: call
    ]
    .iter()
    .map(|n| json!({"phoneNumber": n}))
    // 8 Georgia, but declared in Florida (issue #25's `state`): state_hours.
    .chain([json!({"phoneNumber": "+14045550100", "state": "FL"})])
    .collect()
}

async fn counts(app: &TestApp) -> (i64, i64, u32) {
    let client = app.env.db.get().await.unwrap();
    let batches: i64 = client
        .query_one(
            "SELECT count(*) FROM batches WHERE workspace_id = $1",
            &[&app.workspace_id],
        )
        .await
        .unwrap()
        .get(0);
    let contacts: i64 = client
        .query_one(
            "SELECT count(*) FROM contacts WHERE workspace_id = $1",
            &[&app.workspace_id],
        )
        .await
        .unwrap()
        .get(0);
    (batches, contacts, app.ingest_queue_depth().await)
}

fn verdicts(answer: &Value) -> Vec<(u64, String, String)> {
    answer["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["row"].as_u64().unwrap(),
                d["verdict"].as_str().unwrap().to_owned(),
                d["reason"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect()
}

fn v(row: u64, verdict: &str, reason: &str) -> (u64, String, String) {
    (row, verdict.to_owned(), reason.to_owned())
}

#[tokio::test]
async fn dialgen_json_names_every_row_not_callable_and_creates_nothing() {
    let app = compliant_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let body = json!({"agentId": agent, "userId": "u1", "contacts": contacts()});
    let r = app
        .post(&format!("/api/v1/batch/preflight?at={AT}"))
        .header("Idempotency-Key", "preflight-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        verdicts(&answer),
        [
            v(2, "reject", "invalid_number"),
            v(3, "reject", "duplicate"),
            v(4, "reject", "do_not_call"),
            v(5, "hold", "state_hours"),
            v(6, "hold", "unknown_timezone"),
            v(8, "hold", "state_hours"),
        ]
    );
    let data = answer["data"].as_array().unwrap();
    assert_eq!(data[1]["detail"], "duplicate of row 1");
    assert_eq!(data[3]["rule"], "US-FL-hours");
    assert_eq!(data[3]["phoneNumber"], "+13055550100");
    // 08:00 in Florida the next morning.
    assert_eq!(data[3]["firstCallAt"], "2026-12-08T13:00:00.000Z");
    assert_eq!(
        answer["rows"],
        json!({"submitted": 8, "accepted": 5, "rejected": 3})
    );
    assert_eq!(answer["callableNow"], 2);
    assert_eq!(
        answer["held"],
        json!({"state_hours": 2, "unknown_timezone": 1})
    );
    assert_eq!(answer["firstCallAt"], "2026-12-08T01:30:00.000Z");
    assert_eq!(answer["evaluatedAt"], "2026-12-08T01:30:00.000Z");
    assert_eq!(answer["estimatedCompletion"], "2026-12-08T13:00:00.000Z");
    assert!(
        answer["rulesVersion"]
            .as_str()
            .unwrap()
            .starts_with("2026.12")
    );

    // `?rows=all` lists the callable rows too.
    let all: Value = app
        .post(&format!("/api/v1/batch/preflight?rows=all&at={AT}"))
        .json(&body)
        .send_json()
        .await;
    let rows: Vec<u64> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(all["data"][0]["verdict"], "call");
    assert_eq!(all["data"][0]["firstCallAt"], "2026-12-08T01:30:00.000Z");

    // Nothing created, nothing queued, the key still free.
    assert_eq!(counts(&app).await, (0, 0, 0));
    let r = app
        .post("/api/v1/batch")
        .header("Idempotency-Key", "preflight-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let client = app.env.db.get().await.unwrap();
    let created: i64 = client
        .query_one(
            "SELECT count(*) FROM batches WHERE workspace_id = $1 AND idempotency_key = 'preflight-key'",
            &[&app.workspace_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        created, 1,
        "the create consumed the key the preflight left free"
    );
}

fn file(csv: impl Into<Vec<u8>>) -> Part {
    Part::bytes(csv.into())
        .file_name("rows.csv")
        .mime_str("text/csv")
        .unwrap()
}

fn json_part(v: &Value) -> Part {
    Part::text(v.to_string())
        .mime_str("application/json")
        .unwrap()
}

#[tokio::test]
async fn vogent_csv_and_json_agree_and_create_nothing() {
    let app = compliant_app().await;
    let agent = app.create_agent().await;
    let job = json!({"name": "j", "callAgentId": agent, "maxConcurrentDials": 2});
    let csv = "toNumber,firstName\n+12125550100,Ada\n12,Bob\n+13055550100,Cy\n+12125550199,Di\n";
    let form = Form::new()
        .part("job", json_part(&job))
        .part("file", file(csv));
    let r = app
        .post(&format!("/api/batch_dial_jobs/preflight?at={AT}"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let from_csv: Value = r.json().await.unwrap();
    assert_eq!(
        verdicts(&from_csv),
        [
            v(2, "reject", "invalid_number"),
            v(3, "hold", "state_hours"),
            v(4, "reject", "do_not_call"),
        ]
    );
    let mut body = job.clone();
    body["rows"] = json!([
        {"toNumber": "+12125550100", "inputs": {"firstName": "Ada"}},
        {"toNumber": "12", "inputs": {"firstName": "Bob"}},
        {"toNumber": "+13055550100", "inputs": {"firstName": "Cy"}},
        {"toNumber": "+12125550199", "inputs": {"firstName": "Di"}},
    ]);
    let from_json: Value = app
        .post(&format!("/api/batch_dial_jobs/preflight?at={AT}"))
        .json(&body)
        .send_json()
        .await;
    assert_eq!(from_json, from_csv);
    // 2 lines at 60 s a call: 1 accepted callable row takes 30 s, the held one waits.
    assert_eq!(from_json["rows"]["accepted"], 2);
    assert_eq!(counts(&app).await, (0, 0, 0));
}

#[tokio::test]
async fn refuses_what_create_refuses() {
    let app = compliant_app().await;
    let agent = app.create_agent().await;
    let path = "/api/v1/batch/preflight";
    // Strict body: an unknown field.
    let r = app
        .post(path)
        .json(&json!({"agentId": agent, "userId": "u", "contacts": contacts(), "colour": "red"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 422).await, ["colour"]);
    // An unknown agent, after the rows.
    let r = app
        .post(path)
        .json(&json!({"contacts": contacts(), "agentId": uuid::Uuid::now_v7(), "userId": "u"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 422).await, ["agentId"]);
    // A row problem that makes create a 422.
    let r = app
        .post(path)
        .json(&json!({"agentId": agent, "userId": "u", "contacts": [{"phoneNumber": "+12125550100", "email": "no"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 422).await, ["contacts[0].email"]);
    // A bad `rows`.
    let r = app
        .post(&format!("{path}?rows=some"))
        .json(&json!({"agentId": agent, "userId": "u", "contacts": contacts()}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 422).await, ["rows"]);
    // Vogent: a CSV without its `job` part.
    let r = app
        .post("/api/batch_dial_jobs/preflight")
        .multipart(Form::new().part("file", file("toNumber\n+12125550100\n")))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 422).await, ["job"]);
    assert_eq!(counts(&app).await, (0, 0, 0));
}

fn worker(app: &TestApp, stop: &CancellationToken) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let mut pairs = app.env.env_vars();
    pairs.push(("HEALTH_ADDR".into(), "127.0.0.1:0".into()));
    let config = ingest_worker::config::Config::from_env(&Env::from_pairs(pairs)).unwrap();
    tokio::spawn(ingest_worker::run(config, stop.clone()))
}

/// 5,000 rows (three chunks): duplicates inside a chunk and across chunks, listed numbers in
/// two chunks (one also repeated inside its chunk), bad numbers, a NUL in a name.
fn agreement_contacts() -> Vec<Value> {
    (0..5_000usize)
        .map(|i| {
            let number = match i {
                _ if i % 997 == 5 => "not a number".to_owned(),
                _ if i % 1_201 == 7 => format!("+1212555{:04}", i - 1),
                // Row 4,100 repeats row 10 (another chunk).
                4_100 => "+12125550010".to_owned(),
                // Listed, in chunk 0 twice and in chunk 2 once.
                100 | 150 | 4_200 => "+12125550199".to_owned(),
                _ => format!("+1212555{:04}", i),
            };
            let name = if i == 3_333 { "a\u{0}b" } else { "n" };
            json!({"phoneNumber": number, "name": name})
        })
        .collect()
}

#[tokio::test]
async fn agreement_every_rejected_row_has_the_preflights_number_and_reason() {
    let app = compliant_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let body = json!({"agentId": agent, "userId": "u1", "contacts": agreement_contacts()});
    let answer: Value = app
        .post("/api/v1/batch/preflight")
        .json(&body)
        .send_json()
        .await;
    let predicted: BTreeMap<i64, String> = answer["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["verdict"] == "reject")
        .map(|d| {
            (
                d["row"].as_i64().unwrap(),
                d["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(predicted.values().any(|r| r == "duplicate"));
    assert!(predicted.values().any(|r| r == "do_not_call"));
    assert!(predicted.values().any(|r| r == "invalid_text"));

    let stop = CancellationToken::new();
    let _worker = worker(&app, &stop);
    let created: Value = app.post("/api/v1/batch").json(&body).send_json().await;
    let id: uuid::Uuid = created["batchId"].as_str().unwrap().parse().unwrap();
    let client = app.env.db.get().await.unwrap();
    let mut ingested = false;
    for _ in 0..600 {
        let state: String = client
            .query_one("SELECT ingest_state FROM batches WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
        if state != "receiving" && state != "ingesting" {
            ingested = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ingested, "the batch was not ingested in time");
    let stored: BTreeMap<i64, String> = client
        .query(
            "SELECT row_index, reason FROM rejected_rows WHERE batch_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                i64::from(r.get::<_, i32>("row_index")) + 1,
                r.get::<_, String>("reason"),
            )
        })
        .collect();
    stop.cancel();
    assert_eq!(stored, predicted);
    assert_eq!(
        answer["rows"]["rejected"].as_u64().unwrap() as usize,
        stored.len()
    );
}
