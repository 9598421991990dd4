//! Issue #25's inputs: the workspace setting `jurisdictionRules` (API and operator CLI, with the
//! rule pack's release shown as `rulesVersion`), and the contact fields `state` and
//! `postalCode` on both surfaces, JSON and CSV, create and append: a bad value is a 422 naming
//! the field; a good one is stored on the contact, with the postal code's state resolved by a
//! real ingest worker.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use shared::config::Env;
use testkit::http::SendJson;
use tokio_util::sync::CancellationToken;

use common::{TestApp, error_fields, spawn_app};

fn shipped_version() -> String {
    shared::compliance::jurisdiction::Pack::shipped()
        .unwrap()
        .version()
        .to_owned()
}

async fn patch(app: &TestApp, body: Value) -> reqwest::Response {
    app.http
        .patch(app.url("/api/workspace"))
        .bearer_auth(&app.key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn stored_mode(app: &TestApp) -> String {
    app.env
        .db
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT jurisdiction_rules FROM workspaces WHERE id = $1",
            &[&app.workspace_id],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn jurisdiction_rules_default_to_strictest_and_patch_switches_them() {
    let app = spawn_app().await;
    let shown: Value = app.get("/api/workspace").send_json().await;
    assert_eq!(shown["jurisdictionRules"], "strictest", "{shown}");
    assert_eq!(shown["rulesVersion"], shipped_version());

    let r = patch(&app, json!({"jurisdictionRules": "federal"})).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["jurisdictionRules"], "federal");
    assert_eq!(stored_mode(&app).await, "federal");
    let again: Value = app.get("/api/workspace").send_json().await;
    assert_eq!(again["jurisdictionRules"], "federal");

    // A bad value is named (a wrong type is a 400, as for every setting), and nothing of the
    // patch is written.
    for (bad, status) in [
        (json!("lenient"), 422),
        (json!("Federal"), 422),
        (json!(true), 400),
    ] {
        let r = patch(
            &app,
            json!({"jurisdictionRules": bad, "defaultRegion": "GB"}),
        )
        .await;
        assert_eq!(
            error_fields(r, status).await,
            vec!["jurisdictionRules"],
            "{bad}"
        );
    }
    assert_eq!(stored_mode(&app).await, "federal");
    let unchanged: Value = app.get("/api/workspace").send_json().await;
    assert_eq!(unchanged["defaultRegion"], "US");

    // The pack's release is read-only: sent back unchanged it is accepted, changed it is named.
    let r = patch(&app, json!({"rulesVersion": "1.0"})).await;
    assert_eq!(error_fields(r, 422).await, vec!["rulesVersion"]);
    let mut whole = unchanged.clone();
    whole["jurisdictionRules"] = json!("strictest");
    let r = patch(&app, whole).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(stored_mode(&app).await, "strictest");
}

struct Cli(Vec<(String, String)>);

impl Cli {
    fn run(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_api-gateway"))
            .args(args)
            .envs(self.0.iter().cloned())
            .envs(extra_env.iter().copied())
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all, extra_env);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str], extra_env: &[(&str, &str)], says: &[&str]) {
        let out = self.run(args, extra_env);
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "one error line: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        for s in says {
            assert!(stderr.contains(s), "{args:?}: {stderr}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_sets_jurisdiction_rules_and_the_pack_file() {
    let app = spawn_app().await;
    let cli = Cli(app.env.env_vars());
    let ws = app.workspace_id.to_string();

    let shown = cli.json(&["workspace", "show", &ws], &[]);
    assert_eq!(shown["jurisdictionRules"], "strictest");
    assert_eq!(shown["rulesVersion"], shipped_version());
    let updated = cli.json(
        &[
            "workspace",
            "update",
            &ws,
            "--jurisdiction-rules",
            "federal",
        ],
        &[],
    );
    assert_eq!(updated["jurisdictionRules"], "federal");
    assert_eq!(stored_mode(&app).await, "federal");
    let text = cli.run(&["workspace", "show", &ws], &[]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("jurisdiction rules: federal"), "{text}");
    cli.fails(
        &["workspace", "update", &ws, "--jurisdiction-rules", "none"],
        &[],
        &["--jurisdiction-rules", "strictest"],
    );
    assert_eq!(stored_mode(&app).await, "federal");

    // `workspace create` takes it too, strictest by default.
    let created = cli.run(
        &[
            "workspace",
            "create",
            "--name",
            "fed",
            "--max-concurrent-dials",
            "1",
            "--jurisdiction-rules",
            "federal",
        ],
        &[],
    );
    assert!(created.status.success());
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    let id = created["workspaceId"].as_str().unwrap();
    assert_eq!(
        cli.json(&["workspace", "show", id], &[])["jurisdictionRules"],
        "federal"
    );
    let plain = cli.run(
        &[
            "workspace",
            "create",
            "--name",
            "p",
            "--max-concurrent-dials",
            "1",
        ],
        &[],
    );
    let plain: Value = serde_json::from_slice(&plain.stdout).unwrap();
    let id = plain["workspaceId"].as_str().unwrap();
    assert_eq!(
        cli.json(&["workspace", "show", id], &[])["jurisdictionRules"],
        "strictest"
    );

    // The operator's rule file: its version is appended; a bad file stops the process, named.
    let dir = std::env::temp_dir().join(format!("rules-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("acme.toml");
    std::fs::write(
        &good,
        "version = \"acme.1\"\n\n[[rule]]\nid = \"US-GA-hours\"\njurisdiction = \"US-GA\"\nkind = \"hours\"\ncitation = \"house rule\"\nsource_url = \"https://example.com\"\nhours = [{ days = [\"Mon\"], from = \"10:00\", to = \"17:00\" }]\n",
    )
    .unwrap();
    let good = good.to_string_lossy().into_owned();
    let shown = cli.json(
        &["workspace", "show", &ws],
        &[("COMPLIANCE_RULES_FILE", good.as_str())],
    );
    assert_eq!(
        shown["rulesVersion"],
        format!("{}+acme.1", shipped_version())
    );
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "version = \"x\"\n[[rule]]\nid = \"US-FL-cap\"\n").unwrap();
    let bad = bad.to_string_lossy().into_owned();
    for (file, says) in [
        (bad.as_str(), "bad.toml"),
        ("/nonexistent/rules.toml", "/nonexistent/rules.toml"),
    ] {
        cli.fails(
            &["workspace", "show", &ws],
            &[("COMPLIANCE_RULES_FILE", file)],
            &["COMPLIANCE_RULES_FILE", says],
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn worker(app: &TestApp, stop: &CancellationToken) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let mut pairs = app.env.env_vars();
    pairs.push(("HEALTH_ADDR".into(), "127.0.0.1:0".into()));
    let config = ingest_worker::config::Config::from_env(&Env::from_pairs(pairs)).unwrap();
    tokio::spawn(ingest_worker::run(config, stop.clone()))
}

/// `(row_index, declared_state, postal_code, postal_state)` once the batch is ingested.
async fn places(
    app: &TestApp,
    id: &str,
) -> Vec<(i32, Option<String>, Option<String>, Option<String>)> {
    let id: uuid::Uuid = id.parse().unwrap();
    let client = app.env.db.get().await.unwrap();
    for _ in 0..300 {
        let state: String = client
            .query_one("SELECT ingest_state FROM batches WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
        if state == "ready" {
            return client
                .query(
                    "SELECT row_index, declared_state, postal_code, postal_state FROM contacts
                     WHERE batch_id = $1 ORDER BY row_index",
                    &[&id],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("batch {id} was not ingested");
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

fn csv_file(csv: &str) -> Part {
    Part::bytes(csv.as_bytes().to_vec())
        .file_name("contacts.csv")
        .mime_str("text/csv")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_postal_code_are_validated_and_stored_on_both_surfaces() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let stop = CancellationToken::new();
    let w = worker(&app, &stop);

    // Dialgen JSON: a declared state (either case), a ZIP, a ZIP+4, none.
    let r = app
        .post("/api/v1/batch")
        .json(&json!({"agentId": agent, "userId": "u", "contacts": [
            {"phoneNumber": "+12015550101", "state": "fl", "postalCode": "33101"},
            {"phoneNumber": "+12015550102", "postalCode": "73301-0001"},
            {"phoneNumber": "+12015550103", "state": "TX"},
            {"phoneNumber": "+12015550104"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let created: Value = r.json().await.unwrap();
    let batch = created["batchId"].as_str().unwrap().to_owned();
    assert_eq!(
        places(&app, &batch).await,
        [
            (0, s("FL"), s("33101"), s("FL")),
            (1, None, s("73301-0001"), s("TX")),
            (2, s("TX"), None, None),
            (3, None, None, None),
        ]
    );

    // Shown back: each call of status/batch, and results.csv (before the metadata).
    let calls: Value = app
        .get(&format!("/api/v1/status/batch?batchId={batch}"))
        .send_json()
        .await;
    assert_eq!(calls["calls"][0]["state"], "FL", "{calls}");
    assert_eq!(calls["calls"][0]["postalCode"], "33101");
    assert_eq!(calls["calls"][3]["state"], Value::Null);
    let csv = app
        .get(&format!("/api/v1/batch/{batch}/results.csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .ends_with("callerId,state,postalCode,holdReason,nextAttemptAt,metadata"),
        "{csv}"
    );
    assert!(lines.next().unwrap().ends_with(",FL,33101,,,{}"), "{csv}");

    // Bad values: each named, nothing created.
    let r = app
        .post("/api/v1/batch")
        .json(&json!({"agentId": agent, "userId": "u", "contacts": [
            {"phoneNumber": "+12015550101", "state": "Florida"},
            {"phoneNumber": "+12015550102", "postalCode": "3310"},
            {"phoneNumber": "+12015550103", "state": "ZZ", "postalCode": "ABCDE"}]}))
        .send()
        .await
        .unwrap();
    let fields = error_fields(r, 422).await;
    for f in [
        "contacts[0].state",
        "contacts[1].postalCode",
        "contacts[2].state",
        "contacts[2].postalCode",
    ] {
        assert!(fields.iter().any(|x| x == f), "{f} in {fields:?}");
    }
    assert_eq!(fields.len(), 4, "{fields:?}");
    let r = app
        .post("/api/v1/batch")
        .json(&json!({"agentId": agent, "userId": "u", "contacts": [
            {"phoneNumber": "+12015550101", "postalCode": 33101}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_fields(r, 400).await,
        vec!["contacts[0].postalCode"],
        "a number where text is expected is a type error"
    );

    // Vogent JSON, create and append.
    let r = app
        .post("/api/batch_dial_jobs")
        .json(
            &json!({"name": "j", "callAgentId": agent, "maxConcurrentDials": 1, "rows": [
            {"toNumber": "+12015550111", "state": "md", "postalCode": "21201"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let job: Value = r.json().await.unwrap();
    let job = job["id"].as_str().unwrap().to_owned();
    assert_eq!(
        places(&app, &job).await,
        [(0, s("MD"), s("21201"), s("MD"))]
    );
    let queue: Value = app
        .get(&format!("/api/batch_dial_jobs/{job}/queue"))
        .send_json()
        .await;
    assert_eq!(queue["data"][0]["state"], "MD", "{queue}");
    assert_eq!(queue["data"][0]["postalCode"], "21201");
    let r = app
        .post("/api/batch_dial_jobs")
        .json(
            &json!({"name": "j", "callAgentId": agent, "maxConcurrentDials": 1, "rows": [
            {"toNumber": "+12015550111", "state": "XX"},
            {"toNumber": "+12015550112", "postalCode": "1234567890"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_fields(r, 422).await,
        vec!["rows[0].state", "rows[1].postalCode"]
    );
    let r = app
        .post(&format!("/api/batch_dial_jobs/{job}/rows"))
        .json(&json!({"rows": [{"toNumber": "+12015550113", "postalCode": "9810"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 422).await, vec!["rows[0].postalCode"]);
    let r = app
        .post(&format!("/api/batch_dial_jobs/{job}/rows"))
        .json(
            &json!({"rows": [{"toNumber": "+12015550113", "state": "WA", "postalCode": "98101"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let mut appended = Vec::new();
    for _ in 0..300 {
        appended = places(&app, &job).await;
        if appended.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(appended[1], (1, s("WA"), s("98101"), s("WA")));

    // CSV on both surfaces: the columns `state` and `postalCode`, not kept in inputs.
    let form = Form::new()
        .text(
            "batch",
            json!({"agentId": agent, "userId": "u", "options": {"name": "csv"}}).to_string(),
        )
        .part(
            "file",
            csv_file("phoneNumber,state,postalCode,plan\n+12015550121,ok,73102,gold\n+12015550122,,,silver\n"),
        );
    let r = app
        .post("/api/v1/batch")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let created: Value = r.json().await.unwrap();
    let batch = created["batchId"].as_str().unwrap().to_owned();
    assert_eq!(
        places(&app, &batch).await,
        [(0, s("OK"), s("73102"), s("OK")), (1, None, None, None)]
    );
    let inputs: Value = app
        .env
        .db
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT inputs FROM contacts WHERE batch_id = $1 AND row_index = 0",
            &[&batch.parse::<uuid::Uuid>().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(inputs, json!({"plan": "gold"}));
    let form = Form::new()
        .text(
            "job",
            json!({"name": "csv", "callAgentId": agent, "maxConcurrentDials": 1}).to_string(),
        )
        .part(
            "file",
            csv_file(
                "toNumber,state,postalCode\n+12015550131,AL,35203\n+12015550132,Alabama,352\n",
            ),
        );
    let r = app
        .post("/api/batch_dial_jobs")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_fields(r, 422).await,
        vec!["file[row 2].state", "file[row 2].postalCode"]
    );
    stop.cancel();
    let _ = w.await;
}
