//! Poison chunks go to the dead-letter queue with their reason; the batch shows the error; the
//! worker keeps going.

use std::time::Duration;

use lapin::options::BasicGetOptions;
use serde_json::json;
use shared::queue::consumer::REASON_HEADER;
use shared::queue::publisher::Outgoing;
use shared::queue::{Publisher, Stream};
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;

use crate::fixture::{self, BatchOpts};

#[tokio::test]
async fn poison_chunks_are_dead_lettered_and_the_worker_keeps_going() {
    let env = TestEnv::new().await;
    let poisoned = fixture::batch(
        &env.db,
        BatchOpts {
            webhooks: json!({"onBatchFailed": "https://hooks.example.com/failed"}),
            ..Default::default()
        },
    )
    .await;
    let healthy = fixture::batch(&env.db, BatchOpts::default()).await;
    let publisher = Publisher::new(env.broker.clone());
    let broken = json!({
        "batchId": poisoned.id, "workspaceId": poisoned.workspace_id,
        "seq": "first", "firstRow": 0, "rows": [{"phoneNumber": "+12015550123"}],
    });
    let mut unknown = fixture::chunks(&healthy, 1, 3).remove(0);
    unknown.batch_id = uuid::Uuid::now_v7();
    let bodies = vec![
        Outgoing::json(&broken).unwrap(),
        Outgoing {
            body: b"\x00\x01 not json".to_vec(),
            ..Default::default()
        },
        Outgoing::json(&unknown).unwrap(),
    ];
    publisher.publish_all(Stream::Ingest, bodies).await.unwrap();
    let good = fixture::chunks(&healthy, 2, 10);
    fixture::publish(&publisher, &good).await;
    fixture::announce(&env.db, &healthy, 2).await;

    let stop = CancellationToken::new();
    let worker = tokio::spawn(ingest_worker::run(
        fixture::worker_config(&env, &[]),
        stop.clone(),
    ));
    let s = fixture::wait_until_ingested(&env.db, &healthy, Duration::from_secs(20)).await;
    assert_eq!((s.ingest_state.as_str(), s.accepted), ("ready", 20));

    // The batch whose chunk was poison shows why and has told its webhook.
    let p = fixture::wait_until_ingested(&env.db, &poisoned, Duration::from_secs(10)).await;
    assert_eq!(p.ingest_state, "failed");
    assert_eq!(p.state, "failed");
    assert_eq!(p.error_code.as_deref(), Some("poison_chunk"));
    assert!(p.error.unwrap().contains("undecodable"));
    let hook = env
        .db
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT url, payload FROM webhook_deliveries WHERE batch_id = $1 AND event = 'batch.failed'",
            &[&poisoned.id],
        )
        .await
        .unwrap();
    assert_eq!(
        hook.get::<_, String>("url"),
        "https://hooks.example.com/failed"
    );
    let payload: serde_json::Value = hook.get("payload");
    assert_eq!(payload["code"], "poison_chunk");
    assert_eq!(payload["batchId"], poisoned.id.to_string());
    assert_eq!(payload["agentId"], poisoned.agent_id.to_string());

    // Three messages parked, each with its reason.
    let channel = env.broker.channel().await.unwrap();
    let dlq = env.broker.topology().dead_letter_queue(Stream::Ingest);
    let mut reasons = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while reasons.len() < 3 && tokio::time::Instant::now() < deadline {
        match channel
            .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            Some(msg) => {
                let headers = msg
                    .delivery
                    .properties
                    .headers()
                    .clone()
                    .unwrap_or_default();
                let reason = headers
                    .inner()
                    .iter()
                    .find(|(k, _)| k.as_str() == REASON_HEADER)
                    .and_then(|(_, v)| match v {
                        lapin::types::AMQPValue::LongString(s) => {
                            Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
                        }
                        _ => None,
                    })
                    .unwrap_or_default();
                reasons.push(reason);
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert_eq!(
        reasons.iter().filter(|r| r.contains("undecodable")).count(),
        2,
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("does not exist")),
        "{reasons:?}"
    );

    stop.cancel();
    worker.await.unwrap().unwrap();
}
