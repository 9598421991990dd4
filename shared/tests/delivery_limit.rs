//! Race 3 of issue #29: on RabbitMQ 3.x a quorum queue may count a message handed back by a
//! closed channel (never failed, perhaps never even handled) toward `x-delivery-limit`, and
//! dead-letter it. This test shows what the broker the suite runs against does (the figure is
//! in docs/reliability.md), and checks the consumer's rule on top of it: a message returned by
//! channel losses alone more often than the limit is not dead-lettered.

use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicQosOptions};
use shared::queue::publisher::Outgoing;
use shared::queue::topology::DELIVERY_LIMIT;
use shared::queue::{Publisher, Stream};

/// How many messages `queue` holds, taken out (no ack needed).
async fn drain(env: &testkit::TestEnv, queue: &str) -> usize {
    let channel = env.broker.channel().await.unwrap();
    let mut n = 0;
    while channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .is_some()
    {
        n += 1;
    }
    n
}

/// The broker alone: a message fetched without an ack on a channel that is then closed, more
/// times than the delivery limit. Prints whether the broker dead-lettered it.
#[tokio::test]
async fn the_broker_counts_channel_closures_toward_the_delivery_limit() {
    let env = testkit::TestEnv::new().await;
    Publisher::new(env.broker.clone())
        .publish_all(Stream::Ingest, [Outgoing::default().with_id("m0")])
        .await
        .unwrap();
    let queue = env.broker.topology().queue(Stream::Ingest);
    let dlq = env.broker.topology().dead_letter_queue(Stream::Ingest);
    let mut fetched = 0;
    for _ in 0..DELIVERY_LIMIT + 2 {
        let channel = env.broker.channel().await.unwrap();
        channel
            .basic_qos(1, BasicQosOptions::default())
            .await
            .unwrap();
        let got = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap();
        if got.is_some() {
            fetched += 1;
        }
        // Closed with the message unacked: the broker takes it back.
        channel.close(200, "bye".into()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dead = drain(&env, &dlq).await;
    let left = drain(&env, &queue).await;
    eprintln!(
        "broker: fetched {fetched} times over {} closures; dead-lettered {dead}, still queued {left}",
        DELIVERY_LIMIT + 2
    );
    assert_eq!(dead + left, 1, "the message is somewhere");
}

/// The consumer's rule (race 3's fix): a message whose handler is still running each time the
/// connection drops — returned by lost channels alone, more times than the broker's limit — is
/// never dead-lettered. Before the fix the broker dead-lettered it at the sixth return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_returned_by_lost_channels_alone_is_not_dead_lettered() {
    use shared::queue::consumer::{self, ConsumerOptions, Disposition, RETURNS_HEADER};
    use std::sync::{Arc, Mutex};
    use tokio_util::sync::CancellationToken;

    let env = testkit::TestEnv::new().await;
    Publisher::new(env.broker.clone())
        .publish_all(Stream::Ingest, [Outgoing::default().with_id("m0")])
        .await
        .unwrap();
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let release = CancellationToken::new();
    let stop = CancellationToken::new();
    let consumer = {
        let (seen, release) = (seen.clone(), release.clone());
        tokio::spawn(consumer::run(
            env.broker.clone(),
            ConsumerOptions {
                stream: Stream::Ingest,
                prefetch: 1,
                concurrency: 32,
                tag: "returns".into(),
                retry: Default::default(),
            },
            stop.clone(),
            move |incoming| {
                let (seen, release) = (seen.clone(), release.clone());
                async move {
                    seen.lock()
                        .unwrap()
                        .push(incoming.headers.get(RETURNS_HEADER).cloned());
                    // Still running when the connection drops.
                    release.cancelled().await;
                    Disposition::Ack
                }
            },
        ))
    };
    let returns = 3 * DELIVERY_LIMIT as usize;
    for n in 1..=returns {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while seen.lock().unwrap().len() < n {
            if tokio::time::Instant::now() >= deadline {
                let dlq = env.broker.topology().dead_letter_queue(Stream::Ingest);
                let dead = drain(&env, &dlq).await;
                let seen = seen.lock().unwrap().clone();
                panic!("delivery {n} never came: {seen:?}; dead-lettered {dead}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        env.broker.close().await;
    }
    let dlq = env.broker.topology().dead_letter_queue(Stream::Ingest);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().len() <= returns {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    release.cancel();
    stop.cancel();
    consumer.await.unwrap();
    assert_eq!(drain(&env, &dlq).await, 0, "dead-lettered by returns alone");
    let seen = seen.lock().unwrap();
    eprintln!("returns carried, as the handler saw them: {seen:?}");
    assert!(
        seen.last().unwrap().is_some(),
        "the returns were carried over to a fresh copy: {seen:?}"
    );
}
