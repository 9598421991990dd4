//! Edges that refuse what they don't understand (issue #29): unknown fields, duplicated keys,
//! JSON type words, the same lengths on both APIs, idempotent replays of re-serialised JSON,
//! and the vendors' documented examples still accepted.

mod common;

use common::{TestApp, error_fields, spawn_app};
use serde_json::{Value, json};
use testkit::http::SendJson;

/// The error body of a response expected to have `status`.
async fn error(r: reqwest::Response, status: u16) -> Value {
    let status_got = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status_got, status, "{body}");
    body["error"].clone()
}

async fn post_raw(app: &TestApp, path: &str, body: &str) -> reqwest::Response {
    app.post(path)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn batches_in_db(app: &TestApp) -> i64 {
    let client = app.env.db.get().await.unwrap();
    client
        .query_one("SELECT count(*) AS n FROM batches", &[])
        .await
        .unwrap()
        .get("n")
}

#[tokio::test]
async fn misspelled_fields_on_every_body_are_named_and_nothing_is_created() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;

    // Dialgen create: the issue's own examples, all at once.
    let r = app
        .post("/api/v1/batch")
        .json(&json!({
            "agentId": agent, "userId": "u", "extra": 1,
            "contacts": [{"phoneNumber": "+12015550101"}, {"phoneNumber": "+12015550102"},
                         {"phoneNumber": "+12015550103"}, {"phoneNumber": "+12015550104", "nmae": "Ann"}],
            "options": {"sheduledStartTime": "2030-01-01T00:00:00Z", "maxCallPerSecond": 3,
                        "retry_strategy": {"maxAttempts": 2}},
        }))
        .send()
        .await
        .unwrap();
    let e = error(r, 422).await;
    assert_eq!(e["code"], "unknown_field", "{e}");
    let details = e["details"].as_array().unwrap();
    let named: Vec<&str> = details
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    for field in [
        "contacts[3].nmae",
        "extra",
        "options.sheduledStartTime",
        "options.maxCallPerSecond",
        "options.retry_strategy",
    ] {
        assert!(named.contains(&field), "{field} in {named:?}");
    }
    let message_of = |field: &str| {
        details.iter().find(|d| d["field"] == field).unwrap()["message"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(message_of("options.sheduledStartTime").contains("did you mean `scheduledStartTime`?"));
    assert!(message_of("options.maxCallPerSecond").contains("did you mean `maxCallsPerSecond`?"));
    assert!(message_of("options.retry_strategy").contains("did you mean `retryStrategy`?"));
    assert!(message_of("contacts[3].nmae").contains("did you mean `name`?"));
    assert!(!message_of("extra").contains("did you mean"));

    // Vogent create: `fromNumbers` and a row's `imputs`.
    let r = app
        .post("/api/batch_dial_jobs")
        .json(
            &json!({"name": "j", "callAgentId": agent, "maxConcurrentDials": 1,
                      "fromNumbers": [], "rows": [{"toNumber": "+12015550101", "imputs": {}}]}),
        )
        .send()
        .await
        .unwrap();
    let e = error(r, 422).await;
    assert_eq!(e["code"], "unknown_field", "{e}");
    let text = e.to_string();
    assert!(
        text.contains("rows[0].imputs") && text.contains("fromNumbers"),
        "{e}"
    );
    assert!(text.contains("did you mean `inputs`?"), "{e}");
    // A misspelled required field is also a missing one: one 422 says both.
    let r = app
        .post("/api/batch_dial_jobs")
        .json(
            &json!({"name": "j", "callAgentId": agent, "maxConcurrentDials": 1,
                      "rows": [{"toNumbr": "+12015550101"}]}),
        )
        .send()
        .await
        .unwrap();
    let e = error(r, 422).await;
    assert_eq!(e["code"], "unknown_field", "{e}");
    assert!(e.to_string().contains("did you mean `toNumber`?"), "{e}");

    // Nothing of either exists, hidden or not.
    let list: Value = app.get("/api/v1/batch/list").send_json().await;
    assert_eq!(list, json!([]));
    let jobs: Value = app.get("/api/batch_dial_jobs").send_json().await;
    assert_eq!(jobs["data"], json!([]), "{jobs}");

    // A job to change, then every other body.
    let job = app.create_job(&agent, 2).await;
    let id = job["id"].as_str().unwrap().to_owned();
    // (Appended rows need the ingest workers: the system tests send them.)
    let refused: [(&str, String, Value, &str); 7] = [
        (
            "PUT",
            format!("/api/batch_dial_jobs/{id}"),
            json!({"maxConcurrentDial": 3}),
            "maxConcurrentDial",
        ),
        (
            "POST",
            format!("/api/batch_dial_jobs/{id}/paused"),
            json!({"pasued": false}),
            "pasued",
        ),
        (
            "POST",
            "/api/agents".to_owned(),
            json!({"name": "a", "answerUrl": "https://a.example.com/x", "answerURL": "x"}),
            "answerURL",
        ),
        (
            "POST",
            "/api/phone_numbers".to_owned(),
            json!({"number": "+12015550199", "lable": "x"}),
            "lable",
        ),
        (
            "POST",
            "/api/dnc".to_owned(),
            json!({"numbers": ["+12015550198"], "reasn": "asked"}),
            "reasn",
        ),
        (
            "PATCH",
            "/api/workspace".to_owned(),
            json!({"defaultRegon": "US"}),
            "defaultRegon",
        ),
        (
            "PATCH",
            "/api/workspace".to_owned(),
            json!({"retryDefaults": {"maxAttempt": 2}}),
            "retryDefaults.maxAttempt",
        ),
    ];
    for (method, path, body, field) in refused {
        let r = app
            .request_as(&app.key, method.parse().unwrap(), &path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let e = error(r, 422).await;
        assert_eq!(e["code"], "unknown_field", "{method} {path}: {e}");
        assert_eq!(e["details"][0]["field"], field, "{method} {path}: {e}");
    }
    // Nothing changed or was added.
    let now: Value = app
        .get(&format!("/api/batch_dial_jobs/{id}"))
        .send_json()
        .await;
    assert_eq!(now["maxConcurrentDials"], job["maxConcurrentDials"]);
    assert_eq!(now["status"], "INIT", "{now}");
    let agents: Value = app.get("/api/agents").send_json().await;
    assert_eq!(agents["data"].as_array().unwrap().len(), 1, "{agents}");
    let numbers: Value = app.get("/api/phone_numbers").send_json().await;
    assert_eq!(numbers["data"].as_array().unwrap().len(), 1, "{numbers}");
    let dnc: Value = app.get("/api/dnc").send_json().await;
    assert_eq!(dnc["data"], json!([]), "{dnc}");
    let client = app.env.db.get().await.unwrap();
    let rows: i64 = client
        .query_one(
            "SELECT total_rows::bigint AS n FROM batches WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap()
        .get("n");
    assert_eq!(rows, 2);
}

#[tokio::test]
async fn a_duplicated_key_anywhere_is_a_422_naming_it() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    // Two `contacts` arrays were concatenated before; a repeated option took the last value.
    let body = format!(
        r#"{{"agentId":"{agent}","userId":"u","contacts":[{{"phoneNumber":"+12015550101"}}],
            "contacts":[{{"phoneNumber":"+12015550102"}}],
            "options":{{"priority":2,"priority":9}}}}"#
    );
    let e = error(post_raw(&app, "/api/v1/batch", &body).await, 422).await;
    assert_eq!(e["code"], "duplicate_key", "{e}");
    let fields: Vec<&str> = e["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["contacts", "options.priority"]);
    // Inside one contact (a 400 before), and inside its free-form metadata.
    let body = format!(
        r#"{{"agentId":"{agent}","userId":"u","contacts":[{{"phoneNumber":"+12015550101","name":"a","name":"b",
            "metadata":{{"k":1,"k":2}}}}]}}"#
    );
    let e = error(post_raw(&app, "/api/v1/batch", &body).await, 422).await;
    assert_eq!(e["code"], "duplicate_key", "{e}");
    let fields: Vec<&str> = e["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["contacts[0].name", "contacts[0].metadata.k"]);
    // Vogent's `rows`, and a whole (not streamed) body.
    let body = format!(
        r#"{{"name":"j","callAgentId":"{agent}","maxConcurrentDials":1,"rows":[{{"toNumber":"+12015550101"}}],"rows":[]}}"#
    );
    assert_eq!(
        error_fields(post_raw(&app, "/api/batch_dial_jobs", &body).await, 422).await,
        ["rows"]
    );
    let r = post_raw(
        &app,
        "/api/agents",
        r#"{"name":"a","name":"b","answerUrl":"https://a.example.com/x"}"#,
    )
    .await;
    assert_eq!(error_fields(r, 422).await, ["name"]);
    assert_eq!(batches_in_db(&app).await, 0);
}

