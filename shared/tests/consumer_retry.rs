//! The retry rule every worker inherits from `consumer::run`: a passing failure
//! (`Disposition::Retry`) is tried again after a backoff for as long as it lasts and never
//! dead-letters, however many times it comes back; a consumer that stops hands such messages
//! back at once. Against the real RabbitMQ, whose quorum queues dead-letter a message after
//! `DELIVERY_LIMIT` requeues.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::BasicGetOptions;
use shared::queue::consumer::{self, ConsumerOptions, Disposition, Incoming, RetryBackoff};
use shared::queue::publisher::Outgoing;
use shared::queue::topology::DELIVERY_LIMIT;
use shared::queue::{Publisher, Stream};
use tokio_util::sync::CancellationToken;

fn options(tag: &str, retry: RetryBackoff) -> ConsumerOptions {
    ConsumerOptions {
        stream: Stream::Ingest,
        prefetch: 8,
        concurrency: 8,
        tag: tag.to_owned(),
        retry,
    }
}

type Tries = Arc<Mutex<HashMap<String, Vec<Option<String>>>>>;

/// Fails each message `failures` times (recording the retries header it saw), then acks it.
fn flaky(
    tries: Tries,
    failures: usize,
) -> impl Fn(Incoming) -> std::pin::Pin<Box<dyn Future<Output = Disposition> + Send>> + Clone {
    move |incoming: Incoming| {
        let tries = tries.clone();
        Box::pin(async move {
            let id = incoming.message_id.clone().unwrap_or_default();
            let mut tries = tries.lock().unwrap();
            let seen = tries.entry(id).or_default();
            seen.push(incoming.headers.get(consumer::RETRIES_HEADER).cloned());
            if seen.len() <= failures {
                Disposition::Retry
            } else {
                Disposition::Ack
            }
        })
    }
}

async fn dead_lettered(env: &testkit::TestEnv) -> usize {
    let channel = env.broker.channel().await.unwrap();
    let dlq = env.broker.topology().dead_letter_queue(Stream::Ingest);
    let mut n = 0;
    while channel
        .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .is_some()
    {
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_failure_longer_than_the_delivery_limit_dead_letters_nothing() {
    let env = testkit::TestEnv::new().await;
    let failures = 3 * DELIVERY_LIMIT as usize;
    Publisher::new(env.broker.clone())
        .publish_all(
            Stream::Ingest,
            (0..4).map(|i| Outgoing::default().with_id(format!("m{i}"))),
        )
        .await
        .unwrap();
    let tries: Tries = Arc::default();
    let stop = CancellationToken::new();
    let fast = RetryBackoff {
        base: Duration::from_millis(5),
        cap: Duration::from_millis(20),
    };
    let consumer = tokio::spawn(consumer::run(
        env.broker.clone(),
        options("flaky", fast),
        stop.clone(),
        flaky(tries.clone(), failures),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let done = {
            let tries = tries.lock().unwrap();
            tries.len() == 4 && tries.values().all(|t| t.len() == failures + 1)
        };
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every message came back: {:?}",
            tries
                .lock()
                .unwrap()
                .values()
                .map(Vec::len)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    consumer.await.unwrap();
    assert_eq!(
        dead_lettered(&env).await,
        0,
        "a passing failure dead-lettered"
    );
    let tries = tries.lock().unwrap();
    for seen in tries.values() {
        let want: Vec<Option<String>> = std::iter::once(None)
            .chain((1..=failures).map(|n| Some(n.to_string())))
            .collect();
        assert_eq!(seen, &want, "each try counted once, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_consumer_hands_retried_messages_back_at_once() {
    let env = testkit::TestEnv::new().await;
    Publisher::new(env.broker.clone())
        .publish_all(
            Stream::Ingest,
            (0..5).map(|i| Outgoing::default().with_id(format!("m{i}"))),
        )
        .await
        .unwrap();
    // The first replica fails everything and would wait a minute before each retry.
    let slow = RetryBackoff {
        base: Duration::from_secs(60),
        cap: Duration::from_secs(60),
    };
    let first: Tries = Arc::default();
    let stop_first = CancellationToken::new();
    let consumer = tokio::spawn(consumer::run(
        env.broker.clone(),
        options("first", slow),
        stop_first.clone(),
        flaky(first.clone(), usize::MAX),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while first.lock().unwrap().len() < 5 {
        assert!(tokio::time::Instant::now() < deadline, "first replica idle");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopped_at = tokio::time::Instant::now();
    stop_first.cancel();
    consumer.await.unwrap();
    assert!(
        stopped_at.elapsed() < Duration::from_secs(10),
        "stopping waited out the backoff"
    );

    let second: Tries = Arc::default();
    let stop_second = CancellationToken::new();
    let consumer = tokio::spawn(consumer::run(
        env.broker.clone(),
        options("second", RetryBackoff::default()),
        stop_second.clone(),
        flaky(second.clone(), 0),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while second.lock().unwrap().len() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "handed-back messages not taken by the next replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_second.cancel();
    consumer.await.unwrap();
    assert_eq!(dead_lettered(&env).await, 0);
}
