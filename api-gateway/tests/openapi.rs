//! The OpenAPI document is valid and tells the truth: its structure holds (unique operation
//! ids, every `$ref` resolves, every path parameter declared, every schema a valid JSON
//! Schema), and real answers of every route, on a running gateway, match the schema the
//! document gives for their status — a status it does not list is a failure too. A field
//! returned but not documented fails (responses are checked with unknown properties refused),
//! so a handler and its document cannot drift apart.

mod common;

use std::collections::BTreeSet;

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use testkit::http::SendJson;
use utoipa::OpenApi;
use uuid::Uuid;

fn document() -> Value {
    serde_json::to_value(api_gateway::openapi::ApiDoc::openapi()).unwrap()
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                out.push((path.clone(), m.to_owned(), op));
            }
        }
    }
    out
}

fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r);
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn openapi_is_served() {
    let app = common::spawn_app().await;
    let doc: Value = app.http.get(app.url("/openapi.json")).send_json().await;
    assert_eq!(doc, document());
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["name"], "api_key");
}

#[test]
fn operation_ids_are_unique_and_every_route_is_documented() {
    let doc = document();
    let mut seen = BTreeSet::new();
    for (path, method, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "{method} {path} has no operationId");
        assert!(seen.insert(id.to_owned()), "operationId {id} repeats");
        assert!(
            op["responses"]["401"].is_object(),
            "{method} {path} has no 401"
        );
    }
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
        ("/api/batch_dial_jobs/{id}/rejected", "get"),
        ("/api/batch_dial_jobs/{id}/results.csv", "get"),
        ("/api/batch_dial_jobs/{id}/retry", "post"),
        ("/api/batch_dial_jobs/{id}/rows", "post"),
        ("/api/dials/{id}", "get"),
        ("/api/v1/batch", "post"),
        ("/api/v1/batch/list", "get"),
        ("/api/v1/batch/check-status", "get"),
        ("/api/v1/batch/{id}/status", "get"),
        ("/api/v1/batch/{id}/pause", "post"),
        ("/api/v1/batch/{id}/resume", "post"),
        ("/api/v1/batch/{id}/cancel", "post"),
        ("/api/v1/batch/{id}/dashboard_link", "post"),
        ("/api/batch_dial_jobs/{id}/dashboard_link", "post"),
        ("/api/v1/batch/{id}/rejected", "get"),
        ("/api/v1/batch/{id}/results.csv", "get"),
        ("/api/v1/batch/{id}/retry", "post"),
        ("/api/v1/batch/{id}/contacts", "post"),
        ("/api/v1/status/batch", "get"),
        ("/api/webhook_deliveries", "get"),
        ("/api/webhook_deliveries/{id}", "get"),
        ("/api/webhook_deliveries/{id}/retry", "post"),
        ("/api/workspace", "get"),
        ("/api/workspace", "patch"),
        ("/api/workspace/webhook_secret", "post"),
        ("/api/workspace/dashboard_link", "post"),
        ("/api/dnc", "post"),
        ("/api/dnc", "get"),
        ("/api/dnc/{number}", "delete"),
        ("/api/dials/{id}/opt_out", "post"),
        ("/api/contacts/{id}/events", "get"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path} missing");
    }
}

#[test]
fn every_reference_resolves_and_every_path_parameter_is_declared() {
    let doc = document();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r} is not a component schema"));
        assert!(schemas.contains_key(name), "dangling {r}");
    }
    for (path, method, op) in operations(&doc) {
        let templated: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let declared: BTreeSet<&str> = params
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(templated, declared, "{method} {path}: path parameters");
        for p in params.iter().filter(|p| p["in"] == "path") {
            assert_eq!(p["required"], true, "{method} {path}: {p}");
        }
        let mut names = BTreeSet::new();
        for p in &params {
            let key = (p["in"].as_str().unwrap(), p["name"].as_str().unwrap());
            assert!(names.insert(key), "{method} {path}: {key:?} twice");
        }
        // Every error answer has the one error shape.
        for (status, response) in op["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
    }
}

