//! Issue 13 across every role (gateway, ingest worker, scheduler, dial worker, carrier
//! simulator), judged by the simulator's call record: the rejected list matches the counts,
//! the export during and after a campaign agrees with what was dialed, a retry by outcome
//! calls exactly the matching numbers once more (and no do-not-call number), and rows added
//! to a running Vogent job are dialed once each, with the job's webhooks delivered.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use serde_json::{Value, json};
use testkit::http::SendJson;

/// The shared stack, with this file's reads of it.
struct Stack(system_tests::stack::Stack);

impl std::ops::Deref for Stack {
    type Target = system_tests::stack::Stack;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Every role in this process, the carrier simulator's calls lasting `talk_ms`; the workspace
/// keeps a new workspace's default rate.
async fn start(talk_ms: u64) -> Stack {
    Stack(
        system_tests::stack::Stack::builder("lists")
            .numbers(&["+12015550199"])
            .default_workspace_rate()
            .talk_ms(talk_ms)
            .start()
            .await,
    )
}

impl Stack {
    /// Calls per number in the carrier's record, with the last call's outcome and caller ID.
    fn dialed(&self) -> HashMap<String, (usize, String, String)> {
        let mut out: HashMap<String, (usize, String, String)> = HashMap::new();
        for c in self.calls() {
            let e = out.entry(c.to.clone()).or_default();
            e.0 += 1;
            e.1 = c.outcome.as_str().to_owned();
            e.2 = c.from.clone();
        }
        out
    }

    async fn wait_status(&self, path: &str, field: &str, want: &str) -> Value {
        let mut last = Value::Null;
        self.wait_for(
            &format!("{path} to be {want}"),
            Duration::from_secs(60),
            async || {
                last = self.get(path).send_json().await;
                last[field] == want
            },
        )
        .await;
        last
    }

