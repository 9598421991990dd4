//! The Vogent Batch Dial Jobs surface.

mod common;

use common::{error_fields, spawn_app};
use reqwest::Method;
use serde_json::{Value, json};
use testkit::fixtures::Contacts;
use testkit::http::SendJson;

#[tokio::test]
async fn create_publishes_chunks_and_starts_in_init() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    let number = app.create_number("+12015550100").await;
    let job = app.create_job(&agent, 4500).await;
    assert_eq!(job["status"], "INIT");
    assert_eq!(job["maxConcurrentDials"], 5);
    assert_eq!(job["callAgentId"], agent.as_str());
    assert_eq!(job["fromPhoneNumberIds"], json!([number]));
    // 4,500 rows in chunks of 2,000: three confirmed messages before the answer.
    assert_eq!(app.ingest_queue_depth().await, 3);
    let id = job["id"].as_str().unwrap();
    let got: Value = app
        .get(&format!("/api/batch_dial_jobs/{id}"))
        .send_json()
        .await;
    assert_eq!(got["id"], job["id"]);
}

#[tokio::test]
async fn validation_names_every_bad_field_and_changes_nothing() {
    let app = spawn_app().await;
    app.create_number("+12015550100").await;
    let body = json!({
        "name": "",
        "callAgentId": "00000000-0000-0000-0000-000000000000",
        "maxConcurrentDials": 21,
        "fromPhoneNumberIds": ["nope"],
        "schedule": {"days": [{"dayOfWeek": 7, "timeSlots": [{"startTime": "17:00", "endTime": "09:00"}, {"startTime": "9:00", "endTime": "10:00"}]}], "timezone": "Mars/Base"},
        "rows": [{"toNumber": "+12015550101", "inputs": {"age": 41}}],
    });
    let r = app
        .post("/api/batch_dial_jobs")
        .json(&body)
        .send()
        .await
        .unwrap();
    let fields = error_fields(r, 422).await;
    for f in [
        "rows[0].inputs.age",
        "name",
        "maxConcurrentDials",
        "schedule.timezone",
        "schedule.days[0].dayOfWeek",
        "schedule.days[0].timeSlots[0].endTime",
        "schedule.days[0].timeSlots[1].startTime",
        "fromPhoneNumberIds[0]",
        "callAgentId",
    ] {
        assert!(
            fields.contains(&f.to_owned()),
            "{f} missing from {fields:?}"
        );
    }
    assert_eq!(app.ingest_queue_depth().await, 0);
    let list: Value = app.get("/api/batch_dial_jobs").send_json().await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);

    let r = app
        .post("/api/batch_dial_jobs")
        .json(&json!({"name": "x", "rows": []}))
        .send()
        .await
        .unwrap();
    let fields = error_fields(r, 422).await;
    assert!(fields.contains(&"rows".to_owned()) && fields.contains(&"callAgentId".to_owned()));
    let r = app
        .post("/api/batch_dial_jobs")
        .json(&json!({"name": "x", "rows": [{"toNumber": 5}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 400).await, vec!["rows[0].toNumber"]);
    // A row's own timezone, beside `toNumber`, must be an IANA name.
    let agent = app.create_agent().await;
    let r = app
        .post("/api/batch_dial_jobs")
        .json(
            &json!({"name": "x", "callAgentId": agent, "maxConcurrentDials": 1, "rows": [
            {"toNumber": "+12015550101", "timezone": "Europe/Atlantis"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 422).await, vec!["rows[0].timezone"]);
}

#[tokio::test]
async fn pause_walk_put_pending_and_cancel() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let job = app.create_job(&agent, 3).await;
    let id = job["id"].as_str().unwrap();
    let path = format!("/api/batch_dial_jobs/{id}");

    // INIT: a PUT applies at once.
    let r: Value = app
        .put(&path)
        .json(&json!({"maxConcurrentDials": 3}))
        .send_json()
        .await;
    assert_eq!(r["maxConcurrentDials"], 3);
    assert!(r["pending"].is_null());

    let paused = |p: bool| {
        app.post(&format!("{path}/paused"))
            .json(&json!({"paused": p}))
            .send()
    };
    let r: Value = paused(false).await.unwrap().json().await.unwrap();
    assert_eq!(r["status"], "ACTIVE");

    // ACTIVE: kept as pending, applied at the next pause (seed 001).
    let r: Value = app
        .put(&path)
        .json(&json!({"maxConcurrentDials": 4, "name": "renamed"}))
        .send_json()
        .await;
    assert_eq!(r["maxConcurrentDials"], 3);
    assert_eq!(r["pending"]["maxConcurrentDials"], 4);
    let r: Value = paused(true).await.unwrap().json().await.unwrap();
    assert_eq!(
        (
            r["status"].as_str(),
            r["maxConcurrentDials"].as_i64(),
            r["name"].as_str()
        ),
        (Some("PAUSED"), Some(4), Some("renamed"))
    );
    assert!(r["pending"].is_null());
    let r: Value = paused(false).await.unwrap().json().await.unwrap();
    assert_eq!(r["status"], "ACTIVE");

    let r = app
        .put(&path)
        .json(&json!({"maxConcurrentDials": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 422).await, vec!["maxConcurrentDials"]);

    let r: Value = app.post(&format!("{path}/cancel")).send_json().await;
    assert_eq!(r["status"], "CANCELLED");
    error_fields(paused(false).await.unwrap(), 409).await;
    error_fields(
        app.post(&format!("{path}/cancel")).send().await.unwrap(),
        409,
    )
    .await;
    error_fields(
        app.put(&path)
            .json(&json!({"name": "late"}))
            .send()
            .await
            .unwrap(),
        409,
    )
    .await;
    let r = app
        .post(&format!("{path}/paused"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 422).await, vec!["paused"]);
}

/// `machineDetection` on a Vogent job: set at creation, changed by `PUT` (at once in INIT, at the
/// next pause when ACTIVE), turned off by `null`, stored by its exact name for the dial worker;
/// a bad value is a 422 naming the field. `GET` shows it, with the job's statistics.
#[tokio::test]
async fn machine_detection_is_set_at_creation_and_changed_by_put() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    let r = app
        .post("/api/batch_dial_jobs")
        .json(&json!({"name": "amd", "callAgentId": agent, "machineDetection": "Enable", "maxConcurrentDials": 5,
                      "rows": [{"toNumber": "+12015550100"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["machineDetection"], "Enable");
    let id = job["id"].as_str().unwrap().to_owned();
    let path = format!("/api/batch_dial_jobs/{id}");
    let stored = async || -> Option<String> {
        let client = app.env.db.get().await.unwrap();
        client
            .query_one(
                "SELECT machine_detection FROM batches WHERE id = $1",
                &[&uuid::Uuid::parse_str(&id).unwrap()],
            )
            .await
            .unwrap()
            .get("machine_detection")
    };
    assert_eq!(stored().await.as_deref(), Some("Enable"));

    // INIT: at once.
    let r: Value = app
        .put(&path)
        .json(&json!({"machineDetection": "DetectMessageEnd"}))
        .send_json()
        .await;
    assert_eq!(r["machineDetection"], "DetectMessageEnd");
    assert_eq!(stored().await.as_deref(), Some("DetectMessageEnd"));
    // Absent: unchanged.
    let r: Value = app
        .put(&path)
        .json(&json!({"name": "renamed"}))
        .send_json()
        .await;
    assert_eq!(r["machineDetection"], "DetectMessageEnd");

    // A bad value names the field and changes nothing.
    for bad in [json!("enable"), json!("Sometimes")] {
        let r = app
            .put(&path)
            .json(&json!({"machineDetection": bad}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_fields(r, 422).await, vec!["machineDetection"]);
    }
    let r = app
        .put(&path)
        .json(&json!({"machineDetection": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 400).await, vec!["machineDetection"]);
    assert_eq!(stored().await.as_deref(), Some("DetectMessageEnd"));

    // ACTIVE: pending until the next pause; null turns it off.
    let paused = |p: bool| {
        app.post(&format!("{path}/paused"))
            .json(&json!({"paused": p}))
            .send()
    };
    let r: Value = paused(false).await.unwrap().json().await.unwrap();
    assert_eq!(r["status"], "ACTIVE");
    let r: Value = app
        .put(&path)
        .json(&json!({"machineDetection": null}))
        .send_json()
        .await;
    assert_eq!(r["machineDetection"], "DetectMessageEnd");
    assert!(
        r["pending"]
            .as_object()
            .unwrap()
            .contains_key("machineDetection")
    );
    assert_eq!(stored().await.as_deref(), Some("DetectMessageEnd"));
    let r: Value = paused(true).await.unwrap().json().await.unwrap();
    assert_eq!(r["machineDetection"], Value::Null);
    assert_eq!(stored().await, None);

    let shown: Value = app.get(&path).send_json().await;
    assert_eq!(shown["machineDetection"], Value::Null);
    assert_eq!(shown["statistics"]["total"], shown["statistics"]["pending"]);
    assert_eq!(shown["statistics"]["voicemail"], 0);
}

/// The ids of a list page's jobs, in order.
fn job_ids(page: &Value) -> Vec<&str> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn list_paginates_stably_and_filters() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            app.create_job(&agent, 1).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let first: Value = app.get("/api/batch_dial_jobs?limit=2").send_json().await;
    assert_eq!(job_ids(&first), vec![ids[4].as_str(), ids[3].as_str()]);
    // A job created between pages does not shift the next page.
    app.create_job(&agent, 1).await;
    let cursor = first["cursor"].as_str().unwrap();
    let second: Value = app
        .get(&format!("/api/batch_dial_jobs?limit=2&cursor={cursor}"))
        .send_json()
        .await;
    assert_eq!(job_ids(&second), vec![ids[2].as_str(), ids[1].as_str()]);

    app.post(&format!("/api/batch_dial_jobs/{}/paused", ids[0]))
        .json(&json!({"paused": false}))
        .send()
        .await
        .unwrap();
    let active: Value = app
        .get("/api/batch_dial_jobs?status=ACTIVE")
        .send_json()
        .await;
    assert_eq!(active["data"].as_array().unwrap().len(), 1);
    let by_agent: Value = app
        .get(&format!(
            "/api/batch_dial_jobs?callAgentId={agent}&limit=100"
        ))
        .send_json()
        .await;
    assert_eq!(by_agent["data"].as_array().unwrap().len(), 6);
    assert!(by_agent["cursor"].is_null());
    error_fields(
        app.get("/api/batch_dial_jobs?status=RUNNING")
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    error_fields(
        app.get("/api/batch_dial_jobs?cursor=garbage")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    error_fields(
        app.get("/api/batch_dial_jobs?limit=abc")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;

    let other = app.other_workspace_key().await;
    let theirs: Value = app
        .request_as(&other, Method::GET, "/api/batch_dial_jobs")
        .send_json()
        .await;
    assert_eq!(theirs["data"].as_array().unwrap().len(), 0);
    let r = app
        .request_as(
            &other,
            Method::GET,
            &format!("/api/batch_dial_jobs/{}", ids[0]),
        )
        .send()
        .await
        .unwrap();
    error_fields(r, 404).await;
}

#[tokio::test]
async fn idempotency_key_returns_the_first_job() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let body = json!({"name": "once", "callAgentId": agent, "maxConcurrentDials": 1, "rows": [{"toNumber": "+12015550101"}]});
    let (a, b) = app.post_twice("/api/batch_dial_jobs", "k-1", &body).await;
    assert_eq!(a["id"], b["id"]);
    assert_eq!(app.ingest_queue_depth().await, 1);
}

#[tokio::test]
async fn queue_and_dials_show_rows_and_attempts() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let job = app.create_job(&agent, 2).await;
    let id: uuid::Uuid = job["id"].as_str().unwrap().parse().unwrap();
    // Stand in for the ingest worker and a dial worker.
    let client = app.env.db.get().await.unwrap();
    let contacts = Contacts::new(["+12015550101", "+12015550102"])
        .inputs(json!({"k": "v"}))
        .insert(&client, id, app.workspace_id)
        .await;
    let c1 = contacts[0];
    let attempt = uuid::Uuid::now_v7();
    client
        .execute(
            "UPDATE contacts SET state = 'failed', last_outcome = 'busy' WHERE id = $1",
            &[&c1],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO dial_attempts (id, contact_id, batch_id, workspace_id, attempt_no, to_number, state, outcome, started_at, ended_at)
             VALUES ($1, $2, $3, $4, 1, '+12015550101', 'ended', 'busy', now(), now())",
            &[&attempt, &c1, &id, &app.workspace_id],
        )
        .await
        .unwrap();

    let queue: Value = app
        .get(&format!("/api/batch_dial_jobs/{id}/queue"))
        .send_json()
        .await;
    assert_eq!(queue["data"].as_array().unwrap().len(), 1);
    assert_eq!(queue["data"][0]["toNumber"], "+12015550102");
    assert_eq!(queue["data"][0]["inputs"]["k"], "v");

    let dials: Value = app
        .get(&format!("/api/batch_dial_jobs/{id}/dials"))
        .send_json()
        .await;
    assert_eq!(dials["data"][0]["systemResultType"], "BUSY");
    assert_eq!(dials["data"][0]["dialTaskId"], c1.to_string());
    let one: Value = app.get(&format!("/api/dials/{attempt}")).send_json().await;
    assert_eq!(one["toNumber"], "+12015550101");
    let none: Value = app
        .get(&format!(
            "/api/batch_dial_jobs/{id}/dials?status=in-progress"
        ))
        .send_json()
        .await;
    assert_eq!(none["data"].as_array().unwrap().len(), 0);

    // The same batch through the Dialgen surface.
    let status: Value = app
        .get(&format!("/api/v1/batch/{id}/status"))
        .send_json()
        .await;
    assert_eq!(status["statistics"]["total"], 2);
    assert_eq!(status["statistics"]["processed"], 1);
    assert_eq!(status["recentCalls"][0]["status"], "MISSED");
    let calls: Value = app
        .get(&format!("/api/v1/status/batch?batchId={id}"))
        .send_json()
        .await;
    assert_eq!(calls["calls"].as_array().unwrap().len(), 2);
    let other = app.other_workspace_key().await;
    error_fields(
        app.request_as(&other, Method::GET, &format!("/api/dials/{attempt}"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
}

#[tokio::test]
async fn a_workspace_without_numbers_can_still_create_jobs() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    let job = app.create_job(&agent, 1).await;
    assert_eq!(job["status"], "INIT");
    assert_eq!(job["fromPhoneNumberIds"], json!([]));
}

/// A stored schedule that cannot be read (a hand edit) is shown as stored and keeps the job
/// closed, the one policy of every role; it never answers 500.
#[tokio::test]
async fn an_unreadable_stored_schedule_is_shown_and_keeps_the_job_closed() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    let job = app.create_job(&agent, 1).await;
    let id = job["id"].as_str().unwrap();
    let client = app.env.db.get().await.unwrap();
    client
        .execute(
            "UPDATE batches SET schedule = '{\"days\": \"weekdays\"}', state = 'active',
                 ingest_state = 'ready'
             WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    let got = app
        .get(&format!("/api/batch_dial_jobs/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let got: Value = got.json().await.unwrap();
    assert_eq!(got["schedule"], json!({"days": "weekdays"}));
    let status: Value = app
        .get(&format!("/api/v1/batch/{id}/status"))
        .send_json()
        .await;
    assert_eq!(status["status"], "scheduled", "{status}");
}
