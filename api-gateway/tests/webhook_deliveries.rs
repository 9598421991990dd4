//! `GET /api/webhook_deliveries`: every delivery the dial workers made, per workspace, with
//! filters, a cursor, and a manual retry.

mod common;

use common::{TestApp, error_fields, spawn_app};
use serde_json::{Value, json};
use uuid::Uuid;

/// Writes a delivery as the dial workers' outbox does.
async fn delivery(app: &TestApp, batch: Uuid, event: &str, state: &str) -> Uuid {
    let id = Uuid::now_v7();
    let client = app.env.db.get().await.unwrap();
    client
        .execute(
            "INSERT INTO webhook_deliveries (id, workspace_id, batch_id, event, subject_id, url,
                 payload, state, attempts, last_status_code, last_error)
             VALUES ($1, $2, $3, $4, $5, 'https://hooks.example/x', $6, $7, 3, 500, 'HTTP 500')",
            &[
                &id,
                &app.workspace_id,
                &batch,
                &event,
                &Uuid::new_v4(),
                &json!({"event": event}),
                &state,
            ],
        )
        .await
        .unwrap();
    id
}

/// A one-row Vogent job of `agent`.
async fn job_id(app: &TestApp, agent: &str) -> Uuid {
    app.create_job(agent, 1).await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn page(app: &TestApp, query: &str) -> Value {
    let r = app
        .get(&format!("/api/webhook_deliveries{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn deliveries_are_listed_filtered_paged_and_fetched() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    let job = job_id(&app, &agent).await;
    let other_job = job_id(&app, &agent).await;
    let failed = delivery(&app, job, "call.completed", "failed").await;
    let done = delivery(&app, job, "batch.completed", "delivered").await;
    let elsewhere = delivery(&app, other_job, "call.completed", "pending").await;

    let all = page(&app, "").await;
    assert_eq!(
        ids(&all),
        [failed, done, elsewhere].map(|i| i.to_string()).to_vec()
    );
    let first = &all["data"][0];
    assert_eq!(first["event"], "call.completed");
    assert_eq!(first["state"], "failed");
    assert_eq!(first["attempts"], 3);
    assert_eq!(first["lastStatusCode"], 500);
    assert_eq!(first["lastError"], "HTTP 500");
    assert_eq!(
        first["nextAttemptAt"],
        Value::Null,
        "nothing more is planned"
    );
    assert_eq!(first["payload"]["event"], "call.completed");
    assert_eq!(first["batchId"], job.to_string());

    assert_eq!(
        ids(&page(&app, "?state=failed").await),
        [failed.to_string()]
    );
    assert_eq!(
        ids(&page(&app, "?event=call.completed").await),
        [failed, elsewhere].map(|i| i.to_string()).to_vec()
    );
    assert_eq!(
        ids(&page(&app, &format!("?batchId={other_job}")).await),
        [elsewhere.to_string()]
    );

    // A cursor continues after the last item of the previous page.
    let one = page(&app, "?limit=2").await;
    assert_eq!(ids(&one).len(), 2);
    let cursor = one["cursor"].as_str().unwrap();
    let rest = page(&app, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&rest), [elsewhere.to_string()]);
    assert_eq!(rest["cursor"], Value::Null);

    let r = app
        .get(&format!("/api/webhook_deliveries/{done}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["event"], "batch.completed");

    // Another workspace sees none of them.
    let other = app.other_workspace_key().await;
    let r = app
        .http
        .get(app.url(&format!("/api/webhook_deliveries/{done}")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .http
        .get(app.url("/api/webhook_deliveries"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(ids(&r.json::<Value>().await.unwrap()), Vec::<String>::new());
    let r = app
        .http
        .post(app.url(&format!("/api/webhook_deliveries/{failed}/retry")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "and cannot retry them");
    let r = app
        .http
        .get(app.url("/api/webhook_deliveries"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn bad_filters_name_their_parameter() {
    let app = spawn_app().await;
    for (query, field) in [
        ("?state=lost", "state"),
        ("?event=call.started", "event"),
        ("?batchId=nope", "batchId"),
        ("?limit=0", "limit"),
        ("?cursor=garbage", "cursor"),
    ] {
        let r = app
            .get(&format!("/api/webhook_deliveries{query}"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(status == 400 || status == 422, "{query}: {status}");
        assert_eq!(error_fields(r, status).await, [field], "{query}");
    }
    let r = app
        .get("/api/webhook_deliveries?state=lost&event=x&batchId=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_fields(r, 422).await,
        ["state", "event", "batchId"],
        "every bad filter at once"
    );
    let r = app
        .get("/api/webhook_deliveries/not-a-uuid")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_failed_delivery_is_sent_again_on_request() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    let job = job_id(&app, &agent).await;
    let failed = delivery(&app, job, "call.completed", "failed").await;
    let r = app
        .post(&format!("/api/webhook_deliveries/{failed}/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["state"], "pending");
    assert!(body["nextAttemptAt"].is_string());
    assert_eq!(body["attempts"], 3, "the history is kept");
    // The delivery loop's retry period restarts now, not at creation.
    let client = app.env.db.get().await.unwrap();
    let restarted: bool = client
        .query_one(
            "SELECT retry_from > created_at AS restarted FROM webhook_deliveries WHERE id = $1",
            &[&failed],
        )
        .await
        .unwrap()
        .get("restarted");
    assert!(restarted);
}
