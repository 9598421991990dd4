//! Whole workers on the real queue: several share it.

use std::time::Duration;

use shared::queue::Publisher;
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;

use crate::fixture::{self, BatchOpts};

#[tokio::test]
async fn several_workers_share_the_queue() {
    let env = TestEnv::new().await;
    let batch = fixture::batch(&env.db, BatchOpts::default()).await;
    let chunks = fixture::chunks(&batch, 30, 100);
    let stop = CancellationToken::new();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(ingest_worker::run(
                fixture::worker_config(&env, &[("INGEST_CONCURRENCY", "2")]),
                stop.clone(),
            ))
        })
        .collect();
    fixture::publish(&Publisher::new(env.broker.clone()), &chunks).await;
    fixture::announce(&env.db, &batch, 30).await;
    let s = fixture::wait_until_ingested(&env.db, &batch, Duration::from_secs(60)).await;
    assert_eq!(
        (
            s.ingest_state.as_str(),
            s.state.as_str(),
            s.sorted,
            s.accepted,
            s.rejected
        ),
        ("ready", "active", 3000, 3000, 0)
    );
    assert_eq!(fixture::contacts(&env.db, &batch).await.len(), 3000);
    stop.cancel();
    for w in workers {
        w.await.unwrap().unwrap();
    }
}
