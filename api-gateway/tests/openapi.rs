//! The OpenAPI document covers every route and the auth schemes.

mod common;

use serde_json::Value;
use testkit::http::SendJson;

#[tokio::test]
async fn openapi_lists_every_route() {
    let app = common::spawn_app().await;
    let doc: Value = app.http.get(app.url("/openapi.json")).send_json().await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/agents", "post"),
        ("/api/agents/{id}", "delete"),
        ("/api/phone_numbers", "get"),
        ("/api/phone_numbers/{id}", "delete"),
        ("/api/batch_dial_jobs", "post"),
        ("/api/batch_dial_jobs", "get"),
        ("/api/batch_dial_jobs/{id}", "put"),
        ("/api/batch_dial_jobs/{id}/paused", "post"),
        ("/api/batch_dial_jobs/{id}/cancel", "post"),
        ("/api/batch_dial_jobs/{id}/queue", "get"),
        ("/api/batch_dial_jobs/{id}/dials", "get"),
        ("/api/dials/{id}", "get"),
        ("/api/v1/batch", "post"),
        ("/api/v1/batch/list", "get"),
        ("/api/v1/batch/check-status", "get"),
        ("/api/v1/batch/{id}/status", "get"),
        ("/api/v1/status/batch", "get"),
        ("/api/webhook_deliveries", "get"),
        ("/api/webhook_deliveries/{id}", "get"),
        ("/api/webhook_deliveries/{id}/retry", "post"),
        ("/api/workspace", "get"),
        ("/api/workspace", "patch"),
        ("/api/workspace/webhook_secret", "post"),
        ("/api/dnc", "post"),
        ("/api/dnc", "get"),
        ("/api/dnc/{number}", "delete"),
        ("/api/dials/{id}/opt_out", "post"),
        ("/api/contacts/{id}/events", "get"),
    ] {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} missing");
        assert!(
            op["responses"]["401"].is_object(),
            "{method} {path} has no 401"
        );
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["name"], "api_key");
}

/// Every `$ref` of the document points at a schema it defines (the workspace settings' compliance
/// fields and Vogent's `machineDetection` included).
#[tokio::test]
async fn every_schema_reference_resolves() {
    let app = common::spawn_app().await;
    let doc: Value = app.http.get(app.url("/openapi.json")).send_json().await;
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in &all {
        let name = r.trim_start_matches("#/components/schemas/");
        assert!(schemas.contains_key(name), "dangling {r}");
    }
    let settings = &schemas["Settings"]["properties"];
    for field in [
        "recipientCallingHours",
        "allowUnknownTimezone",
        "maxCallsPerNumber",
    ] {
        assert!(settings.get(field).is_some(), "Settings.{field}");
    }
}
