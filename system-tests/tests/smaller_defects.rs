//! The "smaller defects" of issue #29, over HTTP against the running roles: lengths are the
//! same on both APIs (a 5,000-character Dialgen batch name, a 200,000-character contact name
//! and a 501-character Vogent name are refused, naming the field, and nothing is created or
//! dialed), type errors speak JSON types rather than Rust's, and a monitor link signed with the
//! published development default opens nothing. (`PATCH /api/workspace {"defaultRegion": "XX"}`
//! is in `strict_bodies.rs`; `webhook-secret show | head -1` in `api-gateway/tests/cli.rs`.)

use std::time::Duration;

use serde_json::{Value, json};

/// The fields a 422 names.
async fn named(r: reqwest::Response) -> (u16, Vec<String>, Value) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    let fields = body["error"]["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|d| d["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (status, fields, body)
}

#[tokio::test]
async fn lengths_types_and_the_monitor_default_are_refused_over_http() {
    let stack = system_tests::stack::Stack::builder("defects")
        .dial_workers(1)
        .workspace_limit(5)
        .talk_ms(50)
        .start()
        .await;
    let agent = stack.agent.clone();

    // Dialgen: a batch name of 5,000 characters.
    let r = stack
        .post(
            "/api/v1/batch",
            json!({"agentId": agent, "userId": "u",
                   "contacts": [{"phoneNumber": "+12015550101"}],
                   "options": {"name": "n".repeat(5_000)}}),
        )
        .send()
        .await
        .unwrap();
    let (status, fields, body) = named(r).await;
    assert_eq!(status, 422, "{body}");
    assert!(fields.contains(&"options.name".to_owned()), "{body}");

    // Dialgen: a contact name of 200,000 characters.
    let r = stack
        .post(
            "/api/v1/batch",
            json!({"agentId": agent, "userId": "u",
                   "contacts": [{"phoneNumber": "+12015550102", "name": "a".repeat(200_000)}]}),
        )
        .send()
        .await
        .unwrap();
    let (status, fields, body) = named(r).await;
    assert_eq!(
        status,
        422,
        "{}",
        &body.to_string()[..body.to_string().len().min(500)]
    );
    assert!(
        fields.iter().any(|f| f.starts_with("contacts[0].name")),
        "{fields:?}"
    );

    // Vogent: 501 characters, one over its limit (the same limit as Dialgen's).
    let r = stack
        .post(
            "/api/batch_dial_jobs",
            json!({"name": "v".repeat(501), "agentId": agent,
                   "contacts": [{"phoneNumber": "+12015550103"}]}),
        )
        .send()
        .await
        .unwrap();
    let (status, fields, body) = named(r).await;
    assert_eq!(status, 422, "{body}");
    assert!(fields.iter().any(|f| f == "name"), "{body}");

    // A type error names the JSON type, never a Rust one.
    let r = stack
        .post(
            "/api/v1/batch",
            json!({"agentId": agent, "userId": "u",
                   "contacts": [{"phoneNumber": "+12015550104"}],
                   "options": {"maxCallsPerSecond": "three"}}),
        )
        .send()
        .await
        .unwrap();
    let (status, _, body) = named(r).await;
    assert!(status == 400 || status == 422, "{body}");
    let text = body.to_string();
    for rust in [
        "i64", "u32", "u64", "i32", "f64", "usize", "struct ", "enum ",
    ] {
        assert!(!text.contains(rust), "{rust} in {text}");
    }
    assert!(text.contains("integer"), "{text}");

    // Nothing was created, and nothing dialed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let list: Value = stack
        .get("/api/v1/batch/list")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!([]), "{list}");
    assert!(stack.calls().is_empty(), "{:?}", stack.calls());

    // A monitor link signed with the published development default opens nothing: make a
    // real batch, sign its link with the default, and ask the gateway for it.
    let made: Value = stack
        .post(
            "/api/v1/batch",
            json!({"agentId": agent, "userId": "u",
                   "contacts": [{"phoneNumber": "+12015550105"}],
                   "options": {"scheduledStartTime": "2099-01-01T00:00:00Z"}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id: uuid::Uuid = made["batchId"]
        .as_str()
        .or(made["id"].as_str())
        .unwrap_or_else(|| panic!("{made}"))
        .parse()
        .unwrap();
    let forged = api_gateway::monitor::token::issue(
        api_gateway::config::DEV_MONITOR_TOKEN_SECRET.as_bytes(),
        id,
        chrono::Utc::now(),
    );
    let r = stack
        .http
        .get(format!(
            "{}/batch/monitor/{id}?token={forged}",
            stack.gateway
        ))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_client_error(),
        "a link signed with the default opened: {}",
        r.status()
    );
    stack.shutdown.cancel();
}
