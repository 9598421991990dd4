//! A worker that dies mid-chunk: before its commit (the transaction dies with its connection)
//! and after its commit but before its ack (the broker redelivers). No row is lost or doubled.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ingest_worker::chunk::{ChunkKey, ChunkOutcome, handle_chunk, stage_chunk};
use ingest_worker::consume::Handler;
use ingest_worker::normalize::{NumberCheck, Region};
use shared::queue::consumer::{self, ConsumerOptions, Disposition};
use shared::queue::publisher::Outgoing;
use shared::queue::{Broker, Publisher, Stream};
use testkit::TestEnv;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use crate::fixture::{self, BatchOpts};

#[tokio::test]
async fn a_worker_killed_before_commit_loses_and_doubles_nothing() {
    let env = TestEnv::new().await;
    let batch = fixture::batch(&env.db, BatchOpts::default()).await;
    fixture::announce(&env.db, &batch, 1).await;
    let chunk = fixture::chunks(&batch, 1, 200).remove(0);

    // Worker A: its own connection, the whole chunk written, not committed.
    let (mut client, connection) = tokio_postgres::connect(&env.config.database_url, NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let txn = client.transaction().await.unwrap();
    let plan = ingest_worker::plan::plan(
        chunk.first_row,
        chunk.rows.clone(),
        Region::parse("US"),
        NumberCheck::Strict,
    )
    .unwrap();
    let key = ChunkKey {
        batch_id: batch.id,
        workspace_id: batch.workspace_id,
        seq: 0,
        first_row: 0,
        rows: 200,
    };
    let staged = stage_chunk(&txn, &key, &plan).await.unwrap();
    assert!(matches!(staged, ChunkOutcome::Committed(c) if c.finished));

    // Worker B gets the redelivered chunk and waits on A's claim of it.
    let db = env.db.clone();
    let redelivered = chunk.clone();
    let b = tokio::spawn(async move { handle_chunk(&db, NumberCheck::Strict, redelivered).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.is_finished(), "B must wait for A's transaction");
    assert!(fixture::contacts(&env.db, &batch).await.is_empty());

    // A dies: its connection drops, the server rolls its transaction back.
    std::mem::forget(txn);
    connection.abort();
    let outcome = tokio::time::timeout(Duration::from_secs(10), b)
        .await
        .expect("B proceeds once A is gone")
        .unwrap()
        .unwrap();
    assert!(matches!(outcome, ChunkOutcome::Committed(c) if c.accepted == 200 && c.finished));
    assert_eq!(fixture::contacts(&env.db, &batch).await.len(), 200);
    let s = fixture::state(&env.db, &batch).await;
    assert_eq!(
        (s.ingest_state.as_str(), s.sorted, s.accepted),
        ("ready", 200, 200)
    );
}

#[tokio::test]
async fn a_worker_killed_after_commit_before_ack_is_redelivered_harmlessly() {
    let env = TestEnv::new().await;
    let batch = fixture::batch(&env.db, BatchOpts::default()).await;
    let chunk = fixture::chunks(&batch, 1, 100).remove(0);
    Publisher::new(env.broker.clone())
        .publish(Stream::Ingest, Outgoing::json(&chunk).unwrap())
        .await
        .unwrap();
    let handler = Handler {
        db: env.db.clone(),
        check: NumberCheck::Strict,
    };
    let options = |tag: &str| ConsumerOptions {
        stream: Stream::Ingest,
        prefetch: 1,
        concurrency: 1,
        tag: tag.to_owned(),
        retry: Default::default(),
    };

    // Worker A commits, then hangs before its ack; then the process dies.
    let a_broker = Broker::connect(&env.config, "worker-a").await.unwrap();
    let a_done = Arc::new(tokio::sync::Notify::new());
    let a = {
        let (handler, a_done) = (handler.clone(), a_done.clone());
        tokio::spawn(consumer::run(
            a_broker.clone(),
            options("a"),
            CancellationToken::new(),
            move |incoming| {
                let (handler, a_done) = (handler.clone(), a_done.clone());
                async move {
                    assert_eq!(handler.on_message(incoming).await, Disposition::Ack);
                    a_done.notify_one();
                    std::future::pending::<Disposition>().await
                }
            },
        ))
    };
    tokio::time::timeout(Duration::from_secs(10), a_done.notified())
        .await
        .unwrap();
    assert_eq!(fixture::contacts(&env.db, &batch).await.len(), 100);
    a.abort();
    a_broker.close().await;

    // Worker B receives the redelivery and finds the chunk done.
    let seen = Arc::new(AtomicUsize::new(0));
    let b_stop = CancellationToken::new();
    let b = {
        let (handler, seen) = (handler.clone(), seen.clone());
        tokio::spawn(consumer::run(
            env.broker.clone(),
            options("b"),
            b_stop.clone(),
            move |incoming| {
                let (handler, seen) = (handler.clone(), seen.clone());
                async move {
                    assert!(incoming.redelivered);
                    let d = handler.on_message(incoming).await;
                    seen.fetch_add(1, Ordering::SeqCst);
                    d
                }
            },
        ))
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.load(Ordering::SeqCst) == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b_stop.cancel();
    b.await.unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert_eq!(fixture::contacts(&env.db, &batch).await.len(), 100);
    let s = fixture::state(&env.db, &batch).await;
    assert_eq!((s.sorted, s.accepted), (100, 100));
}
