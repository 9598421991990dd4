//! Edges found from outside (issue 17, section 6): a NUL in a stored text field, `options: null`,
//! the carrier route's errors, the submitted row count, and an `Idempotency-Key` reused with
//! another body.

mod common;

use common::{error_fields, spawn_app};
use serde_json::{Value, json};
use testkit::http::SendJson;

fn dialgen_body(agent: &str) -> Value {
    json!({"agentId": agent, "userId": "user_1",
           "contacts": [{"phoneNumber": "+12015550101"}, {"phoneNumber": "+12015550102"}]})
}

/// PostgreSQL refuses NUL in `text` and `jsonb`; every field stored as it is answers 400 naming
/// the field, in the one error shape, and stores nothing.
#[tokio::test]
async fn a_nul_in_a_stored_text_field_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let nul = "bad\u{0}value";

    let r = app
        .post("/api/agents")
        .json(&json!({"name": nul, "answerUrl": "https://agent.example.com/a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 400).await, ["name"]);
    let r = app
        .post("/api/phone_numbers")
        .json(&json!({"number": "+12015550199", "label": nul}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 400).await, ["label"]);

    let r = app
        .post("/api/batch_dial_jobs")
        .json(
            &json!({"name": nul, "callAgentId": agent, "maxConcurrentDials": 1,
                      "rows": [{"toNumber": "+12015550101"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 400).await, ["name"]);

    let cases: [(&str, Value); 3] = [
        ("userId", json!({"userId": nul})),
        ("options.name", json!({"options": {"name": nul}})),
        ("options.tags[1]", json!({"options": {"tags": ["q4", nul]}})),
    ];
    for (field, patch) in cases {
        let mut body = dialgen_body(&agent);
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = app.post("/api/v1/batch").json(&body).send().await.unwrap();
        assert_eq!(error_fields(r, 400).await, [field], "{body}");
    }

    let r = app
        .get("/api/batch_dial_jobs?userId=a%00b")
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 400).await, ["userId"]);

    let job = app.create_job(&agent, 1).await;
    let r = app
        .put(&format!(
            "/api/batch_dial_jobs/{}",
            job["id"].as_str().unwrap()
        ))
        .json(&json!({"name": nul}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 400).await, ["name"]);

    let list: Value = app.get("/api/v1/batch/list").send_json().await;
    assert_eq!(list.as_array().unwrap().len(), 1, "only the valid job");
}

/// The OpenAPI document declares `options` nullable: `null` is the same as leaving it out.
#[tokio::test]
async fn null_options_are_the_defaults() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let mut body = dialgen_body(&agent);
    body["options"] = Value::Null;
    let r = app.post("/api/v1/batch").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
}

/// `rows.submitted` is the number of contacts sent, once.
#[tokio::test]
async fn rows_submitted_counts_each_contact_once() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let mut body = dialgen_body(&agent);
    body["contacts"] = json!([{"phoneNumber": "+12015550101"}]);
    let created: Value = app.post("/api/v1/batch").json(&body).send_json().await;
    let status: Value = app
        .get(&format!(
            "/api/v1/batch/check-status?batchId={}",
            created["batchId"].as_str().unwrap()
        ))
        .send_json()
        .await;
    assert_eq!(status["rows"]["submitted"], 1, "{status}");
}

/// The carrier callback route answers in the one JSON error shape too.
#[tokio::test]
async fn the_carrier_route_answers_json_errors() {
    let app = spawn_app().await;
    for (path, status) in [
        ("/carrier/status/not-a-uuid", 404),
        (&format!("/carrier/status/{}", uuid::Uuid::now_v7()), 403),
    ] {
        let r = app
            .http
            .post(app.url(path))
            .form(&[("CallStatus", "completed")])
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "application/json"
        );
        error_fields(r, status).await;
    }
}

/// Stripe's rule: a key names one request. Sent again with the same body it answers with the
/// batch as it is now; with another body it is a 422 `idempotency_key_reused`.
#[tokio::test]
async fn an_idempotency_key_is_bound_to_its_body() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let body = dialgen_body(&agent);
    let send = |body: &Value| {
        app.post("/api/v1/batch")
            .header("Idempotency-Key", "k-17")
            .json(body)
            .send()
    };
    let first: Value = send(&body).await.unwrap().json().await.unwrap();
    assert_eq!(first["status"], "ingesting");
    let id: uuid::Uuid = first["batchId"].as_str().unwrap().parse().unwrap();

    // Stand in for the ingest worker and the scheduler: the batch moved on.
    app.env
        .db
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE batches SET ingest_state = 'ready', state = 'completed', completed_at = now() WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let r = send(&body).await.unwrap();
    assert_eq!(r.status(), 202);
    let replay: Value = r.json().await.unwrap();
    assert_eq!(replay["batchId"], first["batchId"]);
    assert_eq!(replay["status"], "completed", "the current status");

    let mut other = body.clone();
    other["contacts"][0]["phoneNumber"] = json!("+12015550109");
    let r = send(&other).await.unwrap();
    assert_eq!(r.status(), 422);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["code"], "idempotency_key_reused", "{err}");

    // The same key on the other surface is another request too.
    let r = app
        .post("/api/batch_dial_jobs")
        .header("Idempotency-Key", "k-17")
        .json(
            &json!({"name": "job", "callAgentId": agent, "maxConcurrentDials": 1,
                      "rows": [{"toNumber": "+12015550101"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let list: Value = app.get("/api/v1/batch/list").send_json().await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}
