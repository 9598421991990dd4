//! Cancelling a large job: the cancel takes effect — the job's state committed `cancelled`, which
//! every dial worker's attempt insert checks — before the bulk update of its queued rows, which
//! follows in its own statement (invariant 6: pause and cancel act within 1 s for new calls,
//! whatever the job's size).

mod common;

use std::time::{Duration, Instant};

use common::spawn_app;
use serde_json::{Value, json};
use testkit::fixtures::{Batch, Contacts, WorkspaceIds};
use testkit::http::SendJson;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_jobs_cancel_commits_its_state_before_the_rows() {
    let app = spawn_app().await;
    let agent: Value = app
        .post("/api/agents")
        .json(&json!({"name": "bot", "answerUrl": "https://agent.example/answer"}))
        .send_json()
        .await;
    let ws = WorkspaceIds {
        id: app.workspace_id,
        agent_id: agent["id"].as_str().unwrap().parse().unwrap(),
    };
    let client = app.env.db.get().await.unwrap();
    let batch = Batch::new(ws).name("big").insert(&client).await;
    let numbers: Vec<String> = (0..100_000).map(|i| format!("+1201{i:07}")).collect();
    Contacts::new(numbers).insert(&client, batch, ws.id).await;

    // What a dial worker sees, in one snapshot: the job's state and its queued rows.
    let observe = async || -> (String, i64) {
        let row = client
            .query_one(
                "SELECT b.state,
                        (SELECT count(*) FROM contacts c WHERE c.batch_id = b.id AND c.state = 'queued')
                            AS queued
                 FROM batches b WHERE b.id = $1",
                &[&batch],
            )
            .await
            .unwrap();
        (row.get("state"), row.get("queued"))
    };
    assert_eq!(observe().await, ("active".to_owned(), 100_000));

    let sent = Instant::now();
    let r = app
        .post(&format!("/api/batch_dial_jobs/{batch}/cancel"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let answered = sent.elapsed();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "CANCELLED");
    let (state, queued) = observe().await;
    eprintln!(
        "cancel of a 100,000-contact job answered in {answered:?}; right after: state {state}, {queued} rows still queued"
    );
    assert_eq!(state, "cancelled", "the state committed before the answer");

    // The rows follow, in their own statement.
    let mut saw_state_first = queued > 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (state, queued) = observe().await;
        assert_eq!(state, "cancelled");
        if queued > 0 {
            saw_state_first = true;
        } else {
            break;
        }
        assert!(Instant::now() < deadline, "{queued} rows still queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "rows cancelled {:?} after the cancel was sent",
        sent.elapsed()
    );
    assert!(
        saw_state_first,
        "the job was seen cancelled while its rows were still queued: the state commits first"
    );
    let cancelled: i64 = client
        .query_one(
            "SELECT count(*) AS n FROM contacts WHERE batch_id = $1 AND state = 'cancelled'",
            &[&batch],
        )
        .await
        .unwrap()
        .get("n");
    assert_eq!(cancelled, 100_000);
}
