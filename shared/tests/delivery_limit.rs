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
