//! The slow group: a 100,000-contact batch through the queue and a worker.

use std::time::Duration;

use shared::queue::Publisher;
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;

use crate::fixture::{self, BatchOpts};

#[tokio::test]
async fn slow_hundred_thousand_contacts_end_to_end() {
    let env = TestEnv::new().await;
    let batch = fixture::batch(&env.db, BatchOpts::default()).await;
    let stop = CancellationToken::new();
    let worker = tokio::spawn(ingest_worker::run(
        fixture::worker_config(&env, &[]),
        stop.clone(),
    ));
    let publisher = Publisher::new(env.broker.clone());
    let chunks = fixture::chunks(&batch, 100, 1000);
    for group in chunks.chunks(10) {
        fixture::publish(&publisher, group).await;
    }
    fixture::announce(&env.db, &batch, 100).await;
    let s = fixture::wait_until_ingested(&env.db, &batch, Duration::from_secs(300)).await;
    assert_eq!(
        (s.ingest_state.as_str(), s.sorted, s.accepted, s.rejected),
        ("ready", 100_000, 100_000, 0)
    );
    let n: i64 = env
        .db
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT count(DISTINCT phone_number) AS n FROM contacts WHERE batch_id = $1",
            &[&batch.id],
        )
        .await
        .unwrap()
        .get("n");
    assert_eq!(n, 100_000);
    stop.cancel();
    worker.await.unwrap().unwrap();
}