/// Each component is a valid JSON Schema (2020-12, the dialect of OpenAPI 3.1).
#[test]
fn every_schema_is_valid_json_schema() {
    let doc = document();
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        let mut rooted = schema.clone();
        rooted
            .as_object_mut()
            .unwrap()
            .insert("components".into(), doc["components"].clone());
        if let Err(e) = jsonschema::draft202012::meta::validate(schema) {
            panic!("{name} is not a valid JSON Schema: {e}");
        }
        jsonschema::draft202012::new(&rooted)
            .unwrap_or_else(|e| panic!("{name} does not compile: {e}"));
    }
}

/// The constraints the server applies are in the document.
#[test]
fn validations_are_in_the_schema() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let param = |path: &str, method: &str, name: &str| -> Value {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{method} {path} has no {name}"))
    };
    for (path, method) in [
        ("/api/agents", "get"),
        ("/api/batch_dial_jobs", "get"),
        ("/api/v1/batch/list", "get"),
        ("/api/dnc", "get"),
        ("/api/webhook_deliveries", "get"),
    ] {
        let limit = param(path, method, "limit");
        assert_eq!(limit["schema"]["minimum"], 1, "{path}");
        assert_eq!(limit["schema"]["maximum"], 1000, "{path}");
    }
    let key = param("/api/v1/batch", "post", "Idempotency-Key");
    assert_eq!(key["in"], "header");
    assert_eq!(key["schema"]["maxLength"], 255);
    assert_eq!(
        schemas["CreateNumber"]["properties"]["number"]["pattern"],
        "^\\+[1-9][0-9]{7,14}$"
    );
    // URLs: http(s) and a host, as `validate::is_http_url` checks (not RFC 3986: the
    // server stores what it was given).
    assert_eq!(
        schemas["CreateAgent"]["properties"]["answerUrl"]["pattern"],
        "^https?://[^/?#\\s]+"
    );
    // Every JSON body refuses unknown fields (issue #29), and says so: each operation's own
    // schema, and every object schema a body holds.
    let mut bodies = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(schema) = op["requestBody"]["content"]["application/json"]["schema"]
                .get("$ref")
                .and_then(Value::as_str)
            else {
                continue;
            };
            let name = schema.rsplit('/').next().unwrap();
            bodies += 1;
            assert_eq!(
                schemas[name]["additionalProperties"], false,
                "{method} {path}: {name} refuses unknown fields"
            );
        }
    }
    assert!(bodies >= 10, "{bodies} JSON bodies documented");
    for name in [
        "CreateAgent",
        "CreateNumber",
        "DncIn",
        "TenantPatch",
        "CapPatch",
        "RetryPatch",
        "VogentCreate",
        "VogentUpdate",
        "DialgenCreate",
        "DialgenOptions",
        "RetryIn",
        "WebhooksIn",
        "ScheduleIn",
        "DayIn",
        "SlotIn",
        "VogentRow",
        "DialgenContact",
        "RetryBody",
        "PausedBody",
    ] {
        assert_eq!(
            schemas[name]["additionalProperties"], false,
            "{name} refuses unknown fields"
        );
    }
    // The lengths are the same on both APIs, and documented.
    for (schema, field, max) in [
        ("VogentCreate", "name", 500),
        ("VogentUpdate", "name", 500),
        ("DialgenOptions", "name", 500),
        ("DialgenCreate", "userId", 500),
        ("DialgenContact", "name", 500),
        ("DialgenContact", "company", 500),
        ("DialgenContact", "email", 254),
    ] {
        assert_eq!(
            schemas[schema]["properties"][field]["maxLength"], max,
            "{schema}.{field}"
        );
    }
    let upload = &doc["paths"]["/api/batch_dial_jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
        ["schema"];
    assert!(upload.is_object(), "the CSV upload is documented");
    let csv = &doc["paths"]["/api/v1/batch/{id}/results.csv"]["get"]["responses"]["200"]["content"];
    assert!(csv["text/csv"].is_object(), "{csv}");
}

