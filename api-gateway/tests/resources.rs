//! Agents and phone numbers: the resources batches refer to.

mod common;

use common::{error_fields, spawn_app};
use reqwest::Method;
use serde_json::{Value, json};
use testkit::http::SendJson;

#[tokio::test]
async fn agents_crud_and_tenancy() {
    let app = spawn_app().await;
    let id = app.create_agent().await;
    let got: Value = app.get(&format!("/api/agents/{id}")).send_json().await;
    assert_eq!(got["answerUrl"], "https://agent.example.com/answer");
    assert!(got["createdAt"].is_string());

    let other = app.other_workspace_key().await;
    let r = app
        .request_as(&other, Method::GET, &format!("/api/agents/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 404).await.len(), 0);

    for _ in 0..3 {
        app.create_agent().await;
    }
    let page: Value = app.get("/api/agents?limit=3").send_json().await;
    assert_eq!(page["data"].as_array().unwrap().len(), 3);
    let cursor = page["cursor"].as_str().unwrap();
    let rest: Value = app
        .get(&format!("/api/agents?limit=3&cursor={cursor}"))
        .send_json()
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert!(rest["cursor"].is_null());

    let del = app
        .delete(&format!("/api/agents/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(
        app.get(&format!("/api/agents/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn agent_validation_names_each_field() {
    let app = spawn_app().await;
    let r = app
        .post("/api/agents")
        .json(&json!({"name": "", "answerUrl": "ftp://x"}))
        .send()
        .await
        .unwrap();
    let fields = error_fields(r, 422).await;
    assert_eq!(fields, vec!["name", "answerUrl"]);
}

#[tokio::test]
async fn phone_numbers_crud_validation_and_conflict() {
    let app = spawn_app().await;
    let id = app.create_number("+12015550100").await;
    let r = app
        .post("/api/phone_numbers")
        .json(&json!({"number": "+12015550100"}))
        .send()
        .await
        .unwrap();
    error_fields(r, 409).await;
    let r = app
        .post("/api/phone_numbers")
        .json(&json!({"number": "201-555-0100"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 422).await, vec!["number"]);
    let list: Value = app.get("/api/phone_numbers").send_json().await;
    assert_eq!(list["data"][0]["number"], "+12015550100");
    let other = app.other_workspace_key().await;
    let r = app
        .request_as(&other, Method::DELETE, &format!("/api/phone_numbers/{id}"))
        .send()
        .await
        .unwrap();
    error_fields(r, 404).await;
    assert_eq!(
        app.delete(&format!("/api/phone_numbers/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
}

#[tokio::test]
async fn authentication_is_required() {
    let app = spawn_app().await;
    error_fields(
        app.http.get(app.url("/api/agents")).send().await.unwrap(),
        401,
    )
    .await;
    error_fields(
        app.http
            .get(app.url("/api/agents"))
            .bearer_auth("df_wrong")
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    // Vogent's own examples use an `api_key` header.
    let r = app
        .http
        .get(app.url("/api/agents"))
        .header("api_key", &app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    api_gateway::admin::revoke_api_key(&app.env.db, &app.key[..12])
        .await
        .unwrap();
    error_fields(app.get("/api/agents").send().await.unwrap(), 401).await;
}

#[tokio::test]
async fn malformed_json_and_wrong_types_are_400() {
    let app = spawn_app().await;
    let r = app
        .post("/api/agents")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    error_fields(r, 400).await;
    let r = app
        .post("/api/agents")
        .json(&json!({"name": 5, "answerUrl": "https://x.y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 400).await, vec!["name"]);
    error_fields(app.get("/api/nowhere").send().await.unwrap(), 404).await;
}