#[tokio::test]
async fn type_errors_speak_json_types() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    let r = app
        .post("/api/v1/batch")
        .json(
            &json!({"agentId": agent, "userId": "u", "contacts": [{"phoneNumber": "+12015550101"}],
                      "options": {"priority": "high"}}),
        )
        .send()
        .await
        .unwrap();
    let e = error(r, 400).await;
    let message = e["details"][0]["message"].as_str().unwrap();
    assert!(message.contains("expected an integer"), "{message}");
    for body in [
        json!({"name": "a", "answerUrl": ["x"]}),
        json!({"name": {"x": 1}, "answerUrl": "https://a.example.com/x"}),
    ] {
        let r = app.post("/api/agents").json(&body).send().await.unwrap();
        let e = error(r, 400).await;
        let text = e.to_string();
        assert!(text.contains("a string"), "{text}");
        for rust in ["i64", "u32", "sequence", "map", "struct"] {
            assert!(!text.contains(rust), "{rust} in {text}");
        }
    }
    let r = app
        .request_as(&app.key, reqwest::Method::PATCH, "/api/workspace")
        .json(&json!({"retryDefaults": {"maxAttempts": 1.5}}))
        .send()
        .await
        .unwrap();
    let text = error(r, 400).await.to_string();
    assert!(
        text.contains("number `1.5`") && text.contains("an integer"),
        "{text}"
    );
}