/// Response schemas with unknown properties refused: a field a handler returns but the document
/// does not name is a drift. (Objects inside `allOf` are left open: each part names only some
/// of the properties.)
fn strict(v: &mut Value, in_all_of: bool) {
    match v {
        Value::Object(m) => {
            if !in_all_of && m.contains_key("properties") && !m.contains_key("additionalProperties")
            {
                m.insert("additionalProperties".into(), Value::Bool(false));
            }
            for (k, x) in m.iter_mut() {
                match (k.as_str(), x) {
                    ("allOf", Value::Array(parts)) => {
                        parts.iter_mut().for_each(|p| strict(p, true))
                    }
                    (_, x) => strict(x, false),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| strict(x, false)),
        _ => {}
    }
}

/// The `$ref`s that are direct parts of an `allOf`.
fn all_of_refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(parts)) = m.get("allOf") {
                out.extend(parts.iter().filter_map(|p| p["$ref"].as_str()));
            }
            m.values().for_each(|x| all_of_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| all_of_refs(x, out)),
        _ => {}
    }
}

/// Checks answers against the document.
struct Checker {
    doc: Value,
    checked: BTreeSet<(String, String)>,
}

impl Checker {
    fn new() -> Self {
        let mut doc = document();
        // A component that is a part of an `allOf` stays open, as inline parts do.
        let mut parts = Vec::new();
        all_of_refs(&doc, &mut parts);
        let parts: BTreeSet<String> = parts.into_iter().map(str::to_owned).collect();
        for (name, schema) in doc["components"]["schemas"].as_object_mut().unwrap() {
            if !parts.contains(&format!("#/components/schemas/{name}")) {
                strict(schema, false);
            }
        }
        Self {
            doc,
            checked: BTreeSet::new(),
        }
    }

    /// Sends `request` (to the route `template`) and checks its answer.
    async fn send(&mut self, template: &str, request: reqwest::RequestBuilder) -> Value {
        let (client, request) = request.build_split();
        let request = request.unwrap();
        let method = request.method().as_str().to_ascii_lowercase();
        let r = client.execute(request).await.unwrap();
        self.check(&method, template, r).await
    }

    /// GETs each `(template, path)` and checks the answers.
    async fn get_all(&mut self, app: &common::TestApp, reads: &[(&str, String)]) {
        for (template, path) in reads {
            self.send(template, app.get(path)).await;
        }
    }

    /// Checks one answer of `method template`; returns the JSON body (Null for others).
    async fn check(&mut self, method: &str, template: &str, r: reqwest::Response) -> Value {
        let status = r.status().as_u16().to_string();
        let content_type = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        let op = &self.doc["paths"][template][method];
        assert!(op.is_object(), "{method} {template} is not documented");
        let response = &op["responses"][&status];
        assert!(
            response.is_object(),
            "{method} {template} answered {status}, which the document does not list: {text}"
        );
        self.checked
            .insert((method.to_owned(), template.to_owned()));
        if status == "204" {
            assert!(text.is_empty());
            return Value::Null;
        }
        let media = content_type.split(';').next().unwrap().trim().to_owned();
        let content = &response["content"][&media];
        assert!(
            content.is_object(),
            "{method} {template} {status} answered {media}, not documented"
        );
        if media != "application/json" {
            return Value::Null;
        }
        let body: Value = serde_json::from_str(&text).unwrap();
        let mut schema = content["schema"].clone();
        if let Value::Object(m) = &mut schema {
            m.insert("components".into(), self.doc["components"].clone());
        }
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {template} {status} does not match its schema:\n{}\n{body:#}",
            errors.join("\n")
        );
        body
    }
}

