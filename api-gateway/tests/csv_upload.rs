//! CSV uploads on both surfaces (`multipart/form-data`: `file` + `batch`/`job`), through the
//! gateway and a real ingest worker: what the contacts hold, and the errors that create nothing.

mod common;

use std::time::Duration;

use common::{TestApp, error_fields, spawn_app};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use shared::config::Env;
use testkit::http::SendJson;
use tokio_util::sync::CancellationToken;

fn file(csv: impl Into<Vec<u8>>) -> Part {
    Part::bytes(csv.into())
        .file_name("contacts.csv")
        .mime_str("text/csv")
        .unwrap()
}

async fn upload(app: &TestApp, path: &str, form: Form) -> reqwest::Response {
    app.post(path).multipart(form).send().await.unwrap()
}

fn worker(app: &TestApp, stop: &CancellationToken) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let mut pairs = app.env.env_vars();
    pairs.push(("HEALTH_ADDR".into(), "127.0.0.1:0".into()));
    let config = ingest_worker::config::Config::from_env(&Env::from_pairs(pairs)).unwrap();
    tokio::spawn(ingest_worker::run(config, stop.clone()))
}

async fn wait_ready(app: &TestApp, id: uuid::Uuid) {
    let client = app.env.db.get().await.unwrap();
    for _ in 0..300 {
        let state: String = client
            .query_one("SELECT ingest_state FROM batches WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get("ingest_state");
        if state == "ready" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("batch {id} was not ingested");
}

async fn batch_count(app: &TestApp) -> i64 {
    let client = app.env.db.get().await.unwrap();
    client
        .query_one("SELECT count(*) AS n FROM batches", &[])
        .await
        .unwrap()
        .get("n")
}

#[tokio::test]
async fn dialgen_csv_with_bom_quotes_newlines_and_extra_columns() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let stop = CancellationToken::new();
    let w = worker(&app, &stop);
    let csv = "\u{feff}phone_number,id,name,email,company,timezone,plan,\"note, long\"\r\n\
               +12015550101,c-1,\"Lovelace, Ada\",ada@example.com,Analytical,America/Chicago,gold,\"first line\nsecond line\"\r\n\
               (201) 555-0102,c-2,Grace,,,,silver,\"she said \"\"hi\"\"\"\r\n\
               not-a-number,c-3,Bad,,,,bronze,\r\n";
    let form = Form::new()
        .text(
            "batch",
            json!({"agentId": agent, "userId": "u", "options": {"name": "csv"}}).to_string(),
        )
        .part("file", file(csv));
    let r = upload(&app, "/api/v1/batch", form).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["success"], true);
    let id: uuid::Uuid = created["batchId"].as_str().unwrap().parse().unwrap();
    wait_ready(&app, id).await;

    let client = app.env.db.get().await.unwrap();
    let rows = client
        .query(
            "SELECT row_index, phone_number, external_id, name, email, company, timezone, inputs
             FROM contacts WHERE batch_id = $1 ORDER BY row_index",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<_, String>("phone_number"), "+12015550101");
    assert_eq!(
        rows[0].get::<_, Option<String>>("external_id").as_deref(),
        Some("c-1")
    );
    assert_eq!(
        rows[0].get::<_, Option<String>>("name").as_deref(),
        Some("Lovelace, Ada")
    );
    assert_eq!(
        rows[0].get::<_, Option<String>>("email").as_deref(),
        Some("ada@example.com")
    );
    assert_eq!(
        rows[0].get::<_, Option<String>>("company").as_deref(),
        Some("Analytical")
    );
    assert_eq!(
        rows[0].get::<_, Option<String>>("timezone").as_deref(),
        Some("America/Chicago")
    );
    assert_eq!(
        rows[0].get::<_, Value>("inputs"),
        json!({"plan": "gold", "note, long": "first line\nsecond line"})
    );
    assert_eq!(rows[1].get::<_, String>("phone_number"), "+12015550102");
    assert_eq!(
        rows[1].get::<_, Option<String>>("name").as_deref(),
        Some("Grace")
    );
    assert_eq!(
        rows[1].get::<_, Value>("inputs"),
        json!({"plan": "silver", "note, long": "she said \"hi\""})
    );
    // A bad number is a rejected row, data row 3 as the user counts it (row_index 2).
    let rejected = client
        .query(
            "SELECT row_index, reason FROM rejected_rows WHERE batch_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].get::<_, i32>("row_index"), 2);
    assert_eq!(rejected[0].get::<_, String>("reason"), "invalid_number");
    let status: Value = app
        .get(&format!("/api/v1/batch/check-status?batchId={id}"))
        .send_json()
        .await;
    assert_eq!(
        status["rows"],
        json!({"accepted": 2, "rejected": 1, "submitted": 3})
    );
    let name: String = client
        .query_one("SELECT name FROM batches WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get("name");
    assert_eq!(name, "csv", "the settings part applied");
    stop.cancel();
    let _ = w.await;
}

#[tokio::test]
async fn vogent_csv_columns_become_inputs_in_either_part_order() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    let stop = CancellationToken::new();
    let w = worker(&app, &stop);
    let csv = "toNumber,firstName,timezone,plan\n+12015550101,Ada,America/New_York,gold\n+12015550102,Grace,,silver\n";
    let job = json!({"name": "csv job", "callAgentId": agent, "maxConcurrentDials": 2});
    // The file first, the settings after: streamed as well.
    let form = Form::new()
        .part("file", file(csv))
        .text("job", job.to_string());
    let r = upload(&app, "/api/batch_dial_jobs", form).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["status"], "INIT", "{created}");
    assert_eq!(created["name"], "csv job");
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    wait_ready(&app, id).await;
    let client = app.env.db.get().await.unwrap();
    let rows = client
        .query(
            "SELECT phone_number, timezone, inputs FROM contacts WHERE batch_id = $1 ORDER BY row_index",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].get::<_, Value>("inputs"),
        json!({"firstName": "Ada", "plan": "gold"})
    );
    assert_eq!(
        rows[0].get::<_, Option<String>>("timezone").as_deref(),
        Some("America/New_York")
    );
    assert_eq!(
        rows[1].get::<_, Value>("inputs"),
        json!({"firstName": "Grace", "plan": "silver"})
    );
    // The settings part first works the same.
    let form = Form::new()
        .text("job", job.to_string())
        .part("file", file(csv));
    let r = upload(&app, "/api/batch_dial_jobs", form).await;
    assert_eq!(r.status(), 200);
    stop.cancel();
    let _ = w.await;
}

