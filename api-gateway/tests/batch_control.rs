//! Both APIs control their batches (issue 27): Dialgen's `pause`, `resume` and `cancel`
//! extension routes, in the check-status shape, through the one implementation Vogent's
//! `/paused` and `/cancel` use; the Dialgen list's `status` filter; `links.dashboard` on the
//! Vogent create.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::fixtures::{Batch, Contacts, WorkspaceIds};
use testkit::http::SendJson;
use uuid::Uuid;

use common::{TestApp, error_fields, spawn_app};

async fn workspace_ids(app: &TestApp) -> WorkspaceIds {
    WorkspaceIds {
        id: app.workspace_id,
        agent_id: app.create_agent().await.parse().unwrap(),
    }
}

async fn state_of(app: &TestApp, id: Uuid) -> String {
    let client = app.env.db.get().await.unwrap();
    client
        .query_one("SELECT state FROM batches WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

async fn control(app: &TestApp, id: Uuid, action: &str) -> reqwest::Response {
    app.post(&format!("/api/v1/batch/{id}/{action}"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn dialgen_pauses_resumes_and_cancels_its_batch_in_the_check_status_shape() {
    let app = spawn_app().await;
    let ws = workspace_ids(&app).await;
    let client = app.env.db.get().await.unwrap();
    let id = Batch::new(ws).name("spring").insert(&client).await;
    Contacts::new(["+12015550001", "+12015550002", "+12015550003"])
        .insert(&client, id, ws.id)
        .await;

    let paused: Value = control(&app, id, "pause").await.json().await.unwrap();
    assert_eq!(paused["batchId"], id.to_string());
    assert_eq!(paused["status"], "paused");
    assert_eq!(paused["statistics"]["total"], 3);
    assert!(paused["performance"].is_object() && paused["timestamps"].is_object());
    assert_eq!(state_of(&app, id).await, "paused");
    // Pausing a paused batch changes nothing.
    let again = control(&app, id, "pause").await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["status"], "paused");
    // check-status says the same.
    let check: Value = app
        .get(&format!("/api/v1/batch/check-status?batchId={id}"))
        .send_json()
        .await;
    assert_eq!(check["status"], "paused");

    let resumed: Value = control(&app, id, "resume").await.json().await.unwrap();
    assert_eq!(
        resumed["status"], "processing",
        "no schedule: the window is open"
    );
    assert_eq!(state_of(&app, id).await, "active");

    let cancelled: Value = control(&app, id, "cancel").await.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(state_of(&app, id).await, "cancelled");
    // The queued contacts follow the answer.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let check: Value = app
            .get(&format!("/api/v1/batch/check-status?batchId={id}"))
            .send_json()
            .await;
        if check["statistics"]["cancelled"] == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "contacts not cancelled: {check}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A final batch refuses each control with 409, in Dialgen's words.
    for action in ["pause", "resume", "cancel"] {
        let r = control(&app, id, action).await;
        assert_eq!(r.status(), 409, "{action}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "conflict");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("cancelled batch"), "{message}");
    }
    let completed = Batch::new(ws).state("completed").insert(&client).await;
    for action in ["pause", "resume", "cancel"] {
        assert_eq!(control(&app, completed, action).await.status(), 409);
    }
    assert_eq!(state_of(&app, completed).await, "completed");
}

#[tokio::test]
async fn another_workspaces_batch_is_not_found_and_not_touched() {
    let app = spawn_app().await;
    let ws = workspace_ids(&app).await;
    let client = app.env.db.get().await.unwrap();
    let id = Batch::new(ws).insert(&client).await;
    let other = app.other_workspace_key().await;
    for action in ["pause", "resume", "cancel"] {
        let r = app
            .request_as(
                &other,
                reqwest::Method::POST,
                &format!("/api/v1/batch/{id}/{action}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{action}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
        // An id that is not a UUID names nothing either.
        let r = app
            .post(&format!("/api/v1/batch/not-a-uuid/{action}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    assert_eq!(state_of(&app, id).await, "active");
    // Vogent's routes, the same implementation, answer the same.
    let r = app
        .request_as(
            &other,
            reqwest::Method::POST,
            &format!("/api/batch_dial_jobs/{id}/cancel"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(state_of(&app, id).await, "active");
}

/// What Dialgen's pause does, Vogent's `/paused` sees, and the other way round: one state.
#[tokio::test]
async fn a_pause_through_one_api_is_seen_and_undone_through_the_other() {
    let app = spawn_app().await;
    let ws = workspace_ids(&app).await;
    let client = app.env.db.get().await.unwrap();
    let id = Batch::new(ws).surface("vogent").insert(&client).await;
    assert_eq!(control(&app, id, "pause").await.status(), 200);
    let job: Value = app
        .get(&format!("/api/batch_dial_jobs/{id}"))
        .send_json()
        .await;
    assert_eq!(job["status"], "PAUSED");
    let job: Value = app
        .post(&format!("/api/batch_dial_jobs/{id}/paused"))
        .json(&serde_json::json!({"paused": false}))
        .send_json()
        .await;
    assert_eq!(job["status"], "ACTIVE");
    let r: Value = control(&app, id, "pause").await.json().await.unwrap();
    assert_eq!(r["status"], "paused");
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|b| b["batchId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_batch_list_filters_by_status_or_names_a_bad_one() {
    let app = spawn_app().await;
    let ws = workspace_ids(&app).await;
    let client = app.env.db.get().await.unwrap();
    let mut by_status = Vec::new();
    for (state, ingest, status) in [
        ("active", "ready", "processing"),
        ("paused", "ready", "paused"),
        ("completed", "ready", "completed"),
        ("cancelled", "ready", "cancelled"),
        ("created", "ready", "pending"),
        ("created", "ingesting", "ingesting"),
        ("created", "failed", "failed"),
    ] {
        let id = Batch::new(ws)
            .state(state)
            .ingest_state(ingest)
            .insert(&client)
            .await;
        by_status.push((status, id.to_string()));
    }
    // Active, but outside its window: scheduled, not processing.
    let later = chrono::Utc::now() + chrono::Duration::hours(3);
    let scheduled = Batch::new(ws)
        .scheduled_start_time(Some(later))
        .insert(&client)
        .await;
    by_status.push(("scheduled", scheduled.to_string()));
    // Another workspace's paused batch is never listed.
    let other = testkit::fixtures::Workspace::new().insert(&client).await;
    Batch::new(other).state("paused").insert(&client).await;

    let all: Value = app.get("/api/v1/batch/list").send_json().await;
    assert_eq!(ids(&all).len(), by_status.len());
    for (status, id) in &by_status {
        // Streamed whole, and as a page.
        for query in [
            format!("status={status}"),
            format!("status={status}&limit=50"),
        ] {
            let list: Value = app
                .get(&format!("/api/v1/batch/list?{query}"))
                .send_json()
                .await;
            assert_eq!(ids(&list), vec![id.clone()], "{query}: {list}");
            assert_eq!(list[0]["status"], *status);
        }
    }
    // Two paused ones, a page at a time.
    let second = Batch::new(ws).state("paused").insert(&client).await;
    let r = app
        .get("/api/v1/batch/list?status=paused&limit=1")
        .send()
        .await
        .unwrap();
    let cursor = r.headers()["x-next-cursor"].to_str().unwrap().to_owned();
    let first: Value = r.json().await.unwrap();
    assert_eq!(ids(&first), vec![second.to_string()]);
    let next: Value = app
        .get(&format!(
            "/api/v1/batch/list?status=paused&limit=1&cursor={cursor}"
        ))
        .send_json()
        .await;
    assert_eq!(ids(&next), vec![by_status[1].1.clone()]);

    // A status that is not one: 400, naming the parameter and the value.
    for bad in ["PAUSED", "active", "running", ""] {
        let r = app
            .get(&format!("/api/v1/batch/list?status={bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad:?}");
        let body: Value = r.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("{bad:?}")), "{message}");
        assert_eq!(body["error"]["details"][0]["field"], "status");
    }
    let r = app
        .get("/api/v1/batch/list?status=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(r, 400).await, ["status"]);
}

#[tokio::test]
async fn the_vogent_create_answer_carries_the_dashboard_link() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    let job = app.create_job(&agent, 2).await;
    let id = job["id"].as_str().unwrap();
    let dashboard = job["links"]["dashboard"].as_str().unwrap();
    assert!(
        dashboard.contains(&format!("/batch/monitor/{id}?token=")),
        "{dashboard}"
    );
    // The link opens that job's page.
    let page = app
        .http
        .get(app.url(&dashboard[dashboard.find("/batch/monitor/").unwrap()..]))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
}
