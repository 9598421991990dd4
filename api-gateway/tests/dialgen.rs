//! The Dialgen Call Batch surface.

mod common;

use common::{error_fields, spawn_app};
use reqwest::Method;
use serde_json::{Value, json};
use testkit::http::SendJson;

fn contacts(n: usize) -> Vec<Value> {
    (0..n).map(|i| json!({"phoneNumber": format!("+1555123{:04}", i), "name": "Jane", "metadata": {"lead_score": i}})).collect()
}

#[tokio::test]
async fn create_answers_202_with_links_and_is_visible_through_both_surfaces() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let body = json!({
        "agentId": agent, "userId": "user_1", "contacts": contacts(3),
        "options": {"priority": 7, "timezone": "America/New_York", "maxCallsPerSecond": 5,
                    "retryStrategy": {"maxAttempts": 2, "noAnswerDelay": 1000, "busyDelay": 500},
                    "webhooks": {"onCallComplete": "https://crm.example.com/hook"}, "tags": ["q4"]}
    });
    let r = app.post("/api/v1/batch").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["success"], true);
    assert_eq!(created["status"], "ingesting");
    let id = created["batchId"].as_str().unwrap();
    assert!(
        created["links"]["status"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/api/v1/batch/{id}/status"))
    );
    assert!(
        created["links"]["dashboard"]
            .as_str()
            .unwrap()
            .contains(&format!("/batch/monitor/{id}?token="))
    );

    let status: Value = app
        .get(&format!("/api/v1/batch/{id}/status"))
        .send_json()
        .await;
    assert_eq!(status["status"], "ingesting");
    assert_eq!(status["priority"], 7);
    assert_eq!(
        status["webhooks"]["onCallComplete"],
        "https://crm.example.com/hook"
    );
    let check: Value = app
        .get(&format!(
            "/api/v1/batch/check-status?batchId={id}&limit=all"
        ))
        .send_json()
        .await;
    assert_eq!(check["batchId"], id);
    assert!(check["statistics"]["percentComplete"].is_number());

    let list: Value = app.get("/api/v1/batch/list").send_json().await;
    assert_eq!(list[0]["batchId"], id);
    let job: Value = app
        .get(&format!("/api/batch_dial_jobs/{id}"))
        .send_json()
        .await;
    assert_eq!(job["status"], "INIT");
    assert_eq!(job["callAgentId"], agent.as_str());
}

#[tokio::test]
async fn documented_rules_are_enforced() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let mut c = contacts(2);
    c[1]["email"] = json!("not-an-email");
    let body = json!({
        "agentId": agent, "contacts": c,
        "options": {"priority": 11, "scheduledStartTime": "2020-01-01T00:00:00Z", "timezone": "Nowhere/City",
                    "maxCallsPerSecond": 31, "retryStrategy": {"maxAttempts": 6},
                    "webhooks": {"onCallComplete": "mailto:x"}}
    });
    let fields = error_fields(
        app.post("/api/v1/batch").json(&body).send().await.unwrap(),
        422,
    )
    .await;
    for f in [
        "contacts[1].email",
        "userId",
        "options.priority",
        "options.scheduledStartTime",
        "options.timezone",
        "options.maxCallsPerSecond",
        "options.retryStrategy.maxAttempts",
        "options.webhooks.onCallComplete",
    ] {
        assert!(
            fields.contains(&f.to_owned()),
            "{f} missing from {fields:?}"
        );
    }
    let r = app.post("/api/v1/batch").json(&json!({"agentId": agent, "userId": "u", "contacts": contacts(1), "options": {"scheduledStartTime": "tomorrow"}})).send().await.unwrap();
    assert_eq!(
        error_fields(r, 422).await,
        vec!["options.scheduledStartTime"]
    );
    // A contact's own timezone (the recipient-hours extension) must be an IANA name.
    let r = app
        .post("/api/v1/batch")
        .json(&json!({"agentId": agent, "userId": "u", "contacts": [
            {"phoneNumber": "+12015550101", "timezone": "America/New_York"},
            {"phoneNumber": "+12015550102", "timezone": "Mars/Olympus"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 422).await, vec!["contacts[1].timezone"]);
    // A badly formed number is not the batch's fault: it is rejected as a row at ingest.
    let r = app
        .post("/api/v1/batch")
        .json(&json!({"agentId": agent, "userId": "u", "contacts": [{"phoneNumber": "12"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(app.ingest_queue_depth().await, 1);
}

#[tokio::test]
async fn more_than_100k_contacts_is_413() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let row = r#"{"phoneNumber":"+15551230000"}"#;
    let body = format!(
        r#"{{"agentId":"{agent}","userId":"u","contacts":[{}]}}"#,
        vec![row; 100_001].join(",")
    );
    let r = app
        .post("/api/v1/batch")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    error_fields(r, 413).await;
    // The first 100,000 were published as they were read; their batch is discarded.
    let list: Value = app.get("/api/v1/batch/list").send_json().await;
    assert_eq!(list, json!([]));
    let client = app.env.db.get().await.unwrap();
    let states: Vec<String> = client
        .query("SELECT ingest_state FROM batches", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("ingest_state"))
        .collect();
    // A 413 leaves nothing behind, not even a hidden aborted row (issue #29): only the
    // record that lets the ingest workers drop its chunks still queued.
    assert!(states.is_empty(), "{states:?}");
    let discarded: i64 = client
        .query_one("SELECT count(*) AS n FROM discarded_uploads", &[])
        .await
        .unwrap()
        .get("n");
    assert_eq!(discarded, 1);
}

#[tokio::test]
async fn idempotency_and_unknown_ids() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let body = json!({"agentId": agent, "userId": "u", "contacts": contacts(1)});
    let (a, b) = app.post_twice("/api/v1/batch", "same", &body).await;
    assert_eq!(a["batchId"], b["batchId"]);
    let list: Value = app.get("/api/v1/batch/list").send_json().await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    error_fields(
        app.get("/api/v1/batch/check-status").send().await.unwrap(),
        422,
    )
    .await;
    error_fields(
        app.get("/api/v1/batch/check-status?batchId=nope")
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    let other = app.other_workspace_key().await;
    let id = a["batchId"].as_str().unwrap();
    error_fields(
        app.request_as(
            &other,
            Method::GET,
            &format!("/api/v1/status/batch?batchId={id}"),
        )
        .send()
        .await
        .unwrap(),
        404,
    )
    .await;
    // Another workspace's agent is an unknown agent here.
    let theirs = app
        .request_as(&other, Method::POST, "/api/agents")
        .json(&json!({"name": "theirs", "answerUrl": "https://a.b/c"}))
        .send_json::<Value>()
        .await;
    let r = app
        .post("/api/v1/batch")
        .json(&json!({"agentId": theirs["id"], "userId": "u", "contacts": contacts(1)}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 422).await, vec!["agentId"]);
}

#[tokio::test]
async fn a_publish_failure_answers_503_and_creates_nothing() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    // Without its exchange the broker refuses every ingest chunk.
    let channel = app.env.broker.channel().await.unwrap();
    let exchange = app
        .env
        .broker
        .topology()
        .exchange(shared::queue::Stream::Ingest);
    channel
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await
        .unwrap();

    let r = app
        .post("/api/v1/batch")
        .json(&json!({"agentId": agent, "userId": "u", "contacts": contacts(3)}))
        .send()
        .await
        .unwrap();
    error_fields(r, 503).await;
    // The batch never became visible: it was aborted, not left half-ingesting.
    let list: Value = app.get("/api/v1/batch/list").send_json().await;
    assert_eq!(list, json!([]));
}