#[tokio::test]
async fn bad_files_are_named_and_create_nothing() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let batch = || json!({"agentId": agent, "userId": "u"}).to_string();
    let dialgen = |csv: Vec<u8>| Form::new().text("batch", batch()).part("file", file(csv));

    let r = upload(
        &app,
        "/api/v1/batch",
        dialgen(b"name,email\nAda,a@b.co\n".to_vec()),
    )
    .await;
    assert_eq!(
        error_fields(r, 422).await,
        vec!["file"],
        "missing phone column"
    );
    let r = upload(&app, "/api/v1/batch", dialgen(Vec::new())).await;
    assert_eq!(error_fields(r, 422).await, vec!["file"], "empty file");
    let r = upload(&app, "/api/v1/batch", dialgen(b"phone\n".to_vec())).await;
    assert_eq!(error_fields(r, 422).await, vec!["file"], "no data rows");
    let r = upload(
        &app,
        "/api/v1/batch",
        dialgen(b"phone,,x\n1,2,3\n".to_vec()),
    )
    .await;
    assert_eq!(error_fields(r, 422).await, vec!["file"], "bad header");
    let r = upload(
        &app,
        "/api/v1/batch",
        dialgen(b"phone,name\n+12015550101,Ren\xe9e\n".to_vec()),
    )
    .await;
    assert_eq!(
        error_fields(r, 422).await,
        vec!["file[row 1]"],
        "Latin-1, not UTF-8"
    );
    let r = upload(
        &app,
        "/api/v1/batch",
        dialgen(b"phone,email\n+12015550101,ok@x.co\n+12015550102,nope\n".to_vec()),
    )
    .await;
    assert_eq!(error_fields(r, 422).await, vec!["file[row 2].email"]);
    // Parts missing, unknown, or rows in the settings part.
    let r = upload(&app, "/api/v1/batch", Form::new().text("batch", batch())).await;
    assert_eq!(error_fields(r, 422).await, vec!["file"]);
    let r = upload(
        &app,
        "/api/v1/batch",
        Form::new().part("file", file("phone\n+12015550101\n")),
    )
    .await;
    assert_eq!(error_fields(r, 422).await, vec!["batch"]);
    let r = upload(
        &app,
        "/api/v1/batch",
        dialgen(b"phone\n+12015550101\n".to_vec()).text("extra", "x"),
    )
    .await;
    assert_eq!(error_fields(r, 400).await, vec!["extra"]);
    let r = upload(
        &app,
        "/api/v1/batch",
        Form::new()
            .text(
                "batch",
                json!({"agentId": agent, "contacts": []}).to_string(),
            )
            .part("file", file("phone\n+12015550101\n")),
    )
    .await;
    assert_eq!(error_fields(r, 422).await, vec!["batch.contacts"]);
    let r = upload(
        &app,
        "/api/v1/batch",
        Form::new()
            .text("batch", "{not json")
            .part("file", file("phone\n+12015550101\n")),
    )
    .await;
    assert_eq!(r.status(), 400);

    // Vogent: the same rules, on `job`.
    let r = upload(
        &app,
        "/api/batch_dial_jobs",
        Form::new()
            .text(
                "job",
                json!({"name": "j", "callAgentId": agent, "maxConcurrentDials": 1}).to_string(),
            )
            .part("file", file("firstName\nAda\n")),
    )
    .await;
    assert_eq!(error_fields(r, 422).await, vec!["file"]);
    assert_eq!(batch_count(&app).await, 0, "nothing created");
}

#[tokio::test]
async fn a_csv_of_100_001_rows_is_413_and_creates_nothing() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let mut csv = String::from("phoneNumber,plan\n");
    for i in 0..100_001 {
        csv.push_str(&format!("+1201{i:07},gold\n"));
    }
    let form = Form::new()
        .text(
            "batch",
            json!({"agentId": agent, "userId": "u"}).to_string(),
        )
        .part("file", file(csv));
    let r = upload(&app, "/api/v1/batch", form).await;
    error_fields(r, 413).await;
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
