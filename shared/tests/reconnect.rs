//! A broker connection that drops after start is reopened, and a consumer keeps consuming:
//! the process never dies because a service blipped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shared::queue::consumer::{self, ConsumerOptions, Disposition};
use shared::queue::publisher::Outgoing;
use shared::queue::{Publisher, Stream};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_dropped_connection_is_reopened_and_consuming_resumes() {
    let env = testkit::TestEnv::new().await;
    let handled = Arc::new(AtomicUsize::new(0));
    let shutdown = CancellationToken::new();
    let counter = handled.clone();
    let consumer = tokio::spawn(consumer::run(
        env.broker.clone(),
        ConsumerOptions {
            stream: Stream::CallEvents,
            prefetch: 4,
            concurrency: 2,
            tag: "reconnect-test".into(),
            retry: Default::default(),
        },
        shutdown.clone(),
        move |_| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Disposition::Ack
            }
        },
    ));
    let publisher = Publisher::new(env.broker.clone());
    let wait_for = |n: usize| {
        let handled = handled.clone();
        async move {
            for _ in 0..200 {
                if handled.load(Ordering::SeqCst) >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!(
                "only {} of {n} messages handled",
                handled.load(Ordering::SeqCst)
            );
        }
    };

    publisher
        .publish(Stream::CallEvents, Outgoing::json(&"before").unwrap())
        .await
        .unwrap();
    wait_for(1).await;

    // The broker drops the connection under everyone's feet.
    env.broker.close().await;

    // The publisher reopens it on its next publish; the consumer reconnects with backoff.
    publisher
        .publish(Stream::CallEvents, Outgoing::json(&"after").unwrap())
        .await
        .unwrap();
    wait_for(2).await;
    assert!(env.broker.is_connected().await);
    assert!(
        !consumer.is_finished(),
        "the consumer must survive the drop"
    );
    shutdown.cancel();
    consumer.await.unwrap();
}

/// Race 2: a handler still running when the channel is lost does not hold the consumer back.
/// Its ack belongs to the dead channel (the broker redelivers the message, and handlers are
/// idempotent), so the consumer reconnects at once and handles new messages while it runs.
#[tokio::test]
async fn a_stuck_handler_does_not_delay_the_reconnect() {
    let env = testkit::TestEnv::new().await;
    let handled = Arc::new(AtomicUsize::new(0));
    let stuck_started = Arc::new(tokio::sync::Notify::new());
    let unstick = Arc::new(tokio::sync::Notify::new());
    let first_stuck = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let shutdown = CancellationToken::new();
    let consumer = {
        let (handled, stuck_started, unstick, first_stuck) = (
            handled.clone(),
            stuck_started.clone(),
            unstick.clone(),
            first_stuck.clone(),
        );
        tokio::spawn(consumer::run(
            env.broker.clone(),
            ConsumerOptions {
                stream: Stream::CallEvents,
                prefetch: 4,
                concurrency: 2,
                tag: "reconnect-stuck-test".into(),
                retry: Default::default(),
            },
            shutdown.clone(),
            move |incoming| {
                let (handled, stuck_started, unstick, first_stuck) = (
                    handled.clone(),
                    stuck_started.clone(),
                    unstick.clone(),
                    first_stuck.clone(),
                );
                async move {
                    let body: String = serde_json::from_slice(&incoming.body).unwrap();
                    // Only the first delivery of "stuck" hangs; its redelivered copy is quick.
                    if body == "stuck" && first_stuck.swap(false, Ordering::SeqCst) {
                        stuck_started.notify_one();
                        unstick.notified().await;
                        return Disposition::Ack;
                    }
                    if body != "stuck" {
                        handled.fetch_add(1, Ordering::SeqCst);
                    }
                    Disposition::Ack
                }
            },
        ))
    };
    let publisher = Publisher::new(env.broker.clone());
    publisher
        .publish(Stream::CallEvents, Outgoing::json(&"stuck").unwrap())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), stuck_started.notified())
        .await
        .expect("the stuck handler started");

    env.broker.close().await;
    publisher
        .publish(Stream::CallEvents, Outgoing::json(&"after").unwrap())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while handled.load(Ordering::SeqCst) < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message handled while a handler of the lost channel still runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    unstick.notify_one();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), consumer)
        .await
        .expect("stops on shutdown")
        .unwrap();
}
