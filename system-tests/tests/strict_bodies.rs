//! Misspelled fields on every body, over HTTP against the running roles (issue #29): each is a
//! 422 `unknown_field` naming it, nothing is created, and the carrier simulator's record shows
//! no call, although the ingest worker, the scheduler and a dial worker are all running.

use std::time::Duration;

use serde_json::{Value, json};

async fn refused(r: reqwest::Response, field: &str) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 422, "{field}: {body}");
    assert_eq!(body["error"]["code"], "unknown_field", "{body}");
    let named: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert!(named.contains(&field), "{field} in {body}");
}

#[tokio::test]
async fn misspelled_fields_are_refused_and_nothing_is_dialed() {
    let stack = system_tests::stack::Stack::builder("strict")
        .dial_workers(1)
        .workspace_limit(5)
        .talk_ms(50)
        .start()
        .await;
    let agent = stack.agent.clone();
    let send = |method: reqwest::Method, path: &str, body: Value| {
        stack
            .http
            .request(method, format!("{}{path}", stack.gateway))
            .bearer_auth(&stack.key)
            .json(&body)
            .send()
    };
    use reqwest::Method;

    // The example: a misspelled start time was ignored and the calls began at once.
    let r = send(Method::POST, "/api/v1/batch", json!({
        "agentId": agent, "userId": "u",
        "contacts": [{"phoneNumber": "+12015550101"}, {"phoneNumber": "+12015550102", "nmae": "Ann"}],
        "options": {"sheduledStartTime": "2030-01-01T00:00:00Z", "maxCallsPerSecond": 3},
    }))
    .await
    .unwrap();
    refused(r, "options.sheduledStartTime").await;
    for (body, field) in [
        (
            json!({"agentId": agent, "userId": "u", "contacts": [{"phoneNumber": "+12015550101"}],
                "options": {"retry_strategy": {"maxAttempts": 1}}}),
            "options.retry_strategy",
        ),
        (
            json!({"agentId": agent, "userId": "u", "contacts": [{"phoneNumber": "+12015550101", "nmae": "A"}]}),
            "contacts[0].nmae",
        ),
        (
            json!({"agentId": agent, "userId": "u", "contacts": [{"phoneNumber": "+12015550101"}], "extra": 1}),
            "extra",
        ),
    ] {
        refused(
            send(Method::POST, "/api/v1/batch", body).await.unwrap(),
            field,
        )
        .await;
    }
    // The same body as a CSV upload's settings part.
    let form = reqwest::multipart::Form::new()
        .text(
            "batch",
            json!({"agentId": agent, "userId": "u", "optons": {}}).to_string(),
        )
        .part(
            "file",
            reqwest::multipart::Part::text("phoneNumber,nickname\n+12015550101,Al\n")
                .file_name("c.csv")
                .mime_str("text/csv")
                .unwrap(),
        );
    let r = stack
        .http
        .post(format!("{}/api/v1/batch", stack.gateway))
        .bearer_auth(&stack.key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    refused(r, "optons").await;
    // Vogent: `fromNumbers` at the top, `startTme` in a schedule.
    let r = send(
        Method::POST,
        "/api/batch_dial_jobs",
        json!({
            "name": "j", "callAgentId": agent, "maxConcurrentDials": 1, "fromNumbers": [],
            "rows": [{"toNumber": "+12015550101"}],
        }),
    )
    .await
    .unwrap();
    refused(r, "fromNumbers").await;

    // A job, created but not started: every change to it is misspelled.
    let r = send(
        Method::POST,
        "/api/batch_dial_jobs",
        json!({
            "name": "kept", "callAgentId": agent, "maxConcurrentDials": 1,
            "rows": [{"toNumber": "+12015550111"}],
        }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let job: Value = r.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    refused(
        send(
            Method::PUT,
            &format!("/api/batch_dial_jobs/{id}"),
            json!({"maxConcurrentDial": 3}),
        )
        .await
        .unwrap(),
        "maxConcurrentDial",
    )
    .await;
    refused(
        send(
            Method::POST,
            &format!("/api/batch_dial_jobs/{id}/paused"),
            json!({"pasued": false}),
        )
        .await
        .unwrap(),
        "pasued",
    )
    .await;
    // Appended rows: once its own rows are ingested (409 until then).
    let path = format!("/api/batch_dial_jobs/{id}/rows");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let r = loop {
        let r = send(
            Method::POST,
            &path,
            json!({"rows": [{"toNumber": "+12015550112", "imputs": {}}]}),
        )
        .await
        .unwrap();
        if r.status() != 409 || tokio::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    refused(r, "rows[0].imputs").await;
    for (method, path, body, field) in [
        (
            Method::POST,
            "/api/agents",
            json!({"name": "a", "answerUrl": "https://a.example.com/x", "answerURL": "x"}),
            "answerURL",
        ),
        (
            Method::POST,
            "/api/phone_numbers",
            json!({"number": "+12015550199", "lable": "x"}),
            "lable",
        ),
        (
            Method::POST,
            "/api/dnc",
            json!({"numbers": ["+12015550198"], "reasn": "asked"}),
            "reasn",
        ),
        (
            Method::PATCH,
            "/api/workspace",
            json!({"defaultRegon": "GB"}),
            "defaultRegon",
        ),
    ] {
        refused(send(method, path, body).await.unwrap(), field).await;
    }
    // A region the phone library does not know.
    let r = send(
        Method::PATCH,
        "/api/workspace",
        json!({"defaultRegion": "XX"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 422);

    // Give the roles time to act on anything that slipped through.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let list: Value = stack
        .get("/api/v1/batch/list")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "only the job made on purpose: {list:?}");
    assert_eq!(list[0]["name"], "kept");
    let jobs: Value = stack
        .get("/api/batch_dial_jobs")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jobs = jobs["data"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "only the job made on purpose: {jobs:?}");
    assert_eq!(jobs[0]["status"], "INIT", "never started: {jobs:?}");
    assert_eq!(jobs[0]["maxConcurrentDials"], 1);
    let queue: Value = stack
        .get(&format!("/api/batch_dial_jobs/{id}/queue"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        queue["data"].as_array().map(Vec::len),
        Some(1),
        "no row appended: {queue}"
    );
    let agents: Value = stack
        .get("/api/agents")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(agents["data"].as_array().unwrap().len(), 1, "{agents}");
    let dnc: Value = stack
        .get("/api/dnc")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dnc["data"], json!([]), "{dnc}");
    let settings: Value = stack
        .get("/api/workspace")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settings["defaultRegion"], "US");
    assert!(
        stack.calls().is_empty(),
        "the carrier saw calls: {:?}",
        stack.calls()
    );
    stack.shutdown.cancel();
}
