//! SIGTERM on the real `ingest-worker` process: it stops, drains within `SHUTDOWN_GRACE_SECS` and
//! exits 0, having served `/metrics` while it ran and flushed its traces over OTLP on the way
//! out (to a receiver inside this test, with its own `service.name`).
//!
//!
//! And mid-work: a batch of many chunks is queued, SIGTERM reaches the worker while it is
//! persisting them, it exits 0 within the grace, a second worker takes over, and PostgreSQL
//! holds every row exactly once.

#[path = "ingest/fixture.rs"]
#[allow(dead_code)]
mod fixture;

use std::time::Duration;

use shared::queue::publisher::Outgoing;
use shared::queue::{Publisher, Stream};
use testkit::process::RoleProcess;

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    testkit::process::assert_idle_drain(env!("CARGO_BIN_EXE_ingest-worker"), "ingest-worker").await;
}

async fn chunks_done(env: &testkit::TestEnv, batch: &fixture::Batch) -> i64 {
    let client = env.db.get().await.unwrap();
    client
        .query_one(
            "SELECT count(*) AS n FROM ingest_chunks WHERE batch_id = $1",
            &[&batch.id],
        )
        .await
        .unwrap()
        .get("n")
}

#[tokio::test]
async fn sigterm_mid_work_loses_nothing_and_stores_nothing_twice() {
    let env = testkit::TestEnv::new().await;
    let batch = fixture::batch(&env.db, fixture::BatchOpts::default()).await;
    const CHUNKS: u32 = 60;
    const SIZE: u32 = 500;
    let publisher = Publisher::new(env.broker.clone());
    let messages = fixture::chunks(&batch, CHUNKS, SIZE).into_iter().map(|c| {
        let id = format!("{}:{}", c.batch_id, c.seq);
        Outgoing::json(&c).unwrap().with_id(id)
    });
    publisher
        .publish_all(Stream::Ingest, messages)
        .await
        .unwrap();
    fixture::announce(&env.db, &batch, CHUNKS as i32).await;

    let mut first = RoleProcess::spawn(env!("CARGO_BIN_EXE_ingest-worker"), &env, &[]);
    first.wait_ready(Duration::from_secs(30)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while chunks_done(&env, &batch).await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first worker never committed a chunk"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The counters the pipeline dashboard reads, after real work.
    let metrics = first.get("/metrics").await;
    assert!(
        metrics.contains("dialfleet_contacts_ingested_total"),
        "{metrics}"
    );
    first.sigterm();
    let status = first.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
    let by_first = chunks_done(&env, &batch).await;
    assert!(
        by_first < i64::from(CHUNKS),
        "the signal came mid-work, leaving chunks for the second worker"
    );

    let mut second = RoleProcess::spawn(env!("CARGO_BIN_EXE_ingest-worker"), &env, &[]);
    second.wait_ready(Duration::from_secs(30)).await;
    let state = fixture::wait_until_ingested(&env.db, &batch, Duration::from_secs(120)).await;
    second.sigterm();
    let status = second.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
    eprintln!("first worker committed {by_first} of {CHUNKS} chunks before it exited");

    // Nothing lost, nothing twice: every row once, every chunk once, counters exact.
    let total = (CHUNKS * SIZE) as i32;
    assert_eq!(state.ingest_state, "ready", "{state:?}");
    assert_eq!(
        (state.sorted, state.accepted, state.rejected),
        (total, total, 0)
    );
    let contacts = fixture::contacts(&env.db, &batch).await;
    assert_eq!(contacts.len(), total as usize);
    assert!(
        contacts
            .iter()
            .enumerate()
            .all(|(i, (row, _))| *row == i as i32),
        "each row index exactly once"
    );
    assert_eq!(chunks_done(&env, &batch).await, i64::from(CHUNKS));
}