#[tokio::test]
async fn every_route_answers_as_documented() {
    let app = common::spawn_app().await;
    let mut c = Checker::new();
    let db = app.env.db.get().await.unwrap();

    // Agents and phone numbers.
    let agent = c
        .send(
            "/api/agents",
            app.post("/api/agents")
                .json(&json!({"name": "Bot", "answerUrl": "https://a.example/answer"})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Accepted though not an RFC 3986 URI (Schemathesis found the document claimed one).
    c.send(
        "/api/agents",
        app.post("/api/agents")
            .json(&json!({"name": "0", "answerUrl": "https://\u{101}\u{fd}\u{f}h"})),
    )
    .await;
    c.send("/api/agents", app.post("/api/agents").json(&json!({})))
        .await;
    c.send("/api/agents", app.post("/api/agents").body("{"))
        .await;
    c.send("/api/agents", app.get("/api/agents?limit=1")).await;
    c.send("/api/agents", app.get("/api/agents?limit=0")).await;
    c.send("/api/agents/{id}", app.get(&format!("/api/agents/{agent}")))
        .await;
    c.send("/api/agents/{id}", app.get("/api/agents/nope"))
        .await;
    c.send("/api/agents", app.http.get(app.url("/api/agents")))
        .await;
    let number = json!({"number": "+12015550100", "label": "main"});
    let number_id = c
        .send(
            "/api/phone_numbers",
            app.post("/api/phone_numbers").json(&number),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.send(
        "/api/phone_numbers",
        app.post("/api/phone_numbers").json(&number),
    )
    .await;
    c.send("/api/phone_numbers", app.get("/api/phone_numbers"))
        .await;

    // A Vogent job through the API (JSON and CSV), and one running as the workers leave it.
    let rows = json!([{"toNumber": "+12015550101", "inputs": {"a": "b"}}, {"toNumber": "nope"}]);
    let job = c.send("/api/batch_dial_jobs", app
        .post("/api/batch_dial_jobs")
        .header("Idempotency-Key", "k1")
        .json(&json!({"name": "job", "callAgentId": agent, "maxConcurrentDials": 2,
                      "fromPhoneNumberIds": [number_id], "rows": rows,
                      "schedule": {"timezone": "UTC", "days": [{"dayOfWeek": 1, "timeSlots": [{"startTime": "09:00", "endTime": "17:00"}]}]}}))).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let form = Form::new()
        .text(
            "job",
            json!({"name": "csv", "callAgentId": agent, "maxConcurrentDials": 1}).to_string(),
        )
        .part(
            "file",
            Part::bytes(b"phone\n+12015550102\n".to_vec())
                .file_name("rows.csv")
                .mime_str("text/csv")
                .unwrap(),
        );
    c.send(
        "/api/batch_dial_jobs",
        app.post("/api/batch_dial_jobs").multipart(form),
    )
    .await;
    c.send(
        "/api/batch_dial_jobs",
        app.post("/api/batch_dial_jobs").json(&json!({"rows": []})),
    )
    .await;
    c.send(
        "/api/batch_dial_jobs",
        app.post("/api/batch_dial_jobs")
            .header("Idempotency-Key", "k1")
            .json(&json!({"name": "other"})),
    )
    .await;
    c.send(
        "/api/batch_dial_jobs",
        app.get("/api/batch_dial_jobs?limit=5"),
    )
    .await;
    c.send(
        "/api/batch_dial_jobs",
        app.get("/api/batch_dial_jobs?status=NOPE"),
    )
    .await;
    c.send(
        "/api/batch_dial_jobs/{id}",
        app.get(&format!("/api/batch_dial_jobs/{job}")),
    )
    .await;
    c.send(
        "/api/batch_dial_jobs/{id}",
        app.put(&format!("/api/batch_dial_jobs/{job}"))
            .json(&json!({"name": "renamed", "machineDetection": "Enable"})),
    )
    .await;
    c.send(
        "/api/batch_dial_jobs/{id}",
        app.put(&format!("/api/batch_dial_jobs/{job}"))
            .json(&json!({"rows": []})),
    )
    .await;

    let running = common::running::running_batch(&app, 20).await;
    let run = running.batch_id;
    // A change kept in `pending` while ACTIVE, then a pause that applies it.
    let pending = c
        .send(
            "/api/batch_dial_jobs/{id}",
            app.put(&format!("/api/batch_dial_jobs/{run}"))
                .json(&json!({"maxConcurrentDials": 3})),
        )
        .await;
    assert!(pending["pending"].is_object(), "{pending}");
    let fetched = c
        .send(
            "/api/batch_dial_jobs/{id}",
            app.get(&format!("/api/batch_dial_jobs/{run}")),
        )
        .await;
    assert!(fetched["statistics"].is_object() && fetched["links"].is_object());
    c.send(
        "/api/batch_dial_jobs/{id}/paused",
        app.post(&format!("/api/batch_dial_jobs/{run}/paused"))
            .json(&json!({"paused": true})),
    )
    .await;
    c.send(
        "/api/batch_dial_jobs/{id}/paused",
        app.post(&format!("/api/batch_dial_jobs/{run}/paused"))
            .json(&json!({})),
    )
    .await;
    c.send(
        "/api/batch_dial_jobs/{id}/paused",
        app.post(&format!("/api/batch_dial_jobs/{run}/paused"))
            .json(&json!({"paused": false})),
    )
    .await;
    c.send(
        "/api/batch_dial_jobs/{id}/queue",
        app.get(&format!("/api/batch_dial_jobs/{run}/queue?limit=2")),
    )
    .await;
    for status in ["completed", "in-progress", "all", "nope"] {
        c.send(
            "/api/batch_dial_jobs/{id}/dials",
            app.get(&format!("/api/batch_dial_jobs/{run}/dials?status={status}")),
        )
        .await;
    }
    let dial: Uuid = db
        .query_one(
            "SELECT id FROM dial_attempts WHERE batch_id = $1 AND outcome = 'busy' LIMIT 1",
            &[&run],
        )
        .await
        .unwrap()
        .get("id");
    c.send("/api/dials/{id}", app.get(&format!("/api/dials/{dial}")))
        .await;
    c.send(
        "/api/dials/{id}",
        app.get(&format!("/api/dials/{}", Uuid::now_v7())),
    )
    .await;
    c.send(
        "/api/batch_dial_jobs/{id}/rows",
        app.post(&format!("/api/batch_dial_jobs/{run}/rows"))
            .json(&json!({"rows": [{"toNumber": "+12015550199"}]})),
    )
    .await;
    c.send(
        "/api/v1/batch/{id}/contacts",
        app.post(&format!("/api/v1/batch/{run}/contacts"))
            .json(&json!({"contacts": [{"phoneNumber": "+12015550198"}]})),
    )
    .await;
    c.send(
        "/api/v1/batch/{id}/contacts",
        app.post(&format!("/api/v1/batch/{run}/contacts"))
            .json(&json!({"contacts": [], "extra": 1})),
    )
    .await;

    // Compliance on the running batch's calls.
    let contact = running.contacts[3];
    db.execute(
        "INSERT INTO contact_events (contact_id, at, kind, reason, detail)
         VALUES ($1, now(), 'deferred', 'recipient_hours', jsonb_build_object('until', now()))",
        &[&contact],
    )
    .await
    .unwrap();
    c.send(
        "/api/contacts/{id}/events",
        app.get(&format!("/api/contacts/{contact}/events")),
    )
    .await;
    let retried = running.contacts[10];
    let events = c
        .send(
            "/api/contacts/{id}/events",
            app.get(&format!("/api/contacts/{retried}/events")),
        )
        .await;
    assert!(events["data"].as_array().unwrap().len() > 2, "{events}");
    c.send(
        "/api/dials/{id}/opt_out",
        app.post(&format!("/api/dials/{dial}/opt_out")),
    )
    .await;
    c.send(
        "/api/dnc",
        app.post("/api/dnc")
            .json(&json!({"numbers": ["+12015550111", "(201) 555-0112"], "reason": "asked"})),
    )
    .await;
    c.send(
        "/api/dnc",
        app.post("/api/dnc?reason=import")
            .header("content-type", "text/csv")
            .body("number\n+12015550113\n"),
    )
    .await;
    c.send(
        "/api/dnc",
        app.post("/api/dnc").json(&json!({"numbers": ["x"]})),
    )
    .await;
    c.send(
        "/api/dnc",
        app.post("/api/dnc").json(&json!({"numbers": [], "x": 1})),
    )
    .await;
    c.send("/api/dnc", app.get("/api/dnc?limit=1")).await;
    c.send("/api/dnc", app.get("/api/dnc?number=%2B12015550111"))
        .await;
    c.send("/api/dnc/{number}", app.delete("/api/dnc/%2B12015550111"))
        .await;
    c.send("/api/dnc/{number}", app.delete("/api/dnc/%2B12015550111"))
        .await;

    // Dialgen reads of the same batch, then its end and retries.
    c.get_all(
        &app,
        &[
            (
                "/api/v1/batch/check-status",
                format!("/api/v1/batch/check-status?batchId={run}&limit=all"),
            ),
            (
                "/api/v1/batch/check-status",
                "/api/v1/batch/check-status".into(),
            ),
            (
                "/api/v1/batch/{id}/status",
                format!("/api/v1/batch/{run}/status?limit=2"),
            ),
            (
                "/api/v1/batch/{id}/status",
                format!("/api/v1/batch/{run}/status?limit=x"),
            ),
            (
                "/api/v1/status/batch",
                format!("/api/v1/status/batch?batchId={run}"),
            ),
            (
                "/api/v1/status/batch",
                format!("/api/v1/status/batch?batchId={run}&limit=5"),
            ),
            ("/api/v1/batch/list", "/api/v1/batch/list".into()),
            ("/api/v1/batch/list", "/api/v1/batch/list?limit=1".into()),
            (
                "/api/v1/batch/list",
                "/api/v1/batch/list?status=processing".into(),
            ),
            (
                "/api/v1/batch/list",
                "/api/v1/batch/list?status=paused&limit=1".into(),
            ),
            (
                "/api/v1/batch/list",
                "/api/v1/batch/list?status=nope".into(),
            ),
        ],
    )
    .await;
    for action in ["pause", "resume"] {
        let template = format!("/api/v1/batch/{{id}}/{action}");
        c.send(
            &template,
            app.post(&format!("/api/v1/batch/{run}/{action}")),
        )
        .await;
        c.send(
            &template,
            app.post(&format!("/api/v1/batch/{}/{action}", Uuid::now_v7())),
        )
        .await;
    }
    c.send(
        "/api/v1/batch/{id}/retry",
        app.post(&format!("/api/v1/batch/{run}/retry"))
            .json(&json!({"outcomes": ["busy"]})),
    )
    .await;
    c.send(
        "/api/batch_dial_jobs/{id}/cancel",
        app.post(&format!("/api/batch_dial_jobs/{run}/cancel")),
    )
    .await;
    c.send(
        "/api/batch_dial_jobs/{id}/cancel",
        app.post(&format!("/api/batch_dial_jobs/{run}/cancel")),
    )
    .await;
    for id in [run, Uuid::now_v7()] {
        c.send(
            "/api/v1/batch/{id}/cancel",
            app.post(&format!("/api/v1/batch/{id}/cancel")),
        )
        .await;
    }
    c.send(
        "/api/v1/batch/{id}/pause",
        app.post(&format!("/api/v1/batch/{run}/pause")),
    )
    .await;
    for q in ["", "?control=true", "?control=maybe"] {
        c.send(
            "/api/v1/batch/{id}/dashboard_link",
            app.post(&format!("/api/v1/batch/{run}/dashboard_link{q}")),
        )
        .await;
        c.send(
            "/api/batch_dial_jobs/{id}/dashboard_link",
            app.post(&format!("/api/batch_dial_jobs/{run}/dashboard_link{q}")),
        )
        .await;
    }
    c.send(
        "/api/v1/batch/{id}/retry",
        app.post(&format!("/api/v1/batch/{run}/retry"))
            .json(&json!({"outcomes": ["busy"]})),
    )
    .await;
    c.send(
        "/api/batch_dial_jobs/{id}/retry",
        app.post(&format!("/api/batch_dial_jobs/{run}/retry"))
            .json(&json!({"outcomes": ["busy", "nope"]})),
    )
    .await;
    c.send(
        "/api/batch_dial_jobs/{id}/retry",
        app.post(&format!("/api/batch_dial_jobs/{run}/retry"))
            .json(&json!({"outcomes": ["completed"], "name": "again"})),
    )
    .await;

    // Rejected rows: the retry rejected the opted-out number (do_not_call).
    let retry_batch: Uuid = db
        .query_one(
            "SELECT id FROM batches WHERE retry_of = $1 AND rejected_rows > 0 LIMIT 1",
            &[&run],
        )
        .await
        .map(|r| r.get("id"))
        .unwrap_or(run);
    for (template, path) in [
        (
            "/api/v1/batch/{id}/rejected",
            format!("/api/v1/batch/{retry_batch}/rejected"),
        ),
        (
            "/api/batch_dial_jobs/{id}/rejected",
            format!("/api/batch_dial_jobs/{retry_batch}/rejected"),
        ),
    ] {
        c.send(template, app.get(&path)).await;
        c.send(template, app.get(&path).header("accept", "text/csv"))
            .await;
        c.send(template, app.get(&format!("{path}?limit=5000")))
            .await;
    }
    for (template, path) in [
        (
            "/api/v1/batch/{id}/results.csv",
            format!("/api/v1/batch/{run}/results.csv"),
        ),
        (
            "/api/batch_dial_jobs/{id}/results.csv",
            format!("/api/batch_dial_jobs/{run}/results.csv"),
        ),
    ] {
        c.send(template, app.get(&path)).await;
    }

    // A Dialgen batch through the API.
    c.send("/api/v1/batch", app
        .post("/api/v1/batch")
        .header("Idempotency-Key", "d1")
        .json(&json!({"agentId": agent, "userId": "u1", "contacts": [{"phoneNumber": "+12015550120", "name": "Ada", "metadata": {"k": 1}}],
                      "options": {"priority": 7, "retryStrategy": {"maxAttempts": 2}, "webhooks": {"onCallComplete": "https://h.example/c"}, "tags": ["t"]}}))).await;
    let form = Form::new()
        .text(
            "batch",
            json!({"agentId": agent, "userId": "u1"}).to_string(),
        )
        .part(
            "file",
            Part::bytes(b"phoneNumber\n+12015550121\n".to_vec())
                .file_name("c.csv")
                .mime_str("text/csv")
                .unwrap(),
        );
    c.send("/api/v1/batch", app.post("/api/v1/batch").multipart(form))
        .await;
    c.send(
        "/api/v1/batch",
        app.post("/api/v1/batch").json(&json!({"contacts": "x"})),
    )
    .await;

    // The preflights (extensions): every row, a refused body.
    c.send(
        "/api/v1/batch/preflight",
        app.post("/api/v1/batch/preflight?rows=all").json(&json!({"agentId": agent, "userId": "u1",
            "contacts": [{"phoneNumber": "+12015550130"}, {"phoneNumber": "nope"}, {"phoneNumber": "+870773111632"}]})),
    )
    .await;
    c.send(
        "/api/v1/batch/preflight",
        app.post("/api/v1/batch/preflight")
            .json(&json!({"agentId": agent, "userId": "u1", "contacts": [], "colour": 1})),
    )
    .await;
    c.send(
        "/api/batch_dial_jobs/preflight",
        app.post("/api/batch_dial_jobs/preflight")
            .json(&json!({"name": "j", "callAgentId": agent,
            "maxConcurrentDials": 1, "rows": [{"toNumber": "+12015550131"}]})),
    )
    .await;

    // Webhook deliveries.
    let delivery = Uuid::now_v7();
    db.execute(
        "INSERT INTO webhook_deliveries (id, workspace_id, batch_id, event, subject_id, url,
             payload, state, attempts, last_status_code, last_error)
         VALUES ($1, $2, $3, 'call.completed', $4, 'https://hooks.example/x', '{\"a\": 1}', 'failed', 3, 500, 'HTTP 500')",
        &[&delivery, &app.workspace_id, &run, &contact],
    )
    .await
    .unwrap();
    c.get_all(
        &app,
        &[
            (
                "/api/webhook_deliveries",
                format!("/api/webhook_deliveries?batchId={run}&state=failed"),
            ),
            (
                "/api/webhook_deliveries",
                "/api/webhook_deliveries?state=nope".into(),
            ),
            (
                "/api/webhook_deliveries/{id}",
                format!("/api/webhook_deliveries/{delivery}"),
            ),
        ],
    )
    .await;
    c.send(
        "/api/webhook_deliveries/{id}/retry",
        app.post(&format!("/api/webhook_deliveries/{delivery}/retry")),
    )
    .await;

    // The workspace.
    c.send("/api/workspace", app.get("/api/workspace")).await;
    c.send(
        "/api/workspace",
        app.request_as(&app.key, reqwest::Method::PATCH, "/api/workspace")
            .json(&json!({"defaultRegion": "GB", "maxCallsPerNumber": {"count": 3, "days": 7}})),
    )
    .await;
    c.send(
        "/api/workspace",
        app.request_as(&app.key, reqwest::Method::PATCH, "/api/workspace")
            .json(&json!({"maxConcurrentDials": 999})),
    )
    .await;
    c.send(
        "/api/workspace/webhook_secret",
        app.post("/api/workspace/webhook_secret"),
    )
    .await;
    c.send(
        "/api/workspace/dashboard_link",
        app.post("/api/workspace/dashboard_link")
            .json(&json!({"expiresInSeconds": 3600})),
    )
    .await;
    c.send(
        "/api/workspace/dashboard_link",
        app.post("/api/workspace/dashboard_link")
            .json(&json!({"expiresInSeconds": 1})),
    )
    .await;

    // Deletions last.
    c.send(
        "/api/phone_numbers/{id}",
        app.delete(&format!("/api/phone_numbers/{number_id}")),
    )
    .await;
    c.send(
        "/api/agents/{id}",
        app.delete(&format!("/api/agents/{agent}")),
    )
    .await;
    c.send(
        "/api/agents/{id}",
        app.delete(&format!("/api/agents/{agent}")),
    )
    .await;

    // Every documented operation was called at least once.
    let doc = document();
    let all: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(p, m, _)| (m, p))
        .collect();
    let missed: Vec<_> = all.difference(&c.checked).collect();
    assert!(missed.is_empty(), "not exercised: {missed:?}");
}

/// The checker itself: an extra field, a missing one and a wrong type are each a drift.
#[test]
fn a_drift_is_caught() {
    let c = Checker::new();
    let mut schema = json!({"$ref": "#/components/schemas/Agent"});
    schema["components"] = c.doc["components"].clone();
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let agent = json!({"id": Uuid::now_v7(), "name": "a", "answerUrl": "https://a.example/",
                       "createdAt": "2026-12-01T10:00:00.000Z"});
    assert!(validator.is_valid(&agent));
    let mut extra = agent.clone();
    extra["rows"] = json!(1);
    let mut missing = agent.clone();
    missing.as_object_mut().unwrap().remove("name");
    let mut wrong = agent.clone();
    wrong["createdAt"] = json!("yesterday");
    for drifted in [extra, missing, wrong] {
        assert!(!validator.is_valid(&drifted), "{drifted}");
    }
}
