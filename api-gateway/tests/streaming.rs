//! The create path streams: chunks are published while the body is still arriving. A body that
//! proves invalid after some were published is still answered 400/413/422, and nothing of it is
//! created: its batch is aborted (hidden, 404), the real ingest workers drop or delete its rows,
//! and nothing is left to dial.

mod common;

use std::time::Duration;

use common::{TestApp, error_fields, spawn_app};
use serde_json::{Value, json};
use shared::config::Env;
use testkit::http::SendJson;
use tokio_util::sync::CancellationToken;

/// Enough contacts that chunks are published before the body ends (2,000 per chunk).
const ROWS: usize = 5_000;

fn contacts(n: usize) -> String {
    (0..n)
        .map(|i| format!(r#"{{"phoneNumber":"+1201{:07}"}}"#, i))
        .collect::<Vec<_>>()
        .join(",")
}

fn rows(n: usize) -> String {
    (0..n)
        .map(|i| format!(r#"{{"toNumber":"+1201{:07}"}}"#, i))
        .collect::<Vec<_>>()
        .join(",")
}

fn worker(app: &TestApp, stop: &CancellationToken) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let mut pairs = app.env.env_vars();
    pairs.push(("HEALTH_ADDR".into(), "127.0.0.1:0".into()));
    let config = ingest_worker::config::Config::from_env(&Env::from_pairs(pairs)).unwrap();
    tokio::spawn(ingest_worker::run(config, stop.clone()))
}

async fn post_raw(app: &TestApp, path: &str, body: String) -> reqwest::Response {
    app.post(path)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The late-invalid bodies of both surfaces, each with the status it must get.
async fn post_late_invalid_bodies(app: &TestApp) {
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let many = contacts(ROWS);

    // Settings after the array that fail validation.
    let r = post_raw(app, "/api/v1/batch", format!(
        r#"{{"agentId":"{agent}","userId":"u","contacts":[{many}],"options":{{"maxCallsPerSecond":0}}}}"#
    )).await;
    assert_eq!(
        error_fields(r, 422).await,
        vec!["options.maxCallsPerSecond"]
    );
    // A wrong type after the array.
    let r = post_raw(app, "/api/v1/batch", format!(
        r#"{{"agentId":"{agent}","userId":"u","contacts":[{many}],"options":{{"priority":"high"}}}}"#
    )).await;
    assert_eq!(error_fields(r, 400).await, vec!["options.priority"]);
    // Truncated in the middle of the rows.
    let r = post_raw(
        app,
        "/api/v1/batch",
        format!(r#"{{"agentId":"{agent}","userId":"u","contacts":[{many},{{"phoneNu"#),
    )
    .await;
    error_fields(r, 400).await;
    // The 100,001st contact.
    let r = post_raw(
        app,
        "/api/v1/batch",
        format!(
            r#"{{"agentId":"{agent}","userId":"u","contacts":[{}]}}"#,
            contacts(100_001)
        ),
    )
    .await;
    error_fields(r, 413).await;
    // An agent that is not the workspace's, named after the array.
    let r = post_raw(
        app,
        "/api/v1/batch",
        format!(
            r#"{{"userId":"u","contacts":[{many}],"agentId":"{}"}}"#,
            uuid::Uuid::now_v7()
        ),
    )
    .await;
    assert_eq!(error_fields(r, 422).await, vec!["agentId"]);
    // A defaultRegion after the rows that differs from the one they were read in.
    let r = post_raw(app, "/api/v1/batch", format!(
        r#"{{"agentId":"{agent}","userId":"u","contacts":[{many}],"options":{{"defaultRegion":"GB"}}}}"#
    )).await;
    assert_eq!(error_fields(r, 422).await, vec!["options.defaultRegion"]);
    // Vogent: a setting after the rows.
    let r = post_raw(
        app,
        "/api/batch_dial_jobs",
        format!(
            r#"{{"name":"j","callAgentId":"{agent}","rows":[{}],"maxConcurrentDials":0}}"#,
            rows(ROWS)
        ),
    )
    .await;
    assert_eq!(error_fields(r, 422).await, vec!["maxConcurrentDials"]);
}

/// Nothing of the requests exists for the API or for dialing, once the workers are done.
async fn assert_nothing_created(app: &TestApp) {
    // Wait for the workers to take every published chunk (they drop or roll back each one).
    for _ in 0..600 {
        if app.ingest_queue_depth().await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A chunk taken last may still be in its transaction.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(app.ingest_queue_depth().await, 0);

    let client = app.env.db.get().await.unwrap();
    let batches: Vec<(uuid::Uuid, String)> = client
        .query("SELECT id, ingest_state FROM batches", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("id"), r.get("ingest_state")))
        .collect();
    // Every late-invalid body published chunks, so every one left a hidden tombstone, but the
    // 413, which leaves no row at all (issue #29), only its id for the workers to drop.
    assert_eq!(batches.len(), 6, "{batches:?}");
    assert!(batches.iter().all(|(_, s)| s == "aborted"), "{batches:?}");
    let discarded: i64 = client
        .query_one("SELECT count(*) AS n FROM discarded_uploads", &[])
        .await
        .unwrap()
        .get("n");
    assert_eq!(discarded, 1);
    for table in ["contacts", "rejected_rows", "dial_attempts"] {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) AS n FROM {table}"), &[])
            .await
            .unwrap()
            .get("n");
        assert_eq!(n, 0, "{table}");
    }
    let list: Value = app.get("/api/v1/batch/list").send_json().await;
    assert_eq!(list, json!([]));
    let jobs: Value = app.get("/api/batch_dial_jobs").send_json().await;
    assert_eq!(jobs["data"], json!([]), "{jobs}");
    for (id, _) in &batches {
        for path in [
            format!("/api/v1/batch/{id}/status"),
            format!("/api/batch_dial_jobs/{id}"),
            format!("/api/v1/status/batch?batchId={id}"),
        ] {
            let r = app.get(&path).send().await.unwrap();
            assert_eq!(r.status(), 404, "{path}");
        }
        let r = app
            .post(&format!("/api/batch_dial_jobs/{id}/paused"))
            .json(&json!({"paused": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "an aborted job cannot be started");
    }
}

#[tokio::test]
async fn late_invalid_bodies_leave_chunks_the_workers_drop() {
    let app = spawn_app().await;
    post_late_invalid_bodies(&app).await;
    // Every batch is aborted before a worker sees any of its chunks: each is dropped.
    assert!(
        app.ingest_queue_depth().await > 0,
        "chunks were published while streaming"
    );
    let stop = CancellationToken::new();
    let w = worker(&app, &stop);
    assert_nothing_created(&app).await;
    let client = app.env.db.get().await.unwrap();
    let stored: i64 = client
        .query_one("SELECT count(*) AS n FROM ingest_chunks", &[])
        .await
        .unwrap()
        .get("n");
    assert_eq!(stored, 0, "a chunk of an aborted batch stores nothing");
    stop.cancel();
    let _ = w.await;
}

#[tokio::test]
async fn rows_ingested_while_the_body_arrives_are_hidden_then_deleted() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let stop = CancellationToken::new();
    let w = worker(&app, &stop);
    // A client that sends the rows, pauses, then sends settings that fail.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_of(rx));
    let request = app
        .post("/api/v1/batch")
        .header("content-type", "application/json")
        .body(body)
        .send();
    let response = tokio::spawn(request);
    tx.send(Ok(format!(
        r#"{{"agentId":"{agent}","userId":"u","contacts":[{}"#,
        contacts(ROWS)
    )))
    .await
    .unwrap();
    let client = app.env.db.get().await.unwrap();
    let mut stored = 0i64;
    for _ in 0..300 {
        stored = client
            .query_one("SELECT count(*) AS n FROM contacts", &[])
            .await
            .unwrap()
            .get("n");
        if stored > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stored > 0,
        "a chunk was ingested while the body was still arriving"
    );
    // Stored, yet the batch does not exist for the API.
    let list: Value = app.get("/api/v1/batch/list").send_json().await;
    assert_eq!(list, json!([]));
    let id: uuid::Uuid = client
        .query_one("SELECT id FROM batches", &[])
        .await
        .unwrap()
        .get("id");
    let r = app
        .get(&format!("/api/v1/batch/{id}/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    tx.send(Ok(r#"],"options":{"maxCallsPerSecond":0}}"#.to_owned()))
        .await
        .unwrap();
    drop(tx);
    let r = response.await.unwrap().unwrap();
    assert_eq!(
        error_fields(r, 422).await,
        vec!["options.maxCallsPerSecond"]
    );
    let n: i64 = client
        .query_one("SELECT count(*) AS n FROM contacts", &[])
        .await
        .unwrap()
        .get("n");
    assert_eq!(n, 0, "the abort deleted the rows stored meanwhile");
    let state: String = client
        .query_one("SELECT ingest_state FROM batches WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get("ingest_state");
    assert_eq!(state, "aborted");
    stop.cancel();
    let _ = w.await;
}

/// A body stream fed by the test.
fn tokio_stream_of(
    rx: tokio::sync::mpsc::Receiver<Result<String, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
}

#[tokio::test]
async fn settings_after_the_rows_apply_before_anything_is_released() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let stop = CancellationToken::new();
    let w = worker(&app, &stop);
    let r = post_raw(&app, "/api/v1/batch", format!(
        r#"{{"agentId":"{agent}","contacts":[{}],"userId":"u","options":{{"name":"late","priority":9,"tags":["after"]}}}}"#,
        contacts(ROWS)
    )).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let created: Value = r.json().await.unwrap();
    let id: uuid::Uuid = created["batchId"].as_str().unwrap().parse().unwrap();
    let client = app.env.db.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT name, priority, tags, total_rows, expected_chunks FROM batches WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>("name"), "late");
    assert_eq!(row.get::<_, i16>("priority"), 9);
    assert_eq!(row.get::<_, Vec<String>>("tags"), vec!["after"]);
    assert_eq!(row.get::<_, i32>("total_rows"), ROWS as i32);
    assert_eq!(row.get::<_, i32>("expected_chunks"), 3);
    for _ in 0..300 {
        let status: Value = app
            .get(&format!("/api/v1/batch/check-status?batchId={id}"))
            .send_json()
            .await;
        if status["statistics"]["total"] == ROWS && status["status"] != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let n: i64 = client
        .query_one(
            "SELECT count(*) AS n FROM contacts WHERE batch_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get("n");
    assert_eq!(n, ROWS as i64);
    // The same key and body again: the same batch, nothing published twice.
    stop.cancel();
    let _ = w.await;
}

#[tokio::test]
async fn an_idempotency_key_replay_of_a_streamed_body() {
    let app = spawn_app().await;
    let agent = app.create_agent().await;
    app.create_number("+12015550100").await;
    let body = format!(
        r#"{{"agentId":"{agent}","userId":"u","contacts":[{}]}}"#,
        contacts(ROWS)
    );
    let post = |body: String| {
        app.post("/api/v1/batch")
            .header("content-type", "application/json")
            .header("Idempotency-Key", "k1")
            .body(body)
            .send()
    };
    let first: Value = post(body.clone()).await.unwrap().json().await.unwrap();
    let depth = app.ingest_queue_depth().await;
    let again = post(body.clone()).await.unwrap();
    assert_eq!(again.status(), 202);
    let again: Value = again.json().await.unwrap();
    assert_eq!(first["batchId"], again["batchId"]);
    assert_eq!(
        app.ingest_queue_depth().await,
        depth,
        "a replay publishes nothing"
    );
    let other = body.replace("+12010000001", "+12010000002");
    let r = post(other).await.unwrap();
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["code"], "idempotency_key_reused", "{err}");
}
