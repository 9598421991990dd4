//! Batches whose chunks stop arriving fail after the ingest timeout, once, with a webhook.

use std::time::Duration;

use chrono::Utc;
use ingest_worker::chunk::{ChunkOutcome, handle_chunk};
use ingest_worker::normalize::NumberCheck;
use ingest_worker::timeout::sweep_once;
use serde_json::json;
use testkit::TestEnv;

use crate::fixture::{self, BatchOpts};

const TIMEOUT: Duration = Duration::from_secs(600);

#[tokio::test]
async fn a_stalled_batch_fails_after_the_timeout_and_says_why() {
    let env = TestEnv::new().await;
    let batch = fixture::batch(
        &env.db,
        BatchOpts {
            webhooks: json!({"onCallComplete": "https://x/call", "onBatchFailed": "https://x/failed"}),
            ..Default::default()
        },
    )
    .await;
    let quiet = fixture::batch(&env.db, BatchOpts::default()).await;
    let chunks = fixture::chunks(&batch, 3, 5);
    handle_chunk(&env.db, NumberCheck::Strict, chunks[0].clone())
        .await
        .unwrap();
    fixture::announce(&env.db, &batch, 3).await;

    // Not yet: progress is recent.
    assert!(
        sweep_once(&env.db, Utc::now(), TIMEOUT)
            .await
            .unwrap()
            .is_empty()
    );

    // Ten minutes and a second later (the clock is injected).
    let later = Utc::now() + chrono::Duration::seconds(601);
    let failed = sweep_once(&env.db, later, TIMEOUT).await.unwrap();
    assert_eq!(failed.len(), 2);
    assert!(failed.contains(&batch.id) && failed.contains(&quiet.id));
    let s = fixture::state(&env.db, &batch).await;
    assert_eq!(
        (s.state.as_str(), s.ingest_state.as_str()),
        ("failed", "failed")
    );
    assert_eq!(s.error_code.as_deref(), Some("ingest_timeout"));
    assert_eq!(
        s.error.as_deref(),
        Some("ingestion timed out: 1 of 3 chunks stored, none for 600 s")
    );
    let q = fixture::state(&env.db, &quiet).await;
    assert!(q.error.unwrap().contains("never announced"));

    // Exactly one webhook, for the batch that asked for it, with Dialgen's payload.
    let rows = env
        .db
        .get()
        .await
        .unwrap()
        .query(
            "SELECT batch_id, url, payload, state FROM webhook_deliveries WHERE event = 'batch.failed'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, uuid::Uuid>("batch_id"), batch.id);
    assert_eq!(rows[0].get::<_, String>("url"), "https://x/failed");
    assert_eq!(rows[0].get::<_, String>("state"), "pending");
    let payload: serde_json::Value = rows[0].get("payload");
    assert_eq!(payload["event"], "batch.failed");
    assert_eq!(payload["code"], "ingest_timeout");
    assert_eq!(payload["agentId"], batch.agent_id.to_string());
    assert!(payload["timestamp"].as_str().unwrap().ends_with('Z'));

    // Swept once only; a late chunk stores nothing.
    assert!(
        sweep_once(&env.db, later, TIMEOUT)
            .await
            .unwrap()
            .is_empty()
    );
    let late = handle_chunk(&env.db, NumberCheck::Strict, chunks[1].clone())
        .await
        .unwrap();
    assert_eq!(
        late,
        ChunkOutcome::BatchClosed {
            ingest_state: shared::domain::IngestState::Failed
        }
    );
    assert_eq!(fixture::contacts(&env.db, &batch).await.len(), 5);
}

#[tokio::test]
async fn concurrent_sweeps_fail_each_batch_once() {
    let env = TestEnv::new().await;
    let opts = || BatchOpts {
        webhooks: json!({"onBatchFailed": "https://x/failed"}),
        ..Default::default()
    };
    for _ in 0..5 {
        fixture::batch(&env.db, opts()).await;
    }
    let later = Utc::now() + chrono::Duration::seconds(601);
    let (a, b, c) = tokio::join!(
        sweep_once(&env.db, later, TIMEOUT),
        sweep_once(&env.db, later, TIMEOUT),
        sweep_once(&env.db, later, TIMEOUT),
    );
    let total = a.unwrap().len() + b.unwrap().len() + c.unwrap().len();
    assert_eq!(total, 5);
    let hooks: i64 = env
        .db
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) AS n FROM webhook_deliveries", &[])
        .await
        .unwrap()
        .get("n");
    assert_eq!(hooks, 5);
}

/// A body whose gateway died mid-request (its batch still `receiving`, hidden) is aborted by the
/// sweep: the rows stored so far are deleted, a late chunk stores nothing.
#[tokio::test]
async fn a_stalled_upload_is_aborted_and_its_rows_deleted() {
    let env = TestEnv::new().await;
    let batch = fixture::batch(&env.db, BatchOpts::default()).await;
    let client = env.db.get().await.unwrap();
    client
        .execute(
            "UPDATE batches SET ingest_state = 'receiving' WHERE id = $1",
            &[&batch.id],
        )
        .await
        .unwrap();
    let chunks = fixture::chunks(&batch, 2, 5);
    // A receiving batch takes chunks, but cannot finish (nothing was announced).
    match handle_chunk(&env.db, NumberCheck::Strict, chunks[0].clone())
        .await
        .unwrap()
    {
        ChunkOutcome::Committed(c) => assert!(!c.finished),
        other => panic!("expected a commit, got {other:?}"),
    }
    assert_eq!(fixture::contacts(&env.db, &batch).await.len(), 5);
    assert!(
        sweep_once(&env.db, Utc::now(), TIMEOUT)
            .await
            .unwrap()
            .is_empty()
    );
    sweep_once(&env.db, Utc::now() + TIMEOUT * 2, TIMEOUT)
        .await
        .unwrap();
    let state: String = client
        .query_one(
            "SELECT ingest_state FROM batches WHERE id = $1",
            &[&batch.id],
        )
        .await
        .unwrap()
        .get("ingest_state");
    assert_eq!(state, "aborted");
    assert!(fixture::contacts(&env.db, &batch).await.is_empty());
    // The late chunk is dropped: acked, nothing stored.
    let late = handle_chunk(&env.db, NumberCheck::Strict, chunks[1].clone())
        .await
        .unwrap();
    assert!(
        matches!(late, ChunkOutcome::BatchClosed { ref ingest_state } if *ingest_state == shared::domain::IngestState::Aborted),
        "{late:?}"
    );
    assert!(fixture::contacts(&env.db, &batch).await.is_empty());
}
