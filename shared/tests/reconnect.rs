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