#[tokio::test]
async fn lengths_are_the_same_on_both_apis() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let long = "n".repeat(501);
    let r = app
        .post("/api/v1/batch")
        .json(&json!({"agentId": agent, "userId": "u",
                      "options": {"name": long},
                      "contacts": [{"phoneNumber": "+12015550101", "name": "x".repeat(200_000),
                                    "email": "not@an address", "company": "c".repeat(501),
                                    "metadata": {"blob": "m".repeat(1_000_000)}},
                                   {"phoneNumber": "+12015550102", "email": "a@b.c"}]}))
        .send()
        .await
        .unwrap();
    let fields = error_fields(r, 422).await;
    for field in [
        "options.name",
        "contacts[0].name",
        "contacts[0].email",
        "contacts[0].company",
        "contacts[0].metadata",
        "contacts[1].email",
    ] {
        assert!(fields.contains(&field.to_owned()), "{field} in {fields:?}");
    }
    let r = app
        .post("/api/batch_dial_jobs")
        .json(&json!({"name": long, "callAgentId": agent, "maxConcurrentDials": 1,
                      "rows": [{"toNumber": "+12015550101", "inputs": {"blob": "i".repeat(20_000)}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 422).await, ["rows[0].inputs", "name"]);
    assert_eq!(batches_in_db(&app).await, 0);
    // At the limits, both are stored.
    let r = app
        .post("/api/v1/batch")
        .json(
            &json!({"agentId": agent, "userId": "u", "options": {"name": "n".repeat(500)},
                      "contacts": [{"phoneNumber": "+12015550101", "name": "x".repeat(500),
                                    "email": "jane.doe+x@mail.example.co.uk",
                                    "metadata": {"blob": "m".repeat(16_000)}}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn an_idempotent_replay_compares_the_parsed_request() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let compact = format!(
        r#"{{"agentId":"{agent}","userId":"u","options":{{"priority":7,"tags":["a"]}},"contacts":[{{"phoneNumber":"+12015550101","name":"Ann","metadata":{{"a":1,"b":2}}}}]}}"#
    );
    // The same request: other whitespace, other key order (in the body, the options, a
    // contact and its metadata).
    let spaced = format!(
        r#"{{ "options" : {{ "tags" : [ "a" ], "priority" : 7 }},
              "contacts" : [ {{ "metadata" : {{ "b" : 2, "a" : 1 }}, "name" : "Ann", "phoneNumber" : "+12015550101" }} ],
              "userId" : "u", "agentId" : "{agent}" }}"#
    );
    let send = |body: String| {
        app.post("/api/v1/batch")
            .header("content-type", "application/json")
            .header("Idempotency-Key", "same-request")
            .body(body)
            .send()
    };
    let first = send(compact.clone()).await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = send(spaced).await.unwrap();
    assert_eq!(again.status(), 202, "{}", again.text().await.unwrap());
    let again: Value = again.json().await.unwrap();
    assert_eq!(first["batchId"], again["batchId"]);
    // Another request under the key is still refused.
    let other = compact.replace("\"priority\":7", "\"priority\":8");
    let e = error(send(other).await.unwrap(), 422).await;
    assert_eq!(e["code"], "idempotency_key_reused");
}

#[tokio::test]
async fn the_vendors_documented_bodies_are_accepted() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    let number = app.create_number("+12015550100").await;
    // Seed 000/001: a Vogent job with every documented field.
    let r = app
        .post("/api/batch_dial_jobs")
        .json(&json!({
            "name": "Customer Survey Campaign", "callAgentId": agent, "maxConcurrentDials": 5,
            "fromPhoneNumberIds": [number],
            "schedule": {"days": [{"dayOfWeek": 1, "timeSlots": [{"startTime": "09:00", "endTime": "17:00"}]}],
                         "timezone": "America/New_York", "disableSchedule": false},
            "rows": [{"toNumber": "+12015550101", "inputs": {"customer_name": "John Doe", "account_id": "ACC123"}}],
            // Documented extensions.
            "defaultRegion": "US", "machineDetection": "Enable", "maxCallsPerSecond": 2,
            "webhooks": {"onCallComplete": "https://hooks.example.com/c", "onBatchComplete": "https://hooks.example.com/b",
                         "onBatchFailed": "https://hooks.example.com/f"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let job: Value = r.json().await.unwrap();
    let id = job["id"].as_str().unwrap();
    let r = app
        .put(&format!("/api/batch_dial_jobs/{id}"))
        .json(&json!({"maxConcurrentDials": 10, "fromPhoneNumberIds": [number],
                      "schedule": {"days": [{"dayOfWeek": 1, "timeSlots": [{"startTime": "09:00", "endTime": "18:00"}]}],
                                   "timezone": "America/New_York"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // Seed 004 and the vendor reference (docs/api.md#vendor-api-reference): a Dialgen batch with every documented field.
    let r = app
        .post("/api/v1/batch")
        .json(&json!({
            "agentId": agent, "userId": "user_123",
            "contacts": [{"id": "c1", "phoneNumber": "+12015550102", "name": "John Doe", "email": "john@example.com",
                          "company": "Acme Corp", "metadata": {"lead_score": 85}, "timezone": "America/Chicago"}],
            "options": {"priority": 8, "scheduledStartTime": "2030-01-01T09:00:00Z", "timezone": "America/New_York",
                        "maxCallsPerSecond": 5,
                        "retryStrategy": {"maxAttempts": 3, "noAnswerDelay": 3600000, "busyDelay": 300000, "voicemailDelay": 60000},
                        "webhooks": {"onCallComplete": "https://hooks.example.com/c"},
                        "tags": ["campaign-1"],
                        "maxConcurrentDials": 2, "fromPhoneNumberIds": [number], "name": "Q4", "defaultRegion": "US",
                        "machineDetection": "DetectMessageEnd"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn a_413_leaves_no_row_and_monitor_links_use_the_installations_secret() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let row = r#"{"phoneNumber":"+12015550101"}"#;
    let body = format!(
        r#"{{"agentId":"{agent}","userId":"u","contacts":[{}]}}"#,
        vec![row; 100_001].join(",")
    );
    error_fields(post_raw(&app, "/api/v1/batch", &body).await, 413).await;
    assert_eq!(
        batches_in_db(&app).await,
        0,
        "not even a hidden aborted row"
    );

    // The link a create answers with is signed with the secret V19 stored, never the default.
    let r = app
        .post("/api/v1/batch")
        .json(&json!({"agentId": agent, "userId": "u", "contacts": [{"phoneNumber": "+12015550101"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let created: Value = r.json().await.unwrap();
    let id: uuid::Uuid = created["batchId"].as_str().unwrap().parse().unwrap();
    let link = created["links"]["dashboard"].as_str().unwrap();
    let token = link.split("token=").nth(1).unwrap();
    let client = app.env.db.get().await.unwrap();
    let secret: String = client
        .query_one("SELECT secret FROM monitor_secret", &[])
        .await
        .unwrap()
        .get("secret");
    assert_eq!(secret.len(), 64, "256 random bits, hex");
    assert_ne!(secret, api_gateway::config::DEV_MONITOR_TOKEN_SECRET);
    use api_gateway::monitor::token;
    let now = chrono::Utc::now();
    assert!(token::verify(secret.as_bytes(), id, Some(token), now).is_ok());
    let dev = api_gateway::config::DEV_MONITOR_TOKEN_SECRET.as_bytes();
    assert!(token::verify(dev, id, Some(token), now).is_err());
    // A link forged with the published default opens nothing.
    let forged = token::issue(dev, id, now);
    let r = app
        .http
        .get(app.url(&format!("/batch/monitor/{id}?token={forged}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(!token::usable(dev) && !token::usable(b""));
}