    async fn results(&self, path: &str) -> Vec<csv::StringRecord> {
        let r = self.get(path).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        csv::Reader::from_reader(text.as_bytes())
            .records()
            .map(Result::unwrap)
            .collect()
    }
}

/// The simulator's outcome by the number's last digit (docs/carrier-sim.md#behaviour): 0–5
/// answered, 6 busy, 7 no-answer, 8 failed, 9 voicemail.
fn number(i: usize) -> String {
    format!("+1201555{:04}", 100 + i)
}

#[tokio::test]
async fn rejected_rows_export_and_retry_by_outcome_follow_the_call_record() {
    let stack = start(300).await;
    // Ten numbers, one per outcome digit, and three bad rows among them (rows 4, 8 and 13).
    let mut contacts: Vec<Value> = (0..10)
        .map(|i| json!({"phoneNumber": number(i), "name": format!("n{i}"), "metadata": {"i": i}}))
        .collect();
    contacts.insert(3, json!({"phoneNumber": "abc"}));
    contacts.insert(7, json!({"phoneNumber": " "}));
    contacts.push(json!({"phoneNumber": number(0)}));
    let created: Value = stack
        .post(
            "/api/v1/batch",
            json!({"agentId": stack.agent, "userId": "u1", "contacts": contacts,
                   "options": {"name": "spring", "retryStrategy": {"maxAttempts": 1}, "machineDetection": "Enable"}}),
        )
        .send_json()
        .await;
    let id = created["batchId"].as_str().unwrap().to_owned();

    // During the campaign: a snapshot with every contact, in row order.
    stack
        .wait_for("ingestion", Duration::from_secs(30), async || {
            let s: Value = stack
                .get(&format!("/api/v1/batch/{id}/status"))
                .send_json()
                .await;
            s["status"] != "ingesting"
        })
        .await;
    let during = stack
        .results(&format!("/api/v1/batch/{id}/results.csv"))
        .await;
    let rows: Vec<&str> = during.iter().map(|l| &l[0]).collect();
    assert_eq!(
        rows,
        ["1", "2", "3", "5", "6", "7", "9", "10", "11", "12"],
        "accepted rows keep the numbers the user gave them"
    );
    for line in &during {
        assert!(
            ["SCHEDULED", "ONGOING", "COMPLETED", "MISSED", "FAILED"].contains(&&line[5]),
            "{line:?}"
        );
    }

    let status = stack
        .wait_status(&format!("/api/v1/batch/{id}/status"), "status", "completed")
        .await;

    // The rejected list, row by row, is what the counts say.
    let rejected: Value = stack
        .get(&format!("/api/v1/batch/{id}/rejected"))
        .send_json()
        .await;
    let listed: Vec<(i64, &str)> = rejected["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["row"].as_i64().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            (4, "invalid_number"),
            (8, "missing_number"),
            (13, "duplicate")
        ]
    );
    assert_eq!(status["rows"]["rejected"], 3, "{status}");
    for (reason, n) in status["rejected"].as_object().unwrap() {
        let count = listed.iter().filter(|(_, r)| r == reason).count();
        assert_eq!(n.as_u64().unwrap() as usize, count, "{reason}");
    }
    let csv_text = stack
        .get(&format!("/api/v1/batch/{id}/rejected"))
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        csv_text.starts_with("row,phoneNumber,reason,detail\r\n4,abc,invalid_number,"),
        "{csv_text}"
    );
    assert_eq!(csv_text.lines().count(), 4);

    // After the campaign: the export says what the carrier saw, number by number.
    let dialed = stack.dialed();
    let after = stack
        .results(&format!("/api/v1/batch/{id}/results.csv"))
        .await;
    assert_eq!(after.len(), 10);
    for (i, line) in after.iter().enumerate() {
        let (calls, outcome, from) = &dialed[&number(i)];
        assert_eq!(*calls, 1, "{line:?}");
        assert_eq!(&line[3], number(i));
        assert_eq!(&line[4], format!("n{i}"));
        assert_eq!(&line[6], outcome.as_str(), "{line:?}");
        assert_eq!(&line[7], "1");
        assert_eq!(&line[10], from.as_str());
        assert!(!line[8].is_empty(), "lastCallAt: {line:?}");
        assert_eq!(
            serde_json::from_str::<Value>(&line[15]).unwrap(),
            json!({"i": i})
        );
    }

    // One of the numbers to retry is on the do-not-call list by now.
    let r = stack
        .post("/api/dnc", json!({"numbers": [number(9)]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());

    let bad = stack
        .post(
            &format!("/api/v1/batch/{id}/retry"),
            json!({"outcomes": ["nope"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let retried = stack
        .post(
            &format!("/api/v1/batch/{id}/retry"),
            json!({"outcomes": ["no-answer", "busy", "failed", "voicemail"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 202);
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(retried["retryOf"], id);
    assert_eq!(
        retried["rows"],
        json!({"submitted": 4, "accepted": 3, "rejected": 1})
    );
    let new_id = retried["batchId"].as_str().unwrap().to_owned();
    let new_status = stack
        .wait_status(
            &format!("/api/v1/batch/{new_id}/status"),
            "status",
            "completed",
        )
        .await;
    assert_eq!(new_status["retryOf"], id);
    let dnc: Value = stack
        .get(&format!("/api/v1/batch/{new_id}/rejected"))
        .send_json()
        .await;
    assert_eq!(dnc["data"][0]["reason"], "do_not_call");
    assert_eq!(dnc["data"][0]["phoneNumber"], number(9));

    // Only the matching numbers were called again, once each; the listed one was not.
    let dialed = stack.dialed();
    for i in 0..10 {
        let want = if (6..=8).contains(&i) { 2 } else { 1 };
        assert_eq!(dialed[&number(i)].0, want, "{}", number(i));
    }
    let export = stack
        .results(&format!("/api/v1/batch/{new_id}/results.csv"))
        .await;
    let numbers: Vec<&str> = export.iter().map(|l| &l[3]).collect();
    assert_eq!(numbers, [number(6), number(7), number(8)]);
    assert_eq!(&export[0][4], "n6", "each contact keeps its own fields");

    // The original cannot gain rows now, and retrying a running batch is refused.
    let r = stack
        .post(
            &format!("/api/v1/batch/{id}/contacts"),
            json!({"contacts": [{"phoneNumber": number(20)}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
}

type Received = Arc<Mutex<Vec<Bytes>>>;

/// A webhook receiver recording every delivery's body.
async fn receiver() -> (SocketAddr, Received) {
    let received: Received = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/{*path}",
        axum::routing::post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

#[tokio::test]
async fn rows_added_to_a_running_vogent_job_are_dialed_once_with_its_webhooks() {
    let stack = start(800).await;
    let (hooks, received) = receiver().await;
    // Numbers ending 0–5: answered, so nothing waits for a retry.
    let first: Vec<String> = (0..4).map(|i| format!("+120155502{i:02}")).collect();
    let job: Value = stack
        .post(
            "/api/batch_dial_jobs",
            json!({"name": "growing", "callAgentId": stack.agent, "maxConcurrentDials": 1,
                   "rows": first.iter().map(|n| json!({"toNumber": n})).collect::<Vec<_>>(),
                   "webhooks": {"onCallComplete": format!("http://{hooks}/calls")}}),
        )
        .send_json()
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    stack
        .wait_for("ingestion", Duration::from_secs(30), async || {
            let s: Value = stack
                .get(&format!("/api/v1/batch/{id}/status"))
                .send_json()
                .await;
            s["status"] != "ingesting"
        })
        .await;
    let started = stack
        .post(
            &format!("/api/batch_dial_jobs/{id}/paused"),
            json!({"paused": false}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 200);
    stack
        .wait_for("the first call", Duration::from_secs(30), async || {
            !stack.dialed().is_empty()
        })
        .await;

    // Rows 5–9: two new numbers, a duplicate of row 2, a bad number, another new number.
    let added = stack
        .post(
            &format!("/api/batch_dial_jobs/{id}/rows"),
            json!({"rows": [
                {"toNumber": "+12015550204", "inputs": {"k": "v"}},
                {"toNumber": "+12015550201"},
                {"toNumber": "+12015550205"},
                {"toNumber": "nope"},
                {"toNumber": "+12015550210"},
            ]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 202);
    let added: Value = added.json().await.unwrap();
    assert_eq!(
        (added["rows"].as_i64(), added["firstRow"].as_i64()),
        (Some(5), Some(5))
    );

    stack
        .wait_status(&format!("/api/batch_dial_jobs/{id}"), "status", "COMPLETE")
        .await;
    let dialed = stack.dialed();
    assert_eq!(dialed.len(), 7, "{dialed:?}");
    assert!(
        dialed.values().all(|(calls, _, _)| *calls == 1),
        "{dialed:?}"
    );
    assert!(dialed.contains_key("+12015550210"));

    let rejected: Value = stack
        .get(&format!("/api/batch_dial_jobs/{id}/rejected"))
        .send_json()
        .await;
    let listed: Vec<(i64, &str)> = rejected["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["row"].as_i64().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, [(6, "duplicate"), (8, "invalid_number")]);
    let export = stack
        .results(&format!("/api/batch_dial_jobs/{id}/results.csv"))
        .await;
    let rows: Vec<&str> = export.iter().map(|l| &l[0]).collect();
    assert_eq!(rows, ["1", "2", "3", "4", "5", "7", "9"]);
    assert_eq!(
        serde_json::from_str::<Value>(&export[4][15]).unwrap(),
        json!({"k": "v"})
    );

    // The Vogent job's webhook: one call.completed per call.
    stack
        .wait_for(
            "7 webhook deliveries",
            Duration::from_secs(30),
            async || received.lock().unwrap().len() >= 7,
        )
        .await;
    let bodies: Vec<Value> = received
        .lock()
        .unwrap()
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    assert!(
        bodies.iter().all(|b| b["event"] == "call.completed"),
        "{bodies:?}"
    );

    // A completed job takes no more rows.
    let r = stack
        .post(
            &format!("/api/batch_dial_jobs/{id}/rows"),
            json!({"rows": [{"toNumber": "+12015550211"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
}
